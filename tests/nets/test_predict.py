import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wseg.nets.predict import forward_any_size, predict_probs, resize_probs


class Pointwise(nn.Module):
    """A 1x1 convolution: flip- and scale-equivariant up to interpolation."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class LeftBiased(nn.Module):
    """Class 1 on the left half of the input, class 0 on the right: not flip-equivariant."""

    def forward(self, x: Tensor) -> Tensor:
        width = x.shape[-1]
        left = (torch.arange(width) < width // 2).float().expand(x.shape[0], 1, *x.shape[-2:])
        return torch.cat([1 - left, left], 1) * 10


def test_forward_any_size_pads_and_crops() -> None:
    seen = []

    def net(x: Tensor) -> Tensor:
        seen.append(tuple(x.shape[-2:]))
        assert x.shape[-2] % 32 == 0 and x.shape[-1] % 32 == 0
        return x[:, :2]

    image = torch.randn(2, 3, 37, 70)
    out = forward_any_size(net, image)
    assert seen == [(64, 96)]
    assert torch.equal(out, image[:, :2])


def test_forward_any_size_upsamples_coarse_logits() -> None:
    out = forward_any_size(
        lambda x: torch.ones(1, 3, x.shape[-2] // 8, x.shape[-1] // 8), torch.zeros(1, 3, 40, 40)
    )
    assert out.shape == (1, 3, 40, 40)


def test_flip_on_equivariant_net_changes_nothing() -> None:
    net = Pointwise()
    image = torch.randn(1, 3, 32, 48)
    plain = predict_probs(net, image)
    flipped = predict_probs(net, image, flip=True)
    assert torch.allclose(plain, flipped, atol=1e-6)
    assert torch.allclose(plain, net(image).softmax(1), atol=1e-6)


def test_flip_averages_mirrored_views() -> None:
    probs = predict_probs(LeftBiased(), torch.zeros(1, 3, 8, 64), flip=True)
    # Unflipped view: class 1 on the left. Mirrored view brought back: class 1 on the right.
    expected = (
        LeftBiased()(torch.zeros(1, 3, 8, 64)).softmax(1)
        + LeftBiased()(torch.zeros(1, 3, 8, 64)).softmax(1).flip(-1)
    ) / 2
    assert torch.allclose(probs, expected)
    assert torch.allclose(probs, torch.full_like(probs, 0.5), atol=1e-4)


def test_scales_average_to_input_size() -> None:
    net = Pointwise()
    image = torch.randn(2, 3, 40, 56)
    probs = predict_probs(net, image, flip=True, scales=[0.5, 1.0, 1.5])
    assert probs.shape == (2, 4, 40, 56)
    assert torch.allclose(probs.sum(1), torch.ones(2, 40, 56), atol=1e-5)
    manual = (
        sum(
            F.interpolate(
                net(F.interpolate(image, scale_factor=s, mode="bilinear")),
                size=(40, 56),
                mode="bilinear",
            ).softmax(1)
            for s in (0.5, 1.0, 1.5)
        )
        / 3
    )
    assert torch.allclose(probs, manual, atol=1e-5)


def test_bad_scales() -> None:
    with pytest.raises(ValueError, match="scales"):
        predict_probs(Pointwise(), torch.zeros(1, 3, 8, 8), scales=[])
    with pytest.raises(ValueError, match="scales"):
        predict_probs(Pointwise(), torch.zeros(1, 3, 8, 8), scales=[0.0])


def test_resize_probs() -> None:
    probs = torch.rand(1, 2, 4, 4)
    assert resize_probs(probs, (4, 4)) is probs
    assert resize_probs(probs, (8, 6)).shape == (1, 2, 8, 6)
