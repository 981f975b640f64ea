"""What a dataset reader yields: one `Sample` per image, in the reader's own pixel coordinates.

Conventions used everywhere in wseg:

- Class index 0 is background, 1..C are the object classes, 255 is "ignore" (void).
  ``num_classes`` always counts background, so VOC has 21.
- Boxes are ``x1, y1, x2, y2`` in pixel-edge coordinates: the box covers the pixel columns
  ``x1 <= x < x2`` and rows ``y1 <= y < y2``. The tight box of an instance mask is
  ``(min col, min row, max col + 1, max row + 1)``. This is albumentations' ``pascal_voc`` format.
- Images are RGB ``uint8`` arrays of shape ``H, W, 3``; label maps are ``uint8`` ``H, W``.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from wseg.constants import IGNORE_INDEX

__all__ = ["IGNORE_INDEX", "VOC_CLASSES", "Sample", "SegmentationSource", "voc_palette"]

VOC_CLASSES: tuple[str, ...] = (
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)


def voc_palette(n: int = 256) -> np.ndarray:
    """The PASCAL VOC colour map: ``n`` RGB triples, index 255 included (cream white)."""
    palette = np.zeros((n, 3), dtype=np.uint8)
    for index in range(n):
        value, r, g, b = index, 0, 0, 0
        for bit in range(8):
            r |= ((value >> 0) & 1) << (7 - bit)
            g |= ((value >> 1) & 1) << (7 - bit)
            b |= ((value >> 2) & 1) << (7 - bit)
            value >>= 3
        palette[index] = (r, g, b)
    return palette


@dataclass
class Sample:
    """One image with every label its dataset knows.

    Attributes:
        id: Stable image id, unique within the dataset; the key of every cache and store.
        image: RGB image, ``uint8``, ``H, W, 3``.
        mask: Full class label map, ``uint8``, ``H, W``, 255 = ignore; None when unknown.
        boxes: ``float32``, ``K, 4``: ``x1, y1, x2, y2`` (see the module docstring).
        labels: ``int64``, ``K``: the class index (1..C) of each box.
        instance_masks: ``bool``, ``K, H, W``, one per box, when the layout has them; else None.
        scribble: ``uint8``, ``H, W``, scribbled pixels hold their class, 255 elsewhere; None when
            the dataset has no scribbles.
        source: Path of the image file, for error messages.
    """

    id: str
    image: np.ndarray
    mask: np.ndarray | None = None
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))
    instance_masks: np.ndarray | None = None
    scribble: np.ndarray | None = None
    source: str = ""

    @property
    def size(self) -> tuple[int, int]:
        """``(height, width)`` of the image."""
        return int(self.image.shape[0]), int(self.image.shape[1])


class SegmentationSource(abc.ABC):
    """A dataset split on disk, read one `Sample` at a time.

    Subclasses validate the layout in ``__init__`` (root and split list exist) so that a wrong path
    fails at start-up with the path in the message, not in a worker process minutes later.
    """

    classes: Sequence[str]

    @property
    @abc.abstractmethod
    def ids(self) -> list[str]:
        """Image ids of this split, in a stable order."""

    @abc.abstractmethod
    def load(self, index: int) -> Sample:
        """Read the `Sample` at position ``index`` of `ids`."""

    @property
    def num_classes(self) -> int:
        """Number of classes, background included."""
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> Sample:
        return self.load(index)
