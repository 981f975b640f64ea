"""Test-time dense-CRF post-processing: un-normalisation, refinement, padding left out."""

import pytest
import torch

from wseg.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from wseg.labels.crf import DenseCRFParams, dense_crf
from wseg.postprocess import crf_postprocess, denormalize


def normalise(rgb: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (rgb.float() / 255 - mean) / std


def two_regions(height: int = 24, width: int = 32, seed: int = 0):
    """A dark left half and a bright right half, with noisy probabilities that favour the truth."""
    rgb = torch.full((1, 3, height, width), 30, dtype=torch.uint8)
    rgb[..., width // 2 :] = 220
    truth = torch.zeros(1, height, width, dtype=torch.long)
    truth[..., width // 2 :] = 1
    generator = torch.Generator().manual_seed(seed)
    logits = torch.nn.functional.one_hot(truth, 2).permute(0, 3, 1, 2).float() * 0.6
    logits = logits + torch.randn(1, 2, height, width, generator=generator) * 0.8
    return rgb, truth, logits.softmax(dim=1)


def test_denormalize_inverts_the_datamodule_normalisation() -> None:
    rgb = torch.randint(0, 256, (2, 3, 5, 7), dtype=torch.uint8)
    assert torch.equal(denormalize(normalise(rgb)), rgb)


@pytest.mark.parametrize("backend", ["torch", "pydensecrf"])
def test_crf_removes_the_noise_of_two_flat_regions(backend) -> None:
    rgb, truth, probs = two_regions()
    before = (probs.argmax(1) != truth).float().mean()
    refined = crf_postprocess(normalise(rgb), probs, DenseCRFParams(), backend=backend)
    after = (refined.argmax(1) != truth).float().mean()
    assert before > 0.15 and after == 0
    assert torch.allclose(refined.sum(1), torch.ones(1, 24, 32), atol=1e-4)


def test_uint8_images_and_normalised_images_give_the_same_result() -> None:
    rgb, _, probs = two_regions()
    assert torch.allclose(crf_postprocess(rgb, probs), crf_postprocess(normalise(rgb), probs))


def test_padding_stays_out_of_the_crf() -> None:
    rgb, _, probs = two_regions()
    rgb2, _, probs2 = two_regions(seed=1)
    images = torch.cat([rgb, rgb2])
    probs = torch.cat([probs, probs2])
    valid = torch.ones(2, 24, 32, dtype=torch.bool)
    valid[1, 18:] = False  # image 1 is 18 x 26, padded at the bottom and right
    valid[1, :, 26:] = False
    refined = crf_postprocess(images, probs, valid=valid)
    alone = dense_crf(rgb2[..., :18, :26].contiguous(), probs[1:, :, :18, :26].contiguous())
    assert torch.allclose(refined[1:, :, :18, :26], alone)
    assert torch.equal(refined[1, :, 18:], probs[1, :, 18:])
    assert torch.equal(refined[1, :, :, 26:], probs[1, :, :, 26:])
    assert torch.allclose(refined[:1], dense_crf(rgb, probs[:1]))


def test_mismatched_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="differ in size"):
        crf_postprocess(torch.zeros(1, 3, 4, 4), torch.rand(1, 2, 4, 5))
