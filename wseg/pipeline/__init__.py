"""Chain the stages of multi-stage methods, each its own ``python -m wseg fit`` run, restartable.

    python -m wseg.pipeline <command> --help

Every module of this package that defines ``COMMAND`` is a subcommand: it provides ``HELP``,
``add_arguments(parser)`` and ``run(args, extra)``; `wseg.pipeline.stages` holds the shared
machinery (a stage whose ``final.ckpt`` exists is skipped, so a rerun resumes). Arguments after
``--`` go to every stage; ``--STAGE.KEY=VALUE`` arguments reach one stage only (``run`` finds them
in ``args.stage_overrides`` and passes them to `run_stages`). A stage whose folder holds a finished
run of other settings runs in a folder of its own, and so do the stages after it: what a W&B sweep
over a chain needs. A module's
``stages(args)`` lists the fit stages a command line asks for (the sweep tests check overrides
against them).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from wseg.pipeline.stages import parse_stage_overrides


def commands() -> dict[str, ModuleType]:
    """The pipeline subcommands by name: every module here that defines ``COMMAND``."""
    found = {}
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "COMMAND"):
            found[module.COMMAND] = module
    return dict(sorted(found.items()))


def main(argv: Sequence[str] | None = None) -> Any:
    """Command line; arguments after ``--`` go to every stage, ``--STAGE.KEY=V`` to one stage.

    Args:
        argv: Arguments (None: ``sys.argv[1:]``).

    Returns:
        What the subcommand returns (the final metrics of each stage).

    """
    argv = list(sys.argv[1:] if argv is None else argv)
    split_at = argv.index("--") if "--" in argv else len(argv)
    own, extra = argv[:split_at], argv[split_at + 1 :]
    parser = argparse.ArgumentParser(
        prog="python -m wseg.pipeline",
        description="Chain the stages of a multi-stage method; rerun to resume.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    available = commands()
    for name, module in available.items():
        module.add_arguments(subparsers.add_parser(name, help=module.HELP))
    args, unknown = parser.parse_known_args(own)
    try:
        args.stage_overrides = parse_stage_overrides(unknown)
    except ValueError as error:
        parser.error(str(error))
    if args.stage_overrides and not hasattr(available[args.command], "stages"):
        parser.error(f"{args.command} takes no --STAGE.KEY arguments; got {' '.join(unknown)}")
    return available[args.command].run(args, extra)
