"""E-steps of the EM family (Papandreou et al. 2015) on hand-made scores."""

import math

import pytest
import torch

from wseg.losses.em_esteps import (
    TIE_MARGIN,
    bbox_em_fixed_estep,
    em_adapt_biases,
    em_adapt_estep,
    em_fixed_estep,
    fixed_biases,
    padding_valid,
)


def scores(*pixels: list[float]) -> torch.Tensor:
    """``1, C, 1, W`` logits from per-pixel score lists."""
    return torch.tensor(pixels, dtype=torch.float32).T[None, :, None, :]


def test_fixed_biases_follow_eq_10() -> None:
    tags = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    expected = torch.tensor([[3.0, 0.0, 5.0], [0.0, 5.0, 0.0]])
    assert torch.equal(fixed_biases(tags, fg_bias=5.0, bg_bias=3.0), expected)


def test_em_fixed_adds_biases_to_present_classes_only() -> None:
    # tags: background and class 1 present, class 2 absent; biases (3, 5, 0).
    logits = scores([0, 1, 0], [4, 1, 0], [0, 0, 6], [1.5, 0, 0])
    tags = torch.tensor([[1.0, 1.0, 0.0]])
    # biased: (3, 6, 0) -> 1; (7, 6, 0) -> 0; (3, 5, 6) -> 2; (4.5, 5, 0) -> 1
    assert em_fixed_estep(logits, tags).tolist() == [[[1, 0, 2, 1]]]
    # Algorithm 1 keeps absent classes; suppressing them turns pixel 2 to class 1.
    assert em_fixed_estep(logits, tags, suppress_absent=True).tolist() == [[[1, 0, 1, 1]]]


def test_em_fixed_is_the_same_on_log_probabilities_and_ignores_invalid_pixels() -> None:
    logits = torch.randn(2, 5, 6, 7, generator=torch.Generator().manual_seed(0)) * 4
    tags = torch.tensor([[1.0, 0, 1, 1, 0], [0.0, 1, 0, 0, 1]])
    plain = em_fixed_estep(logits, tags)
    assert torch.equal(plain, em_fixed_estep(logits.log_softmax(dim=1), tags))
    valid = torch.ones(2, 6, 7, dtype=torch.bool)
    valid[:, 4:] = False
    masked = em_fixed_estep(logits, tags, valid=valid)
    assert (masked[:, 4:] == 255).all() and torch.equal(masked[:, :4], plain[:, :4])


def test_em_fixed_takes_no_gradient() -> None:
    logits = torch.randn(1, 3, 4, 4, requires_grad=True)
    labels = em_fixed_estep(logits, torch.ones(1, 3))
    assert not labels.requires_grad and labels.dtype == torch.long


def test_bbox_em_fixed_biases_inside_boxes_and_clamps_outside() -> None:
    # Six pixels: 0 and 4 outside every box, 1-3 in a box of class 1, 3 also in a box of class 2,
    # 5 is padding.
    box_mask = torch.zeros(1, 3, 1, 6)
    box_mask[0, 0, 0, [0, 4]] = 1
    box_mask[0, 1, 0, 1:4] = 1
    box_mask[0, 2, 0, 3] = 1
    logits = scores([0, 9, 0], [1.5, 0, 0], [0, 0, 6], [0, 0, 1], [0, 0, 9], [9, 0, 0])
    # inside: (4.5, 5, 0) -> 1; (3, 5, 6) -> 2 (no box of 2 there: no bias, still allowed);
    # (3, 5, 6) -> 2 (in both boxes)
    expected = [[[0, 1, 2, 2, 0, 255]]]
    assert bbox_em_fixed_estep(logits, box_mask).tolist() == expected
    suppressed = bbox_em_fixed_estep(logits, box_mask, suppress_absent=True)
    assert suppressed.tolist() == [[[0, 1, 1, 2, 0, 255]]]


def test_bbox_em_fixed_without_background_in_the_image() -> None:
    # The box covers the whole image: z_0 = 0, so the background gets no bias.
    box_mask = torch.zeros(1, 2, 1, 2)
    box_mask[0, 1] = 1
    logits = scores([4.5, 0], [5.5, 0])
    # (4.5, 5) -> 1 and (5.5, 5) -> 0; with b_bg added, pixel 0 would have been background.
    assert bbox_em_fixed_estep(logits, box_mask, fg_bias=5.0, bg_bias=3.0).tolist() == [[[1, 0]]]
    assert padding_valid(box_mask).all()


def test_em_adapt_raises_a_foreground_class_to_its_share() -> None:
    # Background 5 everywhere; class 1 ramps 0..0.9, never winning; class 2 absent but highest.
    ramp = torch.arange(10) * 0.1
    pixel_scores = torch.stack([torch.full((10,), 5.0), ramp, torch.full((10,), 10.0)])
    present = torch.tensor([True, True, False])
    bias = em_adapt_biases(pixel_scores, present, fg_portion=0.2, bg_portion=0.4)
    # ceil(0.2 * 10) = 2 pixels for class 1: the gaps 5 - 0.1 i are smallest at i = 9, 8;
    # the second smallest, 4.2, is the bias (plus the tie margin).
    assert bias[0] == 0 and bias[2] == -math.inf
    assert bias[1].item() == pytest.approx(4.2 + TIE_MARGIN)
    labels = (pixel_scores + bias[:, None]).argmax(dim=0)
    assert labels.tolist() == [0] * 8 + [1, 1]


def test_em_adapt_raises_the_background_to_its_share() -> None:
    pixel_scores = torch.stack([torch.arange(10) * 0.1, torch.ones(10)])
    bias = em_adapt_biases(pixel_scores, torch.tensor([True, True]), 0.2, 0.4)
    # ceil(0.4 * 10) = 4 background pixels: gaps 1 - 0.1 i, the 4th smallest is 0.4 (i = 6).
    assert bias.tolist() == pytest.approx([0.4 + TIE_MARGIN, 0.0])
    labels = (pixel_scores + bias[:, None]).argmax(dim=0)
    assert labels.tolist() == [1] * 6 + [0] * 4


def adapted_shares(seed: int, foreground: list[int], max_passes: int) -> torch.Tensor:
    """Label shares of EM-Adapt on random 20 x 25 scores where the background dominates."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(1, 6, 20, 25, generator=generator) * 3
    logits[:, 0] += 4  # the background dominates, as early in training
    tags = torch.zeros(1, 6)
    tags[0, [0, *foreground]] = 1
    labels = em_adapt_estep(logits, tags, 0.2, 0.4, max_passes=max_passes)
    return torch.bincount(labels.flatten(), minlength=6).float() / labels.numel()


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize(("foreground", "max_passes"), [([1], 1), ([1, 3], 100), ([2, 5], 100)])
def test_em_adapt_proportions_meet_the_constraints(
    seed: int, foreground: list[int], max_passes: int
) -> None:
    share = adapted_shares(seed, foreground, max_passes)
    assert share[0] >= 0.4
    assert all(share[c] >= 0.2 for c in foreground)
    assert all(share[c] == 0 for c in range(1, 6) if c not in foreground)


@pytest.mark.parametrize("seed", range(5))
def test_em_adapt_tight_shares_hold_up_to_a_few_pixels(seed: int) -> None:
    # 0.4 + 3 x 0.2 = 1: every class must get exactly its share; 10 passes come within 0.5%.
    share = adapted_shares(seed, [2, 3, 4], max_passes=10)
    assert share[0] >= 0.4 - 0.005
    assert all(share[c] >= 0.2 - 0.005 for c in (2, 3, 4))
    assert share[1] == 0 and share[5] == 0


def test_em_adapt_counts_valid_pixels_only_and_keeps_an_untagged_image() -> None:
    logits = torch.zeros(2, 2, 4, 5)
    logits[:, 0] = 1.0  # background wins everywhere
    logits[:, 1] = torch.arange(20.0).view(4, 5) * 0.01  # class 1 is closest at the last pixels
    tags = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    valid = torch.ones(2, 4, 5, dtype=torch.bool)
    valid[0, 2:] = False  # 10 valid pixels in image 0
    labels = em_adapt_estep(logits, tags, fg_portion=0.2, bg_portion=0.4, valid=valid)
    assert (labels[0, 2:] == 255).all()
    # ceil(0.2 * 10) = 2 of the valid pixels (rows 0-1), where class 1 is closest: 8 and 9
    assert torch.nonzero(labels[0].flatten() == 1).flatten().tolist() == [8, 9]
    assert (labels[1] == 0).all()  # no tag: plain argmax


def test_em_adapt_infeasible_shares_satisfy_the_last_class() -> None:
    # 0.4 + 4 x 0.2 > 1: the last foreground class visited (4) still gets its share.
    logits = torch.randn(1, 5, 10, 10, generator=torch.Generator().manual_seed(1))
    labels = em_adapt_estep(logits, torch.ones(1, 5), fg_portion=0.2, bg_portion=0.4)
    assert int((labels == 4).sum()) >= 20


def test_em_adapt_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="portions"):
        em_adapt_biases(torch.zeros(2, 4), torch.ones(2, dtype=torch.bool), fg_portion=1.5)
    with pytest.raises(ValueError, match="tags"):
        em_adapt_estep(torch.zeros(1, 3, 2, 2), torch.ones(1, 4))
