"""Box2Tag's regularised loss for one object class (Ji & Veksler 2021, Eq. 1-3, 5, 6).

Each term takes ``x``, the network's object probability per pixel (``B, H, W``, the softmax's
object channel), and returns a scalar averaged over the images of the batch.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "binarisation_loss",
    "central_prior",
    "harden",
    "negative_loss",
    "object_sizes",
    "sparse_crf_loss",
    "tight_box_prior",
    "volumetric_loss",
]

EPS = 1e-6


def _as_mask(mask: Tensor | None, x: Tensor) -> Tensor:
    if mask is None:
        return torch.ones_like(x, dtype=torch.bool)
    if mask.shape != x.shape:
        raise ValueError(f"mask of shape {tuple(mask.shape)} does not match x {tuple(x.shape)}")
    return mask.bool()


def _check(x: Tensor) -> None:
    if x.dim() != 3:
        raise ValueError(f"x must be the B, H, W object probabilities, got {tuple(x.shape)}")


def sparse_crf_loss(
    x: Tensor, colours: Tensor, sigma: float = 0.15, valid: Tensor | None = None
) -> Tensor:
    """Sparse CRF, Eq. 1: ``1/|P| sum_{(p,q) in N} w_pq |x_p - x_q|``, averaged over the batch.

    ``N`` holds each pair of 4-connected neighbours once (horizontal and vertical), as in
    Veksler's single-class code; ``w_pq = exp(-||C_p - C_q||^2 / 2 sigma^2)``. Only pairs of two
    valid pixels count and ``|P|`` is the number of valid pixels (per image). The paper sums over
    pairs and divides by ``|P|``; Veksler's code averages the horizontal and vertical terms,
    which is about half of that; we follow the paper's Eq. 1.

    Args:
        x: ``B, H, W`` object probabilities.
        colours: ``B, K, H, W`` pixel colours ``C_p``. sigma = 0.15 was set on ImageNet-normalised
            RGB (Veksler's code feeds the network's normalised input), which is what the
            method passes.
        sigma: Edge scale ``sigma`` (paper: 0.15).
        valid: Optional bool ``B, H, W``: pixels that take part (default all).

    Returns:
        Scalar loss.

    """
    _check(x)
    if colours.dim() != 4 or colours.shape[0] != x.shape[0] or colours.shape[2:] != x.shape[1:]:
        raise ValueError(f"colours {tuple(colours.shape)} do not match x {tuple(x.shape)}")
    valid = _as_mask(valid, x)
    colours = colours.to(x.dtype)
    total = x.new_zeros(x.shape[0])
    for dim in (1, 2):
        length = x.shape[dim]
        first, second = (slice(0, length - 1), slice(1, length))
        index_p = [slice(None)] * 3
        index_q = [slice(None)] * 3
        index_p[dim], index_q[dim] = first, second
        colour_p = [slice(None)] * 4
        colour_q = [slice(None)] * 4
        colour_p[dim + 1], colour_q[dim + 1] = first, second
        distance = (colours[tuple(colour_p)] - colours[tuple(colour_q)]).pow(2).sum(dim=1)
        weight = torch.exp(-distance / (2 * sigma**2))
        both = valid[tuple(index_p)] & valid[tuple(index_q)]
        jump = (x[tuple(index_p)] - x[tuple(index_q)]).abs()
        total = total + (weight * jump * both).flatten(1).sum(dim=1)
    pixels = valid.flatten(1).sum(dim=1).clamp_min(1)
    return (total / pixels).mean()


def object_sizes(x: Tensor, region: Tensor | None = None) -> Tensor:
    """Normalised object sizes ``x_bar_i``: the mean of ``x`` over each image's region.

    Args:
        x: ``B, H, W`` object probabilities.
        region: Optional bool ``B, H, W`` pixels that count (default all).

    Returns:
        ``B`` sizes in ``[0, 1]``.

    """
    _check(x)
    region = _as_mask(region, x)
    return (x * region).flatten(1).sum(dim=1) / region.flatten(1).sum(dim=1).clamp_min(1)


def volumetric_loss(
    x: Tensor,
    s_min: float = 0.3,
    lambda_s: float = 5.0,
    mean_size: float = 0.5,
    region: Tensor | None = None,
) -> Tensor:
    """Volumetric loss, Eq. 2, over the batch ``x_1..x_m``.

    ``lambda_s sum_i [x_bar_i < s_min] (x_bar_i - s_min)^2 + (1/m sum_i x_bar_i - mean_size)^2``:
    a penalty on every object smaller than ``s_min`` and a pull of the batch's mean size to one
    half. As written in the paper the first term sums over the batch (Veksler's code averages
    it); we follow the paper. Box2Tag raises ``s_min`` from 0.15 to 0.3 for box crops. The sizes
    are taken over ``region``; the method passes the box's interior, since the paper's argument
    for ``s_min`` is the object's size relative to its box.

    Args:
        x: ``B, H, W`` object probabilities of the batch's positive crops.
        s_min: Smallest normalised object size (Box2Tag: 0.3).
        lambda_s: Weight of the small-size penalty (paper: 5).
        mean_size: Target of the batch's mean size (paper: 0.5).
        region: Optional bool ``B, H, W``: the pixels the sizes are taken over.

    Returns:
        Scalar loss.

    """
    sizes = object_sizes(x, region)
    small = (sizes - s_min).clamp_max(0.0)
    return lambda_s * small.pow(2).sum() + (sizes.mean() - mean_size).pow(2)


def _border_term(x: Tensor, border: Tensor) -> Tensor:
    """Per image: the mean of ``-log(1 - x)`` over its border pixels (0 if it has none)."""
    border = _as_mask(border, x)
    loss = -torch.log((1.0 - x).clamp_min(EPS))
    count = border.flatten(1).sum(dim=1)
    return (loss * border).flatten(1).sum(dim=1) / count.clamp_min(1)


def harden(x: Tensor, threshold: float = 0.5) -> Tensor:
    """Straight-through hardening: the value of ``x >= threshold``, the gradient of ``x``.

    Not in the paper. The labels are ``x >= 0.5``, so a term that should hold for the labels (the
    object sizes of Eq. 2) can be computed on ``harden(x)``: its value is the hard mask's, its
    gradient flows into the soft output as if the term had been computed on ``x``.

    Args:
        x: Object probabilities, any shape.
        threshold: Probability from which a pixel is object (the labelling's 0.5).

    Returns:
        A tensor of 0s and 1s shaped like ``x`` that back-propagates as the identity.

    """
    return x + ((x >= threshold).to(x.dtype) - x).detach()


def binarisation_loss(x: Tensor, region: Tensor | None = None) -> Tensor:
    """Binarisation term (not in the paper): the mean of ``x (1 - x)`` over each image's region.

    Zero for outputs of exactly 0 or 1, largest (0.25) for grey ones; added to Eq. 4 it keeps the
    soft sizes of Eq. 2 from being met by grey outputs that the 0.5 threshold then turns into
    small masks.

    Args:
        x: ``B, H, W`` object probabilities.
        region: Optional bool ``B, H, W`` pixels that count (default all).

    Returns:
        Scalar loss, averaged over the batch.

    """
    _check(x)
    region = _as_mask(region, x)
    per_image = (x * (1.0 - x) * region).flatten(1).sum(dim=1)
    return (per_image / region.flatten(1).sum(dim=1).clamp_min(1)).mean()


def tight_box_prior(x: Tensor, border: Tensor, border_width: int) -> Tensor:
    """Positional loss with the tight-box prior, Eq. 6, averaged over the batch.

    ``-1/|B| sum_{p in B} log(1 - x_p) + (max(1/r sum_rows max_row x, 1/c sum_cols max_col x) -
    1)^2``: cross-entropy to background on the border ``B`` (pixels taken from outside the box),
    and a pull towards an object that touches every row or every column of the box ``R``. ``r``
    and ``c`` are the numbers of rows and columns of ``R``, the crop without its frame of
    ``border_width`` pixels. (``-log(1 - x)`` is computed with ``1 - x`` clamped at 1e-6.)

    Args:
        x: ``B, H, W`` object probabilities of crops.
        border: Bool ``B, H, W``: the frame pixels that are background examples (void ones left
            out).
        border_width: Width of the frame; ``R`` is ``x[:, w:H-w, w:W-w]``.

    Returns:
        Scalar loss.

    """
    _check(x)
    height, width = x.shape[1:]
    if border_width < 0 or height - 2 * border_width < 1 or width - 2 * border_width < 1:
        raise ValueError(f"border_width={border_width} leaves no box in {height}x{width} crops")
    inner = x[:, border_width : height - border_width, border_width : width - border_width]
    rows = inner.amax(dim=2).mean(dim=1)
    cols = inner.amax(dim=1).mean(dim=1)
    tight = (torch.maximum(rows, cols) - 1.0).pow(2)
    return (_border_term(x, border) + tight).mean()


def central_prior(x: Tensor, border: Tensor, side: int = 3) -> Tensor:
    """Veksler's original positional loss, Eq. 3 (the "ours" ablation of Table 1).

    ``(1/|B| sum_{p in B} x_p)^2 + (1/|C| sum_{p in C} x_p - 1)^2`` per image, averaged over the
    batch; ``C`` is the ``side x side`` square at the centre of the crop (paper: c = 3).

    Args:
        x: ``B, H, W`` object probabilities of crops.
        border: Bool ``B, H, W``: the border pixels ``B`` (void ones left out).
        side: Side ``c`` of the central square.

    Returns:
        Scalar loss.

    """
    _check(x)
    height, width = x.shape[1:]
    if not 1 <= side <= min(height, width):
        raise ValueError(f"central side {side} does not fit {height}x{width} crops")
    border = _as_mask(border, x)
    border_mean = (x * border).flatten(1).sum(dim=1) / border.flatten(1).sum(dim=1).clamp_min(1)
    top, left = (height - side) // 2, (width - side) // 2
    centre = x[:, top : top + side, left : left + side].flatten(1).mean(dim=1)
    return (border_mean.pow(2) + (centre - 1.0).pow(2)).mean()


def negative_loss(x: Tensor, valid: Tensor | None = None) -> Tensor:
    """Negative loss, Eq. 5 without its weight: ``1/|P| sum_p x_p^2`` averaged over the batch.

    Applied to crops of other classes, which hold no object of the target class. (Veksler's code
    squares the mean instead of averaging squares; we follow the paper's Eq. 5.)

    Args:
        x: ``B, H, W`` object probabilities of negative crops.
        valid: Optional bool ``B, H, W`` pixels that count (those from the image).

    Returns:
        Scalar loss.

    """
    _check(x)
    valid = _as_mask(valid, x)
    per_image = (x.pow(2) * valid).flatten(1).sum(dim=1) / valid.flatten(1).sum(dim=1).clamp_min(1)
    return per_image.mean()
