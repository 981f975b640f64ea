"""The generic stage machinery: per-stage overrides, their folders, refusing mismatched reuse."""

from pathlib import Path

import pytest
import yaml

from wseg.pipeline import main
from wseg.pipeline.selfcorr import SETTINGS, selfcorr_stages
from wseg.pipeline.stages import (
    FINAL,
    STAGE_RECORD,
    parse_stage_overrides,
    run_stages,
    stage_environment,
    stage_folders,
)

DEMO = SETTINGS["demo"]


def test_stage_overrides_parse_both_forms_and_reject_others() -> None:
    args = ["--conv.model.init_args.alpha_start=20", "--conv.trainer.max_steps", "5", "--a.b", "1"]
    assert parse_stage_overrides(args) == {
        "conv": ["--model.init_args.alpha_start", "20", "--trainer.max_steps", "5"],
        "a": ["--b", "1"],
    }
    for bad in (["--lr=1"], ["conv.model.x=1"], ["--conv.model.x"], ["--c.x", "--c.y=1"]):
        with pytest.raises(ValueError):
            parse_stage_overrides(bad)


def test_overridden_stages_and_their_dependants_get_their_own_folders() -> None:
    stages = selfcorr_stages(DEMO, "conv")  # ancillary_half -> conv_pretrain -> conv
    assert stage_folders(stages, {}) == {s.name: s.name for s in stages}
    folders = stage_folders(stages, {"conv_pretrain": ["--trainer.max_steps", "5"]})
    assert folders["ancillary_half"] == "ancillary_half"
    assert folders["conv_pretrain"].startswith("conv_pretrain-")
    assert folders["conv"].startswith("conv-")  # takes conv_pretrain's checkpoint
    other = stage_folders(stages, {"conv_pretrain": ["--trainer.max_steps", "6"]})
    assert other["conv_pretrain"] != folders["conv_pretrain"]
    assert other["conv"] != folders["conv"]


def _splits(tmp_path: Path) -> dict[str, Path]:
    splits = {"strong": tmp_path / "s.txt", "ancillary_half": tmp_path / "h.txt"}
    splits["strong"].write_text("a\nb\n")
    splits["ancillary_half"].write_text("a\n")
    return splits


def test_overrides_reach_one_stage_and_unknown_stages_fail(tmp_path: Path, capsys) -> None:
    stages = selfcorr_stages(DEMO, "linear")
    overrides = {"linear": ["--model.init_args.alpha_start", "20"]}
    run_stages(stages, "demo", tmp_path, _splits(tmp_path), dry_run=True, overrides=overrides)
    lines = capsys.readouterr().out.splitlines()
    assert "alpha_start" not in lines[0] and lines[1].endswith("--model.init_args.alpha_start 20")
    folder = stage_folders(stages, overrides)["linear"]
    assert (tmp_path / folder / "config.yaml").exists() and folder != "linear"
    with pytest.raises(ValueError, match=r"not stages of this chain"):
        run_stages(stages, "demo", tmp_path, _splits(tmp_path), dry_run=True, overrides={"x": []})


def test_a_finished_stage_with_other_settings_is_not_reused(tmp_path: Path) -> None:
    stages = selfcorr_stages(DEMO, "linear")[:1]
    splits = _splits(tmp_path)
    run_stages(stages, "demo", tmp_path, splits, dry_run=True)
    (tmp_path / "ancillary" / FINAL).write_bytes(b"")
    run_stages(stages, "demo", tmp_path, splits, dry_run=True)  # same plan: skipped
    splits["strong"].write_text("a\nb\nc\n")
    with pytest.raises(RuntimeError, match=r"other settings.*num_strong"):
        run_stages(stages, "demo", tmp_path, splits, dry_run=True)
    record = yaml.safe_load((tmp_path / "ancillary" / STAGE_RECORD).read_text())
    assert record["config"]["data"]["init_args"]["num_strong"] == 2


def test_command_line_stage_arguments(tmp_path: Path, capsys) -> None:
    args = ["selfcorr", "--setting", "demo", "--mode", "linear", "--out", str(tmp_path)]
    extra = ["--", "--data.init_args.root", str(tmp_path / "syn")]
    extra += ["--data.init_args.synthetic_num_train=6", "--data.init_args.synthetic_size=[32,32]"]
    main([*args, "--num-strong", "2", "--dry-run", "--linear.model.init_args.alpha_end=1", *extra])
    assert "--model.init_args.alpha_end 1" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main([*args, "--dry-run", "--alpha_end=1"])
    assert "stage arguments are --STAGE.KEY=VALUE" in capsys.readouterr().err


def test_only_the_last_stage_joins_a_wandb_sweep_run(monkeypatch) -> None:
    monkeypatch.setenv("WANDB_SWEEP_ID", "abc")
    monkeypatch.setenv("WANDB_RUN_ID", "r1")
    monkeypatch.setenv("WANDB_MODE", "offline")
    earlier, last = stage_environment(last=False), stage_environment(last=True)
    assert "WANDB_SWEEP_ID" not in earlier and "WANDB_RUN_ID" not in earlier
    assert earlier["WANDB_MODE"] == "offline"
    assert last["WANDB_SWEEP_ID"] == "abc" and last["WANDB_RUN_ID"] == "r1"
