"""See what a pseudo-label store holds: panels of image | boxes | pseudo label | truth, as PNGs.

``python -m wseg.labels show STORE --num 8`` writes one panel per image next to the store (never
into it), so a user can judge a generator's labels by eye before training on them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from tqdm.auto import tqdm

from wseg.data.records import SegmentationSource, voc_palette
from wseg.data.store import PseudoLabelStore
from wseg.data.weak import box_pixel_bounds
from wseg.visualize import overlay

__all__ = ["draw_boxes", "show_store", "store_panel"]

GAP = 4
"""White pixels between the tiles of a panel."""


def draw_boxes(
    image: np.ndarray, boxes: np.ndarray, labels: np.ndarray, classes: Sequence[str]
) -> np.ndarray:
    """Return a copy of ``image`` with each box outlined in its class colour and named.

    Args:
        image: RGB ``uint8`` ``H, W, 3``.
        boxes: ``K, 4`` boxes ``x1, y1, x2, y2`` (pixel edges).
        labels: ``K`` class indices into ``classes``.
        classes: Class names, background first.

    """
    canvas = np.ascontiguousarray(image.copy())
    palette = voc_palette()
    size = canvas.shape[:2]
    for box, label in zip(boxes, labels):
        r0, r1, c0, c1 = box_pixel_bounds(box, size)
        if r1 <= r0 or c1 <= c0:
            continue
        colour = tuple(int(v) for v in palette[int(label)])
        cv2.rectangle(canvas, (c0, r0), (c1 - 1, r1 - 1), colour, 2)
        name = classes[int(label)] if int(label) < len(classes) else str(int(label))
        cv2.putText(
            canvas, name, (c0 + 2, max(r0 + 12, 12)), cv2.FONT_HERSHEY_SIMPLEX, 0.4, colour, 1
        )
    return canvas


def store_panel(store: PseudoLabelStore, source: SegmentationSource, index: int) -> np.ndarray:
    """The panel of sample ``index``: image | boxes | pseudo label | truth (when it has a mask).

    A soft store's label is shown as its per-pixel argmax over the store's classes.

    Raises:
        ValueError: If the stored label's size differs from the image's (naming the file).

    """
    sample = source[index]
    label = store.read(sample.id)
    if store.kind == "soft":
        label = label.argmax(axis=0).astype(np.uint8)
    if label.shape != sample.size:
        raise ValueError(
            f"{store.file_for(sample.id)}: pseudo label is {label.shape}, image {sample.id} is "
            f"{sample.size}; is this the store of another split?"
        )
    tiles = [
        sample.image,
        draw_boxes(sample.image, sample.boxes, sample.labels, source.classes),
        overlay(sample.image, label),
    ]
    if sample.mask is not None:
        tiles.append(overlay(sample.image, sample.mask))
    separator = np.full((sample.size[0], GAP, 3), 255, np.uint8)
    parts = [tiles[0]]
    for tile in tiles[1:]:
        parts += [separator, tile]
    return np.concatenate(parts, axis=1)


def show_store(
    store: PseudoLabelStore,
    source: SegmentationSource,
    out: str | os.PathLike,
    num: int = 8,
    ids: Sequence[str] | None = None,
    progress: bool = True,
) -> list[Path]:
    """Write the panels of ``num`` images of the store (or of the given ``ids``) to ``out``.

    Without ``ids`` the images are spread evenly over the split's ids that the store holds, so
    the first and the last image are both shown. Files are ``<out>/<id>.png``; an existing
    panel is replaced (they are views, not data).

    Args:
        store: The store.
        source: The split the store was generated from.
        out: Folder of the panels (created); must not be the store itself.
        num: How many images (without ``ids``).
        ids: Image ids to show instead.
        progress: Show a progress bar.

    Returns:
        The written paths.

    Raises:
        ValueError: If ``out`` is the store's folder, ``num < 1``, an id is unknown or the store
            holds no image of the split.

    """
    out = Path(out)
    if out.resolve() == store.path.resolve():
        raise ValueError(f"{out}: panels must not be written into the store itself")
    position = {image_id: i for i, image_id in enumerate(source.ids)}
    if ids is not None:
        unknown = [i for i in ids if i not in position]
        if unknown:
            raise ValueError(f"image ids not in the split: {unknown[:5]}")
        chosen = list(ids)
    else:
        if num < 1:
            raise ValueError(f"num must be >= 1, got {num}")
        held = [i for i in source.ids if store.has(i)]
        if not held:
            raise ValueError(f"{store.path} holds no label of this split's {len(position)} images")
        picks = np.linspace(0, len(held) - 1, min(num, len(held))).round().astype(int)
        chosen = [held[i] for i in dict.fromkeys(picks.tolist())]
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for image_id in tqdm(chosen, desc="panels", unit="img", disable=not progress):
        picture = store_panel(store, source, position[image_id])
        path = out / f"{image_id.replace(os.sep, '_')}.png"
        if not cv2.imwrite(str(path), np.ascontiguousarray(picture[..., ::-1])):
            raise OSError(f"{path}: could not write the panel")
        written.append(path)
    return written
