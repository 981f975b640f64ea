"""The Box2Tag chain: per-class stages, pseudo-GT stores from the class networks, final stages."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import lightning
import pytest
import torch
import yaml
from tiny_data import data_args, synthetic

from wseg.data.box_crops import scan_crops
from wseg.data.datasets import SYNTHETIC_CLASSES, make_source
from wseg.data.store import PseudoLabelStore
from wseg.methods.box2tag import Box2TagSingleClass
from wseg.pipeline import commands
from wseg.pipeline.__main__ import main
from wseg.pipeline.box2tag import SETTINGS, class_stages, final_stages
from wseg.pipeline.stages import FINAL, stage_config

DEMO = SETTINGS["demo"]
TINY_DATA = synthetic(8, crop_size=32, batch_size=2, num_workers=0)


def tiny_args(root: Path) -> list[str]:
    return data_args(root, TINY_DATA)


def test_box2tag_is_a_subcommand() -> None:
    assert "box2tag" in commands()


def test_stages_wire_classes_stores_and_the_crf_fit(tmp_path: Path) -> None:
    stages = class_stages(DEMO, ["bird", "traffic light"])
    assert [s.name for s in stages] == ["class_bird", "class_traffic_light"]
    config = stage_config(stages[0], "demo", tmp_path)
    assert config["data"]["init_args"]["target_class"] == "bird"
    assert config["trainer"]["default_root_dir"] == str(tmp_path / "class_bird")
    store = tmp_path / "pseudo" / "box2tag-overlap-void-0"
    (void,) = final_stages(DEMO, "overlap-void", store)
    assert void.config == DEMO.final
    assert stage_config(void, "demo", tmp_path)["data"]["init_args"]["pseudo_labels"] == str(store)
    ce, crf = final_stages(DEMO, "overlap-back-void", store)
    first = stage_config(ce, "demo", tmp_path)["model"]["init_args"]
    assert first["crf_loss_weight"] == 0.0 and first["init_checkpoint"] is None
    second = stage_config(crf, "demo", tmp_path)["model"]["init_args"]
    assert second["crf_loss_weight"] > 0
    assert second["init_checkpoint"] == str(tmp_path / ce.name / FINAL)


def test_dry_run_counts_boxes_and_trains_only_missing_classes(tmp_path: Path, capsys) -> None:
    out = tmp_path / "runs"
    args = ["box2tag", "--setting", "demo", "--out", str(out), "--dry-run", "--"]
    args += tiny_args(tmp_path / "syn")
    (out / "demo" / "class_bird").mkdir(parents=True)
    (out / "demo" / "class_bird" / FINAL).write_bytes(b"")
    main(args)
    counts = json.loads((out / "demo" / "boxes.json").read_text())["classes"]
    entries = scan_crops(make_source("synthetic", tmp_path / "syn", "train"), progress=False)
    for index, name in enumerate(SYNTHETIC_CLASSES[1:], start=1):
        assert counts[name]["boxes"] == sum(e.label == index for e in entries)
        assert counts[name]["kept"] == sum(e.label == index and e.kept for e in entries)
    printed = capsys.readouterr().out
    assert "class_bird: done" in printed
    trained = [n for n in SYNTHETIC_CLASSES[1:] if counts[n]["boxes"] and n != "bird"]
    for name in trained:
        assert f"class_{name}: " in printed and (out / "demo" / f"class_{name}").is_dir()
        config = yaml.safe_load((out / "demo" / f"class_{name}" / "config.yaml").read_text())
        assert config["data"]["init_args"]["target_class"] == name
    assert not list(out.rglob("pseudo"))


def save_network(path: Path) -> Path:
    """A real (untrained) single-class network's checkpoint."""
    torch.manual_seed(0)
    model = Box2TagSingleClass(
        num_classes=2,
        class_names=["background", "x"],
        arch="unet",
        encoder="tu-mobilenetv3_small_050",
        encoder_weights=None,
    )
    checkpoint = {
        "state_dict": model.state_dict(),
        "hyper_parameters": dict(model.hparams),
        "pytorch-lightning_version": lightning.__version__,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, path)
    return path


def test_pseudo_step_writes_one_store_per_rule_and_resumes(tmp_path: Path, capsys) -> None:
    out = tmp_path / "runs"
    own = ["box2tag", "--setting", "demo", "--out", str(out), "--rule", "all"]
    extra = ["--", *tiny_args(tmp_path / "syn")]
    main([*own, "--dry-run", *extra])  # counts the boxes
    args = [*own, "--stop-after", "pseudo", *extra]
    counts = json.loads((out / "demo" / "boxes.json").read_text())["classes"]
    network = save_network(tmp_path / "net.ckpt")
    for name in (n for n, c in counts.items() if c["boxes"]):
        (out / "demo" / f"class_{name}").mkdir(parents=True, exist_ok=True)
        shutil.copy(network, out / "demo" / f"class_{name}" / FINAL)
    main(args)
    printed = capsys.readouterr().out
    stores = sorted((out / "demo" / "pseudo").iterdir())
    assert [s.name.rsplit("-", 1)[0] for s in stores] == [
        "box2tag-overlap-back-void",
        "box2tag-overlap-small",
        "box2tag-overlap-void",
    ]
    for path in stores:
        store = PseudoLabelStore(path)
        assert len(store) == TINY_DATA["synthetic_num_train"]
        assert store.manifest["quality"]["miou"] is not None
        assert str(path) in printed
    main(args)
    assert all(PseudoLabelStore(path).manifest["runs"][-1]["generated"] == 0 for path in stores)
    assert not any(p.name.startswith("final") for p in (out / "demo").iterdir())


@pytest.mark.slow
def test_back_void_chain_runs_every_fit(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    extra = tiny_args(tmp_path / "syn") + [
        "--model.init_args.encoder", "tu-mobilenetv3_small_050",
        "--model.init_args.encoder_weights", "null",
        "--model.init_args.log_images_every_n_epochs", "0",
        "--trainer.max_steps", "2",
        "--trainer.limit_train_batches", "2",
        "--trainer.limit_val_batches", "1",
        "--trainer.enable_progress_bar", "false",
    ]  # fmt: skip
    out = tmp_path / "runs"
    args = ["box2tag", "--setting", "demo", "--out", str(out), "--rule", "overlap-back-void"]
    results = main([*args, "--", *extra])
    finals = {"final_overlap_back_void_ce", "final_overlap_back_void_crf"}
    assert finals <= set(results)
    assert all(0.0 <= results[name]["val/miou"] <= 1.0 for name in finals)
    classes = [name for name in results if name.startswith("class_")]
    assert classes and all(0.0 <= results[name]["val/fbeta"] <= 1.0 for name in classes)
    assert main([*args, "--", *extra]) == results
