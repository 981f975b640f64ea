"""Tiny in-memory samples and sources for the transform and datamodule tests."""

from __future__ import annotations

import cv2
import numpy as np

from wseg.data.records import Sample, SegmentationSource

CLASSES = ("background", "red", "green", "blue")
COLOURS = {1: (200, 40, 40), 2: (40, 200, 40), 3: (40, 40, 200)}


def make_sample(
    image_id: str, size: tuple[int, int] = (40, 48), seed: int = 0, with_mask: bool = True
) -> Sample:
    """A noisy image with two or three elliptic objects, their masks and tight boxes."""
    rng = np.random.default_rng(seed)
    height, width = size
    image = rng.integers(0, 60, (height, width, 3), dtype=np.uint8)
    mask = np.zeros(size, np.uint8)
    instances, boxes, labels = [], [], []
    for _ in range(int(rng.integers(2, 4))):
        label = int(rng.integers(1, len(CLASSES)))
        centre = (int(rng.integers(8, width - 8)), int(rng.integers(8, height - 8)))
        axes = (int(rng.integers(4, 12)), int(rng.integers(4, 10)))
        instance = np.zeros(size, np.uint8)
        cv2.ellipse(instance, centre, axes, float(rng.integers(0, 180)), 0, 360, 1, -1)
        instance = instance.astype(bool)
        rows, cols = np.nonzero(instance)
        boxes.append((cols.min(), rows.min(), cols.max() + 1, rows.max() + 1))
        labels.append(label)
        instances.append(instance)
        mask[instance] = label
        image[instance] = COLOURS[label]
    mask[0, :3] = 255
    return Sample(
        id=image_id,
        image=image,
        mask=mask if with_mask else None,
        boxes=np.asarray(boxes, np.float32),
        labels=np.asarray(labels, np.int64),
        instance_masks=np.stack(instances),
        source=f"memory://{image_id}",
    )


class MemorySource(SegmentationSource):
    """A `SegmentationSource` over samples generated on the fly (no files)."""

    classes = CLASSES

    def __init__(
        self,
        num_images: int = 6,
        size: tuple[int, int] = (40, 48),
        prefix: str = "im",
        sizes: list[tuple[int, int]] | None = None,
    ) -> None:
        self._ids = [f"{prefix}{i:03d}" for i in range(num_images)]
        self._sizes = sizes or [size] * num_images

    @property
    def ids(self) -> list[str]:
        return self._ids

    def load(self, index: int) -> Sample:
        return make_sample(self._ids[index], self._sizes[index], seed=index)
