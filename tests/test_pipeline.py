"""The stage chain of self-correction: splits, per-stage configs, restart, a full tiny chain."""

from pathlib import Path

import pytest
import yaml
from tiny_data import TINY_COCO, data_args, synthetic

from wseg.data.datamodule import WeakSegDataModule
from wseg.data.strong_split import load_split, make_strong_split
from wseg.pipeline import commands
from wseg.pipeline.__main__ import main
from wseg.pipeline.selfcorr import SETTINGS, make_splits, selfcorr_stages
from wseg.pipeline.stages import (
    FINAL,
    METRICS,
    Stage,
    data_overrides,
    load_config,
    run_stages,
    stage_config,
)

DEMO = SETTINGS["demo"]
TINY = synthetic(8)


def tiny_data_args(root: Path) -> list[str]:
    return data_args(root, TINY)


def test_stage_chains() -> None:
    conv = selfcorr_stages(DEMO, "conv")
    assert [s.name for s in conv] == ["ancillary_half", "conv_pretrain", "conv"]
    assert conv[0].split == "ancillary_half" and conv[0].strong_only
    assert conv[1].model_args["stage"] == "pretrain" and conv[1].strong_only
    assert conv[2].inputs == {
        "ancillary_checkpoint": "ancillary_half",
        "init_checkpoint": "conv_pretrain",
    }
    assert [s.name for s in selfcorr_stages(DEMO, "linear")] == ["ancillary", "linear"]
    assert len(selfcorr_stages(DEMO, "all")) == 6
    with pytest.raises(ValueError, match="mode"):
        selfcorr_stages(DEMO, "quadratic")
    assert {"voc_f200", "voc_f400", "voc_f800", "voc_f1464"} <= set(SETTINGS)
    assert {"cityscapes_f200", "cityscapes_f450", "cityscapes_f914"} <= set(SETTINGS)
    assert {"demo", "tiny_coco"} <= set(SETTINGS)
    assert all(path.is_file() for s in SETTINGS.values() for path in s.configs.values())


def test_data_overrides_parse_both_forms() -> None:
    extra = ["--data.init_args.root", "x/y", "--data.init_args.synthetic_size=[64, 32]", "--a", "1"]
    assert data_overrides(extra) == {"root": "x/y", "synthetic_size": [64, 32]}
    with pytest.raises(ValueError, match="no value"):
        data_overrides(["--data.init_args.root"])


def test_splits_halve_f_and_are_read_back(tmp_path: Path) -> None:
    extra = tiny_data_args(tmp_path / "syn")
    paths = make_splits(DEMO.configs["ancillary"], 5, extra, tmp_path / "out")
    strong = set(load_split(paths["strong"]))
    half, rest = set(load_split(paths["ancillary_half"])), set(load_split(paths["head_half"]))
    assert len(strong) == 5 and len(half) == 2 and half | rest == strong and not half & rest
    datamodule = WeakSegDataModule(dataset="synthetic", root=str(tmp_path / "syn"), **TINY)
    ids = datamodule.make_source("train").ids
    assert strong == make_strong_split(ids, num_strong=5, seed=0)  # what the datamodule draws
    assert make_splits(DEMO.configs["ancillary"], 5, extra, tmp_path / "out") == paths
    with pytest.raises(ValueError, match="holds 5 ids"):
        make_splits(DEMO.configs["ancillary"], 4, extra, tmp_path / "out")


@pytest.mark.skipif(not TINY_COCO.is_dir(), reason="the shared tiny_coco photographs are absent")
def test_tiny_coco_setting_draws_f_from_the_real_train_photos(tmp_path: Path) -> None:
    setting = SETTINGS["tiny_coco"]
    extra = ["--data.init_args.root", str(TINY_COCO)]
    paths = make_splits(setting.configs["ancillary"], setting.num_strong, extra, tmp_path)
    strong = set(load_split(paths["strong"]))
    datamodule = WeakSegDataModule(dataset="coco", root=str(TINY_COCO), train_split="train2017")
    ids = datamodule.make_source("train2017").ids
    assert len(strong) == 20 and strong <= set(ids) and len(ids) == 50  # W = the other 30
    assert len(load_split(paths["ancillary_half"])) == len(load_split(paths["head_half"])) == 10
    for role, path in setting.configs.items():
        data = load_config(path)["data"]["init_args"]
        assert (data["dataset"], data["num_strong"]) == ("coco", 20), role


def test_stage_config_wires_split_inputs_and_final_checkpoint(tmp_path: Path) -> None:
    splits = {name: tmp_path / f"{name}.txt" for name in ("strong", "ancillary_half")}
    splits["strong"].write_text("a\nb\nc\nd\n")
    splits["ancillary_half"].write_text("a\nb\n")
    pretrain, conv = selfcorr_stages(DEMO, "conv")[1:]
    config = stage_config(pretrain, "demo", tmp_path, splits)
    data, model = config["data"]["init_args"], config["model"]["init_args"]
    assert data["strong_split_file"] == str(splits["strong"]) and data["num_strong"] == 4
    assert data["strong_only"] is True
    assert model["stage"] == "pretrain" and model["init_checkpoint"] is None
    assert model["ancillary_checkpoint"] == str(tmp_path / "ancillary_half" / FINAL)
    config = stage_config(conv, "demo", tmp_path, splits)
    assert config["model"]["init_args"]["init_checkpoint"] == str(
        tmp_path / "conv_pretrain" / FINAL
    )
    assert config["data"]["init_args"]["strong_only"] is False
    assert config["trainer"]["logger"]["init_args"]["save_dir"] == str(tmp_path / "conv")
    assert config["trainer"]["callbacks"][-1] == {
        "class_path": "wseg.pipeline.stages.StageCheckpoint",
        "init_args": {"path": str(tmp_path / "conv" / FINAL)},
    }
    half = stage_config(selfcorr_stages(DEMO, "conv")[0], "demo", tmp_path, splits)
    assert half["data"]["init_args"]["strong_split_file"] == str(splits["ancillary_half"])
    assert half["data"]["init_args"]["num_strong"] == 2
    # head_split="head_half": the head's pretraining sees only the half the ancillary did not.
    splits["head_half"] = tmp_path / "head_half.txt"
    splits["head_half"].write_text("c\nd\n")
    held_out = selfcorr_stages(DEMO, "conv", head_split="head_half")[1]
    data = stage_config(held_out, "demo", tmp_path, splits)["data"]["init_args"]
    assert data["strong_split_file"] == str(splits["head_half"]) and data["num_strong"] == 2
    assert data["strong_only"] is True
    with pytest.raises(ValueError, match="head_split"):
        selfcorr_stages(DEMO, "conv", head_split="ancillary_half")


def test_stage_without_split_keeps_the_configs_split_and_sets_data_args(tmp_path: Path) -> None:
    stage = Stage("fit", DEMO.configs["none"], split=None, data_args={"pseudo_labels": "p/crf-1"})
    data = stage_config(stage, "demo", tmp_path)["data"]["init_args"]
    original = load_config(DEMO.configs["none"])["data"]["init_args"]
    assert data["pseudo_labels"] == "p/crf-1"
    assert {k: data.get(k) for k in original} == original
    with pytest.raises(ValueError, match="'strong', not given"):
        stage_config(Stage("fit", DEMO.configs["none"]), "demo", tmp_path)


def test_every_command_module_is_a_subcommand(capsys) -> None:
    assert "selfcorr" in commands()
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "selfcorr" in capsys.readouterr().out


def test_finished_stages_are_skipped_and_dry_run_runs_nothing(tmp_path: Path, capsys) -> None:
    splits = {"strong": tmp_path / "s.txt", "ancillary_half": tmp_path / "h.txt"}
    splits["strong"].write_text("a\nb\n")
    splits["ancillary_half"].write_text("a\n")
    stages = selfcorr_stages(DEMO, "conv")
    for stage in stages[:2]:
        (tmp_path / stage.name).mkdir()
        (tmp_path / stage.name / FINAL).write_bytes(b"")
        (tmp_path / stage.name / METRICS).write_text('{"val/miou": 0.5}')
    results = run_stages(stages, "demo", tmp_path, splits, dry_run=True)
    assert results == {
        name: {"val/miou": 0.5, "stage_dir": str(tmp_path / name)}
        for name in ("ancillary_half", "conv_pretrain")
    }
    out = capsys.readouterr().out
    assert out.count("skipped") == 2 and "conv: " in out and "wseg fit --config" in out
    written = yaml.safe_load((tmp_path / "conv" / "config.yaml").read_text())
    assert written["model"]["init_args"]["init_checkpoint"].endswith("conv_pretrain/final.ckpt")
    assert not (tmp_path / "conv" / FINAL).exists()


@pytest.mark.slow
def test_conv_chain_runs_every_stage_then_skips_them(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    extra = tiny_data_args(tmp_path / "syn") + [
        "--data.init_args.crop_size", "64",
        "--data.init_args.batch_size", "2",
        "--data.init_args.num_workers", "0",
        "--model.init_args.encoder", "tu-mobilenetv3_small_050",
        "--model.init_args.encoder_weights", "null",
        "--trainer.max_steps", "2",
        "--trainer.val_check_interval", "null",
        "--trainer.limit_train_batches", "2",
        "--trainer.limit_val_batches", "1",
        "--trainer.enable_progress_bar", "false",
    ]  # fmt: skip
    args = ["selfcorr", "--setting", "demo", "--mode", "conv", "--out", str(tmp_path / "runs")]
    results = main([*args, "--num-strong", "4", "--", *extra])
    assert set(results) == {"ancillary_half", "conv_pretrain", "conv"}
    assert all(0.0 <= metrics["val/miou"] <= 1.0 for metrics in results.values())
    assert all(metrics["global_step"] == 2 for metrics in results.values())
    assert all(metrics["wall_s"] > 0 for metrics in results.values())
    finals = {name: (tmp_path / "runs" / "demo" / name / FINAL) for name in results}
    stamps = {name: path.stat().st_mtime_ns for name, path in finals.items()}
    assert main([*args, "--num-strong", "4", "--", *extra]) == results
    assert {name: path.stat().st_mtime_ns for name, path in finals.items()} == stamps
