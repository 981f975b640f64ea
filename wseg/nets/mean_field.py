"""Batched PyTorch filtering for dense CRFs.

The permutohedral lattice (Adams et al. 2010) that pydensecrf uses, vectorised over pixels and
images; mean-field inference on it; an exact windowed bilateral filter for the CRF loss.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch
from torch import Tensor

_INT64_BITS = 62


def _hash_lattice(rows: Tensor, shifts: Tensor) -> tuple[Tensor, Tensor, int]:
    """Give each distinct key an id and find its neighbours ``key + shift`` and ``key - shift``.

    The integer keys are packed into one int64 each (mixed radix over each column's range, padded
    by the largest shift so that neighbours cannot wrap), which makes ``torch.unique`` and the
    neighbour look-up (``searchsorted``) one-dimensional. Keys too wide to pack are compared as
    rows instead (slower, same result).

    Args:
        rows: integer keys, (R, K).
        shifts: integer neighbour offsets, (S, K).

    Returns:
        The id of each row (R,), the ids of the neighbours (S, 2, M) with M (the number of distinct
        keys) for a missing neighbour, and M.

    """
    pad = shifts.abs().amax(dim=0)
    lo = rows.amin(dim=0) - pad
    span = rows.amax(dim=0) + pad - lo + 1
    if float(torch.log2(span.double()).sum()) < _INT64_BITS:
        strides = torch.cumprod(torch.cat([span.new_ones(1), span[:-1]]), dim=0)
        keys, ids = torch.unique(((rows - lo) * strides).sum(dim=1), return_inverse=True)
        m = keys.numel()
        step = (shifts * strides).sum(dim=1)
        wanted = keys + torch.stack([step, -step], dim=1).unsqueeze(-1)  # (S, 2, M)
        found = torch.searchsorted(keys, wanted.reshape(-1)).clamp(max=m - 1).view(wanted.shape)
        return ids, torch.where(keys[found] == wanted, found, m), m
    keys, ids = torch.unique(rows, dim=0, return_inverse=True)
    m = keys.shape[0]
    wanted = keys.unsqueeze(0).unsqueeze(0) + torch.stack([shifts, -shifts], dim=1).unsqueeze(2)
    _, all_ids = torch.unique(
        torch.cat([keys, wanted.reshape(-1, keys.shape[1])]), dim=0, return_inverse=True
    )
    to_key = torch.full((int(all_ids.max()) + 1,), m, dtype=torch.long, device=rows.device)
    to_key[all_ids[:m]] = torch.arange(m, device=rows.device)
    return ids, to_key[all_ids[m:]].view(shifts.shape[0], 2, m), m


class PermutohedralLattice:
    """Gaussian filtering ``out_i = sum_j exp(-|f_i - f_j|^2 / 2) v_j`` on a permutohedral lattice.

    A vectorised re-implementation of the lattice in Krähenbühl's densecrf code (the one pydensecrf
    wraps): the same elevation, rounding, rank tie-breaking, barycentric weights, blur order
    (axes 0..d, kernel [1/2, 1, 1/2]) and slice scaling ``1 / (1 + 2^-d)``, so that on the same
    features it computes the same (approximate) Gaussian filter up to float summation order. The
    filter includes each point itself and is not normalised. Several images are filtered at once:
    the image index is part of every lattice key, so no lattice vertex is shared between images.

    Args:
        features: float tensor of shape (B, N, d), already divided by the kernel's standard
            deviations (one feature vector per pixel, N pixels per image).

    """

    def __init__(self, features: Tensor) -> None:
        if features.ndim != 3:
            raise ValueError(f"features must have shape (B, N, d), got {tuple(features.shape)}")
        num_images, num_points, d = features.shape
        device, dtype = features.device, features.dtype
        self.d = d
        self.num_images, self.num_points = num_images, num_points
        flat = features.reshape(-1, d)
        p = flat.shape[0]

        # Elevate onto the hyperplane sum(x) = 0 of R^{d+1} (E matrix, p.5 of Adams et al.), scaled
        # so that the lattice blur approximates a unit-variance Gaussian.
        inv_std_dev = math.sqrt(2.0 / 3.0) * (d + 1)
        i = torch.arange(d, device=device, dtype=dtype)
        scale = inv_std_dev / torch.sqrt((i + 1) * (i + 2))
        cf = flat * scale
        suffix = torch.flip(torch.cumsum(torch.flip(cf, [1]), dim=1), [1])
        suffix = torch.cat([suffix, cf.new_zeros(p, 1)], dim=1)
        elevated = torch.empty(p, d + 1, device=device, dtype=dtype)
        elevated[:, 0] = suffix[:, 0]
        elevated[:, 1:] = suffix[:, 1:] - torch.arange(1, d + 1, device=device, dtype=dtype) * cf

        # Nearest remainder-0 lattice point: round each coordinate to a multiple of d+1 (ties down).
        down_factor = 1.0 / (d + 1)
        v = elevated * down_factor
        up = torch.ceil(v) * (d + 1)
        down = torch.floor(v) * (d + 1)
        rem0 = torch.where(up - elevated < elevated - down, up, down)
        coord_sum = torch.div(rem0.long().sum(dim=1), d + 1, rounding_mode="floor")

        # Rank of each coordinate's residual, decreasing (ties: the earlier one ranks higher).
        res = elevated - rem0
        lt = res.unsqueeze(2) < res.unsqueeze(1)  # lt[p, i, j] = res_i < res_j
        upper = torch.ones(d + 1, d + 1, dtype=torch.bool, device=device).triu(1)
        rank = (lt & upper).sum(dim=2) + (~lt.transpose(1, 2) & upper.T).sum(dim=2)
        rank = rank + coord_sum.unsqueeze(1)
        low, high = rank < 0, rank > d
        rank = torch.where(low, rank + d + 1, torch.where(high, rank - d - 1, rank))
        rem0 = torch.where(low, rem0 + d + 1, torch.where(high, rem0 - d - 1, rem0))

        # Barycentric coordinates of the point in its simplex (p.10 of Adams et al.).
        bary = elevated.new_zeros(p, d + 2)
        delta = (elevated - rem0) * down_factor
        bary.scatter_add_(1, d - rank, delta)
        bary.scatter_add_(1, d - rank + 1, -delta)
        bary[:, 0] += 1.0 + bary[:, d + 1]
        weights = bary[:, : d + 1]

        # The d+1 simplex vertices: key = rem0 + canonical[remainder, rank] on the first d axes.
        r = torch.arange(d + 1, device=device)
        canonical = torch.where(
            r.view(1, -1) <= d - r.view(-1, 1), r.view(-1, 1), r.view(-1, 1) - d - 1
        )
        keys = rem0[:, :d].long().unsqueeze(1) + canonical[:, rank[:, :d]].permute(1, 0, 2)
        image_index = torch.arange(num_images, device=device).repeat_interleave(num_points)
        rows = torch.cat(
            [keys.reshape(-1, d), image_index.repeat_interleave(d + 1).unsqueeze(1)], dim=1
        )
        # Blur neighbours along each lattice axis j: key -/+ 1 everywhere, +/- d on axis j itself.
        shifts = torch.full((d + 1, d + 1), -1, device=device, dtype=torch.long)
        shifts[torch.arange(d), torch.arange(d)] = d
        shifts[:, d] = 0  # the image index
        ids, self.neighbours, m = _hash_lattice(rows, shifts)  # neighbours: (d+1, 2, M)
        self.num_vertices = m
        offsets = ids.view(p, d + 1)

        # Splat (vertices x points) and slice (points x vertices) as CSR matrices: sparse-dense
        # products are several times faster than index_add / gather loops on CPU and CUDA.
        alpha = 1.0 / (1.0 + 2.0 ** (-d))
        flat_ids = offsets.reshape(-1)
        order = torch.argsort(flat_ids, stable=True)
        counts = torch.bincount(flat_ids, minlength=m)
        splat_rows = torch.cat([counts.new_zeros(1), torch.cumsum(counts, dim=0)])
        slice_rows = torch.arange(0, p * (d + 1) + 1, d + 1, device=device)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            self.splat = torch.sparse_csr_tensor(
                splat_rows,
                order // (d + 1),
                weights.reshape(-1)[order],
                (m, p),
                check_invariants=False,
            )
            self.slice = torch.sparse_csr_tensor(
                slice_rows, flat_ids, alpha * weights.reshape(-1), (p, m), check_invariants=False
            )

    def __call__(self, values: Tensor) -> Tensor:
        """Filter values that live on the lattice's points.

        Args:
            values: tensor of shape (B, N, C) in the features' order.

        Returns:
            The filtered values, shape (B, N, C).

        """
        channels = values.shape[-1]
        lattice = self.splat @ values.reshape(-1, channels)
        zero = lattice.new_zeros(1, channels)
        lattice = torch.cat([lattice, zero])
        for j in range(self.d + 1):
            blurred = lattice[:-1] + 0.5 * (
                lattice[self.neighbours[j, 0]] + lattice[self.neighbours[j, 1]]
            )
            lattice = torch.cat([blurred, zero])
        return (self.slice @ lattice[:-1]).view(values.shape)


class NormalizedKernel:
    """A lattice filter with pydensecrf's NORMALIZE_SYMMETRIC: ``D^-1/2 K D^-1/2`` with ``D = K 1``.

    Args:
        features: float tensor of shape (B, N, d), divided by the kernel's standard deviations.

    """

    def __init__(self, features: Tensor) -> None:
        self.lattice = PermutohedralLattice(features)
        ones = features.new_ones(features.shape[0], features.shape[1], 1)
        self.norm = 1.0 / torch.sqrt(self.lattice(ones) + 1e-20)

    def __call__(self, values: Tensor) -> Tensor:
        """Filter values of shape (B, N, C) and return the same shape."""
        return self.norm * self.lattice(self.norm * values)


def pixel_grid(
    batch: int, height: int, width: int, device: torch.device, dtype: torch.dtype
) -> Tensor:
    """Pixel coordinates (x = column, y = row) in row-major order, shape (B, H*W, 2)."""
    ys, xs = torch.meshgrid(
        torch.arange(height, device=device, dtype=dtype),
        torch.arange(width, device=device, dtype=dtype),
        indexing="ij",
    )
    return torch.stack([xs, ys], dim=-1).reshape(1, -1, 2).expand(batch, -1, -1)


def mean_field(
    unary: Tensor, kernels: Sequence[tuple[NormalizedKernel, float]], iterations: int
) -> Tensor:
    """Mean-field inference of a dense CRF with Potts compatibilities, as in densecrf's inference.

    ``Q = softmax(-U)``, then ``iterations`` times ``Q = softmax(-U + sum_k w_k K_k Q)``; with the
    Potts model the message ``-w_k K_k Q`` differs from the paper's ``w_k K_k (1 - Q)`` by a
    constant per pixel, which the softmax removes.

    Args:
        unary: energies (negative log probabilities), shape (B, N, L).
        kernels: pairs of a normalised kernel and its Potts weight.
        iterations: number of mean-field updates.

    Returns:
        The marginals Q, shape (B, N, L).

    """
    q = torch.softmax(-unary, dim=-1)
    for _ in range(iterations):
        energy = -unary
        for kernel, compat in kernels:
            energy = energy + compat * kernel(q)
        q = torch.softmax(energy, dim=-1)
    return q


def window_bilateral_filter(
    features: Tensor, values: Tensor, radius: int, dilation: int = 1, spatial_sigma: float = 1.0
) -> Tensor:
    """Exact Gaussian bilateral filter restricted to a (2r+1)^2 window, excluding the centre pixel.

    ``out_p = dilation^2 * sum_{o != 0} exp(-|o|^2 / (2 s^2) - |f_p - f_{p+o}|^2 / 2) v_{p+o}`` over
    offsets ``o = dilation * (dy, dx)``, ``|dy|, |dx| <= radius``; neighbours outside the image
    contribute nothing. With ``dilation > 1`` only every dilation-th neighbour is visited and
    weighted by ``dilation^2``, a Riemann sum of the dense filter that is accurate when the spatial
    sigma is much larger than the dilation. Differentiable in ``values``.

    Args:
        features: range features divided by their sigma (e.g. RGB / sigma_rgb), (B, F, H, W).
        values: values to filter, (B, C, H, W).
        radius: window radius in samples.
        dilation: step between visited neighbours in pixels.
        spatial_sigma: spatial standard deviation ``s`` in pixels.

    Returns:
        The filtered values, (B, C, H, W).

    """
    height, width = values.shape[-2:]
    out = torch.zeros_like(values)
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            oy, ox = dy * dilation, dx * dilation
            if (oy == 0 and ox == 0) or abs(oy) >= height or abs(ox) >= width:
                continue
            # Target rows/cols p whose neighbour p + o lies inside the image.
            ty = slice(max(0, -oy), height - max(0, oy))
            tx = slice(max(0, -ox), width - max(0, ox))
            sy = slice(max(0, oy), height - max(0, -oy))
            sx = slice(max(0, ox), width - max(0, -ox))
            diff = features[..., ty, tx] - features[..., sy, sx]
            log_w = -0.5 * (diff * diff).sum(dim=1, keepdim=True)
            log_w = log_w - (oy * oy + ox * ox) / (2.0 * spatial_sigma**2)
            out[..., ty, tx] += torch.exp(log_w) * values[..., sy, sx]
    return out * float(dilation * dilation)
