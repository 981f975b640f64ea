"""The Bbox-Seg chain: CRF options, the store's path and resumption, dry run, a full tiny chain."""

from pathlib import Path

import pytest
import yaml
from tiny_data import data_args, synthetic

from wseg.data.store import PseudoLabelStore
from wseg.labels.generators import build_generator
from wseg.pipeline import commands
from wseg.pipeline.__main__ import main
from wseg.pipeline.bbox_seg import SETTINGS, crf_options, make_store, store_plan
from wseg.pipeline.stages import FINAL, load_config

TINY = synthetic(4)


def tiny_data_args(root: Path) -> list[str]:
    return data_args(root, TINY)


def test_settings_are_subcommand_configs_with_a_store_placeholder() -> None:
    assert "bbox-seg" in commands()
    assert set(SETTINGS) == {"demo", "demo_semi", "tiny_coco", "voc", "voc_semi", "camvid"}
    for config in SETTINGS.values():
        data = load_config(config)["data"]["init_args"]
        assert "REPLACE_WITH_STORE_HASH" in data["pseudo_labels"]
        assert load_config(config)["model"]["class_path"] == "BboxSeg"
    assert load_config(SETTINGS["voc_semi"])["data"]["init_args"]["num_strong"] == 1464


def test_crf_options_take_the_tuned_choice_then_explicit_ones(tmp_path: Path) -> None:
    assert crf_options(None, {}) == {}
    tuned = tmp_path / "chosen.yaml"
    choice = {"generator": "crf", "options": {"alpha": 0.4, "box_prior": 0.7}}
    tuned.write_text(yaml.safe_dump(choice))
    assert crf_options(tuned, {}) == {"alpha": 0.4, "box_prior": 0.7}
    assert crf_options(tuned, {"alpha": 0.6}) == {"alpha": 0.6, "box_prior": 0.7}
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        crf_options(tmp_path / "missing.yaml", {})
    tuned.write_text(yaml.safe_dump({"generator": "grabcut", "options": {}}))
    with pytest.raises(ValueError, match="not a crf choice"):
        crf_options(tuned, {})


def test_store_is_made_where_planned_and_resumed(tmp_path: Path) -> None:
    extra = tiny_data_args(tmp_path / "syn")
    generator = build_generator("crf", alpha=0.4)
    plan = store_plan(SETTINGS["demo"], extra, generator, tmp_path / "stores")
    assert plan["dataset"]["split"] == "train" and "pseudo_labels" not in plan["data"]
    assert not plan["path"].exists() and not (tmp_path / "syn").exists()  # planning reads nothing
    path = make_store(SETTINGS["demo"], extra, generator, tmp_path / "stores")
    assert path == plan["path"]
    store = PseudoLabelStore(path)
    assert store.manifest["config"]["options"]["alpha"] == 0.4
    assert [run["generated"] for run in store.manifest["runs"]] == [4]
    label_file = next(path.glob("*.png"))
    label_file.unlink()  # an interrupted run: one label missing
    assert make_store(SETTINGS["demo"], extra, generator, tmp_path / "stores") == path
    runs = PseudoLabelStore(path).manifest["runs"]
    assert [(run["generated"], run["skipped"]) for run in runs] == [(4, 0), (1, 3)]
    other = make_store(SETTINGS["demo"], extra, build_generator("crf"), tmp_path / "stores")
    assert other != path  # another alpha: another hash-named store


def test_dry_run_writes_the_fit_config_on_the_planned_store(tmp_path: Path, capsys) -> None:
    extra = tiny_data_args(tmp_path / "syn")
    out = tmp_path / "runs"
    args = ["bbox-seg", "--setting", "demo_semi", "--out", str(out), "-o", "alpha=0.4"]
    assert main([*args, "--dry-run", "--", *extra]) == {}
    generator = build_generator("crf", alpha=0.4)
    plan = store_plan(SETTINGS["demo_semi"], extra, generator, out / "demo_semi" / "stores")
    printed = capsys.readouterr().out
    assert f"store: {plan['path']}" in printed and "wseg fit --config" in printed
    config = yaml.safe_load((out / "demo_semi" / "fit" / "config.yaml").read_text())
    data = config["data"]["init_args"]
    assert data["pseudo_labels"] == str(plan["path"])
    assert data["num_strong"] == 20 and data["strong_per_batch"] == 2  # the setting's own F
    assert config["model"]["init_args"]["semi"] is True
    assert not plan["path"].exists() and not (out / "demo_semi" / "fit" / FINAL).exists()
    with pytest.raises(SystemExit, match="bad crf generator options"):
        main([*args, "-o", "beta=1", "--dry-run", "--", *extra])


@pytest.mark.slow
def test_chain_makes_the_store_fits_then_skips_both(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    extra = tiny_data_args(tmp_path / "syn") + [
        "--data.init_args.crop_size", "64",
        "--data.init_args.batch_size", "2",
        "--data.init_args.num_workers", "0",
        "--model.init_args.encoder", "tu-mobilenetv3_small_050",
        "--model.init_args.encoder_weights", "null",
        "--model.init_args.log_images_every_n_epochs", "0",
        "--trainer.max_steps", "2",
        "--trainer.limit_val_batches", "1",
        "--trainer.enable_progress_bar", "false",
    ]  # fmt: skip
    args = ["bbox-seg", "--setting", "demo", "--out", str(tmp_path / "runs"), "--workers", "1"]
    results = main([*args, "--", *extra])
    assert 0.0 <= results["fit"]["val/miou"] <= 1.0 and results["fit"]["global_step"] == 2
    assert (tmp_path / "runs" / "demo" / "fit" / FINAL).is_file()
    capsys.readouterr()
    assert main([*args, "--", *extra]) == results
    printed = capsys.readouterr().out
    assert "generated 0, already there 4" in printed and "fit: done" in printed
