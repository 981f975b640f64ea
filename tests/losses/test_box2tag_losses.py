"""Box2Tag's Eq. 1, 2, 3, 5 and 6 on tiny hand-made masks with hand-computed values."""

import math

import pytest
import torch

from wseg.losses.box2tag_losses import (
    binarisation_loss,
    central_prior,
    harden,
    negative_loss,
    object_sizes,
    sparse_crf_loss,
    tight_box_prior,
    volumetric_loss,
)


def frame(size: int, width: int) -> torch.Tensor:
    """Bool ``1, size, size``: the frame of ``width`` pixels around the crop."""
    border = torch.ones(1, size, size, dtype=torch.bool)
    border[:, width : size - width, width : size - width] = False
    return border


# --- Eq. 1: sparse CRF ---


def test_sparse_crf_weights_each_neighbour_pair_once() -> None:
    # 2 x 2 image; object only at the top-left pixel. The two pairs that cut it: horizontal
    # (same colour, w = 1) and vertical (colour distance 0.15 = sigma, w = exp(-1/2)).
    x = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])
    colours = torch.tensor([[[[0.0, 0.0], [0.15, 0.0]]]])
    expected = (1.0 + math.exp(-0.5)) / 4  # sum over cut pairs / |P| = 4 pixels
    assert sparse_crf_loss(x, colours, sigma=0.15).item() == pytest.approx(expected)


def test_sparse_crf_soft_values_and_colour_channels() -> None:
    # 1 x 2 image: |0.8 - 0.3| = 0.5; RGB distance^2 = 0.1^2 * 3 = 0.03, sigma 0.1.
    x = torch.tensor([[[0.8, 0.3]]])
    colours = torch.tensor([[[[0.0, 0.1]], [[0.0, 0.1]], [[0.0, 0.1]]]])
    expected = 0.5 * math.exp(-0.03 / (2 * 0.01)) / 2
    assert sparse_crf_loss(x, colours, sigma=0.1).item() == pytest.approx(expected)


def test_sparse_crf_leaves_invalid_pixels_out_of_pairs_and_count() -> None:
    x = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])
    colours = torch.zeros(1, 1, 2, 2)
    valid = torch.tensor([[[True, True], [False, True]]])
    # Only the horizontal cut pair remains; |P| = 3 valid pixels.
    assert sparse_crf_loss(x, colours, valid=valid).item() == pytest.approx(1 / 3)


def test_sparse_crf_is_zero_for_a_constant_segmentation_and_averages_the_batch() -> None:
    colours = torch.rand(2, 3, 4, 4)
    assert sparse_crf_loss(torch.full((2, 4, 4), 0.7), colours).item() == 0.0
    x = torch.tensor([[[1.0, 0.0]], [[0.0, 0.0]]])
    assert sparse_crf_loss(x, torch.zeros(2, 1, 1, 2)).item() == pytest.approx((1 / 2 + 0) / 2)


def test_sparse_crf_boundary_cost_falls_as_one_over_the_crop_side() -> None:
    # A centred square object filling half the side, on a flat colour: the cut pairs are its
    # perimeter 4 * (n / 2), |P| = n^2, so the loss is 2 / n; why lambda_crf scales with the crop.
    def loss(n: int) -> float:
        x = torch.zeros(1, n, n)
        x[:, n // 4 : 3 * n // 4, n // 4 : 3 * n // 4] = 1.0
        return sparse_crf_loss(x, torch.zeros(1, 3, n, n)).item()

    assert loss(64) == pytest.approx(2 / 64)
    assert loss(64) / loss(256) == pytest.approx(4.0)


# --- Eq. 2: volumetric ---


def test_volumetric_penalises_sizes_under_s_min_summed_over_the_batch() -> None:
    # sizes 0.1 and 0.9: 5 * (0.1 - 0.3)^2 for the small one, batch mean 0.5 is on target.
    x = torch.stack([torch.full((2, 2), 0.1), torch.full((2, 2), 0.9)])
    assert volumetric_loss(x, s_min=0.3, lambda_s=5.0).item() == pytest.approx(0.2)
    # two small objects: both penalised (a sum, as in Eq. 2), mean 0.1 is 0.4 off target.
    x = torch.full((2, 2, 2), 0.1)
    assert volumetric_loss(x).item() == pytest.approx(5 * 2 * 0.04 + 0.16)


def test_volumetric_leaves_sizes_at_or_above_s_min_to_the_mean_term() -> None:
    x = torch.stack([torch.full((2, 2), 0.3), torch.full((2, 2), 0.9)])
    assert volumetric_loss(x, s_min=0.3).item() == pytest.approx((0.6 - 0.5) ** 2)
    below = torch.stack([torch.full((2, 2), 0.29), torch.full((2, 2), 0.91)])
    assert volumetric_loss(below, s_min=0.3).item() > (0.6 - 0.5) ** 2


def test_object_sizes_over_a_region() -> None:
    x = torch.tensor([[[1.0, 0.0], [1.0, 1.0]]])
    region = torch.tensor([[[True, True], [False, False]]])
    assert object_sizes(x).tolist() == [0.75]
    assert object_sizes(x, region).tolist() == [0.5]
    # size 0.5 in the region: no small-size penalty, mean on target.
    assert volumetric_loss(x, region=region).item() == pytest.approx(0.0)


# --- Eq. 6: tight-box prior ---


@pytest.mark.parametrize("axis", ["column", "row"])
def test_tight_box_term_is_zero_when_every_row_or_every_column_holds_object(axis: str) -> None:
    # 5 x 5 crop, 1-pixel frame: the box is the inner 3 x 3. A single object line through it.
    x = torch.zeros(1, 5, 5)
    if axis == "column":
        x[0, 1:4, 2] = 1.0  # every row of the box has an object pixel
    else:
        x[0, 2, 1:4] = 1.0  # every column of the box has an object pixel
    assert tight_box_prior(x, frame(5, 1), border_width=1).item() == pytest.approx(0.0)


def test_tight_box_term_of_a_single_object_pixel() -> None:
    x = torch.zeros(1, 5, 5)
    x[0, 2, 2] = 1.0  # one row of three and one column of three hold object: (1/3 - 1)^2
    assert tight_box_prior(x, frame(5, 1), 1).item() == pytest.approx(4 / 9)
    x[0, 1, 1] = 1.0  # rows 2/3 and columns 2/3: (2/3 - 1)^2
    assert tight_box_prior(x, frame(5, 1), 1).item() == pytest.approx(1 / 9)


def test_tight_box_border_cross_entropy_skips_void_border_pixels() -> None:
    x = torch.zeros(1, 5, 5)
    x[0, 1:4, 2] = 1.0
    x[0, 0, 0] = 0.5  # one of the 16 frame pixels at 0.5: -log(0.5) / 16
    assert tight_box_prior(x, frame(5, 1), 1).item() == pytest.approx(math.log(2) / 16)
    border = frame(5, 1)
    border[0, 0, 0] = False  # void: left out of the mean over B (15 pixels, all 0)
    assert tight_box_prior(x, border, 1).item() == pytest.approx(0.0)


def test_tight_box_prior_averages_over_the_batch() -> None:
    x = torch.zeros(2, 5, 5)
    x[0, 1:4, 2] = 1.0
    x[1, 2, 2] = 1.0
    border = frame(5, 1).expand(2, 5, 5)
    assert tight_box_prior(x, border, 1).item() == pytest.approx((0 + 4 / 9) / 2)


# --- Eq. 3: central prior ---


def test_central_prior_hand_values() -> None:
    x = torch.zeros(1, 5, 5)
    x[0, 1:4, 1:4] = 1.0  # the central 3 x 3 is object, the frame background
    assert central_prior(x, frame(5, 1), side=3).item() == pytest.approx(0.0)
    half = torch.full((1, 5, 5), 0.5)
    assert central_prior(half, frame(5, 1), side=3).item() == pytest.approx(0.25 + 0.25)
    x = torch.zeros(1, 5, 5)
    x[0, 2, 2] = 1.0  # centre 1/9 object, border 0: (1/9 - 1)^2
    assert central_prior(x, frame(5, 1), side=3).item() == pytest.approx((8 / 9) ** 2)


# --- Eq. 5: negative loss ---


def test_negative_loss_is_the_mean_square() -> None:
    x = torch.tensor([[[1.0, 0.0], [0.5, 0.5]]])
    assert negative_loss(x).item() == pytest.approx((1 + 0 + 0.25 + 0.25) / 4)
    valid = torch.tensor([[[True, True], [False, False]]])
    assert negative_loss(x, valid).item() == pytest.approx(0.5)


def test_losses_reject_bad_shapes() -> None:
    with pytest.raises(ValueError, match="B, H, W"):
        negative_loss(torch.zeros(2, 2))
    with pytest.raises(ValueError, match="colours"):
        sparse_crf_loss(torch.zeros(1, 2, 2), torch.zeros(1, 3, 2, 3))
    with pytest.raises(ValueError, match="border_width"):
        tight_box_prior(torch.zeros(1, 4, 4), frame(4, 1), 2)
    with pytest.raises(ValueError, match="does not match"):
        negative_loss(torch.zeros(1, 2, 2), torch.ones(1, 2, 3, dtype=torch.bool))


def test_gradients_flow_through_every_term() -> None:
    x = torch.rand(2, 6, 6, requires_grad=True)
    border = frame(6, 1).expand(2, 6, 6)
    total = (
        sparse_crf_loss(x, torch.rand(2, 3, 6, 6))
        + volumetric_loss(x * 0.2)
        + tight_box_prior(x * 0.9, border, 1)
        + central_prior(x, border)
        + negative_loss(x)
    )
    total.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


# --- not in the paper (issue 28): hard sizes and the binarisation term ---


def test_harden_has_the_labels_value_and_the_identity_gradient() -> None:
    x = torch.tensor([[[0.2, 0.5, 0.7, 0.49]]], requires_grad=True)
    hard = harden(x)
    assert hard.tolist() == [[[0.0, 1.0, 1.0, 0.0]]]
    (hard * torch.tensor([1.0, 2.0, 3.0, 4.0])).sum().backward()
    assert x.grad.tolist() == [[[1.0, 2.0, 3.0, 4.0]]]


def test_hard_sizes_see_grey_outputs_as_the_labels_do() -> None:
    # A 2 x 2 box of grey 0.45 outputs: soft size 0.45 meets s_min = 0.3 and is near the mean
    # target 0.5; the labels (x >= 0.5) are empty, size 0: 5 (0 - 0.3)^2 + (0 - 0.5)^2 = 0.7.
    x = torch.full((1, 2, 2), 0.45)
    assert volumetric_loss(x).item() == pytest.approx(0.05**2)
    assert volumetric_loss(harden(x)).item() == pytest.approx(5 * 0.09 + 0.25)


def test_binarisation_loss_hand_values() -> None:
    # image 1: x = 0, 0.5, 1, 0.2 over all pixels: (0 + 0.25 + 0 + 0.16) / 4 = 0.1025;
    # image 2: only its first two pixels count: (0.09 + 0.21) / 2 = 0.15. Batch mean 0.12625.
    x = torch.tensor([[[0.0, 0.5], [1.0, 0.2]], [[0.1, 0.7], [0.5, 0.5]]])
    region = torch.tensor([[[True, True], [True, True]], [[True, True], [False, False]]])
    assert binarisation_loss(x, region).item() == pytest.approx((0.1025 + 0.15) / 2)
    assert binarisation_loss(torch.ones(1, 3, 3)).item() == 0.0
