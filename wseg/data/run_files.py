"""What the datamodule writes into a run's folder, beside ``checkpoints/``: names and writer.

``class_names.txt`` (the run's classes, background first) and ``strong_split.txt`` (the ids of the
fully labelled subset F, written by `wseg.data.strong_split.save_split`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

STRONG_SPLIT_NAME = "strong_split.txt"
CLASS_NAMES_FILE = "class_names.txt"


def save_class_names(names: Sequence[str], path: Path) -> None:
    """Write one class name per line (background first); an existing, different file is an error.

    Raises:
        ValueError: ``path`` holds other names (the run's classes must not change under it).

    """
    text = "".join(f"{name}\n" for name in names)
    if path.is_file():
        if path.read_text() != text:
            raise ValueError(
                f"{path} holds other class names than this run's {list(names)}; the classes of a "
                "run cannot change (use a new run folder)"
            )
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
