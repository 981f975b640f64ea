"""Every W&B sweep in experiments/sweeps is a valid sweep whose parameters reach a real config key.

The command is expanded as the W&B agent does (``${args}`` -> ``--name=value``) for the first and
last value of every parameter, then parsed by the real parsers: the CLI's for ``python -m wseg
fit``, the pipeline's for ``python -m wseg.pipeline`` (its ``--STAGE.KEY`` overrides by the CLI
against that stage's experiment config). A key that does not exist fails to parse, so a sweep
cannot silently set nothing.
"""

from pathlib import Path
from typing import Any

import pytest
import yaml

from wseg.cli import WSegCLI
from wseg.pipeline import commands
from wseg.pipeline.__main__ import parse, planned_stages

REPO = Path(__file__).resolve().parents[1]
SWEEPS = sorted((REPO / "experiments" / "sweeps").glob("*.yaml"))
TOP_LEVEL = {
    "program", "name", "description", "method", "metric", "parameters", "command",
    "early_terminate", "run_cap", "project", "entity",
}  # fmt: skip
METRICS = {"val/miou", "val/miou_crf"}


class ParseOnly(WSegCLI):
    """The wseg CLI that parses and validates a command line but builds nothing."""

    def instantiate_classes(self) -> None:
        """Skip instantiation (the VOC configs would need the dataset and encoder weights)."""


def parse_fit(args: list[str]) -> Any:
    return ParseOnly(args=args, run=False).config


def lookup(config: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        config = config[part]
    return config


def candidates(spec: dict) -> list[Any]:
    if "value" in spec:
        return [spec["value"]]
    if "values" in spec:
        return [spec["values"][0], spec["values"][-1]]
    return [spec["min"], spec["max"]]


def expand(command: list[str], values: dict[str, Any]) -> list[str]:
    """The agent's expansion; returns the arguments after the module name."""
    args = [f"--{name}={value}" for name, value in values.items()]
    flags = [
        f"--{name}" if value is True else f"--{name}={value}"
        for name, value in values.items()
        if value is not False
    ]
    expanded = []
    for item in command:
        if item == "${args}":
            expanded += args
        elif item == "${args_no_boolean_flags}":
            expanded += flags
        elif item not in ("${env}", "${interpreter}"):
            expanded.append(item)
    assert expanded[0] == "-m", f"command must run a module: {command}"
    return expanded[1:]


def check_fit(args: list[str], values: dict[str, Any]) -> None:
    assert args[:2] == ["wseg", "fit"] and args[2] == "--config"
    assert (REPO / args[3]).is_file(), f"{args[3]} does not exist"
    config = parse_fit(args[2:])
    for name, value in values.items():
        assert lookup(config, name) == value, name


def check_pipeline(args: list[str], values: dict[str, Any]) -> None:
    assert args[0] == "wseg.pipeline"
    available = commands()
    assert args[1] in available, f"no pipeline command {args[1]}"
    module, options, _ = parse(args[1:])
    overrides = options["stage_overrides"]
    for name, value in values.items():
        if "." not in name:
            if name.startswith("no-"):  # --no-X flags store False into X
                name, value = name[3:], not value
            parsed = options[name.replace("-", "_")]
            if isinstance(parsed, list):  # a comma list such as --rows
                parsed = ",".join(parsed)
            assert str(parsed) == str(value), name
    stages = {stage.name: stage for stage in planned_stages(module, options)}
    assert set(overrides) <= set(stages), f"{set(overrides) - set(stages)} are not stages"
    for stage_name, stage_args in overrides.items():
        config = parse_fit(["--config", str(stages[stage_name].config), *stage_args])
        for name, value in values.items():
            if name.startswith(f"{stage_name}."):
                key = name[len(stage_name) + 1 :]
                assert lookup(config, key) == value, name


def test_there_are_sweeps() -> None:
    assert len(SWEEPS) >= 3


@pytest.mark.parametrize("path", SWEEPS, ids=[p.stem for p in SWEEPS])
def test_sweep_is_valid_and_sets_real_keys(path: Path) -> None:
    sweep = yaml.safe_load(path.read_text())
    assert set(sweep) <= TOP_LEVEL, f"unknown keys {set(sweep) - TOP_LEVEL}"
    assert sweep["name"] == path.stem
    assert sweep["method"] in {"grid", "random", "bayes"}
    assert sweep["metric"]["name"] in METRICS and sweep["metric"]["goal"] == "maximize"
    assert (REPO / sweep["program"]).is_file()
    parameters = sweep["parameters"]
    assert parameters
    for spec in parameters.values():
        assert {"value", "values", "min"} & set(spec), spec
        if sweep["method"] == "grid":
            assert "values" in spec or "value" in spec, "grid sweeps need listed values"
    assert {"${args}", "${args_no_boolean_flags}"} & set(sweep["command"])
    for pick in (0, -1):
        values = {name: candidates(spec)[pick] for name, spec in parameters.items()}
        args = expand(sweep["command"], values)
        if args[0] == "wseg":
            check_fit(args, values)
        else:
            check_pipeline(args, values)


def test_misspelt_keys_and_stages_fail() -> None:
    config = "experiments/em/em_fixed_voc.yaml"
    parsed = parse_fit(["--config", config, "--model.init_args.fg_bias=7"])
    assert lookup(parsed, "model.init_args.fg_bias") == 7
    with pytest.raises(SystemExit):
        parse_fit(["--config", config, "--model.init_args.fg_biass=7"])
    chain = ["wseg.pipeline", "selfcorr", "--setting", "voc_f1464", "--mode", "linear"]
    check_pipeline([*chain, "--linear.model.init_args.alpha_end=2"], {})
    with pytest.raises(SystemExit):
        check_pipeline([*chain, "--linear.model.init_args.alpha_ending=2"], {})
    with pytest.raises(AssertionError, match="not stages"):
        check_pipeline([*chain, "--conv.model.init_args.alpha_end=2"], {})
