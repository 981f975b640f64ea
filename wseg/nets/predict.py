"""Test-time inference: any input size, horizontal flip and multi-scale averaging of softmax.

As in DeepLab's evaluation, the class probabilities of every (scale, flip) view are brought back
to the input size and averaged; the prediction is their arg-max.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch.nn.functional as F
from torch import Tensor


def forward_any_size(net: Callable[[Tensor], Tensor], image: Tensor, multiple: int = 32) -> Tensor:
    """Run a segmenter on an image of any size and return logits at that size.

    smp networks need sides divisible by their output stride; the image is zero-padded (the mean
    colour after normalisation) at the bottom and right up to a multiple of ``multiple``, and the
    logits are cropped back. Logits that come out smaller than the input are upsampled bilinearly.

    Args:
        net: Maps ``B, 3, H, W`` images to ``B, C, h, w`` logits.
        image: ``B, 3, H, W`` normalised images.
        multiple: Side lengths the network accepts are multiples of this.

    Returns:
        ``B, C, H, W`` logits.

    """
    height, width = image.shape[-2:]
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    padded = F.pad(image, (0, pad_w, 0, pad_h)) if pad_h or pad_w else image
    logits = net(padded)
    if logits.shape[-2:] != padded.shape[-2:]:
        logits = F.interpolate(logits, size=padded.shape[-2:], mode="bilinear", align_corners=False)
    return logits[..., :height, :width]


def predict_probs(
    net: Callable[[Tensor], Tensor],
    image: Tensor,
    flip: bool = False,
    scales: Sequence[float] = (1.0,),
    multiple: int = 32,
) -> Tensor:
    """Class probabilities averaged over scales and (optionally) horizontal flips.

    Args:
        net: Maps ``B, 3, H, W`` images to ``B, C, h, w`` logits.
        image: ``B, 3, H, W`` normalised images.
        flip: Also run every scale on the mirrored image and mirror its output back.
        scales: Resize factors of the input; 1.0 is the input itself.
        multiple: Side lengths the network accepts are multiples of this.

    Returns:
        ``B, C, H, W`` probabilities (each pixel sums to 1).

    Raises:
        ValueError: If ``scales`` is empty or holds a non-positive factor.

    """
    if not scales or min(scales) <= 0:
        raise ValueError(f"scales must be a non-empty list of positive factors, got {scales}")
    height, width = image.shape[-2:]
    total: Tensor | None = None
    views = 0
    for scale in scales:
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
        scaled = image
        if size != (height, width):
            scaled = F.interpolate(image, size=size, mode="bilinear", align_corners=False)
        for mirrored in (False, True) if flip else (False,):
            view = scaled.flip(-1) if mirrored else scaled
            logits = forward_any_size(net, view, multiple)
            if mirrored:
                logits = logits.flip(-1)
            if logits.shape[-2:] != (height, width):
                logits = F.interpolate(
                    logits, size=(height, width), mode="bilinear", align_corners=False
                )
            probs = logits.float().softmax(1)
            total = probs if total is None else total + probs
            views += 1
    assert total is not None
    return total / views


def resize_probs(probs: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinearly resize ``B, C, h, w`` probabilities (or logits) to ``size`` (no-op if equal).

    Args:
        probs: ``B, C, h, w`` tensor.
        size: Target ``(H, W)``.

    Returns:
        ``B, C, H, W`` tensor.

    """
    if tuple(probs.shape[-2:]) == tuple(size):
        return probs
    return F.interpolate(probs, size=size, mode="bilinear", align_corners=False)
