"""Weak labels derived from full ones, as the papers simulate them: boxes and image tags.

The one box rasterisation rule, box masks, Bbox-Rect labels and image tags. Scribbles live in
`wseg.data.scribbles`, the strong/weak split in `wseg.data.strong_split`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = [
    "SNAP",
    "box_masks",
    "box_pixel_bounds",
    "image_tags",
    "paint_order",
    "rect_labels",
]

SNAP = 1e-3
"""Tolerance (pixels) within which a box coordinate counts as an integer pixel edge."""


def box_pixel_bounds(box: Sequence[float], size: tuple[int, int]) -> tuple[int, int, int, int]:
    """Return the pixel rows and columns a box covers: the one rasterisation rule of wseg.

    ``x1, y1`` are floored and ``x2, y2`` ceiled, so a box covers every pixel it touches, then all
    four are clipped to the image. Integer boxes (tight boxes of masks) cover exactly their pixels.
    Coordinates within ``SNAP`` of an integer count as that integer, so the float32 round-off of
    the geometric transforms (``14.0000004``) never widens a box by a pixel.

    Args:
        box: ``x1, y1, x2, y2`` in pixel-edge coordinates (extra trailing values are ignored).
        size: ``(height, width)`` of the image.

    Returns:
        ``(r0, r1, c0, c1)``: the box covers rows ``r0 <= r < r1`` and columns ``c0 <= c < c1``;
        empty (``r0 == r1`` or ``c0 == c1``) when the box lies outside the image or has no area.

    """
    height, width = size
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    c0 = min(max(math.floor(x1 + SNAP), 0), width)
    r0 = min(max(math.floor(y1 + SNAP), 0), height)
    c1 = min(max(math.ceil(x2 - SNAP), c0), width)
    r1 = min(max(math.ceil(y2 - SNAP), r0), height)
    return r0, r1, c0, c1


def paint_order(boxes: np.ndarray, size: tuple[int, int]) -> list[int]:
    """Box indices in the order that makes the smallest box win when painted one after another.

    Ordered by rasterised area, largest first (stable, so later boxes win ties): the overlap rule of
    Bbox-Rect, shared by every label maker that merges per-box results.
    """
    areas = []
    for box in boxes:
        r0, r1, c0, c1 = box_pixel_bounds(box, size)
        areas.append((r1 - r0) * (c1 - c0))
    return sorted(range(len(areas)), key=lambda i: -areas[i])


def _check_boxes(boxes: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if len(boxes) != len(labels):
        raise ValueError(f"got {len(boxes)} boxes but {len(labels)} labels")
    return boxes, labels


def rect_labels(
    boxes: np.ndarray | Sequence[Sequence[float]],
    labels: np.ndarray | Sequence[int],
    size: tuple[int, int],
) -> np.ndarray:
    """Bbox-Rect labels (Papandreou et al. 2015): every pixel inside a box gets the box's class.

    Where boxes overlap, the smallest box wins (boxes are painted largest first); pixels outside
    every box are background (0).

    Args:
        boxes: ``K, 4`` boxes ``x1, y1, x2, y2``.
        labels: ``K`` class indices (1..C).
        size: ``(height, width)`` of the label map.

    Returns:
        ``uint8`` ``H, W`` label map.

    """
    boxes, labels = _check_boxes(boxes, labels)
    out = np.zeros(size, dtype=np.uint8)
    for index in paint_order(boxes, size):
        r0, r1, c0, c1 = box_pixel_bounds(boxes[index], size)
        out[r0:r1, c0:c1] = labels[index]
    return out


def box_masks(
    boxes: np.ndarray | Sequence[Sequence[float]],
    labels: np.ndarray | Sequence[int],
    size: tuple[int, int],
    num_classes: int,
) -> np.ndarray:
    """Per-class box indicators: channel ``c`` is 1 inside any box of class ``c``.

    Channel 0 (background) is 1 exactly where no box lies. A pixel inside boxes of two classes has
    both channels set (box losses read the channels as the classes allowed there).

    Args:
        boxes: ``K, 4`` boxes ``x1, y1, x2, y2``.
        labels: ``K`` class indices (1..C).
        size: ``(height, width)`` of the maps.
        num_classes: Number of classes, background included (C+1).

    Returns:
        ``float32`` ``C+1, H, W``.

    """
    boxes, labels = _check_boxes(boxes, labels)
    if len(labels) and (labels.min() < 1 or labels.max() >= num_classes):
        raise ValueError(f"box labels must lie in 1..{num_classes - 1}, got {labels.tolist()}")
    out = np.zeros((num_classes, *size), dtype=np.float32)
    for box, label in zip(boxes, labels):
        r0, r1, c0, c1 = box_pixel_bounds(box, size)
        out[label, r0:r1, c0:c1] = 1.0
    out[0] = 1.0 - out[1:].max(axis=0, initial=0.0)
    return out


def image_tags(
    labels: np.ndarray | Sequence[int], num_classes: int, background: bool = True
) -> np.ndarray:
    """Image-level labels: which classes occur in the image.

    The object classes come from the box (or instance) labels. Background is a class too: the papers
    assume it in every image; wseg's pipeline passes ``background=False`` only when the boxes cover
    every pixel (``box_mask[0]`` is empty), so the tag agrees with the box mask.

    Args:
        labels: Class indices (1..C) of the objects in the image; repeats allowed.
        num_classes: Number of classes, background included (C+1).
        background: Whether background occurs in the image.

    Returns:
        ``float32`` ``C+1`` vector of 0/1.

    """
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if len(labels) and (labels.min() < 1 or labels.max() >= num_classes):
        raise ValueError(f"tag labels must lie in 1..{num_classes - 1}, got {labels.tolist()}")
    out = np.zeros(num_classes, dtype=np.float32)
    out[labels] = 1.0
    out[0] = float(background)
    return out
