"""``python -m wseg``: the `wseg.tools` commands (segment, export), else the LightningCLI."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> None:
    """Dispatch on the first argument: a `wseg.tools` command, or the LightningCLI.

    Args:
        argv: Arguments without the program name (None: ``sys.argv[1:]``).

    """
    from wseg.tools import COMMANDS

    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in COMMANDS:
        from wseg.tools import main as tools_main

        tools_main(args)
        return
    if args[:1] in ([], ["-h"], ["--help"]):
        print(f"Also: python -m wseg {{{','.join(COMMANDS)}}} --help (use a trained model).")
    from wseg.cli import main as cli_main

    cli_main(None if argv is None else args)


if __name__ == "__main__":
    main()
