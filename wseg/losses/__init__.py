"""Losses: plain functions and modules, unit-tested on hand-made tensors."""

from wseg.losses.box2seg_losses import (
    affinity_loss,
    attention_box_loss,
    attention_weighted_loss,
    background_loss,
    box_loss,
    fill_rate_loss,
    fill_rates,
    floored_attention,
    foreground_loss,
    grabcut_loss,
    predicted_fill_rates,
)
from wseg.losses.crf_loss import DenseCRFLoss
from wseg.losses.em_esteps import (
    bbox_em_fixed_estep,
    em_adapt_biases,
    em_adapt_estep,
    em_fixed_estep,
)
from wseg.losses.self_correction import alpha_schedule, linear_self_correction, soft_cross_entropy

__all__ = [
    "DenseCRFLoss",
    "affinity_loss",
    "attention_box_loss",
    "attention_weighted_loss",
    "background_loss",
    "box_loss",
    "fill_rate_loss",
    "fill_rates",
    "floored_attention",
    "foreground_loss",
    "grabcut_loss",
    "predicted_fill_rates",
    "alpha_schedule",
    "bbox_em_fixed_estep",
    "em_adapt_biases",
    "em_adapt_estep",
    "em_fixed_estep",
    "linear_self_correction",
    "soft_cross_entropy",
]
