"""Self-correcting networks (Ibrahim et al. 2020): box-conditioned labels of W, self-corrected.

`Ancillary` is stage 1 (Eq. 1); `SelfCorrection` trains the primary model with no (Eq. 2), linear
(Eq. 3-5) or convolutional (Eq. 6) self-correction; `wseg.pipeline` chains the stages.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wseg.data.batch import Batch
from wseg.data.records import IGNORE_INDEX
from wseg.losses.self_correction import (
    AlphaShape,
    alpha_schedule,
    linear_self_correction,
    soft_cross_entropy,
)
from wseg.methods.base import WeakSegMethod
from wseg.nets.ancillary import AncillarySegmenter
from wseg.nets.predict import predict_probs
from wseg.nets.pretrained import load_checkpoint_tensors
from wseg.nets.self_correction import ConvSelfCorrection

# Stage folders of the self-correction chain whose checkpoints the later stages read; a missing
# ``<out>/<setting>/<stage>/final.ckpt`` names its setting.
_CHAIN_STAGES = ("ancillary", "ancillary_half", "conv_pretrain")


def _pipeline_hint(path: str, mode: str) -> str:
    """How to make a missing stage checkpoint; names the setting when the path is the chain's."""
    parent = Path(path).parent
    setting = parent.parent.name if parent.name in _CHAIN_STAGES else "<setting>"
    return (
        f"train the earlier stages with `python -m wseg.pipeline selfcorr --setting {setting} "
        f"--mode {mode}` (it runs every missing stage; `python -m wseg.pipeline selfcorr --help` "
        "lists the settings)"
    )


def _no_boxes(image: Tensor, num_classes: int) -> Tensor:
    # Without boxes every class is allowed everywhere: the least informative box mask.
    return image.new_ones(image.shape[0], num_classes, *image.shape[-2:])


class Ancillary(WeakSegMethod):
    """The ancillary model ``p_anc(y | x, b)``: DeepLabV3+ with a box encoder, CE on F (Eq. 1).

    Only images of the fully labelled set F (``strong``) contribute; train it with the
    datamodule's ``strong_only`` (the pipeline does) so that W costs no compute. Validation, test
    and prediction feed the boxes too (the paper's "Ancillary Model" row is evaluated with the
    ground-truth boxes of the validation images). Called without boxes (``model(image)``), it
    uses an all-ones box mask (every class allowed everywhere).

    Args:
        **kwargs: `WeakSegMethod` arguments; ``arch`` must be ``deeplabv3plus``.

    """

    def configure_models(self) -> None:
        """Build ``self.net``, an `AncillarySegmenter`."""
        hp = self.hparams
        if hp.arch != "deeplabv3plus":
            raise ValueError(
                f"the ancillary model is DeepLabV3+ (arch='deeplabv3plus'), got {hp.arch!r}"
            )
        self.net = AncillarySegmenter(hp.num_classes, hp.encoder, hp.encoder_weights)

    def forward(self, image: Tensor, box_mask: Tensor | None = None) -> Tensor:
        """``B, C, H, W`` logits given images and their ``B, C, H, W`` box masks."""
        if box_mask is None:
            box_mask = _no_boxes(image, self.hparams.num_classes)
        return self.net(image, box_mask)

    def compute_loss(self, batch: Batch) -> Tensor:
        """Eq. 1: cross-entropy against ``mask`` on the images of F."""
        target = batch["mask"].masked_fill(~batch["strong"].view(-1, 1, 1), IGNORE_INDEX)
        return self.cross_entropy(self(batch["image"], batch["box_mask"]), target)

    def box_probs(self, image: Tensor, box_mask: Tensor) -> Tensor:
        """Probabilities, test-time flips and scales applied to image and boxes alike."""
        channels = image.shape[1]

        def net(packed: Tensor) -> Tensor:
            # predict_probs flips, rescales and pads its input; packing the box mask as extra
            # channels keeps it aligned with the image (padding: zeros = no box, as in training).
            return self.net(packed[:, :channels], packed[:, channels:])

        packed = torch.cat([image, box_mask.to(image.dtype)], dim=1)
        scales = self.hparams.tta_scales or [1.0]
        return predict_probs(net, packed, flip=self.hparams.tta_flip, scales=scales)

    def eval_probs(self, batch: Batch) -> Tensor:
        """Box-conditioned probabilities: validate, test and predict feed the boxes too."""
        return self.box_probs(batch["image"], batch["box_mask"])


class SelfCorrection(WeakSegMethod):
    """The primary model trained on F (masks) and W (boxes) with a frozen ancillary model.

    Per pixel, with ``l`` the primary and ``l_anc`` the ancillary logits, images of F give
    ``CE(l, mask)`` and images of W give ``soft CE(l, q)``, where ``q`` is

    - ``none`` (Eq. 2): ``softmax(l_anc)``;
    - ``linear`` (Eq. 3-5): ``softmax((l + alpha l_anc) / (alpha + 1))``, alpha decaying from
      ``alpha_start`` to ``alpha_end`` over the run;
    - ``conv`` (Eq. 6): ``softmax(h(l, l_anc))`` with the `ConvSelfCorrection` head ``h``, which
      is trained by a third term ``CE(h(l, l_anc), mask)`` on F.

    ``q`` is a fixed target: no gradient flows into it from the W term. The head's input ``l`` is
    detached too, so that the third term trains the head only (the paper: "the last term trains
    the convolutional self-correcting network"). The terms are summed over pixels as in the
    equations and divided by the batch's number of labelled pixels (F pixels that are not 255
    plus W pixels that are not padding).

    Convolutional self-correction has two stages after the ancillary model (sec. 3.4):
    ``stage="pretrain"`` trains primary and head on F only (first and last terms; W images in a
    batch are ignored), ``stage="main"`` fine-tunes both on F and W from ``init_checkpoint`` (the
    pretrain stage's checkpoint). The ancillary model is then trained on half of F, so that the
    head learns to combine the two models on the other half. The paper gives one schedule for "the
    models" (lr 0.007, 30,000 steps; sec. 4) and no separate one for the fine-tuning of stage 3, so
    each stage is a full run of its config's schedule (the poly decay restarts at ``lr``). The
    head trains at ``lr * correction_lr_mult``, not at the decoder's ``head_lr_mult``: see
    `parameter_groups`.

    Checkpoints: the ancillary weights are loaded from ``ancillary_checkpoint`` (and
    ``init_checkpoint``) when a fit starts, and are part of this method's own checkpoints, so
    resuming, testing and predicting need no other file. A missing file is an error naming the
    pipeline command that makes it; ``ancillary_checkpoint=None`` trains against a random
    ancillary model (a warning says so; only meaningful in tests).

    Args:
        mode: ``none``, ``linear`` or ``conv`` self-correction.
        stage: ``main`` (F and W) or, for ``conv``, ``pretrain`` (F only).
        ancillary_checkpoint: Checkpoint of a trained `Ancillary` with the same encoder.
        init_checkpoint: Checkpoint whose primary network (and head) start this run (conv main:
            the pretrain stage's); None starts from ``encoder_weights``.
        alpha_start: Linear mode: alpha at the first step (the paper's 30).
        alpha_end: Linear mode: alpha at the last step (the paper's 0.5).
        alpha_shape: Linear mode: decay ``exponential`` (the paper's), ``linear`` or ``constant``.
        head_channels: Conv mode: hidden channels of the head (the paper's 128).
        correction_lr_mult: Conv mode: learning-rate factor of the head, relative to ``lr`` (not
            ``head_lr_mult``, which scales the decoder). The paper trains every part at one
            rate (0.007; TensorFlow DeepLab's last-layer multiplier is 1), hence 1.0.
        **kwargs: `WeakSegMethod` arguments; the ancillary model uses the same ``encoder``.

    """

    def __init__(
        self,
        mode: Literal["none", "linear", "conv"] = "conv",
        stage: Literal["pretrain", "main"] = "main",
        ancillary_checkpoint: str | None = None,
        init_checkpoint: str | None = None,
        alpha_start: float = 30.0,
        alpha_end: float = 0.5,
        alpha_shape: AlphaShape = "exponential",
        head_channels: int = 128,
        correction_lr_mult: float = 1.0,
        **kwargs: Any,
    ) -> None:
        if mode not in ("none", "linear", "conv"):
            raise ValueError(f"mode must be none, linear or conv, got {mode!r}")
        if stage not in ("pretrain", "main"):
            raise ValueError(f"stage must be pretrain or main, got {stage!r}")
        if stage == "pretrain" and mode != "conv":
            raise ValueError(f"stage='pretrain' belongs to mode='conv', not mode={mode!r}")
        alpha_schedule(0.0, alpha_start, alpha_end, alpha_shape)  # validates the schedule
        if correction_lr_mult <= 0:
            raise ValueError(f"correction_lr_mult must be > 0, got {correction_lr_mult}")
        super().__init__(**kwargs)

    def configure_models(self) -> None:
        """Build the primary ``net``, the frozen ``ancillary`` and (conv) the ``head``."""
        super().configure_models()
        hp = self.hparams
        self.ancillary = AncillarySegmenter(hp.num_classes, hp.encoder, encoder_weights=None)
        self.ancillary.requires_grad_(False)
        self.ancillary.eval()
        self.head = (
            ConvSelfCorrection(hp.num_classes, hp.head_channels) if hp.mode == "conv" else None
        )

    def train(self, mode: bool = True) -> SelfCorrection:
        """Switch training mode; the frozen ancillary model always stays in eval mode."""
        super().train(mode)
        self.ancillary.eval()
        return self

    def setup(self, stage: str) -> None:
        """Before fitting, load the ancillary model and the initial weights from their files."""
        if stage != "fit":
            return
        hp = self.hparams
        if hp.ancillary_checkpoint is None:
            warnings.warn(
                "SelfCorrection has no ancillary_checkpoint: the ancillary model is random, "
                "which only makes sense in tests; train it with the Ancillary method "
                "(python -m wseg.pipeline selfcorr runs every stage)",
                UserWarning,
                stacklevel=2,
            )
        else:
            self._load_part(hp.ancillary_checkpoint, "net.", self.ancillary, "ancillary_checkpoint")
        if hp.init_checkpoint is not None:
            self._load_part(hp.init_checkpoint, "net.", self.net, "init_checkpoint")
            if self.head is not None:
                self._load_part(hp.init_checkpoint, "head.", self.head, "init_checkpoint")

    def _load_part(self, path: str, prefix: str, module: nn.Module, name: str) -> None:
        if not Path(path).is_file():
            hint = _pipeline_hint(path, self.hparams.mode)
            raise FileNotFoundError(f"{name}={path!r} does not exist; {hint}")
        tensors = load_checkpoint_tensors(path)
        part = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        if not part:
            raise ValueError(f"{name}={path!r} holds no '{prefix}*' weights")
        try:
            module.load_state_dict(part)
        except RuntimeError as error:
            raise ValueError(
                f"{name}={path!r} does not fit this model (same encoder and classes?): {error}"
            ) from error

    def parameter_groups(self) -> list[dict[str, Any]]:
        """The base's groups, plus (conv) the head at ``lr * correction_lr_mult``.

        The head reads raw logits, with no normalisation layer: measured on the synthetic demo
        (SGD, momentum 0.9), it trains at 0.01 but diverges at the decoder's 0.1 (its loss
        reached 3e8 in stage 2, which made q_conv useless in stage 3).
        """
        groups = super().parameter_groups()
        if self.head is None:
            return groups
        head = {id(p) for p in self.head.parameters()}
        for group in groups:
            group["params"] = [p for p in group["params"] if id(p) not in head]
        groups = [group for group in groups if group["params"]]
        lr = self.hparams.lr * self.hparams.correction_lr_mult
        return [*groups, {"params": list(self.head.parameters()), "lr": lr}]

    @property
    def alpha(self) -> float:
        """Linear self-correction's alpha at the current step."""
        hp = self.hparams
        total = self.trainer.estimated_stepping_batches if self._trainer is not None else 1
        progress = self.global_step / max(1, total)
        return alpha_schedule(progress, hp.alpha_start, hp.alpha_end, hp.alpha_shape)

    def compute_loss(self, batch: Batch) -> Tensor:
        """Eq. 2, 5 or 6 on a batch mixing images of F (``strong``) and W."""
        image, box_mask, strong = batch["image"], batch["box_mask"], batch["strong"]
        target = batch["mask"].masked_fill(~strong.view(-1, 1, 1), IGNORE_INDEX)
        logits = self(image)
        with torch.no_grad():
            ancillary_logits = self.ancillary(image, box_mask)
        # W pixels: every pixel but the crop padding (all-zero box vectors); never W's masks.
        weak = (~strong).view(-1, 1, 1) & (box_mask.sum(1) > 0)
        if self.hparams.stage == "pretrain":
            weak = torch.zeros_like(weak)
        strong_loss = F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX, reduction="sum")
        head_loss = logits.new_zeros(())
        if self.hparams.mode == "none":
            q = ancillary_logits.softmax(1)
        elif self.hparams.mode == "linear":
            alpha = self.alpha
            q = linear_self_correction(logits, ancillary_logits, alpha)
            if self._trainer is not None:
                self.log("train/alpha", alpha, batch_size=image.shape[0])
        else:
            assert self.head is not None
            head_logits = self.head(logits.detach(), ancillary_logits)
            q = head_logits.detach().softmax(1)
            head_loss = F.cross_entropy(
                head_logits, target, ignore_index=IGNORE_INDEX, reduction="sum"
            )
        weak_loss = (soft_cross_entropy(logits, q) * weak).sum()
        count = ((target != IGNORE_INDEX).sum() + weak.sum()).clamp_min(1)
        if self._trainer is not None:
            size = image.shape[0]
            self.log("train/loss_strong", strong_loss / count, batch_size=size)
            self.log("train/loss_weak", weak_loss / count, batch_size=size)
            if self.head is not None:
                self.log("train/loss_head", head_loss / count, batch_size=size)
        return (strong_loss + weak_loss + head_loss) / count
