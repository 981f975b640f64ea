"""The ancillary model of Ibrahim et al. 2020 (sec. 3.1, Fig. 2): DeepLabV3+ conditioned on boxes.

A parallel box encoder turns the per-class box mask into attention maps that gate the encoder
features feeding the decoder; the image encoder keeps its (ImageNet) initialisation.
"""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from wseg.nets.segmenter import build_segmenter

INPUT_MULTIPLE = 32
"""Images are zero-padded (box masks with all-zero vectors) up to a multiple of this."""


class BoxAttention(nn.Module):
    """One scale of the box encoder: ``sigmoid(conv3x3(resize(box_mask)))``.

    The paper resizes the ``C+1``-channel box mask to the feature map's size and applies a 3x3
    convolution with a sigmoid; the result multiplies the feature map element-wise. For the
    product to be element-wise the attention needs the feature map's shape, so the convolution
    has one output channel per feature channel (per-channel attention). Resizing is area
    averaging: each cell gets the fraction of its pixels inside boxes of each class, so boxes
    smaller than one cell still register.

    Args:
        num_classes: Channels of the box mask (classes, background included).
        channels: Channels of the feature map this attention gates.

    """

    def __init__(self, num_classes: int, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(num_classes, channels, kernel_size=3, padding=1)

    def forward(self, box_mask: Tensor, size: tuple[int, int]) -> Tensor:
        """Attention map of shape ``B, channels, *size``, values in ``(0, 1)``.

        Args:
            box_mask: ``B, C+1, H, W`` per-class box indicator (background = outside every box).
            size: ``(h, w)`` of the feature map.

        Returns:
            The attention map.

        """
        return self.conv(F.interpolate(box_mask, size=size, mode="area")).sigmoid()


class AncillarySegmenter(nn.Module):
    """DeepLabV3+ whose two decoder inputs are gated by box attention: ``p_anc(y | x, b)``.

    DeepLabV3+ decodes two encoder scales: the deepest features (into ASPP) and the stride-4
    features (the low-level skip). Each gets its own `BoxAttention`; the other encoder outputs
    are not read by the decoder and stay as they are.

    Args:
        num_classes: Classes, background included.
        encoder: smp encoder name, or any timm model as ``tu-<name>``.
        encoder_weights: Weights of the image encoder (see `wseg.nets.build_segmenter`).
        **kwargs: Passed to `smp.create_model` (e.g. ``decoder_channels``).

    """

    def __init__(
        self,
        num_classes: int,
        encoder: str = "tu-tf_efficientnet_lite0",
        encoder_weights: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.segmenter = build_segmenter(
            "deeplabv3plus", encoder, encoder_weights, num_classes, **kwargs
        )
        channels = self.segmenter.encoder.out_channels
        # smp's DeepLabV3PlusDecoder reads features[2] (stride 4) and features[-1] (ASPP input).
        self.attended = (2, len(channels) - 1)
        self.box_encoder = nn.ModuleList(
            BoxAttention(num_classes, channels[i]) for i in self.attended
        )

    @property
    def encoder(self) -> nn.Module:
        """The image encoder (optimised at the encoder learning rate)."""
        return self.segmenter.encoder

    def attend(self, features: list[Tensor], box_mask: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """Gate the decoder's encoder features with box attention.

        Args:
            features: The encoder's feature maps, shallowest first.
            box_mask: ``B, C+1, H, W`` box mask at the input size.

        Returns:
            The gated features (same list layout) and the attention maps, one per attended scale.

        """
        gated = list(features)
        attentions = []
        for index, attention in zip(self.attended, self.box_encoder):
            weights = attention(box_mask, tuple(features[index].shape[-2:]))
            gated[index] = features[index] * weights
            attentions.append(weights)
        return gated, attentions

    def forward(self, image: Tensor, box_mask: Tensor) -> Tensor:
        """Logits of the ancillary model at the input size (any size; padded internally).

        Args:
            image: ``B, 3, H, W`` normalised images.
            box_mask: ``B, C+1, H, W`` per-class box masks of the same images.

        Returns:
            ``B, C+1, H, W`` logits.

        Raises:
            ValueError: If the box mask does not match the image or the number of classes.

        """
        batch, _, height, width = image.shape
        if tuple(box_mask.shape) != (batch, self.num_classes, height, width):
            raise ValueError(
                f"box_mask {tuple(box_mask.shape)} does not fit images {tuple(image.shape)} "
                f"with {self.num_classes} classes"
            )
        pad_h, pad_w = (-height) % INPUT_MULTIPLE, (-width) % INPUT_MULTIPLE
        if pad_h or pad_w:
            image = F.pad(image, (0, pad_w, 0, pad_h))
            box_mask = F.pad(box_mask, (0, pad_w, 0, pad_h))
        features, _ = self.attend(self.segmenter.encoder(image), box_mask)
        logits = self.segmenter.segmentation_head(self.segmenter.decoder(features))
        return logits[..., :height, :width]
