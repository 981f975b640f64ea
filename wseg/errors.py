"""How the commands end on bad input: one clear message and a non-zero exit, no traceback.

A command run as a program (``python -m wseg ...``, ``python -m wseg.labels ...``,
``python -m wseg.pipeline ...``, ``python -m wseg.data ...``) prints ``<prog>: error: <message>``
for the errors whose message says what is wrong and where (bad values, unreadable or missing
files, a failed data check, a non-finite loss) and exits with status 1. ``WSEG_TRACEBACK=1``
shows the traceback instead. Called from Python (``main([...])``), the commands raise as usual.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

TRACEBACK_VARIABLE = "WSEG_TRACEBACK"
"""Environment variable: set to 1 to see the traceback of a clean error."""


class WsegError(Exception):
    """An error whose message says all a user needs (shown without a traceback)."""


CLEAN_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, WsegError)
"""The errors a command reports as a message: wseg raises these for bad options and data."""


def run_command(prog: str, command: Callable[[], T]) -> T:
    """Run ``command``; a `CLEAN_ERRORS` error becomes its message on stderr and exit status 1.

    Args:
        prog: The command as typed (``python -m wseg``), the message's first word.
        command: The command, without arguments.

    Returns:
        What ``command`` returns.

    Raises:
        SystemExit: Status 1 after a clean error (unless ``WSEG_TRACEBACK=1``).

    """
    try:
        return command()
    except CLEAN_ERRORS as error:
        if os.environ.get(TRACEBACK_VARIABLE, "") not in ("", "0"):
            raise
        print(f"{prog}: error: {error}", file=sys.stderr)
        print(f"({TRACEBACK_VARIABLE}=1 shows the traceback)", file=sys.stderr)
        raise SystemExit(1) from None
