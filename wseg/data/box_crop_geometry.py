"""Box2Tag's crop geometry (Ji & Veksler 2021, sec. 4.1): which boxes, cut out and pasted back.

A box is resized to a square crop with a border of ``border`` pixels taken from the image around
it; border pixels inside other boxes are void. The datasets of these crops: `wseg.data.box_crops`.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
from tqdm.auto import tqdm

from wseg.data.records import IGNORE_INDEX, Sample, SegmentationSource
from wseg.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from wseg.data.weak import box_pixel_bounds

__all__ = [
    "CropEntry",
    "crop_box",
    "kept_boxes",
    "normalise",
    "paste_box",
    "scan_crops",
]


@dataclass(frozen=True)
class CropEntry:
    """One box of a split.

    Attributes:
        image_index: Position of its image in the source.
        box_index: Position of the box in the sample's boxes.
        label: Its class (1..C).
        kept: Whether it enters the single-class dataset of its class (see `kept_boxes`).

    """

    image_index: int
    box_index: int
    label: int
    kept: bool


def _bounds(sample: Sample) -> list[tuple[int, int, int, int]]:
    return [box_pixel_bounds(box, sample.size) for box in sample.boxes]


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    """Whether two rasterised boxes ``(r0, r1, c0, c1)`` share a pixel."""
    return min(a[1], b[1]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[2], b[2])


def kept_boxes(sample: Sample, min_side_fraction: float = 0.1) -> list[bool]:
    """Which boxes of a sample enter their class's single-class dataset (sec. 4.1).

    A box is kept when it shares no pixel with a box of another class (boxes of its own class may
    overlap it) and its longer side exceeds ``min_side_fraction`` times the image's longer side.
    The paper keeps boxes longer than 50 pixels on VOC, whose images are at most 500 pixels wide:
    we state the threshold relative to the image (0.1) so that one setting fits VOC, COCO and the
    small synthetic images alike.

    Args:
        sample: The image with its boxes.
        min_side_fraction: Smallest longer side, as a fraction of the image's longer side.

    Returns:
        One flag per box.

    """
    bounds = _bounds(sample)
    limit = min_side_fraction * max(sample.size)
    kept = []
    for k, (bound, label) in enumerate(zip(bounds, sample.labels)):
        r0, r1, c0, c1 = bound
        if r1 <= r0 or c1 <= c0 or max(r1 - r0, c1 - c0) <= limit:
            kept.append(False)
            continue
        others = (j for j, other in enumerate(sample.labels) if j != k and int(other) != int(label))
        kept.append(not any(_overlap(bound, bounds[j]) for j in others))
    return kept


def scan_crops(
    source: SegmentationSource, min_side_fraction: float = 0.1, progress: bool = True
) -> list[CropEntry]:
    """List every box of a split with its class and whether it is kept (one pass over the split).

    Args:
        source: The split.
        min_side_fraction: See `kept_boxes`.
        progress: Show a tqdm progress bar.

    Returns:
        One entry per box with a non-empty rasterisation, in image order.

    """
    entries = []
    for index in tqdm(range(len(source)), desc="boxes", unit="img", disable=not progress):
        sample = source[index]
        for k, (label, kept) in enumerate(
            zip(sample.labels, kept_boxes(sample, min_side_fraction))
        ):
            r0, r1, c0, c1 = box_pixel_bounds(sample.boxes[k], sample.size)
            if r1 > r0 and c1 > c0:
                entries.append(CropEntry(index, k, int(label), kept))
    return entries


def _box_transform(bound: tuple[int, int, int, int], size: int, border: int) -> np.ndarray:
    """The 2x3 affine (OpenCV pixel-centre convention) mapping a box onto the crop's interior."""
    r0, r1, c0, c1 = bound
    inner = size - 2 * border
    sx, sy = inner / (c1 - c0), inner / (r1 - r0)
    # In pixel-edge coordinates u = border + (x - c0) * sx; OpenCV places pixel centres at
    # integers (edge - 0.5), which adds 0.5 * sx - 0.5 to the offset.
    return np.array(
        [
            [sx, 0.0, border - c0 * sx + 0.5 * sx - 0.5],
            [0.0, sy, border - r0 * sy + 0.5 * sy - 0.5],
        ]
    )


def crop_box(
    sample: Sample, box_index: int, size: int = 256, border: int = 3
) -> dict[str, np.ndarray]:
    """Cut one box out of its image as a ``size x size`` crop with a ``border``-pixel frame.

    The box is resized to the crop's interior ``[border, size - border)`` in both directions, and
    the frame shows the image just outside the box at the same scale (``border`` pixels of the
    crop). The paper takes "a border of 3 pixels in width" and then resizes to 256; we keep the
    border 3 pixels wide in the network's input, where the positional loss reads it (Veksler's
    single-class loss uses a 3-pixel border of the input). Frame pixels outside the image, or
    inside any other box of the image (another object: of another class, or of the same class,
    whose pixels may be object too), are void.

    Args:
        sample: The image with its boxes (and true masks, when known).
        box_index: Which box.
        size: Side of the square crop (paper: 256).
        border: Width of the frame in crop pixels (paper: 3).

    Returns:
        ``image`` uint8 ``size, size, 3``; ``valid`` bool (the pixel comes from the image);
        ``border`` uint8, 0 on frame pixels that are background examples and 255 elsewhere;
        ``mask`` uint8, the true object (1) / background (0) inside the box, 255 on the frame and
        where unknown (the box's instance mask when the sample has one, else its class's pixels).

    """
    if border < 0 or size - 2 * border < 1:
        raise ValueError(f"crop size {size} leaves no interior with a border of {border}")
    bounds = _bounds(sample)
    bound = bounds[box_index]
    if bound[1] <= bound[0] or bound[3] <= bound[2]:
        raise ValueError(f"{sample.id}: box {box_index} {sample.boxes[box_index]} has no pixels")
    matrix = _box_transform(bound, size, border)
    shape = (size, size)

    def warp(array: np.ndarray, interpolation: int, fill: int) -> np.ndarray:
        return cv2.warpAffine(
            array, matrix, shape, flags=interpolation, borderMode=cv2.BORDER_CONSTANT,
            borderValue=fill,
        )  # fmt: skip

    height, width = sample.size
    others = np.zeros((height, width), np.uint8)
    for j, (r0, r1, c0, c1) in enumerate(bounds):
        if j != box_index:
            others[r0:r1, c0:c1] = 1
    image = warp(np.ascontiguousarray(sample.image), cv2.INTER_LINEAR, 0)
    valid = warp(np.ones((height, width), np.uint8), cv2.INTER_NEAREST, 0).astype(bool)
    inside_other = warp(others, cv2.INTER_NEAREST, 1).astype(bool)
    frame = np.ones(shape, bool)
    frame[border : size - border, border : size - border] = False
    border_label = np.full(shape, IGNORE_INDEX, np.uint8)
    border_label[frame & valid & ~inside_other] = 0
    label = int(sample.labels[box_index])
    if sample.instance_masks is not None:
        truth = sample.instance_masks[box_index].astype(np.uint8)
        if sample.mask is not None:
            truth[sample.mask == IGNORE_INDEX] = IGNORE_INDEX
    elif sample.mask is not None:
        truth = (sample.mask == label).astype(np.uint8)
        truth[sample.mask == IGNORE_INDEX] = IGNORE_INDEX
    else:
        truth = np.full((height, width), IGNORE_INDEX, np.uint8)
    mask = warp(truth, cv2.INTER_NEAREST, IGNORE_INDEX)
    mask[frame] = IGNORE_INDEX
    return {"image": image, "valid": valid, "border": border_label, "mask": mask}


def paste_box(
    probs: np.ndarray, bound: tuple[int, int, int, int], size: int = 256, border: int = 3
) -> np.ndarray:
    """Map a crop's object probabilities back onto its box (the inverse of `crop_box`).

    Args:
        probs: float ``size, size`` object probabilities of the crop.
        bound: The box's rasterisation ``(r0, r1, c0, c1)`` (`wseg.data.weak.box_pixel_bounds`).
        size: Side of the crop.
        border: Width of the crop's frame.

    Returns:
        float32 ``r1 - r0, c1 - c0`` probabilities of the box's pixels (bilinear resampling of the
        crop's interior).

    """
    r0, r1, c0, c1 = bound
    interior = np.ascontiguousarray(probs[border : size - border, border : size - border])
    return cv2.resize(
        interior.astype(np.float32), (c1 - c0, r1 - r0), interpolation=cv2.INTER_LINEAR
    )


def normalise(image: np.ndarray) -> torch.Tensor:
    """uint8 ``H, W, 3`` RGB to the float ``3, H, W`` ImageNet-normalised tensor of the batches."""
    mean = np.asarray(IMAGENET_MEAN, np.float32) * 255.0
    std = np.asarray(IMAGENET_STD, np.float32) * 255.0
    return torch.from_numpy(((image.astype(np.float32) - mean) / std).transpose(2, 0, 1).copy())
