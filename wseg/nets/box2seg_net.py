"""Box2Seg's three-branch network (Kulharia et al. 2020, sec. 3.1).

Segmentation y, attention alpha and pixel embeddings beta on one shared trunk; y alone is deployed.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wseg.nets.segmenter import Arch, build_segmenter


class Box2SegOutputs(NamedTuple):
    """The three outputs at the output stride (``h = ceil(H / stride)``, same for ``w``).

    Attributes:
        logits: ``B, L+1, h, w`` segmentation logits (y = their softmax), or None if not asked.
        attention: ``B, L, h, w`` attention alpha in (0, 1) (sigmoid), or None if not built.
        embeddings: ``B, d, h, w`` pixel embeddings beta (not normalised), or None if not built.

    """

    logits: Tensor | None
    attention: Tensor | None
    embeddings: Tensor | None


def branch_head(in_channels: int, out_channels: int, hidden_channels: int) -> nn.Sequential:
    """A two-layer decoder branch: 3x3 conv + BN + ReLU, then a 1x1 conv to ``out_channels``."""
    return nn.Sequential(
        nn.Conv2d(in_channels, hidden_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(hidden_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(hidden_channels, out_channels, 1),
    )


class Box2SegNet(nn.Module):
    """A shared encoder-decoder trunk with the y, alpha and beta branches of Box2Seg.

    The paper uses UPerNet on ResNet-101 with "three decoders, one each for the y, alpha and beta
    branches", each of "2 convolutional layers", and outputs at stride 4. We read the shared part
    as UPerNet's encoder and multi-scale fusion (smp's ``encoder`` + ``decoder``); the y branch is
    smp's segmentation head on it, so ``segmenter`` (returned by `export`) is exactly the baseline
    network, parameter for parameter. The alpha and beta branches are `branch_head`s on the same
    fused features. Decoders that already output at stride 4 (UPerNet, DeepLabV3+, FPN) give the
    outputs directly; otherwise they are resized bilinearly to ``ceil(H / output_stride)``.

    Args:
        num_classes: Classes, background included (L + 1 channels of y; alpha has L).
        arch: smp architecture of the trunk and y branch (the paper: ``upernet``).
        encoder: smp encoder name, or any timm model as ``tu-<name>``.
        encoder_weights: Encoder weights, as in `wseg.nets.build_segmenter`.
        embedding_dim: d, channels of the pixel embeddings.
        attention: Build the alpha branch.
        embeddings: Build the beta branch.
        branch_channels: Hidden channels of the alpha and beta branches.
        output_stride: Stride of the training outputs (the paper: 4).
        attention_logit_bound: Bound ``b`` of alpha's logits, softly as ``b tanh(z / b)``, so
            that alpha stays in ``[sigmoid(-b), sigmoid(b)]`` and never underflows to 0; None:
            unbounded (the paper).

    """

    def __init__(
        self,
        num_classes: int,
        arch: Arch = "upernet",
        encoder: str = "resnet101",
        encoder_weights: str | None = None,
        embedding_dim: int = 32,
        attention: bool = True,
        embeddings: bool = True,
        branch_channels: int = 128,
        output_stride: int = 4,
        attention_logit_bound: float | None = None,
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must count background and >= 1 class, got {num_classes}")
        if embedding_dim < 1 or branch_channels < 1 or output_stride < 1:
            raise ValueError(
                "embedding_dim, branch_channels and output_stride must be >= 1, got "
                f"{embedding_dim}, {branch_channels}, {output_stride}"
            )
        if attention_logit_bound is not None and attention_logit_bound <= 0:
            raise ValueError(f"attention_logit_bound must be > 0, got {attention_logit_bound}")
        self.output_stride = output_stride
        self.attention_logit_bound = attention_logit_bound
        self.segmenter = build_segmenter(arch, encoder, encoder_weights, num_classes)
        features = self.segmenter.segmentation_head[0].in_channels
        self.attention = (
            branch_head(features, num_classes - 1, branch_channels) if attention else None
        )
        self.embedding = (
            branch_head(features, embedding_dim, branch_channels) if embeddings else None
        )

    @property
    def encoder(self) -> nn.Module:
        """The shared encoder (the optimiser's ``net.encoder`` group)."""
        return self.segmenter.encoder

    def export(self) -> nn.Module:
        """The deployed network: the plain smp segmenter of the y branch, no alpha or beta."""
        return self.segmenter

    def forward(self, image: Tensor) -> Tensor:
        """``B, L+1, H, W`` logits of the deployed y branch (what test time uses)."""
        return self.segmenter(image)

    def branches(self, image: Tensor, segmentation: bool = True) -> Box2SegOutputs:
        """The training outputs at the output stride.

        Args:
            image: ``B, 3, H, W`` images, sides divisible by the encoder's stride (32).
            segmentation: Compute y (the embedding pretraining stage needs beta only).

        Returns:
            The three outputs; a branch not built (or y with ``segmentation=False``) is None.

        """
        decoded = self.segmenter.decoder(self.segmenter.encoder(image))
        size = (
            math.ceil(image.shape[-2] / self.output_stride),
            math.ceil(image.shape[-1] / self.output_stride),
        )
        if tuple(decoded.shape[-2:]) != size:
            decoded = F.interpolate(decoded, size=size, mode="bilinear", align_corners=False)
        segmentation_logits = self.segmenter.segmentation_head[0](decoded) if segmentation else None
        attention = None
        if self.attention is not None:
            logits = self.attention(decoded)
            bound = self.attention_logit_bound
            attention = (logits if bound is None else bound * torch.tanh(logits / bound)).sigmoid()
        embeddings = self.embedding(decoded) if self.embedding is not None else None
        return Box2SegOutputs(segmentation_logits, attention, embeddings)
