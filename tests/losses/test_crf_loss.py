"""Dense-CRF loss: value and gradient vs an explicit N x N affinity matrix, gradcheck, behaviour."""

import pytest
import torch
import torch.nn.functional as F

from wseg.losses import DenseCRFLoss
from wseg.nets.mean_field import window_bilateral_filter


def brute_force_loss(images, probs, roi, sigma_rgb, sigma_xy, weight):
    """weight * mean_b 1/N sum_k (R S_k)^T W (R (1 - S_k)), W_pq = exp(...) for p != q, W_pp = 0."""
    batch, _, height, width = probs.shape
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    pos = torch.stack([xs, ys], -1).reshape(-1, 2).to(probs.dtype)
    total = 0.0
    for b in range(batch):
        rgb = images[b].reshape(3, -1).T.to(probs.dtype)
        affinity = torch.exp(
            -(torch.cdist(pos, pos) ** 2) / (2 * sigma_xy**2)
            - torch.cdist(rgb, rgb) ** 2 / (2 * sigma_rgb**2)
        )
        affinity = affinity * (1 - torch.eye(height * width, dtype=probs.dtype))
        s = probs[b].reshape(probs.shape[1], -1)
        r = roi[b].reshape(-1).to(probs.dtype)
        cut = sum((r * s[k]) @ affinity @ (r * (1 - s[k])) for k in range(s.shape[0]))
        total = total + cut / (height * width)
    return weight * total / batch


def tiny_inputs(dtype, size=8, classes=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (2, 3, size, size), generator=gen).to(dtype)
    images[:, :, :, : size // 2] = 40  # a flat half, so that some affinities are large
    logits = torch.randn(2, classes, size, size, generator=gen, dtype=dtype)
    roi = torch.rand(2, size, size, generator=gen) > 0.2
    return images, logits, roi


@pytest.mark.parametrize("use_roi", [False, True])
def test_value_and_gradient_match_explicit_affinity_matrix(use_roi):
    images, logits, roi = tiny_inputs(torch.float64)
    roi = roi if use_roi else torch.ones_like(roi)
    loss_fn = DenseCRFLoss(weight=3.0, sigma_rgb=30.0, sigma_xy=4.0, scale_factor=1.0, radius=7)
    assert loss_fn.dilation == 1  # with radius 7 the window covers the whole 8x8 image

    logits_a = logits.clone().requires_grad_(True)
    ours = loss_fn(images, logits_a.softmax(1), roi if use_roi else None)
    ours.backward()
    logits_b = logits.clone().requires_grad_(True)
    expected = brute_force_loss(images, logits_b.softmax(1), roi, 30.0, 4.0, weight=3.0)
    expected.backward()

    assert torch.allclose(ours, expected, rtol=1e-10, atol=1e-12)
    assert torch.allclose(logits_a.grad, logits_b.grad, rtol=1e-9, atol=1e-12)
    assert ours > 0


def test_gradient_is_tangs_formula_w_times_one_minus_two_s():
    # dL/dS_k = weight / N * W (1 - 2 S_k) for a symmetric W (no ROI, one image).
    images, logits, _ = tiny_inputs(torch.float64, size=6)
    images, probs = images[:1], logits[:1].softmax(1).requires_grad_(True)
    loss_fn = DenseCRFLoss(weight=1.0, sigma_rgb=20.0, sigma_xy=3.0, scale_factor=1.0, radius=5)
    loss_fn(images, probs).backward()
    filtered = window_bilateral_filter(images / 20.0, 1 - 2 * probs.detach(), 5, 1, 3.0)
    assert torch.allclose(probs.grad, filtered / 36, atol=1e-12)


def test_gradcheck_in_double():
    images, logits, roi = tiny_inputs(torch.float64, size=5, classes=2, seed=1)
    loss_fn = DenseCRFLoss(weight=1.0, sigma_rgb=25.0, sigma_xy=2.0, scale_factor=1.0, radius=2)
    logits = logits.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: loss_fn(images, x.softmax(1), roi), (logits,))


def test_downscaled_loss_equals_brute_force_on_downscaled_inputs():
    images, logits, roi = tiny_inputs(torch.float64, size=12, seed=2)
    probs = logits.softmax(1)
    loss_fn = DenseCRFLoss(weight=1.0, sigma_rgb=30.0, sigma_xy=6.0, scale_factor=0.5, radius=5)
    assert loss_fn.dilation == 1
    small_images = F.interpolate(images, scale_factor=0.5, mode="nearest")
    small_probs = F.interpolate(probs, scale_factor=0.5, mode="bilinear", align_corners=False)
    small_roi = F.interpolate(roi[:, None].double(), scale_factor=0.5, mode="nearest")[:, 0]
    expected = brute_force_loss(small_images, small_probs, small_roi, 30.0, 3.0, weight=1.0)
    assert torch.allclose(loss_fn(images, probs, roi), expected, rtol=1e-10)


def test_constant_labelling_costs_nothing_and_edges_are_cheaper_than_flat_cuts():
    images = torch.full((1, 3, 16, 16), 50.0)
    images[:, :, :, 8:] = 200.0  # a vertical colour edge at column 8
    loss_fn = DenseCRFLoss(weight=1.0, sigma_rgb=15.0, sigma_xy=5.0, scale_factor=1.0, radius=6)
    constant = torch.zeros(1, 2, 16, 16)
    constant[:, 0] = 1
    assert loss_fn(images, constant) == 0
    along_edge = torch.zeros(1, 2, 16, 16)
    along_edge[:, 0, :, :8] = along_edge[:, 1, :, 8:] = 1
    across_flat = along_edge.transpose(2, 3).clone()  # the same cut, horizontally
    assert loss_fn(images, along_edge) < 0.01 * loss_fn(images, across_flat)


def test_dilated_window_approximates_dense_filter_for_large_sigma():
    features = torch.zeros(1, 3, 41, 41, dtype=torch.float64)  # flat colour: spatial kernel only
    values = torch.ones(1, 1, 41, 41, dtype=torch.float64)
    dense = window_bilateral_filter(features, values, radius=20, dilation=1, spatial_sigma=8.0)
    dilated = window_bilateral_filter(features, values, radius=5, dilation=4, spatial_sigma=8.0)
    centre_dense, centre_dilated = dense[0, 0, 20, 20], dilated[0, 0, 20, 20]
    assert abs(centre_dilated / centre_dense - 1) < 0.05


def test_bad_inputs_raise_clear_errors():
    loss_fn = DenseCRFLoss(weight=1.0)
    images = torch.zeros(1, 3, 8, 8)
    with pytest.raises(ValueError, match="matching images"):
        loss_fn(images, torch.zeros(1, 2, 8, 7))
    with pytest.raises(ValueError, match="roi"):
        loss_fn(images, torch.zeros(1, 2, 8, 8), torch.ones(1, 4, 4))
    with pytest.raises(ValueError, match="scale_factor"):
        DenseCRFLoss(weight=1.0, scale_factor=2.0)
