"""Tiny test data: a few generated 64-px synthetic images, and where the shared photographs are."""

import json
from pathlib import Path
from typing import Any


def synthetic(num_train: int, num_val: int = 2, **more: Any) -> dict[str, Any]:
    """``data.init_args`` of a tiny synthetic dataset (64x64), plus ``more``."""
    return {
        "synthetic_num_train": num_train,
        "synthetic_num_val": num_val,
        "synthetic_size": [64, 64],
        **more,
    }


def data_args(root: Path, values: dict[str, Any]) -> list[str]:
    """``--data.init_args.root ROOT`` and one ``--data.init_args.KEY VALUE`` pair per value."""
    args = ["--data.init_args.root", str(root)]
    for key, value in values.items():
        args += [f"--data.init_args.{key}", value if isinstance(value, str) else json.dumps(value)]
    return args


TINY_COCO = Path(__file__).resolve().parents[2] / "shared" / "data" / "tiny_coco"
"""The 100 shared real COCO photographs (``../shared/data/tiny_coco``); tests using them skip,
saying so, in a checkout that has no ``../shared`` beside it."""
