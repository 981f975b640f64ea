import math

import pytest
import torch

from wseg.labels.potts import edge_weights, potts_energy, potts_map, project_simplex


def one_hot(labels: torch.Tensor, num: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(labels, num).permute(0, 3, 1, 2).float()


@pytest.mark.parametrize(
    ("vector", "expected"),
    [
        ([0.5, 0.5, 0.0], [0.5, 0.5, 0.0]),
        ([2.0, 0.0, 0.0], [1.0, 0.0, 0.0]),
        ([0.6, 0.6, 0.0], [0.5, 0.5, 0.0]),
        ([1.0, 0.5, -1.0], [0.75, 0.25, 0.0]),
        ([0.0, 0.0, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25]),
    ],
)
def test_project_simplex_hand_computed(vector, expected):
    out = project_simplex(torch.tensor([vector]), dim=1)
    torch.testing.assert_close(out, torch.tensor([expected]))


def test_project_simplex_along_dim_one_of_images():
    v = torch.randn(2, 4, 3, 5, generator=torch.Generator().manual_seed(0))
    out = project_simplex(v, dim=1)
    torch.testing.assert_close(out.sum(dim=1), torch.ones(2, 3, 5))
    assert (out >= 0).all()
    # The projection is idempotent and the closest point: no other simplex point is nearer.
    torch.testing.assert_close(project_simplex(out, dim=1), out)
    other = project_simplex(torch.randn(2, 4, 3, 5), dim=1)
    assert ((v - out).square().sum(1) <= (v - other).square().sum(1) + 1e-6).all()


def test_edge_weights_hand_computed():
    image = torch.zeros(1, 3, 4, 5)
    image[..., 3:] = 100.0  # a vertical step of 100 in every channel between columns 2 and 3
    g = edge_weights(image, eta=0.01)
    expected = torch.ones(1, 4, 5)
    expected[..., 2] = math.exp(-0.01 * math.sqrt(3) * 100.0)
    torch.testing.assert_close(g, expected)


def test_potts_energy_hand_computed():
    labels = torch.tensor([[[0, 1], [0, 1]]])
    probs = torch.tensor([[[[0.5, 0.25], [0.5, 0.25]], [[0.5, 0.75], [0.5, 0.75]]]])
    image = torch.zeros(1, 3, 2, 2)
    # data: -2 log 0.5 - 2 log 0.75; TV: each indicator jumps once per row -> 2 per label, 4 in all
    expected = -2 * math.log(0.5) - 2 * math.log(0.75) + 10.0 * 4
    assert potts_energy(labels, probs, image, lam=10.0).item() == pytest.approx(expected, rel=1e-6)
    assert potts_energy(one_hot(labels, 2), probs, image, lam=10.0).item() == pytest.approx(
        expected, rel=1e-6
    )


def test_lambda_zero_is_the_argmax_of_the_data_term():
    probs = torch.softmax(torch.randn(2, 4, 6, 7, generator=torch.Generator().manual_seed(1)), 1)
    out = potts_map(probs, torch.zeros(2, 3, 6, 7), lam=0.0)
    torch.testing.assert_close(out, one_hot(probs.argmax(1), 4))


def two_regions(noise: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    truth = torch.zeros(1, 24, 24, dtype=torch.long)
    truth[..., 12:] = 1
    image = (truth * 100 + 50).float()[:, None].expand(1, 3, 24, 24)
    image = image + 5 * torch.randn(1, 3, 24, 24, generator=gen)
    probs = 0.4 + 0.2 * one_hot(truth, 2) + noise * torch.randn(1, 2, 24, 24, generator=gen)
    probs = probs.clamp(0.01, 1.0)
    return truth, image, probs / probs.sum(1, keepdim=True)


def test_two_noisy_flat_regions_are_recovered():
    truth, image, probs = two_regions(noise=0.25)
    noisy_accuracy = (probs.argmax(1) == truth).float().mean()
    assert noisy_accuracy < 0.8
    out = potts_map(probs, image, lam=10.0)
    assert torch.equal(out.argmax(1), truth)
    # The relaxed minimum lies below the energy of every labelling, the truth included, up to the
    # stopping rule (primal-dual gap <= tol * energy, tol = 1e-4).
    bound = potts_energy(truth, probs, image, 10.0) * (1 + 2e-4)
    assert potts_energy(out, probs, image, 10.0) <= bound


def test_thin_structure_removed_by_large_lambda_kept_by_small():
    probs = torch.full((1, 2, 16, 16), 0.1)
    probs[:, 0] = 0.9
    probs[:, 1, :, 8], probs[:, 0, :, 8] = 0.9, 0.1  # a one-pixel-wide vertical line of label 1
    image = torch.full((1, 3, 16, 16), 128.0)
    # Keeping the line costs 4 lam per row (two jumps of two indicators), removing it
    # -log 0.1 + log 0.9 = 2.197 per row: kept for lam < 0.549, removed above.
    kept = potts_map(probs, image, lam=0.3).argmax(1)
    removed = potts_map(probs, image, lam=10.0).argmax(1)
    assert torch.equal(kept, probs.argmax(1))
    assert (removed == 0).all()


def test_boundary_snaps_to_the_image_edge():
    # Confident data on the left (label 0) and right (label 1) quarters, undecided in between:
    # the only thing that places the boundary is the edge-stopping weight at the image edge.
    probs = torch.full((1, 2, 12, 16), 0.5)
    probs[:, 0, :, :4], probs[:, 1, :, :4] = 0.95, 0.05
    probs[:, 0, :, 12:], probs[:, 1, :, 12:] = 0.05, 0.95
    for edge in (6, 9):
        image = torch.zeros(1, 3, 12, 16)
        image[..., edge:] = 200.0
        label = potts_map(probs, image, lam=1.0, eta=0.01).argmax(1)
        expected = torch.zeros(1, 12, 16, dtype=torch.long)
        expected[..., edge:] = 1
        assert torch.equal(label, expected)


def test_batch_equals_single_images():
    _, image_a, probs_a = two_regions(noise=0.25, seed=2)
    _, image_b, probs_b = two_regions(noise=0.3, seed=3)
    batch = potts_map(torch.cat([probs_a, probs_b]), torch.cat([image_a, image_b]), lam=5.0, tol=0)
    single = potts_map(probs_b, image_b, lam=5.0, tol=0)
    torch.testing.assert_close(batch[1:], single)


def test_bad_shapes_and_lambda():
    with pytest.raises(ValueError, match="differ"):
        potts_map(torch.ones(1, 2, 4, 4) / 2, torch.zeros(1, 3, 4, 5))
    with pytest.raises(ValueError, match="B,L,H,W"):
        potts_map(torch.ones(2, 4, 4) / 2, torch.zeros(1, 3, 4, 4))
    with pytest.raises(ValueError, match="lam"):
        potts_map(torch.ones(1, 2, 4, 4) / 2, torch.zeros(1, 3, 4, 4), lam=-1.0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    truth, image, probs = two_regions(noise=0.25)
    cpu = potts_map(probs, image, lam=10.0, tol=0, max_iter=300)
    gpu = potts_map(probs.cuda(), image.cuda(), lam=10.0, tol=0, max_iter=300)
    assert gpu.is_cuda
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=1e-4)
