"""Papandreou et al., "Weakly- and Semi-Supervised Learning of a DCNN for Semantic Segmentation".

ICCV 2015, section 3: EM-Fixed and EM-Adapt (image tags), Bbox-EM-Fixed and Bbox-Seg (boxes), and
the semi-supervised mix in which strong images keep their masks (section 3.4).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor

from wseg.data.batch import Batch
from wseg.data.records import IGNORE_INDEX
from wseg.losses.em_esteps import bbox_em_fixed_estep, em_adapt_estep, em_fixed_estep, padding_valid
from wseg.methods.base import WeakSegMethod


def with_strong_masks(target: Tensor, batch: Batch) -> Tensor:
    """Section 3.4: the images of the strong set F train on their masks, the rest on ``target``.

    Args:
        target: ``B, H, W`` labels of the weak images (E-step or pseudo labels).
        batch: The batch, with ``strong`` (bool ``B``) and ``mask``.

    Returns:
        ``B, H, W`` labels.

    """
    return torch.where(batch["strong"].view(-1, 1, 1), batch["mask"], target)


class EMMethod(WeakSegMethod):
    """Online hard EM (section 3.2): per batch, an E-step on the current network, then an M-step.

    The E-step labels ``y^`` come from the same forward pass as the M-step, i.e. from the
    parameters ``theta'`` before this SGD step, with the network in training mode (as the authors'
    Caffe layer, which sits in the training net); no gradient flows through them. The M-step is the
    cross-entropy of Eq. (1) with ``y^`` as the ground truth. Subclasses implement `e_step`.

    Args:
        semi: Semi-supervised (section 3.4): images flagged ``strong`` train on their masks and
            only the others go through the E-step. Use it with a strong/weak split and
            ``strong_per_batch`` in the datamodule; weak-only runs (False) never read ``mask``.
        **kwargs: `WeakSegMethod` arguments.

    """

    def __init__(self, semi: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)

    def e_step(self, logits: Tensor, batch: Batch) -> Tensor:
        """Return the latent ``B, H, W`` labels ``y^`` (255 = ignore) of the batch's images."""
        raise NotImplementedError(f"{type(self).__name__} must implement e_step")

    def compute_loss(self, batch: Batch) -> Tensor:
        """E-step on the detached scores, then cross-entropy on ``y^`` (masks on strong images)."""
        logits = self(batch["image"])
        with torch.no_grad():
            target = self.e_step(logits.detach(), batch)
            labelled = target != IGNORE_INDEX
            foreground = (labelled & (target > 0)).sum() / labelled.sum().clamp_min(1)
        self.log("train/estep_foreground", foreground, batch_size=target.shape[0])
        if self.hparams.semi:
            target = with_strong_masks(target, batch)
        return self.cross_entropy(logits, target)


class EMFixed(EMMethod):
    """EM-Fixed (Algorithm 1) from image tags, or Bbox-EM-Fixed from boxes (section 3.3).

    E-step: ``y^_m = argmax_l f_m(l) + b_l`` with ``b_l = b_fg`` for present foreground classes and
    ``b_bg`` for the background (Eq. 10). With boxes, the foreground bias of class ``l`` applies
    only inside the boxes of ``l`` and pixels outside every box are background. The paper's
    semi-supervised runs use this E-step for the weak images (``semi=True``, Tables 1 and 3).

    Warm-up (boxes only, ``warmup_steps``; our addition, off by default): the weak images train on
    their Bbox-Rect labels for the first ``warmup_steps`` optimiser steps, then on the E-step. The
    paper starts from ImageNet weights with a freshly initialised classifier (sec. 4.1), whose
    scores are near 0, so its first E-steps are the argmax of the biases alone: Bbox-Rect inside
    the boxes. It says nothing about a warm-up; it trains at lr 0.001 (0.01 for the classifier).
    The fixed biases only act while score differences stay below ``b_fg - b_bg = 2``. At the
    larger rates of our configs (0.01, 10x on decoder and head; the paper's 0.001 collapses too,
    measured) the first SGD steps, dominated by
    background pixels, raise the background score inside every box by more than 2 before the
    network tells objects apart (synthetic data, ``benchmarks/em_family.py``: inside the boxes the
    background leads by 0.5 at step 0, 3.0 after one step, 24 after ten); every box pixel then
    flips to background, which hard EM never undoes (all-background labels are a fixed point;
    val mIoU 11.8, the all-background score). With 50 warm-up steps of 150 the E-step keeps
    85-95% of the box pixels as foreground, agrees with the true masks inside the boxes on about
    78% of the pixels where Bbox-Rect labels do on 68%, and val mIoU is 73.2 (Bbox-Rect 67.9).
    ``warmup_steps`` applies to the weak images of a semi run too.

    Args:
        weak_label: ``tags`` (EM-Fixed) or ``boxes`` (Bbox-EM-Fixed).
        fg_bias: ``b_fg``, bias of present foreground classes (paper: 5).
        bg_bias: ``b_bg``, bias of the background (paper: 3; results depend on ``b_fg - b_bg``:
            EM-Fixed (Semi) from tags on the synthetic set, 150 steps, scores 14.9 / 56.7 / 34.0
            at a difference of 0 / 1 / 2, strong-only 54.2).
        suppress_absent: Never assign an absent class (the paper keeps them, unbiased).
        warmup_steps: Boxes only: optimiser steps at the start of training in which the weak images
            train on their Bbox-Rect labels instead of the E-step (0: the paper's schedule).
        semi: Strong images train on their masks (see `EMMethod`).
        **kwargs: `WeakSegMethod` arguments.

    """

    def __init__(
        self,
        weak_label: Literal["tags", "boxes"] = "tags",
        fg_bias: float = 5.0,
        bg_bias: float = 3.0,
        suppress_absent: bool = False,
        warmup_steps: int = 0,
        semi: bool = False,
        **kwargs: Any,
    ) -> None:
        if weak_label not in ("tags", "boxes"):
            raise ValueError(f"weak_label must be 'tags' or 'boxes', got {weak_label!r}")
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
        if warmup_steps and weak_label != "boxes":
            raise ValueError(
                "warmup_steps trains on Bbox-Rect labels, which need weak_label='boxes'; "
                f"got weak_label={weak_label!r}"
            )
        super().__init__(semi=semi, **kwargs)

    def e_step(self, logits: Tensor, batch: Batch) -> Tensor:
        """Fixed-bias E-step on tags or, for boxes, inside the boxes (see the class docstring).

        During the first ``warmup_steps`` optimiser steps (boxes only) it returns ``box_label``.
        """
        hp = self.hparams
        if hp.weak_label == "boxes":
            if self.global_step < hp.warmup_steps:
                return batch["box_label"]
            return bbox_em_fixed_estep(
                logits, batch["box_mask"], hp.fg_bias, hp.bg_bias, hp.suppress_absent
            )
        return em_fixed_estep(
            logits,
            batch["tags"],
            hp.fg_bias,
            hp.bg_bias,
            hp.suppress_absent,
            valid=padding_valid(batch["box_mask"]),
        )


class EMAdapt(EMMethod):
    """EM-Adapt (section 3.2): adaptive biases give each present class a minimum share of the image.

    E-step: ``y^_m = argmax_l f_m(l) + b_l`` where, per image, absent classes are excluded and the
    biases of the present ones are raised until at least ``rho_bg`` of the image is background and
    ``rho_fg`` goes to each present foreground class (`wseg.losses.em_esteps.em_adapt_biases`
    documents the algorithm and the order in which classes are adapted). The paper uses it for
    weak-only training from tags (38.2 val mIoU vs 20.8 for EM-Fixed) and EM-Fixed in the semi
    setting.

    Args:
        fg_portion: ``rho_fg``, minimum share of each present foreground class (paper: 0.2).
        bg_portion: ``rho_bg``, minimum share of the background (paper: 0.4).
        max_passes: Passes over the present classes per image (stops early once all hold).
        semi: Strong images train on their masks (see `EMMethod`).
        **kwargs: `WeakSegMethod` arguments.

    """

    def __init__(
        self,
        fg_portion: float = 0.2,
        bg_portion: float = 0.4,
        max_passes: int = 10,
        semi: bool = False,
        **kwargs: Any,
    ) -> None:
        if not (0.0 <= fg_portion <= 1.0 and 0.0 <= bg_portion <= 1.0):
            raise ValueError(f"portions must lie in [0, 1], got {fg_portion}, {bg_portion}")
        super().__init__(semi=semi, **kwargs)

    def e_step(self, logits: Tensor, batch: Batch) -> Tensor:
        """Adaptive-bias E-step over each image's real (unpadded) pixels."""
        hp = self.hparams
        return em_adapt_estep(
            logits,
            batch["tags"],
            hp.fg_portion,
            hp.bg_portion,
            hp.max_passes,
            valid=padding_valid(batch["box_mask"]),
        )


class BboxSeg(WeakSegMethod):
    """Bbox-Seg (section 3.3): cross-entropy on labels estimated from the boxes before training.

    The labels are a pseudo-label store made by the dense CRF from boxes (box centres covering
    ``alpha`` of each box clamped to its class, outside every box clamped to background):
    ``python -m wseg.labels generate --generator crf``, with ``alpha`` and the CRF parameters
    cross-validated by ``python -m wseg.labels.tune``; the datamodule reads it into ``pseudo``
    (``pseudo_labels: <store>``). ``weak_label: box_label`` trains on the Bbox-Rect labels instead,
    which with ``semi`` is the paper's Bbox-Rect (Semi) row.

    Args:
        weak_label: ``pseudo`` (the store: Bbox-Seg) or ``box_label`` (Bbox-Rect).
        semi: Strong images train on their masks (section 3.4).
        **kwargs: `WeakSegMethod` arguments.

    """

    def __init__(
        self,
        weak_label: Literal["pseudo", "box_label"] = "pseudo",
        semi: bool = False,
        **kwargs: Any,
    ) -> None:
        if weak_label not in ("pseudo", "box_label"):
            raise ValueError(f"weak_label must be 'pseudo' or 'box_label', got {weak_label!r}")
        super().__init__(**kwargs)

    def compute_loss(self, batch: Batch) -> Tensor:
        """Cross-entropy against the pre-computed labels (masks on strong images if ``semi``)."""
        key = self.hparams.weak_label
        if key not in batch:
            raise KeyError(
                f"{type(self).__name__} trains on the batch's {key!r} labels, which this batch "
                "lacks: set the datamodule's pseudo_labels to a store made by "
                "`python -m wseg.labels generate --generator crf`"
            )
        target = batch[key]
        if target.is_floating_point():
            raise ValueError(
                f"{type(self).__name__} needs hard labels, but the store gives soft ones "
                f"{tuple(target.shape)}; generate a hard store (the crf generator)"
            )
        if self.hparams.semi:
            target = with_strong_masks(target, batch)
        return self.cross_entropy(self(batch["image"]), target)
