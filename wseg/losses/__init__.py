"""Losses: plain functions and modules, unit-tested on hand-made tensors."""

from wseg.losses.crf_loss import DenseCRFLoss

__all__ = ["DenseCRFLoss"]
