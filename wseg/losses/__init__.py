"""Losses: plain functions and modules, unit-tested on hand-made tensors."""

from wseg.losses.crf_loss import DenseCRFLoss
from wseg.losses.self_correction import alpha_schedule, linear_self_correction, soft_cross_entropy

__all__ = [
    "DenseCRFLoss",
    "alpha_schedule",
    "linear_self_correction",
    "soft_cross_entropy",
]
