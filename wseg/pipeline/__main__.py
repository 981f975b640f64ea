"""``python -m wseg.pipeline <command>``: the command line of the chains (`wseg.pipeline`).

Each command's options are the keyword arguments of its module's ``run_chain`` (``--dry-run`` ->
``dry_run``); arguments after ``--`` go to every fit, ``--STAGE.KEY=VALUE`` ones to one fit.
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from wseg.options import parse_key_values
from wseg.pipeline import box2tag, commands, scribbles, selfcorr
from wseg.pipeline.stages import parse_stage_overrides


class _KeyValues(argparse.Action):
    """``-o KEY=VALUE`` (repeatable) into one dict (`wseg.options.parse_key_values`)."""

    def __call__(self, parser, namespace, value, option_string=None) -> None:  # noqa: D102
        options = dict(getattr(namespace, self.dest) or {})
        options.update(parse_key_values([value], option_string or self.dest))
        setattr(namespace, self.dest, options)


def _comma_list(text: str) -> list[str]:
    return [item for item in text.split(",") if item]


def _bbox_seg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tuned", type=Path, help="alpha and CRF chosen by python -m wseg.labels.tune (its --out)"
    )
    parser.add_argument(
        "-o",
        "--option",
        dest="crf",
        action=_KeyValues,
        metavar="KEY=VALUE",
        help="crf generator option, e.g. alpha=0.3 (JSON values; after --tuned)",
    )
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="CRF processes")
    parser.add_argument(
        "--dry-run", action="store_true", help="print the store path and fit command only"
    )


def _box2seg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store", type=Path, help="an existing GrabCut store to use (default: make one)"
    )
    parser.add_argument("--workers", type=int, default=1, help="GrabCut worker processes")
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")


def _box2tag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--rule",
        default="overlap-void",
        choices=box2tag.RULE_CHOICES,
        help="overlap rule(s) to train",
    )
    parser.add_argument(
        "--classes",
        nargs="+",
        help="train only these classes' networks and stop (run several such commands in "
        "parallel, e.g. one per GPU; a final run without --classes then continues)",
    )
    parser.add_argument(
        "--stop-after",
        choices=("classes", "pseudo", "final"),
        default="final",
        help="last step to run",
    )
    parser.add_argument("--device", default="cpu", help="torch device for the pseudo-GT step")
    parser.add_argument("--dry-run", action="store_true", help="print the fit commands only")


def _scribbles(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--rows",
        type=_comma_list,
        help="comma-separated PFA rows (default: the setting's); any of "
        + ",".join(scribbles.ROWS),
    )
    parser.add_argument("--workers", type=int, default=1, help="processes for the PAM stores")
    parser.add_argument(
        "--potts-max-iter", type=int, help="primal-dual iterations of Potts (default: setting's)"
    )
    parser.add_argument(
        "--potts-lambda",
        type=float,
        help="Potts weight of every Potts row (default: the paper's 10 with a local PAM, 50 alone)",
    )
    parser.add_argument(
        "--no-wandb", dest="wandb", action="store_false", help="do not log the table to W&B"
    )
    parser.add_argument(
        "--no-progress", dest="progress", action="store_false", help="no progress bars"
    )
    parser.add_argument("--dry-run", action="store_true", help="print the fit commands only")


def _selfcorr(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mode", default="conv", choices=sorted(selfcorr.MODES))
    parser.add_argument("--num-strong", type=int, help="size of F (default: the setting's)")
    parser.add_argument(
        "--head-split",
        default="strong",
        choices=selfcorr.HEAD_SPLITS,
        help="conv head pretraining on all of F (strong) or the half the ancillary did not see",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")


ARGUMENTS: dict[str, Callable[[argparse.ArgumentParser], None]] = {
    "bbox-seg": _bbox_seg,
    "box2seg": _box2seg,
    "box2tag": _box2tag,
    "scribbles": _scribbles,
    "selfcorr": _selfcorr,
}
"""Each command's own options, beside ``--setting`` and ``--out`` (dests: ``run_chain``'s)."""


def build_parser(available: dict[str, ModuleType]) -> argparse.ArgumentParser:
    """The parser of every chain in ``available`` (`wseg.pipeline.commands`).

    Raises:
        KeyError: A chain has no entry in `ARGUMENTS`.

    """
    parser = argparse.ArgumentParser(
        prog="python -m wseg.pipeline",
        description="Chain the stages of a multi-stage method; rerun to resume.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name, module in available.items():
        sub = subparsers.add_parser(name, help=module.HELP)
        sub.add_argument("--setting", required=True, choices=sorted(module.SETTINGS))
        out = inspect.signature(module.run_chain).parameters["out"].default
        sub.add_argument("--out", type=Path, default=out, help=f"output root (default: {out})")
        ARGUMENTS[name](sub)
    return parser


def options_for(function: Callable[..., Any], options: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``options`` that are parameters of ``function``."""
    accepted = inspect.signature(function).parameters
    return {key: value for key, value in options.items() if key in accepted}


def parse(argv: Sequence[str]) -> tuple[ModuleType, dict[str, Any], list[str]]:
    """Parse a command line into the chain, ``run_chain``'s keyword arguments and the fits' args.

    Args:
        argv: ``<command> [options] [--STAGE.KEY=VALUE ...] [-- <args for every fit>]``.

    Returns:
        ``(module, options, extra)``: ``options`` hold ``setting``, ``out``, the command's own
        options and ``stage_overrides``.

    """
    argv = list(argv)
    split_at = argv.index("--") if "--" in argv else len(argv)
    own, extra = argv[:split_at], argv[split_at + 1 :]
    available = commands()
    parser = build_parser(available)
    args, unknown = parser.parse_known_args(own)
    options = vars(args)
    module = available[options.pop("command")]
    try:
        options["stage_overrides"] = parse_stage_overrides(unknown)
    except ValueError as error:
        parser.error(str(error))
    if options["stage_overrides"] and not hasattr(module, "fit_stages"):
        parser.error(f"{module.COMMAND} takes no --STAGE.KEY arguments; got {' '.join(unknown)}")
    return module, options, extra


def planned_stages(module: ModuleType, options: dict[str, Any]) -> list[Any]:
    """``module.fit_stages`` for parsed ``options`` (those it takes), e.g. to check a sweep."""
    return module.fit_stages(**options_for(module.fit_stages, options))


def main(argv: Sequence[str] | None = None) -> Any:
    """Run a chain from the command line (None: ``sys.argv[1:]``); what ``run_chain`` returns."""
    module, options, extra = parse(sys.argv[1:] if argv is None else argv)
    setting, out = options.pop("setting"), options.pop("out")
    return module.run_chain(setting, out, extra, **options)


if __name__ == "__main__":
    from wseg.errors import run_command

    run_command("python -m wseg.pipeline", main)
