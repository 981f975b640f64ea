"""Self-correction losses (Ibrahim et al. 2020): soft cross-entropy, linear combination, alpha.

The primary model learns from soft labels on the weak set W; these functions make those labels.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

AlphaShape = Literal["exponential", "linear", "constant"]


def soft_cross_entropy(logits: Tensor, target: Tensor) -> Tensor:
    """Per-pixel cross-entropy against a distribution: ``-sum_c target_c * log softmax(logits)_c``.

    The second term of Eq. 2, 5 and 6. Gradient flows into ``logits`` only if ``target`` is
    detached (the callers pass detached targets).

    Args:
        logits: ``B, C, H, W`` logits of the model being trained.
        target: ``B, C, H, W`` class probabilities (each pixel sums to 1; all-zero pixels give 0).

    Returns:
        ``B, H, W`` loss of every pixel.

    Raises:
        ValueError: If the shapes differ.

    """
    if logits.shape != target.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} differ")
    return -(target * logits.log_softmax(1)).sum(1)


def linear_self_correction(logits: Tensor, ancillary_logits: Tensor, alpha: float) -> Tensor:
    """The minimiser of Eq. 3: ``q = softmax((l + alpha * l_anc) / (alpha + 1))``, without gradient.

    Eq. 4 writes it as the normalised weighted geometric mean ``(p * p_anc^alpha)^(1/(alpha+1))``;
    per pixel both are the same categorical distribution. ``q`` is a fixed target (Eq. 5): the
    result is detached from both inputs.

    Args:
        logits: ``B, C, H, W`` primary-model logits ``l``.
        ancillary_logits: ``B, C, H, W`` ancillary-model logits ``l_anc``.
        alpha: Weight of the ancillary model (``alpha -> inf``: q = p_anc; ``0``: q = p).

    Returns:
        ``B, C, H, W`` probabilities ``q``.

    Raises:
        ValueError: If ``alpha`` is negative or the shapes differ.

    """
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0, got {alpha}")
    if logits.shape != ancillary_logits.shape:
        raise ValueError(
            f"logits {tuple(logits.shape)} and ancillary logits "
            f"{tuple(ancillary_logits.shape)} differ"
        )
    with torch.no_grad():
        return ((logits + alpha * ancillary_logits) / (alpha + 1.0)).softmax(1)


def alpha_schedule(
    progress: float, start: float = 30.0, end: float = 0.5, shape: AlphaShape = "exponential"
) -> float:
    """The weight ``alpha`` of linear self-correction at a point of training.

    The paper decays alpha exponentially from 30 to 0.5 over the training of the primary model
    (sec. 4, "Training"): ``alpha = start * (end / start) ** progress``. ``linear`` interpolates
    linearly; ``constant`` keeps ``start``.

    Args:
        progress: Fraction of training done, clamped to ``[0, 1]``.
        start: Alpha at the first step.
        end: Alpha at the last step.
        shape: ``exponential`` (the paper's), ``linear`` or ``constant``.

    Returns:
        Alpha.

    Raises:
        ValueError: For a negative endpoint, a zero endpoint with the exponential shape, or an
            unknown shape.

    """
    if start < 0 or end < 0:
        raise ValueError(f"alpha endpoints must be >= 0, got start={start}, end={end}")
    progress = min(1.0, max(0.0, progress))
    if shape == "exponential":
        if start == 0 or end == 0:
            raise ValueError(
                f"an exponential alpha schedule needs start, end > 0, got {start}, {end}"
            )
        return start * math.exp(progress * math.log(end / start))
    if shape == "linear":
        return start + (end - start) * progress
    if shape == "constant":
        return start
    raise ValueError(f"alpha shape must be exponential, linear or constant, got {shape!r}")
