"""Dense-CRF loss (Tang et al., ECCV 2018): relaxed Potts energy ``sum_k S_k^T W (1 - S_k)``.

"On Regularized Losses for Weakly-supervised CNN Segmentation"; W is a bilateral affinity.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from wseg.nets.mean_field import window_bilateral_filter


class DenseCRFLoss(nn.Module):
    """Relaxed dense-CRF (Potts) regulariser on soft segmentations.

    ``L(S) = weight / B * sum_b 1/N_b * sum_k (R S_k)^T W (R (1 - S_k))`` where ``S_k`` is the
    softmax output for class k, ``R`` the region of interest (pixels outside it take part in no
    pair), ``N_b`` the number of pixels of image b at the loss resolution and
    ``W_pq = exp(-|p - q|^2 / 2 sigma_xy^2 - |I_p - I_q|^2 / 2 sigma_rgb^2)`` for ``p != q``
    (``W_pp = 0``: a pixel does not pair with itself). This is Tang et al.'s dense-CRF loss in its
    cut form: their code minimises ``-sum_k S_k^T W S_k``, which differs by the constant
    ``1^T W 1`` (the classes sum to 1), and does not divide by the pixel count; the per-pixel
    normalisation here makes the weight independent of the crop size (their weight 2e-9 on a
    ``h x w`` loss grid corresponds to about ``2e-9 * h * w`` here, up to their lattice's scale).

    As in their code, the loss is computed at ``scale_factor`` times the input resolution (images
    and ROI by nearest, probabilities by bilinear interpolation) with ``sigma_xy`` scaled alike.

    Approximation: Tang et al. filter with a permutohedral lattice over the whole image. Here W is
    evaluated exactly but only inside a window of ``(2 radius + 1)^2`` samples spaced ``dilation``
    pixels apart, each sample weighted by ``dilation^2`` (a Riemann sum of the full Gaussian, see
    ``window_bilateral_filter``). The default dilation makes the window span +-2 scaled spatial
    sigmas; with ``dilation=1`` and a radius covering the image the loss is exact.

    Args:
        weight: loss weight.
        sigma_rgb: colour standard deviation in 0-255 intensity units (Tang et al.: 15).
        sigma_xy: spatial standard deviation in input pixels (Tang et al.: 80).
        scale_factor: resolution at which the loss is computed (Tang et al.: 0.5).
        radius: window radius in samples.
        dilation: spacing of window samples in pixels at the loss resolution; None picks
            ``max(1, round(2 * sigma_xy * scale_factor / radius))``.

    """

    def __init__(
        self,
        weight: float,
        sigma_rgb: float = 15.0,
        sigma_xy: float = 80.0,
        scale_factor: float = 0.5,
        radius: int = 5,
        dilation: int | None = None,
    ) -> None:
        super().__init__()
        if sigma_rgb <= 0 or sigma_xy <= 0:
            raise ValueError(f"sigmas must be > 0, got sigma_rgb={sigma_rgb}, sigma_xy={sigma_xy}")
        if not 0 < scale_factor <= 1:
            raise ValueError(f"scale_factor must be in (0, 1], got {scale_factor}")
        if radius < 1:
            raise ValueError(f"radius must be >= 1, got {radius}")
        if dilation is not None and dilation < 1:
            raise ValueError(f"dilation must be >= 1, got {dilation}")
        self.weight = weight
        self.sigma_rgb = sigma_rgb
        self.sigma_xy = sigma_xy
        self.scale_factor = scale_factor
        self.radius = radius
        spatial = sigma_xy * scale_factor
        self.dilation = max(1, round(2 * spatial / radius)) if dilation is None else dilation

    def forward(self, images: Tensor, probs: Tensor, roi: Tensor | None = None) -> Tensor:
        """Compute the loss.

        Args:
            images: RGB images in 0-255 intensity units (not normalised), (B, 3, H, W), any dtype.
            probs: softmax probabilities, (B, L, H, W).
            roi: optional region of interest (B, H, W), 1 (or True) where the loss applies.

        Returns:
            The scalar loss.

        """
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must have shape (B, 3, H, W), got {tuple(images.shape)}")
        if (
            probs.ndim != 4
            or probs.shape[0] != images.shape[0]
            or probs.shape[2:] != images.shape[2:]
        ):
            raise ValueError(
                f"probs must have shape (B, L, H, W) matching images {tuple(images.shape)}, "
                f"got {tuple(probs.shape)}"
            )
        if roi is not None and roi.shape != (images.shape[0], *images.shape[2:]):
            raise ValueError(
                f"roi must have shape (B, H, W) = {(images.shape[0], *images.shape[2:])}, "
                f"got {tuple(roi.shape)}"
            )
        images = images.to(probs.dtype)
        roi = probs.new_ones(probs.shape[0], 1, *probs.shape[2:]) if roi is None else roi[:, None]
        roi = roi.to(probs.dtype)
        if self.scale_factor != 1:
            images = F.interpolate(images, scale_factor=self.scale_factor, mode="nearest")
            roi = F.interpolate(roi, scale_factor=self.scale_factor, mode="nearest")
            probs = F.interpolate(
                probs, scale_factor=self.scale_factor, mode="bilinear", align_corners=False
            )
        inside = probs * roi
        affinity_inside = window_bilateral_filter(
            images / self.sigma_rgb,
            inside,
            self.radius,
            self.dilation,
            self.sigma_xy * self.scale_factor,
        )
        # sum_k (R S_k)^T W (R (1 - S_k)), using W symmetric: (R - R S_k)^T W (R S_k).
        cut = ((roi - inside) * affinity_inside).flatten(1).sum(dim=1)
        pixels = probs.shape[-2] * probs.shape[-1]
        return self.weight * (cut / pixels).mean()
