"""Box2Seg's Eq. 1-10 on hand-made tensors with hand-computed values."""

import math

import pytest
import torch

from wseg.losses.box2seg_losses import (
    affinity_loss,
    attention_box_loss,
    attention_weighted_loss,
    background_loss,
    box_loss,
    dense_cross_entropy,
    fill_rate_loss,
    fill_rates,
    floored_attention,
    foreground_loss,
    grabcut_loss,
    one_hot_labels,
    predicted_fill_rates,
    sample_pixels_per_class,
)

# One 1 x 4 image, 3 classes: pixel 0 outside every box, pixels 1-3 in a box of class 1, whose
# GrabCut label is class 1 on pixels 1-2 and background on pixel 3.
BOX_LABEL = torch.tensor([[[0, 1, 1, 1]]])
GRABCUT_LABEL = torch.tensor([[[0, 1, 1, 0]]])


def log_probs_of(rows: list[list[float]]) -> torch.Tensor:
    """``1, C, 1, W`` log-probabilities from per-pixel probability rows."""
    return torch.tensor(rows).T.reshape(1, len(rows[0]), 1, len(rows)).log()


PROBS = [[0.5, 0.25, 0.25], [0.25, 0.5, 0.25], [0.1, 0.8, 0.1], [0.5, 0.4, 0.1]]


def test_one_hot_labels_zero_rows_for_ignore() -> None:
    labels = torch.tensor([[[0, 2, 255]]])
    onehot = one_hot_labels(labels, 3)
    assert onehot[0, :, 0].T.tolist() == [[1, 0, 0], [0, 0, 1], [0, 0, 0]]
    with pytest.raises(ValueError, match="0..2"):
        one_hot_labels(torch.tensor([[[3]]]), 3)


def test_box_and_grabcut_losses_eq_1_2() -> None:
    log_probs = log_probs_of(PROBS)
    box, grabcut = one_hot_labels(BOX_LABEL, 3), one_hot_labels(GRABCUT_LABEL, 3)
    expected_box = -(math.log(0.5) + math.log(0.5) + math.log(0.8) + math.log(0.4)) / 4
    expected_gc = -(math.log(0.5) + math.log(0.5) + math.log(0.8) + math.log(0.5)) / 4
    assert box_loss(log_probs, box).item() == pytest.approx(expected_box)
    assert grabcut_loss(log_probs, grabcut).item() == pytest.approx(expected_gc)
    # GrabCut background on pixel 1 instead (y(1, 0) = 0.25).
    grabcut[0, :, 0, 1] = torch.tensor([1.0, 0.0, 0.0])
    expected = -(math.log(0.5) + math.log(0.25) + math.log(0.8) + math.log(0.5)) / 4
    assert grabcut_loss(log_probs, grabcut).item() == pytest.approx(expected)


def test_cross_entropy_averages_over_labelled_pixels_only() -> None:
    log_probs = log_probs_of(PROBS)
    target = one_hot_labels(torch.tensor([[[0, 1, 255, 255]]]), 3)
    expected = -(math.log(0.5) + math.log(0.5)) / 2
    assert dense_cross_entropy(log_probs, target).item() == pytest.approx(expected)


def test_foreground_loss_eq_3_weights_by_attention_per_box_size() -> None:
    log_probs = log_probs_of(PROBS)
    box = one_hot_labels(BOX_LABEL, 3)
    attention = torch.tensor([0.9, 1.0, 0.5, 0.25]).reshape(1, 1, 1, 4)
    attention = torch.cat([attention, torch.full_like(attention, 0.3)], dim=1)  # class 2: no box
    expected = -(1.0 * math.log(0.5) + 0.5 * math.log(0.8) + 0.25 * math.log(0.4)) / 3
    assert foreground_loss(log_probs, attention, box).item() == pytest.approx(expected)


def test_foreground_loss_ignores_pixels_outside_boxes() -> None:
    box = one_hot_labels(BOX_LABEL, 3)
    attention = torch.rand(1, 2, 1, 4)
    log_probs = log_probs_of(PROBS).requires_grad_(True)
    reference = foreground_loss(log_probs, attention, box)
    changed = log_probs.detach().clone()
    changed[0, :, 0, 0] = torch.tensor([0.01, 0.01, 0.98]).log()  # pixel 0 lies outside the box
    assert foreground_loss(changed, attention, box).item() == pytest.approx(reference.item())
    reference.backward()
    assert log_probs.grad[0, :, 0, 0].abs().sum() == 0
    assert log_probs.grad[0, 0].abs().sum() == 0  # only foreground classes


def test_foreground_loss_sums_classes_and_averages_images() -> None:
    # Two classes with boxes of 1 and 2 pixels in image 0; image 1 has no box (contributes 0).
    log_probs = torch.full((2, 3, 1, 3), math.log(0.5))
    box = one_hot_labels(torch.tensor([[[1, 2, 2]], [[0, 0, 0]]]), 3)
    attention = torch.ones(2, 2, 1, 3)
    expected = (math.log(2) + 2 * math.log(2) / 2) / 2
    assert foreground_loss(log_probs, attention, box).item() == pytest.approx(expected)


def test_background_loss_eq_4_and_attention_weighted_sum() -> None:
    log_probs = log_probs_of(PROBS)
    box = one_hot_labels(torch.tensor([[[0, 1, 1, 0]]]), 3)
    expected_bg = -(math.log(0.5) + math.log(0.5)) / 2
    assert background_loss(log_probs, box).item() == pytest.approx(expected_bg)
    attention = torch.ones(1, 2, 1, 4)
    expected_fg = -(math.log(0.5) + math.log(0.8)) / 2
    total = attention_weighted_loss(log_probs, attention, box).item()
    assert total == pytest.approx(expected_fg + expected_bg)


def test_attention_box_loss_eq_6() -> None:
    box = one_hot_labels(torch.tensor([[[0, 1, 2, 255]]]), 3)
    attention = torch.tensor([[0.5, 1.0, 0.0, 0.9], [0.0, 0.5, 0.5, 0.9]]).reshape(1, 2, 1, 4)
    # pixel 0: 0.25 + 0; pixel 1: 0 + 0.25; pixel 2: 0 + 0.25; pixel 3 is padding.
    assert attention_box_loss(attention, box).item() == pytest.approx(0.75 / 3)


def test_fill_rates_eq_7_8() -> None:
    box = one_hot_labels(BOX_LABEL, 3)
    grabcut = one_hot_labels(GRABCUT_LABEL, 3)
    attention = torch.tensor([[0.0, 0.9, 0.6, 0.3], [0.5] * 4]).reshape(1, 2, 1, 4)
    assert fill_rates(grabcut, box)[0].tolist() == pytest.approx([2 / 3, 0.0])
    assert predicted_fill_rates(attention, box)[0].tolist() == pytest.approx([0.6, 0.0])


def test_fill_rate_hinge() -> None:
    box = one_hot_labels(BOX_LABEL, 3)
    grabcut = one_hot_labels(GRABCUT_LABEL, 3)  # eta_1 = 2/3, so gamma * eta_1 = 0.4667
    high = torch.tensor([[0.0, 0.9, 0.6, 0.3], [0.0] * 4]).reshape(1, 2, 1, 4)  # eta'_1 = 0.6
    assert fill_rate_loss(high, grabcut, box, gamma=0.7).item() == 0.0
    exact = torch.full((1, 2, 1, 4), 0.7 * 2 / 3)  # eta'_1 = gamma eta_1 exactly
    assert fill_rate_loss(exact, grabcut, box, gamma=0.7).item() == pytest.approx(0.0, abs=1e-7)
    low = torch.tensor([[0.0, 0.3, 0.3, 0.0], [0.0] * 4]).reshape(1, 2, 1, 4)  # eta'_1 = 0.2
    assert fill_rate_loss(low, grabcut, box, gamma=0.7).item() == pytest.approx(0.7 * 2 / 3 - 0.2)


def test_fill_rate_counts_grabcut_inside_the_box_and_averages_images() -> None:
    # Image 0: class 1 box (2 px) half filled by GrabCut, GrabCut class 1 also outside the box;
    # image 1: class 2 box (1 px) fully filled. Attention 0 everywhere.
    box = one_hot_labels(torch.tensor([[[1, 1, 0]], [[0, 0, 2]]]), 3)
    grabcut = one_hot_labels(torch.tensor([[[1, 0, 1]], [[0, 0, 2]]]), 3)
    assert fill_rates(grabcut, box).flatten().tolist() == pytest.approx([0.5, 0.0, 0.0, 1.0])
    loss = fill_rate_loss(torch.zeros(2, 2, 1, 3), grabcut, box, gamma=0.7)
    assert loss.item() == pytest.approx((0.35 + 0.7) / 2)


def test_fill_rate_sums_the_classes_of_an_image() -> None:
    # Image 0: class 1 box (2 px, GrabCut fills 1) and class 2 box (1 px, filled); image 1: no box.
    box = one_hot_labels(torch.tensor([[[1, 1, 2]], [[0, 0, 0]]]), 3)
    grabcut = one_hot_labels(torch.tensor([[[1, 0, 2]], [[0, 0, 0]]]), 3)
    loss = fill_rate_loss(torch.zeros(2, 2, 1, 3), grabcut, box, gamma=0.7)
    assert loss.item() == pytest.approx((0.7 * 0.5 + 0.7 * 1.0 + 0.0) / 2)


@pytest.mark.parametrize("y", [0.5, 0.95])
def test_alpha_gradient_balance_of_weighted_foreground_loss_and_regularisers(y: float) -> None:
    """Why alpha collapses early: 10 L_fg pushes it down harder than either regulariser lifts it."""
    # One image, a class-1 box of 8 pixels, GrabCut fills it (eta = 1), y(i, 1) = y, alpha 0.2.
    box = one_hot_labels(torch.ones(1, 1, 8, dtype=torch.long), 3)
    log_probs = torch.tensor([1 - y, y, 0.0]).clamp_min(1e-12).log().reshape(1, 3, 1, 1)
    log_probs = log_probs.expand(1, 3, 1, 8)
    attention = torch.full((1, 2, 1, 8), 0.2, requires_grad=True)
    (10 * foreground_loss(log_probs, attention, box)).backward()
    fg = attention.grad[0, 0, 0, 0].item()
    assert fg == pytest.approx(10 * -math.log(y) / 8)  # always >= 0: descent lowers alpha
    attention.grad = None
    fill_rate_loss(attention, box, box, gamma=0.7).backward()  # active: 0.2 < 0.7
    assert attention.grad[0, 0, 0, 0].item() == pytest.approx(-1 / 8)
    # alpha falls where lambda_aw (-log y) > lambda_alpha, i.e. y < exp(-0.1) = 0.905.
    assert (fg - 1 / 8 > 0) == (y < math.exp(-0.1))
    attention.grad = None
    attention_box_loss(attention, box).backward()  # Eq. 6 / m: 2 (alpha - B) / 8 per box pixel
    assert attention.grad[0, 0, 0, 0].item() == pytest.approx(2 * (0.2 - 1) / 8)
    assert (fg + 2 * (0.2 - 1) / 8 > 0) == (y < math.exp(-1.6 / 10))


def test_floored_attention_rescales_a_box_mean_below_the_fill_rate_target() -> None:
    # The 1 x 4 image: a class-1 box on pixels 1-3, GrabCut fills 2 of 3 (eta = 2/3), so the
    # target is gamma eta = 0.6 x 2/3 = 0.4. alpha in the box 0.1, 0.2, 0.3: mean 0.2 < 0.4,
    # scaled by 2 to 0.2, 0.4, 0.6; pixel 0 (outside) and class 2 (no box, target 0) unchanged.
    box, grabcut = one_hot_labels(BOX_LABEL, 3), one_hot_labels(GRABCUT_LABEL, 3)
    alpha = torch.tensor([[[[0.9, 0.1, 0.2, 0.3]], [[0.5, 0.5, 0.5, 0.5]]]], requires_grad=True)
    weights = floored_attention(alpha, grabcut, box, gamma=0.6)
    assert weights[0, 0, 0].tolist() == pytest.approx([1.0, 0.2, 0.4, 0.6])  # 0.9 x 2, clipped
    assert weights[0, 1, 0].tolist() == pytest.approx([0.5] * 4)
    # Above the target alpha is left as it is; a scaled-up weight stops at 1.
    high = torch.tensor([[[[0.0, 0.5, 0.5, 0.8]], [[0.0, 0.0, 0.0, 0.0]]]])
    assert torch.equal(floored_attention(high, grabcut, box, 0.6), high)
    low = torch.tensor([[[[0.0, 0.05, 0.05, 0.2]], [[0.0, 0.0, 0.0, 0.0]]]])
    assert floored_attention(low, grabcut, box, 0.6)[0, 0, 0].tolist() == pytest.approx(
        [0.0, 0.2, 0.2, 0.8]
    )
    # The scale is alpha's own, so L_fg's gradient only moves attention between the box's pixels
    # (no component along alpha: the mean cannot fall): with -log y = c = 1, 2, 3 it is
    # s (c_j - alpha-weighted mean of c), s = 2.
    costs = torch.tensor([0.0, 1.0, 2.0, 3.0])
    (weights[0, 0, 0] * costs).sum().backward()
    weighted_mean = (0.1 * 1 + 0.2 * 2 + 0.3 * 3) / 0.6
    expected = [2 * (c - weighted_mean) for c in (1.0, 2.0, 3.0)]
    assert alpha.grad[0, 0, 0, 1:].tolist() == pytest.approx(expected)
    along = (alpha[0, 0, 0, 1:] * alpha.grad[0, 0, 0, 1:]).sum()
    assert along.item() == pytest.approx(0.0, abs=1e-6)
    # "pixel": t + (1 - t) alpha, with t = 0.4 on class 1 and 0 on class 2 (no box).
    pixel = floored_attention(alpha, grabcut, box, gamma=0.6, mode="pixel")
    assert pixel[0, 0, 0].tolist() == pytest.approx([0.94, 0.46, 0.52, 0.58])
    assert pixel[0, 1, 0].tolist() == pytest.approx([0.5] * 4)
    with pytest.raises(ValueError, match="mode"):
        floored_attention(alpha, grabcut, box, mode="max")


def test_sample_pixels_per_class_draws_equally_and_skips_ignore() -> None:
    labels = torch.tensor([0] * 50 + [3] * 5 + [255] * 20 + [1] * 30)
    index = sample_pixels_per_class(labels, 8, torch.Generator().manual_seed(0))
    drawn = labels[index]
    assert index.unique().numel() == index.numel()
    assert [(drawn == c).sum().item() for c in (0, 1, 3, 255)] == [8, 8, 5, 0]


def test_affinity_loss_is_zero_for_one_hot_embeddings() -> None:
    labels = torch.randint(0, 3, (2, 6, 6), generator=torch.Generator().manual_seed(0))
    onehot = one_hot_labels(labels, 3)
    embeddings = 2.5 * onehot  # cosine similarity ignores the scale
    assert affinity_loss(embeddings, onehot, labels, pixels_per_class=4).item() == 0.0


def test_affinity_loss_hand_computed_pairs() -> None:
    # Two pixels of different classes: A = [[1, 1/sqrt(2)], [1/sqrt(2), 1]], y_i . y_j = I.
    embeddings = torch.tensor([[1.0, 1.0], [0.0, 1.0]]).reshape(1, 2, 1, 2)
    probs = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).reshape(1, 2, 1, 2)
    labels = torch.tensor([[[0, 1]]])
    assert affinity_loss(embeddings, probs, labels).item() == pytest.approx(2 * 0.5 / 4)
    # Soft y: y_0 . y_1 = 0.5 * 0.5 + 0.5 * 0.5 = 0.5; y_0 . y_0 = 0.5.
    soft = torch.full((1, 2, 1, 2), 0.5)
    expected = (2 * (1 - 0.5) ** 2 + 2 * (2**-0.5 - 0.5) ** 2) / 4
    assert affinity_loss(embeddings, soft, labels).item() == pytest.approx(expected)


def test_affinity_loss_skips_unlabelled_images_and_gives_gradients() -> None:
    embeddings = torch.randn(2, 4, 3, 3, requires_grad=True)
    probs = torch.rand(2, 3, 3, 3).softmax(1).requires_grad_(True)
    labels = torch.full((2, 3, 3), 255)
    labels[0, 0, :2] = torch.tensor([1, 2])
    loss = affinity_loss(embeddings, probs, labels)
    loss.backward()
    assert embeddings.grad[1].abs().sum() == 0 and probs.grad[1].abs().sum() == 0
    assert embeddings.grad[0].abs().sum() > 0 and probs.grad[0].abs().sum() > 0
    empty = affinity_loss(embeddings, probs, torch.full((2, 3, 3), 255))
    assert empty.item() == 0.0 and empty.requires_grad
