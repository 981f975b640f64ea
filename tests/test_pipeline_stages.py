"""The generic stage machinery: per-stage overrides, their folders, refusing mismatched reuse."""

import json
from pathlib import Path

import pytest

from wseg.pipeline.__main__ import main
from wseg.pipeline.selfcorr import SETTINGS, selfcorr_stages
from wseg.pipeline.stages import (
    FINAL,
    METRICS,
    STAGE_RECORD,
    parse_stage_overrides,
    run_stages,
    stage_environment,
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
    with pytest.raises(ValueError, match=r"not stages of this chain"):
        run_stages(stages, "demo", tmp_path, _splits(tmp_path), dry_run=True, overrides={"x": []})


def finish(stage_dir: Path) -> None:
    (stage_dir / FINAL).write_bytes(b"")
    (stage_dir / METRICS).write_text('{"val/miou": 0.5}')


def test_finished_stages_of_other_settings_are_never_reused(tmp_path: Path, capsys) -> None:
    stages = selfcorr_stages(DEMO, "conv")  # ancillary_half -> conv_pretrain -> conv
    splits = _splits(tmp_path)
    results = run_stages(stages, "demo", tmp_path, splits, dry_run=True)
    assert results == {}
    for stage in stages:
        finish(tmp_path / stage.name)
    same = run_stages(stages, "demo", tmp_path, splits, dry_run=True)
    assert [Path(r["stage_dir"]).name for r in same.values()] == [s.name for s in stages]
    # A sweep point: conv_pretrain with another step budget. The stage before it is reused; it
    # and conv (whose init checkpoint is conv_pretrain's) run in folders of their own.
    capsys.readouterr()
    overrides = {"conv_pretrain": ["--trainer.max_steps", "5"]}
    run_stages(stages, "demo", tmp_path, splits, dry_run=True, overrides=overrides)
    out = capsys.readouterr().out
    assert "ancillary_half: done" in out
    pretrain = next(tmp_path.glob("conv_pretrain-*"))
    conv = next(tmp_path.glob("conv-*"))
    record = json.loads((conv / STAGE_RECORD).read_text())
    assert record["config"]["model"]["init_args"]["init_checkpoint"] == str(pretrain / FINAL)
    assert json.loads((pretrain / STAGE_RECORD).read_text())["overrides"][1] == "5"
    # The original folders are untouched, and the same sweep point later reuses its folders.
    assert json.loads((tmp_path / "conv" / STAGE_RECORD).read_text())["overrides"] == []
    finish(pretrain)
    finish(conv)
    again = run_stages(stages, "demo", tmp_path, splits, dry_run=True, overrides=overrides)
    assert [r["stage_dir"] for r in again.values()] == [
        str(tmp_path / "ancillary_half"),
        str(pretrain),
        str(conv),
    ]
    # A changed split (a changed config) is a new plan too.
    splits["ancillary_half"].write_text("a\nb\n")
    changed = run_stages(stages[:1], "demo", tmp_path, splits, dry_run=True)
    assert changed == {}
    assert len(list(tmp_path.glob("ancillary_half-*"))) == 1


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


def test_a_command_without_stages_refuses_stage_arguments(monkeypatch, capsys) -> None:
    import types

    import wseg.pipeline.__main__ as command_line

    ran = []
    plain = types.SimpleNamespace(
        COMMAND="plain",
        HELP="a chain without a fit_stages() listing",
        SETTINGS={"demo": None},
        run_chain=lambda setting, out=Path("runs/plain"), overrides=(), **options: ran.append(
            (setting, out, overrides, options)
        ),
    )
    monkeypatch.setattr(command_line, "commands", lambda: {"plain": plain})
    monkeypatch.setitem(command_line.ARGUMENTS, "plain", lambda parser: None)
    main(["plain", "--setting", "demo", "--", "--trainer.max_epochs", "1"])
    assert ran == [
        ("demo", Path("runs/plain"), ["--trainer.max_epochs", "1"], {"stage_overrides": {}})
    ]
    with pytest.raises(SystemExit):
        main(["plain", "--setting", "demo", "--fit.model.init_args.lr=1"])
    assert "plain takes no --STAGE.KEY arguments" in capsys.readouterr().err
    assert len(ran) == 1
