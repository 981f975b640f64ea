"""The box pseudo-label generators: ``rect`` (Bbox-Rect), ``grabcut`` (GrabCut per box), ``crf``.

``crf`` is Papandreou et al.'s Bbox-Seg. Each generator is a `LabelGenerator` dataclass, its fields
its full configuration; `build_generator` makes one by name. `wseg.labels.generate` runs one over
a split.
"""

from __future__ import annotations

import abc
import dataclasses
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from wseg.data.records import IGNORE_INDEX, Sample
from wseg.data.weak import box_pixel_bounds, rect_labels
from wseg.labels.grabcut import grabcut_labels

__all__ = [
    "GENERATORS",
    "CRFGenerator",
    "GrabCutGenerator",
    "LabelGenerator",
    "RectGenerator",
    "box_unaries",
    "build_generator",
]


class LabelGenerator(abc.ABC):
    """A pseudo-label maker: a dataclass whose fields are its full configuration.

    Subclasses set `name` and implement ``__call__(sample, num_classes) -> (label, counter)``; the
    counter holds per-image statistics (e.g. GrabCut's fallbacks) that generation sums up.
    """

    name: ClassVar[str]
    kind: ClassVar[Literal["hard", "soft"]] = "hard"

    def options(self) -> dict[str, Any]:
        """Return the generator's full configuration (every field, defaults included)."""
        return dataclasses.asdict(self)

    @abc.abstractmethod
    def __call__(self, sample: Sample, num_classes: int) -> tuple[np.ndarray, Counter]:
        """Make the pseudo label of one sample.

        Args:
            sample: The image with its boxes.
            num_classes: Number of classes of the dataset, background included.

        Returns:
            ``(label, counter)``: ``uint8`` ``H, W`` labels (or ``float`` ``L, H, W`` for a soft
            generator) and per-image statistics.

        """


@dataclass
class RectGenerator(LabelGenerator):
    """Bbox-Rect (Papandreou et al. 2015): each box filled with its class, smallest box wins."""

    name: ClassVar[str] = "rect"

    def __call__(self, sample: Sample, num_classes: int) -> tuple[np.ndarray, Counter]:
        """Paint each box with its class, largest first (see `LabelGenerator`)."""
        return rect_labels(sample.boxes, sample.labels, sample.size), Counter(
            boxes=len(sample.boxes)
        )


@dataclass
class GrabCutGenerator(LabelGenerator):
    """GrabCut per box, merged smallest-box-wins (see `wseg.labels.grabcut.grabcut_labels`).

    Args:
        iterations: GrabCut iterations per box.
        context: Crop margin around each box in box sizes; None runs GrabCut on the whole image.
        min_size: Boxes narrower or shorter than this (pixels) keep their rectangle.
        upsample_to: Boxes with ``sqrt(area)`` below this (pixels) are upsampled to it; 0: never.
        core: Fraction of each box's area (its centre) fixed to foreground (20%, as Bbox-Seg's
            alpha; 0: textbook GrabCut, which loses to the rectangle on real photographs).

    """

    name: ClassVar[str] = "grabcut"
    iterations: int = 5
    context: float | None = 1.0
    min_size: int = 5
    upsample_to: int = 0
    core: float = 0.2

    def __call__(self, sample: Sample, num_classes: int) -> tuple[np.ndarray, Counter]:
        """Run GrabCut on every box of the sample (see `LabelGenerator`)."""
        name = f"{sample.id} ({sample.source})" if sample.source else sample.id
        return grabcut_labels(
            sample.image,
            sample.boxes,
            sample.labels,
            iterations=self.iterations,
            context=self.context,
            min_size=self.min_size,
            upsample_to=self.upsample_to,
            core=self.core,
            name=name,
        )


def box_unaries(
    boxes: np.ndarray,
    labels: np.ndarray,
    size: tuple[int, int],
    alpha: float = 0.2,
    box_prior: float = 0.6,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unaries and clamps of Papandreou et al.'s Bbox-Seg CRF over the classes present.

    The labels are ``0`` (background) and the distinct box classes, in increasing order. A pixel in
    the boxes of class set ``S`` gets ``P(background) = 1 - box_prior`` and ``box_prior / |S|`` for
    each class of ``S``. The paper leaves these unaries unspecified (it cross-validates its CRF);
    the default 0.6 leans slightly towards the box class, which is what the clamped background
    outside the box needs against it: on tiny_coco val2017 with DeepLab's CRF parameters, mIoU was
    58.3 / 67.0 / 65.9 for 0.5 / 0.6 / 0.7 (Bbox-Rect: 60.9). The centre of every box,
    the box shrunk about its centre by ``sqrt(alpha)`` per side so that it covers ``alpha`` of the
    box area (paper: alpha = 20%), is clamped to the box class (smallest box wins where centres
    overlap); pixels outside every box are clamped to background.

    Args:
        boxes: ``K, 4`` boxes ``x1, y1, x2, y2``.
        labels: ``K`` box classes (1..C).
        size: ``(height, width)``.
        alpha: Fraction of each box's area clamped to its class.
        box_prior: Total probability of the box classes inside boxes, outside the centres.

    Returns:
        ``(classes, probs, clamp)``: ``int64`` ``L`` class indices (0 first); ``float32``
        ``L, H, W`` probabilities; ``int64`` ``H, W`` clamp (index into ``classes``; 255 = free).

    """
    if not 0.0 <= alpha <= 1.0 or not 0.0 < box_prior < 1.0:
        raise ValueError(f"need 0 <= alpha <= 1 and 0 < box_prior < 1, got {alpha}, {box_prior}")
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    labels = np.asarray(labels, np.int64).reshape(-1)
    classes = np.concatenate([[0], np.unique(labels)]).astype(np.int64)
    index = {int(c): i for i, c in enumerate(classes)}
    height, width = size
    cover = np.zeros((len(classes), height, width), bool)
    bounds = [box_pixel_bounds(box, size) for box in boxes]
    for (r0, r1, c0, c1), label in zip(bounds, labels):
        cover[index[int(label)], r0:r1, c0:c1] = True
    inside = cover[1:].any(axis=0)
    probs = np.zeros((len(classes), height, width), np.float32)
    counts = cover[1:].sum(axis=0)
    probs[1:] = np.where(inside, box_prior / np.maximum(counts, 1), 0.0) * cover[1:]
    probs[0] = np.where(inside, 1.0 - box_prior, 1.0)
    clamp = np.full(size, IGNORE_INDEX, np.int64)
    clamp[~inside] = 0
    shrink = np.sqrt(alpha)
    areas = [(r1 - r0) * (c1 - c0) for r0, r1, c0, c1 in bounds]
    for k in sorted(range(len(boxes)), key=lambda i: -areas[i]):
        if areas[k] == 0 or alpha == 0:
            continue
        x1, y1, x2, y2 = boxes[k]
        cx, cy, half_w, half_h = (
            (x1 + x2) / 2,
            (y1 + y2) / 2,
            shrink * (x2 - x1) / 2,
            shrink * (y2 - y1) / 2,
        )
        r0, r1, c0, c1 = box_pixel_bounds(
            (cx - half_w, cy - half_h, cx + half_w, cy + half_h), size
        )
        clamp[r0:r1, c0:c1] = index[int(labels[k])]
    return classes, probs, clamp


CRF_FROM_BOXES: dict[str, Any] = {"bilateral_compat": 8.0}
"""Where `CRFGenerator`'s CRF departs from DeepLab's (`wseg.labels.crf.DenseCRFParams`); a
generator's ``crf`` options are applied on top of these."""


@dataclass
class CRFGenerator(LabelGenerator):
    """CRF from boxes: Papandreou et al.'s Bbox-Seg (centre clamped, outside clamped, CRF decides).

    Args:
        alpha: Fraction of each box's area (its centre) clamped to the box class (paper: 20%;
            default 30%, see below).
        box_prior: Probability of the box classes inside a box outside its centre (`box_unaries`).
        backend: Dense CRF backend, ``pydensecrf`` (reference) or ``torch``.
        crf: Keyword arguments of ``wseg.labels.crf.DenseCRFParams`` (defaults filled in; here
            ``bilateral_compat=8``, see below).

    Defaults, chosen on tiny_coco train2017 and the synthetic set, with val2017 held out
    (``python -m benchmarks.box_diagnosis --settings``): ``alpha=0.3`` (the paper's 20% centre is
    too small for COCO's objects, which fill less of their boxes than VOC's), ``box_prior=0.6``
    and DeepLab's CRF with the bilateral weight doubled (``bilateral_compat=8``). Box F-beta,
    rectangle / paper's alpha 0.2 with DeepLab's CRF / these defaults: train2017 61.3 / 65.0 /
    67.9, val2017 65.0 / 70.5 / 72.6 (mIoU 60.9 / 67.0 / 68.5), synthetic 76.5 / 95.7 / 94.8.
    ``box_prior`` 0.5 to 0.8, ``srgb`` 13 and ``sxy`` 100 moved nothing by more than 0.3; a
    larger centre (0.4, 0.5) helps small boxes and hurts large ones. The CRF stays below GrabCut
    with its centre fixed (val2017 74.4, see `GrabCutGenerator`): its colour kernel alone cannot
    separate an object from a background of similar colour inside the box. ``alpha=0.2,
    crf={"bilateral_compat": 4}`` is the paper's Bbox-Seg at DeepLab's parameters.

    """

    name: ClassVar[str] = "crf"
    alpha: float = 0.3
    box_prior: float = 0.6
    backend: Literal["pydensecrf", "torch"] = "pydensecrf"
    crf: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from wseg.labels.crf import DenseCRFParams

        self.crf = dataclasses.asdict(DenseCRFParams(**{**CRF_FROM_BOXES, **self.crf}))

    def __call__(self, sample: Sample, num_classes: int) -> tuple[np.ndarray, Counter]:
        """Refine the box unaries with the dense CRF and take the argmax (see `LabelGenerator`)."""
        from wseg.labels.crf import DenseCRFParams, dense_crf

        classes, probs, clamp = box_unaries(
            sample.boxes, sample.labels, sample.size, self.alpha, self.box_prior
        )
        if len(classes) == 1:  # no box: all background, nothing for the CRF to decide
            return np.zeros(sample.size, np.uint8), Counter(boxes=0)
        image = torch.from_numpy(np.ascontiguousarray(sample.image.transpose(2, 0, 1)))[None]
        refined = dense_crf(
            image,
            torch.from_numpy(probs)[None],
            DenseCRFParams(**self.crf),
            backend=self.backend,
            clamp=torch.from_numpy(clamp)[None],
        )
        label = classes[refined[0].argmax(dim=0).numpy()].astype(np.uint8)
        return label, Counter(boxes=len(sample.boxes))


GENERATORS: dict[str, type[LabelGenerator]] = {
    cls.name: cls for cls in (RectGenerator, GrabCutGenerator, CRFGenerator)
}


def build_generator(name: str, **options: Any) -> LabelGenerator:
    """Instantiate a registered generator.

    Args:
        name: ``rect``, ``grabcut`` or ``crf``.
        **options: The generator's fields.

    Returns:
        The generator.

    Raises:
        ValueError: For an unknown generator or option (the message lists the valid ones).

    """
    if name not in GENERATORS:
        raise ValueError(f"unknown generator {name!r}; expected one of {sorted(GENERATORS)}")
    cls = GENERATORS[name]
    valid = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(f"generator {name!r} has no option(s) {unknown}; valid: {valid}")
    return cls(**options)
