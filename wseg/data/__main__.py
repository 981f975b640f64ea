"""``python -m wseg.data check --config X.yaml``: read every image of the run's splits, report.

Prints the classes, per split the images, masks, boxes (per class) and every problem with its
file (see `wseg.data.check`); exits with status 1 when a file cannot be read. ``--set
init_args.root=data/other`` overrides an entry of the YAML's ``data`` section.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from wseg.data.check import check_datamodule, format_checks
from wseg.data.config import datamodule_from_config


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (0: no errors)."""
    parser = argparse.ArgumentParser(prog="python -m wseg.data", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="read every image of every split once and report")
    check.add_argument("--config", required=True, help="experiment YAML (its data section)")
    check.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    check.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    try:
        datamodule = datamodule_from_config(args.config, args.set)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    datamodule.prepare_data()  # the synthetic dataset is written on first use
    reports = check_datamodule(datamodule, progress=not args.no_progress)
    print(format_checks(reports, list(datamodule.class_names)))
    return 1 if any(r.errors for r in reports) else 0


if __name__ == "__main__":
    from wseg.errors import run_command

    sys.exit(run_command("python -m wseg.data", main))
