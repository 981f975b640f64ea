"""The strong/weak split: drawing the fully labelled subset F, saving and loading id lists."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np


def make_strong_split(
    ids: Iterable[str],
    num_strong: int | None = None,
    strong_fraction: float | None = None,
    seed: int = 0,
) -> set[str]:
    """Draw the fully labelled subset F of a training set; the rest is the weakly labelled W.

    The draw depends only on the set of ids and the seed (ids are sorted first), not on their order.

    Args:
        ids: Image ids of the training split.
        num_strong: Size of F (exclusive with ``strong_fraction``).
        strong_fraction: Fraction of the ids in F, rounded to the nearest count.
        seed: Seed of the draw.

    Returns:
        The ids of F.

    """
    pool = sorted(set(ids))
    if (num_strong is None) == (strong_fraction is None):
        raise ValueError(
            "set exactly one of num_strong and strong_fraction, got "
            f"num_strong={num_strong}, strong_fraction={strong_fraction}"
        )
    if strong_fraction is not None:
        if not 0.0 <= strong_fraction <= 1.0:
            raise ValueError(f"strong_fraction must lie in [0, 1], got {strong_fraction}")
        num_strong = round(strong_fraction * len(pool))
    assert num_strong is not None
    if not 0 <= num_strong <= len(pool):
        raise ValueError(f"num_strong={num_strong} is outside [0, {len(pool)}] (the split's size)")
    order = np.random.default_rng(seed).permutation(len(pool))
    return {pool[i] for i in order[:num_strong]}


def save_split(ids: Iterable[str], path: str | Path) -> Path:
    """Write a list of ids, sorted, one per line; never replace a different existing list.

    Args:
        ids: The ids to save.
        path: Target text file; its parent directories are created.

    Returns:
        The path written (or found identical).

    """
    path = Path(path)
    lines = sorted(set(ids))
    if path.exists():
        existing = load_split(path)
        if sorted(existing) != lines:
            raise FileExistsError(
                f"{path} already holds a different id list ({len(existing)} ids, "
                f"new one has {len(lines)}); delete it or point to another file"
            )
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text("".join(f"{line}\n" for line in lines))
    temporary.replace(path)
    return path


def load_split(path: str | Path) -> list[str]:
    """Read an id list written by `save_split` (blank lines ignored).

    Args:
        path: The text file.

    Returns:
        The ids in file order.

    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"split file {path} does not exist")
    ids = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if len(set(ids)) != len(ids):
        raise ValueError(f"split file {path} lists some ids more than once")
    return ids
