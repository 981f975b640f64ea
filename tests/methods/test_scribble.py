"""ScribblePAM: partial cross-entropy on scribbled pixels (hand-computed) and its two targets."""

import math

import pytest
import torch
from fake_batches import NUM_CLASSES, TINY, make_batch

from wseg.methods.scribble import ScribblePAM, partial_cross_entropy


def test_partial_cross_entropy_averages_over_scribbled_pixels_only() -> None:
    logits = torch.tensor([[[[2.0, 0.0, 1.0]], [[0.0, 3.0, 1.0]]]])  # B=1, C=2, H=1, W=3
    scribble = torch.tensor([[[0, 255, 1]]])
    # pixel 0, class 0: -log(e^2 / (e^2 + 1)); pixel 2, class 1: -log(e / (e + e)) = log 2.
    expected = (math.log(1 + math.exp(-2.0)) + math.log(2.0)) / 2
    assert partial_cross_entropy(logits, scribble).item() == pytest.approx(expected, rel=1e-6)
    # The unscribbled pixel's logits do not matter, whatever they are.
    changed = logits.clone()
    changed[..., 1] = torch.tensor([-50.0, 50.0]).view(1, 2, 1)
    assert partial_cross_entropy(changed, scribble).item() == pytest.approx(expected, rel=1e-6)


def test_partial_cross_entropy_without_scribbles_is_zero_with_gradient() -> None:
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    loss = partial_cross_entropy(logits, torch.full((2, 4, 4), 255))
    assert loss.item() == 0.0
    loss.backward()
    assert logits.grad is not None and not logits.grad.any()


def test_partial_cross_entropy_upsamples_smaller_logits() -> None:
    logits = torch.zeros(1, 2, 2, 2)
    scribble = torch.full((1, 4, 4), 255)
    scribble[0, 0, 0] = 1
    assert partial_cross_entropy(logits, scribble).item() == pytest.approx(math.log(2.0))


def test_scribble_target_ignores_unscribbled_pixels_of_the_batch() -> None:
    torch.manual_seed(0)
    model = ScribblePAM(num_classes=NUM_CLASSES, target="scribble", **TINY).eval()
    batch = make_batch()
    loss = model.compute_loss(batch)
    assert loss.item() == pytest.approx(
        partial_cross_entropy(model(batch["image"]), batch["scribble"]).item(), rel=1e-6
    )
    other = dict(batch, mask=torch.zeros_like(batch["mask"]), pseudo=batch["pseudo"] + 1)
    assert model.compute_loss(other).item() == pytest.approx(loss.item(), rel=1e-6)


def test_pseudo_target_is_cross_entropy_on_the_store_labels() -> None:
    torch.manual_seed(0)
    model = ScribblePAM(num_classes=NUM_CLASSES, target="pseudo", **TINY).eval()
    batch = make_batch()
    logits = model(batch["image"])
    expected = torch.nn.functional.cross_entropy(logits, batch["pseudo"], ignore_index=255)
    assert model.compute_loss(batch).item() == pytest.approx(expected.item(), rel=1e-5)


def test_bad_target_missing_key_and_soft_labels() -> None:
    with pytest.raises(ValueError, match="target must be"):
        ScribblePAM(num_classes=NUM_CLASSES, target="boxes", **TINY)
    model = ScribblePAM(num_classes=NUM_CLASSES, target="pseudo", **TINY)
    batch = make_batch()
    del batch["pseudo"]
    with pytest.raises(KeyError, match="pseudo_labels"):
        model.compute_loss(batch)
    soft = dict(make_batch(), pseudo=torch.rand(2, NUM_CLASSES, 64, 64))
    with pytest.raises(ValueError, match="hard labels"):
        model.compute_loss(soft)
    weak = ScribblePAM(num_classes=NUM_CLASSES, target="scribble", **TINY)
    batch = make_batch()
    del batch["scribble"]
    with pytest.raises(KeyError, match="scribbles"):
        weak.compute_loss(batch)
