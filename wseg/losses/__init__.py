"""Losses: plain functions and modules, unit-tested on hand-made tensors."""

from wseg.losses.crf_loss import DenseCRFLoss
from wseg.losses.em import (
    bbox_em_fixed_estep,
    em_adapt_biases,
    em_adapt_estep,
    em_fixed_estep,
)
from wseg.losses.self_correction import alpha_schedule, linear_self_correction, soft_cross_entropy

__all__ = [
    "DenseCRFLoss",
    "alpha_schedule",
    "bbox_em_fixed_estep",
    "em_adapt_biases",
    "em_adapt_estep",
    "em_fixed_estep",
    "linear_self_correction",
    "soft_cross_entropy",
]
