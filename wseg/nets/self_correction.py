"""The convolutional self-correction network of Ibrahim et al. 2020 (sec. 3.4, Fig. 3)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class ConvSelfCorrection(nn.Module):
    """Combine primary and ancillary logits into the logits of ``q_conv``.

    The two logit maps are concatenated along channels and passed through a 3x3 convolution with
    ``hidden_channels`` outputs and ReLU, then a 3x3 convolution to ``num_classes`` logits. The
    paper says both layers use ReLU; a ReLU on the last layer would keep every logit >= 0 and
    stop the network from ruling a class out, so, as the issue specifies, the output is linear
    (logits, softmax applied by the caller).

    Args:
        num_classes: Classes, background included (channels of each input and of the output).
        hidden_channels: Output channels of the first convolution (the paper's 128).

    """

    def __init__(self, num_classes: int, hidden_channels: int = 128) -> None:
        super().__init__()
        if num_classes < 1 or hidden_channels < 1:
            raise ValueError(
                f"num_classes and hidden_channels must be >= 1, got {num_classes}, "
                f"{hidden_channels}"
            )
        self.num_classes = num_classes
        self.layers = nn.Sequential(
            nn.Conv2d(2 * num_classes, hidden_channels, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden_channels, num_classes, 3, padding=1),
        )

    def forward(self, logits: Tensor, ancillary_logits: Tensor) -> Tensor:
        """Logits of ``q_conv``.

        Args:
            logits: ``B, C, H, W`` primary-model logits.
            ancillary_logits: ``B, C, H, W`` ancillary-model logits.

        Returns:
            ``B, C, H, W`` self-corrected logits.

        Raises:
            ValueError: If the inputs' shapes differ or do not have ``num_classes`` channels.

        """
        if logits.shape != ancillary_logits.shape or logits.shape[1] != self.num_classes:
            raise ValueError(
                f"expected two B, {self.num_classes}, H, W logit maps, got "
                f"{tuple(logits.shape)} and {tuple(ancillary_logits.shape)}"
            )
        return self.layers(torch.cat([logits, ancillary_logits], dim=1))
