"""``KEY=VALUE`` command-line options, as the label, tuning and pipeline commands take them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any


def parse_key_values(pairs: Sequence[str], flag: str) -> dict[str, Any]:
    """Parse ``KEY=VALUE`` pairs; values are JSON when they parse as JSON, else strings.

    Args:
        pairs: The pairs as given on the command line.
        flag: The option they came with, for the error message.

    Raises:
        SystemExit: If a pair has no ``=`` or no key.

    """
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"{flag} expects KEY=VALUE, got {pair!r}")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options
