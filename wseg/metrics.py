"""Segmentation metrics: confusion-matrix mIoU (ignore 255), per-class IoU and gap reduction.

The confusion matrix is accumulated over a whole split before IoU is taken (the PASCAL VOC
protocol), never averaged per image. Rows index the true class, columns the predicted class.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric

from wseg.constants import IGNORE_INDEX


def confusion_matrix(
    pred: Tensor, target: Tensor, num_classes: int, ignore_index: int = IGNORE_INDEX
) -> Tensor:
    """Count (true class, predicted class) pairs over all pixels whose target is not ignored.

    Args:
        pred: Predicted class indices, any shape, integer dtype.
        target: True class indices, same shape as ``pred``; ``ignore_index`` marks void pixels.
        num_classes: Number of classes C, background included.
        ignore_index: Target value excluded from the count.

    Returns:
        ``int64`` tensor ``C, C``; entry ``[t, p]`` counts pixels of class ``t`` predicted as ``p``.

    Raises:
        ValueError: If the shapes differ or a non-ignored value lies outside ``0..C-1``.

    """
    if pred.shape != target.shape:
        raise ValueError(f"pred shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
    pred, target = pred.reshape(-1).long(), target.reshape(-1).long()
    keep = target != ignore_index
    pred, target = pred[keep], target[keep]
    for name, values in (("target", target), ("pred", pred)):
        if values.numel() and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(
                f"{name} holds class indices outside 0..{num_classes - 1} "
                f"(min {int(values.min())}, max {int(values.max())}) besides {ignore_index}"
            )
    counts = torch.bincount(target * num_classes + pred, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def iou_from_confusion(confusion: Tensor) -> Tensor:
    """Per-class intersection over union, ``TP / (TP + FP + FN)``.

    Args:
        confusion: ``C, C`` confusion matrix (rows true, columns predicted).

    Returns:
        ``float64`` tensor ``C``; NaN for a class that is neither present nor predicted.

    """
    confusion = confusion.double()
    true_positive = confusion.diagonal()
    union = confusion.sum(0) + confusion.sum(1) - true_positive
    return torch.where(union > 0, true_positive / union.clamp_min(1), torch.nan)


def mean_iou(confusion: Tensor) -> float:
    """Mean of the per-class IoU over the classes that occur (present or predicted).

    Args:
        confusion: ``C, C`` confusion matrix (rows true, columns predicted).

    Returns:
        The mean IoU in ``[0, 1]``; NaN when the matrix is empty.

    """
    iou = iou_from_confusion(confusion)
    valid = ~iou.isnan()
    return float(iou[valid].mean()) if valid.any() else math.nan


def pixel_accuracy(confusion: Tensor) -> float:
    """Fraction of non-ignored pixels whose predicted class is right.

    Args:
        confusion: ``C, C`` confusion matrix (rows true, columns predicted).

    Returns:
        Accuracy in ``[0, 1]``; NaN when the matrix is empty.

    """
    total = confusion.sum()
    return float(confusion.diagonal().sum() / total) if total > 0 else math.nan


def gap_reduction(method: float, weak: float, full: float) -> float:
    """Share of the weak-to-full gap that a method closes: ``(method - weak) / (full - weak)``.

    Args:
        method: Score (e.g. mIoU) of the method under study.
        weak: Score of the same network trained on the raw weak labels.
        full: Score of the same network trained on full masks.

    Returns:
        0 for no gain over the weak baseline, 1 for matching full supervision.

    Raises:
        ValueError: If ``full == weak`` (the gap is empty).

    """
    if full == weak:
        raise ValueError(f"full ({full}) equals weak ({weak}): the gap is empty")
    return (method - weak) / (full - weak)


class ConfusionMatrix(Metric):
    """Accumulated segmentation confusion matrix; summed over processes under DDP.

    Args:
        num_classes: Number of classes C, background included.
        ignore_index: Target value excluded from the count.
        **kwargs: Passed to `torchmetrics.Metric` (e.g. ``sync_on_compute``).

    """

    full_state_update = False
    confusion: Tensor

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.add_state(
            "confusion",
            default=torch.zeros(num_classes, num_classes, dtype=torch.long),
            dist_reduce_fx="sum",
        )

    def update(self, pred: Tensor, target: Tensor) -> None:
        """Add the pixels of a batch.

        Args:
            pred: Predicted class indices, same shape as ``target``.
            target: True class indices with ``ignore_index`` for void pixels.

        """
        self.confusion += confusion_matrix(pred, target, self.num_classes, self.ignore_index)

    def compute(self) -> Tensor:
        """Return the ``C, C`` matrix over everything seen (all processes)."""
        return self.confusion
