"""The command line of the chains: each option is a keyword argument of its chain's run_chain."""

import inspect
from pathlib import Path

import pytest

from wseg.pipeline import commands
from wseg.pipeline.__main__ import ARGUMENTS, parse, planned_stages


def test_every_chain_has_a_command_line_and_each_option_reaches_run_chain() -> None:
    available = commands()
    assert set(ARGUMENTS) == set(available)
    for name, module in available.items():
        parsed, options, extra = parse([name, "--setting", "demo", "--", "--trainer.fast_dev_run"])
        assert parsed is module and extra == ["--trainer.fast_dev_run"]
        accepted = inspect.signature(module.run_chain).parameters
        assert set(options) <= set(accepted), (name, set(options) - set(accepted))
        assert options["out"] == accepted["out"].default
        assert planned_stages(module, options), name


def test_options_are_typed_as_run_chain_takes_them() -> None:
    _, options, _ = parse(
        ["bbox-seg", "--setting", "demo", "-o", "alpha=0.3", "--option", "name=x", "--dry-run"]
    )
    assert options["crf"] == {"alpha": 0.3, "name": "x"} and options["dry_run"] is True
    _, options, _ = parse(["scribbles", "--setting", "demo", "--rows", "local,combined,"])
    assert options["rows"] == ["local", "combined"]
    assert options["wandb"] is True and options["progress"] is True
    _, options, _ = parse(["scribbles", "--setting", "demo", "--no-wandb", "--no-progress"])
    assert options["wandb"] is False and options["progress"] is False
    _, options, _ = parse(
        ["selfcorr", "--setting", "demo", "--out", "elsewhere", "--conv.trainer.max_epochs=1"]
    )
    assert options["out"] == Path("elsewhere")
    assert options["stage_overrides"] == {"conv": ["--trainer.max_epochs", "1"]}


def test_bad_command_lines_exit_with_the_problem(capsys) -> None:
    with pytest.raises(SystemExit, match="-o expects KEY=VALUE, got 'alpha'"):
        parse(["bbox-seg", "--setting", "demo", "-o", "alpha"])
    with pytest.raises(SystemExit):
        parse(["box2seg", "--setting", "nope"])
    assert "invalid choice: 'nope'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse(["selfcorr", "--setting", "demo", "stray"])
    assert "stage arguments are --STAGE.KEY=VALUE" in capsys.readouterr().err
