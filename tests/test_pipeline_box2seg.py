"""The Box2Seg chain: GrabCut store, stage wiring, dry run, restart, a real tiny chain, DDP."""

import json
import os
from pathlib import Path

import pytest
import yaml
from tiny_data import TINY_FIT, data_args, synthetic

from wseg.data.datasets import make_source
from wseg.data.store import PseudoLabelStore, StoreError
from wseg.labels.generate import generate
from wseg.labels.generators import build_generator
from wseg.pipeline import commands
from wseg.pipeline.__main__ import main
from wseg.pipeline.box2seg import SETTINGS, box2seg_stages, grabcut_store
from wseg.pipeline.stages import FINAL, load_config, stage_config

DEMO = SETTINGS["demo"]
TINY = synthetic(4)


def tiny_data_args(root: Path) -> list[str]:
    return data_args(root, TINY)


def tiny_fit_args(root: Path) -> list[str]:
    return tiny_data_args(root) + [
        *TINY_FIT,
        "--model.init_args.branch_channels", "8",
        "--model.init_args.embedding_dim", "4",
        "--model.init_args.log_images_every_n_epochs", "0",
        "--trainer.max_steps", "2",
        "--trainer.limit_val_batches", "1",
        "--trainer.enable_progress_bar", "false",
    ]  # fmt: skip


def test_settings_and_command() -> None:
    assert {"demo", "voc"} <= set(SETTINGS) and "box2seg" in commands()
    for setting in SETTINGS.values():
        assert load_config(setting.pretrain)["model"]["init_args"]["stage"] == "pretrain"
        assert load_config(setting.main)["model"]["init_args"]["stage"] == "main"


def test_stages_read_the_store_and_main_starts_from_pretrain(tmp_path: Path) -> None:
    store = tmp_path / "pseudo" / "grabcut-12345678"
    pretrain, main_stage = box2seg_stages(DEMO, store)
    original = load_config(DEMO.main)["data"]["init_args"]
    for stage in (pretrain, main_stage):
        config = stage_config(stage, "demo", tmp_path)
        data = config["data"]["init_args"]
        assert data["pseudo_labels"] == str(store)
        assert {k: data[k] for k in original if k != "pseudo_labels"} == {
            k: v for k, v in original.items() if k != "pseudo_labels"
        }
        assert config["trainer"]["callbacks"][-1]["init_args"]["path"] == str(
            tmp_path / stage.name / FINAL
        )
    main_config = stage_config(main_stage, "demo", tmp_path)["model"]["init_args"]
    assert main_config["init_checkpoint"] == str(tmp_path / "pretrain" / FINAL)
    assert main_config["stage"] == "main"
    pretrain_config = stage_config(pretrain, "demo", tmp_path)["model"]["init_args"]
    assert pretrain_config["stage"] == "pretrain" and "init_checkpoint" not in pretrain_config


def test_dry_run_prints_both_stages_and_runs_nothing(tmp_path: Path, capsys) -> None:
    out = tmp_path / "runs"
    assert main(["box2seg", "--setting", "demo", "--out", str(out), "--dry-run"]) == {}
    printed = capsys.readouterr().out
    assert "pretrain: " in printed and "main: " in printed and "wseg fit --config" in printed
    written = yaml.safe_load((out / "demo" / "main" / "config.yaml").read_text())
    assert written["model"]["init_args"]["init_checkpoint"] == str(
        out / "demo" / "pretrain" / FINAL
    )
    assert not (out / "demo" / "pseudo").exists() and not (out / "demo" / "main" / FINAL).exists()


def test_grabcut_store_is_hash_named_resumes_and_follows_the_data(tmp_path: Path, capsys) -> None:
    extra = tiny_data_args(tmp_path / "syn")
    path = grabcut_store(DEMO.pretrain, extra, tmp_path / "pseudo", progress=False)
    assert path.parent == tmp_path / "pseudo" and path.name.startswith("grabcut-")
    store = PseudoLabelStore(path)
    assert store.manifest["config"]["generator"] == "grabcut"
    assert store.manifest["config"]["dataset"]["root"] == str((tmp_path / "syn").resolve())
    labels = sorted(path.glob("*.png"))
    assert len(labels) == TINY["synthetic_num_train"]
    labels[0].unlink()  # an interrupted run: one label missing
    capsys.readouterr()
    assert grabcut_store(DEMO.pretrain, extra, tmp_path / "pseudo", progress=False) == path
    assert "generated 1, already there 3, of 4" in capsys.readouterr().out
    other = tiny_data_args(tmp_path / "other")
    assert grabcut_store(DEMO.pretrain, other, tmp_path / "pseudo", progress=False) != path


def test_store_argument_must_be_a_grabcut_store(tmp_path: Path) -> None:
    args = ["box2seg", "--setting", "demo", "--out", str(tmp_path), "--dry-run", "--store"]
    with pytest.raises(StoreError):
        main([*args, str(tmp_path / "missing")])
    from wseg.data.synthetic import generate_synthetic

    root = generate_synthetic(tmp_path / "syn", num_train=2, num_val=1, size=(32, 32))
    source = make_source("synthetic", root, "train")
    rect = generate(source, build_generator("rect"), tmp_path / "p", {"name": "s"}, progress=False)
    with pytest.raises(ValueError, match="'rect' labels, not grabcut"):
        main([*args, str(rect.store.path)])


@pytest.mark.slow
def test_tiny_chain_runs_every_stage_then_skips_them(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    args = ["box2seg", "--setting", "demo", "--out", str(tmp_path / "runs")]
    results = main([*args, "--", *tiny_fit_args(tmp_path / "syn")])
    assert set(results) == {"pretrain", "main"}
    assert results["main"]["global_step"] == 2 and 0 <= results["main"]["val/miou"] <= 1
    assert "train/loss_attention_weighted" in results["main"]
    capsys.readouterr()
    assert main([*args, "--", *tiny_fit_args(tmp_path / "syn")]) == results
    printed = capsys.readouterr().out
    assert printed.count("skipped") == 2 and "generated 0, already there 4" in printed


@pytest.mark.slow
def test_both_stages_train_under_two_process_ddp(tmp_path: Path, monkeypatch) -> None:
    """gloo DDP on CPU without find_unused_parameters: the pretrain stage's y head is frozen."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    extra = tiny_fit_args(tmp_path / "syn") + [
        "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp",
    ]  # fmt: skip
    results = main(["box2seg", "--setting", "demo", "--out", str(tmp_path / "runs"), "--", *extra])
    assert results["pretrain"]["global_step"] == 2 and results["main"]["global_step"] == 2
    metrics = json.loads((tmp_path / "runs" / "demo" / "main" / "metrics.json").read_text())
    assert {**metrics, "stage_dir": str(tmp_path / "runs" / "demo" / "main")} == results["main"]
    assert os.path.getsize(tmp_path / "runs/demo/main" / FINAL)


def test_the_chain_runs_from_python_without_a_parser(tmp_path: Path, capsys) -> None:
    from wseg.pipeline.box2seg import run_chain

    assert run_chain("demo", tmp_path / "runs", dry_run=True) == {}
    printed = capsys.readouterr().out
    assert "would make or finish a store" in printed and "fit" in printed
    with pytest.raises(ValueError, match=r"box2seg: no setting 'nope'; the settings are \["):
        run_chain("nope", tmp_path / "runs", dry_run=True)
