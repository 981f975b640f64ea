"""Test-time dense-CRF post-processing of class probabilities (DeepLab-CRF; Papandreou et al. 2015).

The network's probabilities are the unaries of the fully connected CRF on the (un-normalised) image;
10 mean-field iterations, as in the papers. Padded pixels stay out of the CRF.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from wseg.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from wseg.labels.crf import DenseCRFParams, dense_crf

__all__ = ["crf_postprocess", "denormalize"]


def denormalize(
    images: Tensor,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> Tensor:
    """Undo the datamodule's normalisation: ``B, 3, H, W`` float images to uint8 RGB in 0-255.

    Args:
        images: Normalised images, ``(pixel / 255 - mean) / std`` per channel.
        mean: Per-channel mean of the normalisation (ImageNet's, as in `wseg.data.transforms`).
        std: Per-channel standard deviation of the normalisation.

    Returns:
        uint8 ``B, 3, H, W`` images.

    """
    mean_t = images.new_tensor(mean).view(1, 3, 1, 1)
    std_t = images.new_tensor(std).view(1, 3, 1, 1)
    return ((images * std_t + mean_t) * 255.0).round().clamp(0, 255).to(torch.uint8)


def crf_postprocess(
    images: Tensor,
    probs: Tensor,
    params: DenseCRFParams | None = None,
    valid: Tensor | None = None,
    backend: Literal["torch", "pydensecrf"] = "torch",
) -> Tensor:
    """Refine predicted class probabilities with the dense CRF on their images.

    Each image runs alone on its valid region (the bounding rectangle of ``valid``, which is the
    image without the batch's bottom/right padding), so padding never enters the CRF's kernels;
    pixels outside that region keep their input probabilities.

    Args:
        images: ``B, 3, H, W`` images: normalised floats (as in the batch; un-normalised with
            `denormalize`) or uint8 RGB.
        probs: ``B, C, H, W`` class probabilities (softmax of the network, after any TTA).
        params: CRF parameters (default `DenseCRFParams`: DeepLab-CRF's, 10 mean-field iterations).
        valid: Optional boolean ``B, H, W``: the real pixels of each image (e.g. where the batch's
            ``box_mask`` has a set channel); None uses every pixel.
        backend: `wseg.labels.crf.dense_crf` backend: ``torch`` (any device) or ``pydensecrf``.

    Returns:
        ``B, C, H, W`` refined probabilities on the device and in the dtype of ``probs``.

    """
    if probs.ndim != 4 or images.ndim != 4 or images.shape[0] != probs.shape[0]:
        raise ValueError(
            f"need images B, 3, H, W and probs B, C, H, W, got {tuple(images.shape)} and "
            f"{tuple(probs.shape)}"
        )
    if images.shape[-2:] != probs.shape[-2:]:
        raise ValueError(
            f"images {tuple(images.shape)} and probs {tuple(probs.shape)} differ in size"
        )
    rgb = images if images.dtype == torch.uint8 else denormalize(images)
    if valid is None:
        return dense_crf(rgb, probs, params, backend=backend)
    if valid.shape != (probs.shape[0], *probs.shape[-2:]):
        raise ValueError(f"valid must be B, H, W = {tuple(probs.shape[:1] + probs.shape[2:])}")
    out = probs.clone()
    for b in range(probs.shape[0]):
        rows = torch.nonzero(valid[b].any(dim=1)).flatten()
        cols = torch.nonzero(valid[b].any(dim=0)).flatten()
        if len(rows) == 0:
            continue
        r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
        out[b, :, r0:r1, c0:c1] = dense_crf(
            rgb[b : b + 1, :, r0:r1, c0:c1].contiguous(),
            probs[b : b + 1, :, r0:r1, c0:c1].contiguous(),
            params,
            backend=backend,
        )[0]
    return out
