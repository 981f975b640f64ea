"""Box2Seg's losses (Kulharia et al. 2020, Eq. 1-10), on outputs and labels at the output stride.

Conventions: ``log_probs`` is ``log y`` (``B, L+1, h, w``), ``attention`` is alpha (``B, L, h, w``,
class c at channel c - 1), ``box`` is the box tensor B and ``grabcut`` the GrabCut tensor M, both
one-hot ``B, L+1, h, w`` (`one_hot_labels`); pixels with an all-zero row (crop padding, 255) are
unlabelled and count nowhere.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from wseg.data.records import IGNORE_INDEX


def one_hot_labels(labels: Tensor, num_classes: int) -> Tensor:
    """One-hot ``B, C, h, w`` float tensor of a label map; 255 (ignore) gives an all-zero row.

    With ``box_label`` (Bbox-Rect: the smaller box wins overlaps) this is the paper's B; with a
    GrabCut pseudo label it is M.

    Args:
        labels: ``B, h, w`` class indices in ``0..num_classes - 1`` or 255.
        num_classes: C, background included.

    Returns:
        ``B, C, h, w`` float tensor.

    Raises:
        ValueError: If a label is neither a class index nor 255.

    """
    valid = labels != IGNORE_INDEX
    if valid.any() and (labels[valid].min() < 0 or labels[valid].max() >= num_classes):
        raise ValueError(
            f"labels must lie in 0..{num_classes - 1} or be {IGNORE_INDEX}, got "
            f"{labels[valid].min().item()}..{labels[valid].max().item()}"
        )
    onehot = F.one_hot(labels.masked_fill(~valid, 0), num_classes).permute(0, 3, 1, 2)
    return onehot.float() * valid.unsqueeze(1)


def dense_cross_entropy(log_probs: Tensor, target: Tensor) -> Tensor:
    """``-1/m sum_c sum_i T(i, c) log y(i, c)``, m = labelled pixels of the batch (Eq. 1-2).

    Args:
        log_probs: ``B, C, h, w`` log-probabilities.
        target: ``B, C, h, w`` one-hot (or soft) target; all-zero rows are unlabelled.

    Returns:
        Scalar loss (0 with gradient if no pixel is labelled).

    """
    labelled = (target.sum(1) > 0).sum().clamp_min(1)
    return -(target * log_probs).sum() / labelled


def box_loss(log_probs: Tensor, box: Tensor) -> Tensor:
    """L_box (Eq. 1): cross-entropy against the box tensor B (the "Box" baseline)."""
    return dense_cross_entropy(log_probs, box)


def grabcut_loss(log_probs: Tensor, grabcut: Tensor) -> Tensor:
    """L_GC (Eq. 2): cross-entropy against the GrabCut tensor M."""
    return dense_cross_entropy(log_probs, grabcut)


def foreground_loss(log_probs: Tensor, attention: Tensor, box: Tensor) -> Tensor:
    """L_fg (Eq. 3): attention-weighted cross-entropy inside the boxes, per class and box size.

    Eq. 3's normaliser ``sum_i B(i, c)`` depends on c, so it sits inside the class sum (the text:
    "normalized with the size of the bounding box, to give similar weighting to each class"): per
    image, ``sum_c -sum_i alpha(i, c) B(i, c) log y(i, c) / sum_i B(i, c)`` over the foreground
    classes with a box, then the mean over the batch's images.

    Args:
        log_probs: ``B, L+1, h, w`` log y.
        attention: ``B, L, h, w`` alpha.
        box: ``B, L+1, h, w`` box tensor B.

    Returns:
        Scalar loss.

    """
    inside = box[:, 1:]
    weighted = -(attention * inside * log_probs[:, 1:]).sum((2, 3))
    return (weighted / inside.sum((2, 3)).clamp_min(1)).sum(1).mean()


def background_loss(log_probs: Tensor, box: Tensor) -> Tensor:
    """L_bg (Eq. 4): mean ``-log y(i, 0)`` over the pixels outside every box, per image, averaged.

    Args:
        log_probs: ``B, L+1, h, w`` log y.
        box: ``B, L+1, h, w`` box tensor B (channel 0: outside every box).

    Returns:
        Scalar loss (an image without such pixels contributes 0).

    """
    outside = box[:, 0]
    total = -(outside * log_probs[:, 0]).sum((1, 2))
    return (total / outside.sum((1, 2)).clamp_min(1)).mean()


def attention_weighted_loss(log_probs: Tensor, attention: Tensor, box: Tensor) -> Tensor:
    """L_AW = L_fg + L_bg (Eq. 5)."""
    return foreground_loss(log_probs, attention, box) + background_loss(log_probs, box)


def attention_box_loss(attention: Tensor, box: Tensor) -> Tensor:
    """L_alpha^bbox (Eq. 6): squared distance of alpha to the foreground box channels.

    Eq. 6 is printed as a plain sum over pixels and classes; we divide it by the number of
    labelled pixels (m, as in Eq. 1-2) so that lambda_alpha = 1 weighs it like the other per-pixel
    terms. The printed sum does not keep alpha up either: on the synthetic data (96 px, 5 classes)
    it starts at 975 against 46 for everything else, its gradient is dominated by the classes
    without a box (target 0), and it drove the mean alpha in the boxes from 0.54 to 0.09 in one
    SGD step and to 0.006 in three (lr 1e-3, head 1x). On VOC (81 x 81 outputs, 20 classes) it
    would be about 30,000.

    Args:
        attention: ``B, L, h, w`` alpha.
        box: ``B, L+1, h, w`` box tensor B.

    Returns:
        Scalar loss.

    """
    labelled = box.sum(1) > 0
    squared = ((box[:, 1:] - attention) ** 2).sum(1) * labelled
    return squared.sum() / labelled.sum().clamp_min(1)


def fill_rates(grabcut: Tensor, box: Tensor) -> Tensor:
    """eta_c (Eq. 7): the share of class c's box pixels that GrabCut labels c, per image.

    M is counted inside B(., c) (``sum_i M(i, c) B(i, c)``): GrabCut labels lie inside their
    boxes, so this is Eq. 7 there, and it keeps eta_c <= 1 where a smaller box of another class
    wins B but GrabCut gave the pixel to the larger box.

    Args:
        grabcut: ``B, L+1, h, w`` GrabCut tensor M.
        box: ``B, L+1, h, w`` box tensor B.

    Returns:
        ``B, L`` fill rates (0 for classes without a box).

    """
    inside = box[:, 1:]
    return (grabcut[:, 1:] * inside).sum((2, 3)) / inside.sum((2, 3)).clamp_min(1)


def predicted_fill_rates(attention: Tensor, box: Tensor) -> Tensor:
    """eta'_c (Eq. 8): the mean attention over class c's box pixels, per image.

    Args:
        attention: ``B, L, h, w`` alpha.
        box: ``B, L+1, h, w`` box tensor B.

    Returns:
        ``B, L`` predicted fill rates (0 for classes without a box).

    """
    inside = box[:, 1:]
    return (attention * inside).sum((2, 3)) / inside.sum((2, 3)).clamp_min(1)


def fill_rate_loss(attention: Tensor, grabcut: Tensor, box: Tensor, gamma: float = 0.7) -> Tensor:
    """L_alpha^fr: the hinge ``max(0, gamma eta_c - eta'_c)``, summed over classes, image mean.

    The paper defines the hinge per image and class; we sum it over the classes with a box, as
    Eq. 3 and 6 sum over classes, and average over images like every term.

    With the paper's weights this regulariser cannot hold alpha while y is uncertain: per pixel of
    class c's box, ``lambda_aw L_fg`` pushes alpha down with ``lambda_aw (-log y(i, c)) / |box|``
    and the active hinge pushes it up with ``lambda_alpha / |box|``, so alpha falls wherever
    ``y(i, c) < exp(-lambda_alpha / lambda_aw)`` (0.905 for 10 and 1) and the hinge saturates at
    ``gamma eta_c``. Attention then survives only on pixels that y already labels confidently
    (the paper's Fig. 4); early in training, or on short schedules, alpha goes to 0 and L_AW
    reduces to ``lambda_aw L_bg``.

    Args:
        attention: ``B, L, h, w`` alpha.
        grabcut: ``B, L+1, h, w`` GrabCut tensor M (no gradient flows into it).
        box: ``B, L+1, h, w`` box tensor B.
        gamma: The margin factor (the paper's 0.7).

    Returns:
        Scalar loss.

    """
    present = box[:, 1:].sum((2, 3)) > 0
    target = gamma * fill_rates(grabcut, box).detach()
    hinge = (target - predicted_fill_rates(attention, box)).clamp_min(0)
    return (hinge * present).sum(1).mean()


def floored_attention(
    attention: Tensor,
    grabcut: Tensor,
    box: Tensor,
    gamma: float = 0.7,
    mode: Literal["mean", "pixel"] = "mean",
) -> Tensor:
    """Alpha floored at the fill-rate target ``t = gamma eta_c``, per image and class with a box.

    Not in the paper (issue 28); under Eq. 11's weights alpha itself falls to 0 in the boxes (see
    `fill_rate_loss`). ``t`` is Eq. 7's fill rate times gamma (no gradient).

    ``mean``: alpha rescaled so that its mean over the box is at least ``t``, ``min(1, alpha
    max(1, t / eta'_c))`` with ``eta'_c`` the mean alpha in the box (Eq. 8). Above the target
    nothing changes; below it L_fg can move attention between the pixels of a box (down where y
    is uncertain, up where it is confident: the gradient with respect to alpha_j is
    ``s (-log y_j - mean)``, with the alpha-weighted mean) but not lower its mean.

    ``pixel``: every weight at least ``t``, ``t + (1 - t) alpha``; alpha only adds to it.

    Args:
        attention: ``B, L, h, w`` alpha.
        grabcut: ``B, L+1, h, w`` GrabCut tensor M (no gradient flows into it).
        box: ``B, L+1, h, w`` box tensor B.
        gamma: The margin factor (the paper's 0.7).
        mode: ``mean`` or ``pixel``.

    Returns:
        ``B, L, h, w`` weights in ``[0, 1]``.

    """
    if mode not in ("mean", "pixel"):
        raise ValueError(f"mode must be 'mean' or 'pixel', got {mode!r}")
    target = (gamma * fill_rates(grabcut, box).detach())[..., None, None]
    if mode == "pixel":
        return target + (1.0 - target) * attention
    mean = predicted_fill_rates(attention, box)[..., None, None]
    scale = (target / mean.clamp_min(1e-12)).clamp_min(1.0)
    return (attention * scale).clamp_max(1.0)


def sample_pixels_per_class(
    labels: Tensor, pixels_per_class: int, generator: torch.Generator | None = None
) -> Tensor:
    """Indices of up to ``pixels_per_class`` random pixels of every class present (no 255).

    Args:
        labels: ``N`` flattened class indices of one image (255 = unlabelled).
        pixels_per_class: Pixels drawn per class (all of a class that has fewer).
        generator: Random generator (on ``labels``' device) for reproducible draws.

    Returns:
        ``K`` long indices into ``labels``, grouped by class.

    """
    scores = torch.rand(labels.shape, generator=generator, device=labels.device)
    picks = []
    for label in labels[labels != IGNORE_INDEX].unique():
        members = labels == label
        count = min(pixels_per_class, int(members.sum()))
        picks.append(scores.masked_fill(~members, -1.0).topk(count).indices)
    return torch.cat(picks) if picks else labels.new_zeros(0)


def affinity_loss(
    embeddings: Tensor,
    probs: Tensor,
    labels: Tensor,
    pixels_per_class: int = 256,
    generator: torch.Generator | None = None,
) -> Tensor:
    """L_A (Eq. 9-10): ``(A(i, j) - y_i . y_j) ** 2`` over pairs of sampled pixels of one image.

    A(i, j) is the cosine similarity of the embeddings (Eq. 9). The m x m matrices of all pixels
    are never built: per image, ``pixels_per_class`` pixels of every class in ``labels`` are
    drawn, and only the ``K x K`` pairs among them (K <= classes present x pixels_per_class)
    enter. Eq. 10 sums over the pairs; we take the mean per image (the sum grows with K), then
    the mean over images with a labelled pixel. Gradients flow into both the embeddings and y.

    Args:
        embeddings: ``B, d, h, w`` pixel embeddings beta.
        probs: ``B, L+1, h, w`` y (stage 2), or the one-hot GrabCut tensor M (pretraining).
        labels: ``B, h, w`` classes the pixels are drawn by (GrabCut labels; 255 never drawn).
        pixels_per_class: Pixels drawn per class present in an image.
        generator: Random generator for reproducible draws.

    Returns:
        Scalar loss (0 with gradient if no pixel is labelled).

    """
    losses = []
    for embedding, prob, label in zip(embeddings, probs, labels):
        index = sample_pixels_per_class(label.flatten(), pixels_per_class, generator)
        if index.numel() == 0:
            continue
        beta = F.normalize(embedding.flatten(1)[:, index], dim=0)
        y = prob.flatten(1)[:, index]
        losses.append(((beta.T @ beta - y.T @ y) ** 2).mean())
    if not losses:
        return embeddings.sum() * 0.0
    return torch.stack(losses).mean()
