"""Which training images the datamodule uses: the F/W split, curated scribbles, pseudo labels.

Each function takes the datamodule's options and the training split's ids or positions; the
error and warning messages name those options.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Literal

from wseg.data.datasets import DataWarning
from wseg.data.records import SegmentationSource
from wseg.data.scribbles import curated_scribble_ids
from wseg.data.strong_split import load_split, make_strong_split, save_split


def strong_split(
    ids: list[str],
    split_file: Path | None,
    num_strong: int | None,
    strong_fraction: float | None,
    seed: int,
    split_name: str,
) -> set[str] | None:
    """The ids of F: read from ``split_file`` when it exists, else drawn (and written there).

    Args:
        ids: The training split's ids.
        split_file: The ``strong_split_file`` option, or None.
        num_strong: Size of F, or None.
        strong_fraction: Fraction of the ids in F, or None.
        seed: Seed of the draw.
        split_name: Name of the training split (for messages).

    Returns:
        The ids of F; None without a split (every image with a mask is strong).

    """
    if split_file is not None and split_file.exists():
        strong = load_split(split_file)
        unknown = sorted(set(strong) - set(ids))
        if unknown:
            raise ValueError(
                f"strong_split_file={str(split_file)!r} lists {len(unknown)} ids that are "
                f"not in the {split_name!r} split, e.g. {unknown[:3]}"
            )
        if num_strong is not None and num_strong != len(strong):
            raise ValueError(
                f"strong_split_file={str(split_file)!r} holds {len(strong)} ids but "
                f"num_strong={num_strong}"
            )
        return set(strong)
    if num_strong is None and strong_fraction is None:
        if split_file is not None:
            raise ValueError(
                f"strong_split_file={str(split_file)!r} does not exist; set num_strong or "
                "strong_fraction to draw a split and write it there"
            )
        return None
    strong = make_strong_split(ids, num_strong, strong_fraction, seed)
    if split_file is not None:
        save_split(strong, split_file)
    return strong


def curated_positions(
    source: SegmentationSource,
    positions: list[int],
    mode: Literal["dataset", "synthesize"],
    width: int,
    seed: int,
    split_name: str,
) -> list[int]:
    """Positions whose curated scribbles reach every class of the mask; warn about the rest."""
    kept = set(curated_scribble_ids(source, mode, width, seed, positions))
    ids = source.ids
    dropped = [ids[i] for i in positions if ids[i] not in kept]
    if dropped:
        warnings.warn(
            f"curated scribbles: dropping {len(dropped)} of {len(positions)} training images "
            f"whose scribbles miss a class of their mask, e.g. {dropped[:3]}",
            DataWarning,
            stacklevel=2,
        )
    if not kept:
        raise ValueError(
            f"curated scribbles: none of the {len(positions)} training images of "
            f"{split_name!r} has a scribble on every class of its mask"
        )
    return [i for i in positions if ids[i] in kept]


def open_pseudo_store(
    pseudo_labels: str,
    class_names: tuple[str, ...],
    root: str | None = None,
    split: str | None = None,
    same_data: bool = False,
) -> Any:
    """Open the ``pseudo_labels`` store; check it was made for these classes and this data.

    Args:
        pseudo_labels: The store's directory.
        class_names: This run's classes.
        root: This run's dataset root (None: not checked).
        split: This run's training split (None: not checked).
        same_data: Accept a store made from another root or split name (a copy of this data).

    Raises:
        ValueError: Not a store, other classes, or other data (naming both) unless
            ``same_data``.

    """
    from wseg.data.store import PseudoLabelStore, StoreError

    try:
        store = PseudoLabelStore(pseudo_labels)
    except StoreError as error:
        raise ValueError(f"pseudo_labels={pseudo_labels!r}: {error}") from error
    classes = store.manifest.get("classes")
    if classes is not None and tuple(classes) != class_names:
        raise ValueError(
            f"pseudo_labels={pseudo_labels!r} was made for the classes {classes}, but "
            f"this run's are {list(class_names)}; generate it with the run's data "
            "(python -m wseg.labels generate --config ...)"
        )
    if not same_data:
        _require_same_data(store, pseudo_labels, root, split)
    return store


def _require_same_data(store: Any, pseudo_labels: str, root: str | None, split: str | None) -> None:
    made = store.labelled_data()
    differs = []
    if root is not None and made.get("root") is not None:
        differs.append(Path(made["root"]).resolve() != Path(root).resolve())
    if split is not None and made.get("split") is not None:
        differs.append(made["split"] != split)
    if any(differs):
        raise ValueError(
            f"pseudo_labels={pseudo_labels!r} labels {made.get('root')} split "
            f"{made.get('split')!r}, but this run trains on {Path(root or '.').resolve()} split "
            f"{split!r}; generate a store for this data (python -m wseg.labels generate --config "
            "...), or, if it is a copy of the same images, set pseudo_labels_same_data: true"
        )


def pseudo_positions(
    store: Any, ids: list[str], positions: list[int], skip_missing: bool
) -> list[int]:
    """Positions whose image the store has a label for; fail on the others unless skipping them.

    Raises:
        FileNotFoundError: Some images lack a label and ``skip_missing`` is False.

    """
    missing = [ids[i] for i in positions if not store.has(ids[i])]
    if missing and not skip_missing:
        raise FileNotFoundError(
            f"pseudo-label store {store.path} has no label for {len(missing)} of "
            f"{len(positions)} training images, e.g. {missing[:3]}; generate them or "
            "set skip_missing_pseudo=True"
        )
    if missing:
        warnings.warn(
            f"pseudo-label store {store.path}: skipping {len(missing)} of "
            f"{len(positions)} training images without a label, e.g. {missing[:3]}",
            DataWarning,
            stacklevel=3,
        )
        lacking = set(missing)
        positions = [i for i in positions if ids[i] not in lacking]
    return positions
