"""Pseudo-label quality against the true masks: mIoU, per-class IoU, void fraction, per-box F-beta.

F-beta (beta^2 = 0.3) of object vs background inside each box is Box2Tag's Table 1 metric.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from wseg.data.records import IGNORE_INDEX, Sample, SegmentationSource
from wseg.data.scribbles import sample_scribble
from wseg.data.store import PseudoLabelStore
from wseg.data.weak import box_pixel_bounds
from wseg.metrics import confusion_matrix, iou_from_confusion, mean_iou

__all__ = ["box_fbeta", "evaluate_store", "fbeta", "format_quality", "scribble_miou"]

BETA2 = 0.3


def fbeta(pred: np.ndarray, target: np.ndarray, beta2: float = BETA2) -> float:
    """F-beta of a binary prediction, ``(1 + b2) P R / (b2 P + R)``.

    Args:
        pred: Boolean prediction.
        target: Boolean truth, same shape; must hold at least one positive.
        beta2: ``beta^2`` (Box2Tag: 0.3, weighting precision more than recall).

    Returns:
        F-beta in ``[0, 1]``; 0 when nothing is predicted or nothing predicted is right.

    """
    positives = int(target.sum())
    if positives == 0:
        raise ValueError("F-beta needs at least one true positive pixel in the target")
    true_positive = int(np.logical_and(pred, target).sum())
    if true_positive == 0:
        return 0.0
    precision = true_positive / int(pred.sum())
    recall = true_positive / positives
    return (1 + beta2) * precision * recall / (beta2 * precision + recall)


def box_fbeta(label: np.ndarray, sample: Sample, beta2: float = BETA2) -> list[tuple[int, float]]:
    """Per-box F-beta of object vs background inside each box of a sample.

    Inside box ``k`` of class ``c``, the prediction is ``label == c`` and the truth is the box's
    instance mask when the sample has instance masks, else the class mask ``mask == c``. Void pixels
    of the true mask (255) are left out. Boxes without any true object pixel are skipped.

    Args:
        label: Pseudo label map ``H, W``.
        sample: The sample with boxes and ``mask`` and/or ``instance_masks``.
        beta2: ``beta^2``.

    Returns:
        ``(class, F-beta)`` of every box that has object pixels.

    """
    if sample.mask is None and sample.instance_masks is None:
        raise ValueError(f"{sample.id}: no true mask to compare the pseudo label with")
    scores = []
    for k, (box, cls) in enumerate(zip(sample.boxes, sample.labels)):
        r0, r1, c0, c1 = box_pixel_bounds(box, sample.size)
        if sample.instance_masks is not None:
            truth = sample.instance_masks[k, r0:r1, c0:c1]
        else:
            truth = sample.mask[r0:r1, c0:c1] == cls
        valid = (
            sample.mask[r0:r1, c0:c1] != IGNORE_INDEX
            if sample.mask is not None
            else np.ones(truth.shape, bool)
        )
        truth = truth & valid
        if not truth.any():
            continue
        scores.append((int(cls), fbeta((label[r0:r1, c0:c1] == cls) & valid, truth, beta2)))
    return scores


def evaluate_store(
    store: PseudoLabelStore,
    source: SegmentationSource,
    progress: bool = True,
) -> dict[str, Any]:
    """Compare a hard pseudo-label store with the true masks of a split.

    mIoU and per-class IoU come from one confusion matrix accumulated over the split (true-void
    pixels and pseudo-void pixels left out); the void fraction is the share of pixels the pseudo
    labels mark 255; F-beta is averaged over the boxes of each class, and ``fbeta`` over classes (as
    Box2Tag's "mean F-beta"); ``fbeta_boxes`` averages over all boxes.

    Args:
        store: A hard-label store.
        source: The split the store was generated from (with true masks).
        progress: Show a tqdm progress bar.

    Returns:
        JSON-serialisable dict: ``miou``, ``per_class_iou``, ``void_fraction``, ``fbeta``,
        ``fbeta_boxes``, ``per_class_fbeta`` (class name -> value; None where undefined),
        ``confusion`` (rows true, columns pseudo label), ``images``, ``boxes``, ``missing`` (split
        ids without a label), ``without_mask``.

    Raises:
        ValueError: For a soft store, or a label whose size differs from its image.

    """
    if store.kind != "hard":
        raise ValueError(
            f"{store.path}: quality is measured on hard labels, this store is {store.kind}"
        )
    classes: Sequence[str] = source.classes
    num_classes = len(classes)
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    box_scores: dict[int, list[float]] = defaultdict(list)
    void = pixels = images = missing = without_mask = 0
    ids = source.ids
    for index in tqdm(range(len(ids)), desc="quality", unit="img", disable=not progress):
        if not store.has(ids[index]):
            missing += 1
            continue
        sample = source[index]
        if sample.mask is None and sample.instance_masks is None:
            without_mask += 1
            continue
        label = store.read(sample.id)
        if label.shape != sample.size:
            raise ValueError(
                f"{store.file_for(sample.id)}: pseudo label is {label.shape}, image {sample.id} is "
                f"{sample.size}"
            )
        images += 1
        void += int((label == IGNORE_INDEX).sum())
        pixels += label.size
        if sample.mask is not None:
            target = np.where(label == IGNORE_INDEX, IGNORE_INDEX, sample.mask)
            confusion += confusion_matrix(
                torch.from_numpy(label), torch.from_numpy(target), num_classes
            )
        for cls, score in box_fbeta(label, sample):
            box_scores[cls].append(score)
    iou = iou_from_confusion(confusion)
    per_class_fbeta = {c: float(np.mean(s)) for c, s in sorted(box_scores.items())}
    all_scores = [s for scores in box_scores.values() for s in scores]
    return {
        "miou": mean_iou(confusion) if confusion.sum() else None,
        "per_class_iou": {
            name: None if math.isnan(v) else float(v) for name, v in zip(classes, iou.tolist())
        },
        "void_fraction": void / pixels if pixels else None,
        "fbeta": float(np.mean(list(per_class_fbeta.values()))) if per_class_fbeta else None,
        "fbeta_boxes": float(np.mean(all_scores)) if all_scores else None,
        "per_class_fbeta": {
            name: per_class_fbeta.get(c) for c, name in enumerate(classes) if c > 0
        },
        "confusion": confusion.tolist(),
        "images": images,
        "boxes": len(all_scores),
        "missing": missing,
        "without_mask": without_mask,
    }


def format_quality(report: dict[str, Any], title: str = "") -> str:
    """Render a quality report as a plain-text table (percentages).

    Args:
        report: The dict of `evaluate_store`.
        title: First line of the table.

    Returns:
        The table.

    """

    def pct(value: float | None) -> str:
        return "   -" if value is None else f"{100 * value:5.1f}"

    lines = [title] if title else []
    lines.append(
        f"images {report['images']}  boxes {report['boxes']}  missing {report['missing']}  "
        f"without mask {report['without_mask']}"
    )
    lines.append(
        f"mIoU {pct(report['miou'])}  F-beta {pct(report['fbeta'])} (per box "
        f"{pct(report['fbeta_boxes'])})  void {pct(report['void_fraction'])}"
    )
    if report["images"] == 0 and report["without_mask"]:
        lines.append("quality not measured: no image of the split has a mask (box-only data)")
        return "\n".join(lines)
    lines.append(f"{'class':<14} {'IoU':>5} {'F-beta':>6}")
    for name, iou in report["per_class_iou"].items():
        fb = report["per_class_fbeta"].get(name)
        if iou is None and fb is None:
            continue
        lines.append(f"{name:<14} {pct(iou):>5} {pct(fb):>6}")
    return "\n".join(lines)


def scribble_miou(
    source: SegmentationSource, options: dict[str, Any], progress: bool = True
) -> float:
    """The mIoU of the scribbles against the true masks, on the scribbled pixels (Table 1's WA PFA).

    Args:
        source: The training images.
        options: ``scribbles``, ``scribble_width``, ``scribble_seed`` and ``curated`` (as
            `wseg.pipeline.scribbles.scribble_args` reads them from the WA config).
        progress: Show a progress bar.

    Returns:
        mIoU in ``[0, 1]`` (1 for curated scribbles).

    """
    num_classes = source.num_classes
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    for index in tqdm(range(len(source)), desc="scribble mIoU", unit="img", disable=not progress):
        sample = source[index]
        scribble = sample_scribble(
            sample,
            options["scribbles"],
            options["scribble_width"],
            options["scribble_seed"],
            options["curated"],
        )
        target = np.where(scribble == IGNORE_INDEX, IGNORE_INDEX, sample.mask)
        confusion += confusion_matrix(
            torch.from_numpy(scribble), torch.from_numpy(target), num_classes
        )
    return mean_iou(confusion)
