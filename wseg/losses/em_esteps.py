"""E-steps of Papandreou et al. (ICCV 2015): pixel labels from network scores and weak labels.

EM-Fixed and Bbox-EM-Fixed add fixed biases to the scores of present classes (Eqs. 9-10, Alg. 1);
EM-Adapt finds image- and class-dependent biases that give each present class a minimum area.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from wseg.data.records import IGNORE_INDEX

__all__ = [
    "TIE_MARGIN",
    "bbox_em_fixed_estep",
    "em_adapt_biases",
    "em_adapt_estep",
    "em_fixed_estep",
    "fixed_biases",
    "padding_valid",
]

TIE_MARGIN = 1e-3
"""Score margin (logit units) by which an adapted class beats the runner-up on its claimed pixels.

EM-Adapt's bias makes its class equal to the best other class at the pixel that fixes the
quantile; this margin turns the tie into a win, so the claimed share is met despite float rounding.
"""


def _check(logits: Tensor, per_image: Tensor, name: str) -> None:
    if logits.ndim != 4:
        raise ValueError(f"logits must be B, C, H, W, got shape {tuple(logits.shape)}")
    if per_image.shape[:2] != logits.shape[:2]:
        raise ValueError(
            f"{name} must have shape {tuple(logits.shape[:2])} (B, C) leading, "
            f"got {tuple(per_image.shape)}"
        )


def padding_valid(box_mask: Tensor) -> Tensor:
    """Pixels that are part of an image, not batch or crop padding.

    ``box_mask``'s background channel marks the pixels outside every box, its class channels the
    pixels inside boxes, and padding is all-zero (`wseg.data.batch.Batch`), so a pixel is real
    exactly when some channel is set.

    Args:
        box_mask: ``B, C, H, W`` box indicator of the batch.

    Returns:
        Boolean ``B, H, W``.

    """
    return box_mask.amax(dim=1) > 0


def fixed_biases(tags: Tensor, fg_bias: float = 5.0, bg_bias: float = 3.0) -> Tensor:
    """EM-Fixed's potential ``phi(l, z)`` (Eq. 10): ``b_l`` for present labels, 0 for absent ones.

    Args:
        tags: ``B, C`` image-level labels ``z`` (background at index 0), 1 = present.
        fg_bias: ``b_fg``, the bias of every present foreground class (paper: 5).
        bg_bias: ``b_bg``, the bias of the background when present (paper: 3).

    Returns:
        ``B, C`` biases.

    """
    bias = torch.full_like(tags, fg_bias, dtype=torch.float32)
    bias[:, 0] = bg_bias
    return bias * (tags > 0)


def em_fixed_estep(
    logits: Tensor,
    tags: Tensor,
    fg_bias: float = 5.0,
    bg_bias: float = 3.0,
    suppress_absent: bool = False,
    valid: Tensor | None = None,
) -> Tensor:
    """EM-Fixed E-step (Algorithm 1): ``y_m = argmax_l f_m(l) + phi(l, z)``.

    ``f_m`` are the network's scores. The paper writes the E-step with ``log P(y_m | x)`` (Eq. 7)
    and with the DCNN output ``f_m`` (Eq. 9); the two differ by a per-pixel constant (the log of
    the softmax normaliser), so both give the same argmax and logits are passed directly.

    Absent classes keep their score without bias (Algorithm 1, line 2: they can still win a pixel);
    ``suppress_absent=True`` excludes them instead, as EM-Adapt does.

    Args:
        logits: ``B, C, H, W`` scores of the current network (no gradient is taken).
        tags: ``B, C`` image-level labels, 1 = present, background at index 0.
        fg_bias: ``b_fg`` added to present foreground classes (paper: 5).
        bg_bias: ``b_bg`` added to the background when present (paper: 3).
        suppress_absent: Never assign a class absent from ``tags``.
        valid: Optional boolean ``B, H, W``; other pixels get 255 (ignore).

    Returns:
        ``B, H, W`` long labels.

    """
    _check(logits, tags, "tags")
    scores = logits.detach().float() + fixed_biases(tags, fg_bias, bg_bias)[:, :, None, None]
    if suppress_absent:
        scores = scores.masked_fill((tags <= 0)[:, :, None, None], -math.inf)
    labels = scores.argmax(dim=1)
    return labels if valid is None else labels.masked_fill(~valid, IGNORE_INDEX)


def bbox_em_fixed_estep(
    logits: Tensor,
    box_mask: Tensor,
    fg_bias: float = 5.0,
    bg_bias: float = 3.0,
    suppress_absent: bool = False,
) -> Tensor:
    """Bbox-EM-Fixed E-step: EM-Fixed with each foreground bias only inside that class's boxes.

    Inside boxes, ``y_m = argmax_l f_m(l) + b_fg [m in a box of l] + b_bg z_0``; outside every box
    the label is background; padding (``box_mask`` all zero) is 255. The background counts as
    present (``z_0 = 1``) when some pixel of the image lies outside every box, as in its tags.

    Args:
        logits: ``B, C, H, W`` scores of the current network (no gradient is taken).
        box_mask: ``B, C, H, W`` box indicator (channel 0: outside every box).
        fg_bias: ``b_fg`` added inside the boxes of each class (paper: 5).
        bg_bias: ``b_bg`` added to the background score (paper: 3).
        suppress_absent: Inside a box, never assign a class that has no box covering the pixel.

    Returns:
        ``B, H, W`` long labels.

    """
    if box_mask.shape != logits.shape:
        raise ValueError(
            f"box_mask must match logits {tuple(logits.shape)}, got {tuple(box_mask.shape)}"
        )
    inside = box_mask[:, 1:] > 0
    bias = torch.zeros_like(logits, dtype=torch.float32)
    bias[:, 1:] = fg_bias * inside
    background_present = (box_mask[:, 0] > 0).flatten(1).any(dim=1)
    bias[:, 0] = bg_bias * background_present[:, None, None]
    scores = logits.detach().float() + bias
    if suppress_absent:
        scores[:, 1:] = scores[:, 1:].masked_fill(~inside, -math.inf)
    labels = scores.argmax(dim=1)
    labels = labels.masked_fill(box_mask[:, 0] > 0, 0)
    return labels.masked_fill(~padding_valid(box_mask), IGNORE_INDEX)


def em_adapt_biases(
    scores: Tensor,
    present: Tensor,
    fg_portion: float = 0.2,
    bg_portion: float = 0.4,
    max_passes: int = 10,
) -> Tensor:
    """EM-Adapt's biases for one image: each present class wins at least its share of the pixels.

    The cardinality potential asks that at least ``rho_l`` of the image go to every present class
    ``l`` (``rho_0 = bg_portion``, ``rho_l = fg_portion`` for foreground classes) and none to an
    absent class (its score is excluded). The paper defers the algorithm to its supplement; this
    follows the authors' released layer (DeepLab's ``AdaptiveBiasChannel``): visit the present
    classes in turn and raise class ``l``'s bias just enough that it wins its ``ceil(rho_l N)``
    pixels where it is closest to the best other class (the quantile of the score gap). Biases only
    grow, and a class already above its share keeps its bias. Raising one class can take pixels
    from a class visited earlier, so passes repeat until every share is met or ``max_passes``.
    Like the released layer, the result is approximate when two classes at their share contest
    the same pixels (each raise then wins back only ``TIE_MARGIN`` of score): on random scores with
    the paper's shares, 10 passes leave a class at most 0.4% of the image short of its share, and
    with one present foreground class the shares hold after the first pass.

    Order: background first, then the present foreground classes by increasing index, in every
    pass (the released layer shuffles the foreground classes in each pass; a fixed order makes the
    E-step deterministic, and repeating passes until all shares hold reduces the order's effect).
    When the shares sum to more than 1 (with the defaults: four or more present foreground
    classes) not all can hold; the last class visited always gets its share.

    Args:
        scores: ``C, N`` scores of the image's pixels.
        present: ``C`` boolean, the image-level labels.
        fg_portion: ``rho_fg``, minimum share of each present foreground class (paper: 20%).
        bg_portion: ``rho_bg``, minimum share of the background when present (paper: 40%).
        max_passes: Upper bound on the passes over the present classes.

    Returns:
        ``C`` biases: 0 or more for present classes, ``-inf`` for absent ones.

    """
    if scores.ndim != 2 or present.shape != scores.shape[:1]:
        raise ValueError(
            f"need scores C, N and present C, got {tuple(scores.shape)}, {tuple(present.shape)}"
        )
    if not (0.0 <= fg_portion <= 1.0 and 0.0 <= bg_portion <= 1.0):
        raise ValueError(f"portions must lie in [0, 1], got fg {fg_portion}, bg {bg_portion}")
    if max_passes < 1:
        raise ValueError(f"max_passes must be >= 1, got {max_passes}")
    num_classes, num_pixels = scores.shape
    bias = torch.zeros(num_classes, dtype=scores.dtype, device=scores.device)
    bias[~present] = -math.inf
    order = [int(c) for c in torch.nonzero(present).flatten()]
    if num_pixels == 0 or len(order) < 2:
        return bias
    target = {c: math.ceil((bg_portion if c == 0 else fg_portion) * num_pixels) for c in order}
    for _ in range(max_passes):
        for c in order:
            if target[c] == 0:
                continue
            biased = scores + bias[:, None]
            others = torch.cat([biased[:c], biased[c + 1 :]]).amax(dim=0)
            gap = others - biased[c]
            need = torch.kthvalue(gap, min(target[c], num_pixels)).values
            if need >= 0:
                bias[c] += need + TIE_MARGIN
        counts = torch.bincount((scores + bias[:, None]).argmax(dim=0), minlength=num_classes)
        if all(int(counts[c]) >= target[c] for c in order):
            break
    return bias


def em_adapt_estep(
    logits: Tensor,
    tags: Tensor,
    fg_portion: float = 0.2,
    bg_portion: float = 0.4,
    max_passes: int = 10,
    valid: Tensor | None = None,
) -> Tensor:
    """EM-Adapt E-step: ``y_m = argmax_l f_m(l) + b_l`` with the adaptive `em_adapt_biases`.

    Shares are counted over the image's valid pixels (padding excluded). As for EM-Fixed, logits
    and log-probabilities give the same result (the biases act on score differences). An image
    with no present label keeps the plain argmax.

    Args:
        logits: ``B, C, H, W`` scores of the current network (no gradient is taken).
        tags: ``B, C`` image-level labels, 1 = present, background at index 0.
        fg_portion: ``rho_fg``, minimum share of each present foreground class (paper: 20%).
        bg_portion: ``rho_bg``, minimum share of the background when present (paper: 40%).
        max_passes: Upper bound on the passes over the present classes.
        valid: Optional boolean ``B, H, W``; other pixels get 255 and do not count.

    Returns:
        ``B, H, W`` long labels.

    """
    _check(logits, tags, "tags")
    scores = logits.detach().float()
    if valid is None:
        valid = torch.ones_like(scores[:, 0], dtype=torch.bool)
    labels = torch.full_like(valid, IGNORE_INDEX, dtype=torch.long)
    for b in range(scores.shape[0]):
        pixels = scores[b][:, valid[b]]
        present = tags[b] > 0
        if present.any():
            bias = em_adapt_biases(pixels, present, fg_portion, bg_portion, max_passes)
            pixels = pixels + bias[:, None]
        labels[b][valid[b]] = pixels.argmax(dim=0)
    return labels
