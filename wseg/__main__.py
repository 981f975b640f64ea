"""``python -m wseg``: the `wseg.tools` commands (segment, export), else the LightningCLI."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> None:
    """Dispatch on the first argument: a `wseg.tools` command, or the LightningCLI.

    Run as a program (``argv`` None), bad options and data end with one message and status 1,
    no traceback (`wseg.errors.run_command`); given ``argv``, errors are raised.

    Args:
        argv: Arguments without the program name (None: ``sys.argv[1:]``).

    """
    if argv is None:
        from wseg.errors import run_command

        command = sys.argv[1:2] if sys.argv[1:2] and not sys.argv[1].startswith("-") else []
        prog = " ".join(["python -m wseg", *command])
        run_command(prog, lambda: _dispatch(sys.argv[1:], from_program=True))
        return
    _dispatch(list(argv), from_program=False)


def _dispatch(args: list[str], from_program: bool) -> None:
    from wseg.tools import COMMANDS

    if args and args[0] in COMMANDS:
        from wseg.tools import main as tools_main

        tools_main(args)
        return
    if args[:1] in ([], ["-h"], ["--help"]):
        print(f"Also: python -m wseg {{{','.join(COMMANDS)}}} --help (use a trained model).")
    from wseg.cli import main as cli_main

    cli_main(None if from_program else args)


if __name__ == "__main__":
    main()
