"""Self-correction losses on hand-made logits: Eq. 4 as a geometric mean, soft CE, alpha."""

import math

import pytest
import torch

from wseg.losses.self_correction import alpha_schedule, linear_self_correction, soft_cross_entropy


def softmax(values: list[float]) -> list[float]:
    exps = [math.exp(v) for v in values]
    return [e / sum(exps) for e in exps]


def as_map(values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64).view(1, -1, 1, 1)


@pytest.mark.parametrize("alpha", [0.0, 0.5, 2.0, 30.0])
def test_linear_combination_is_the_weighted_geometric_mean_of_eq_4(alpha: float) -> None:
    primary, ancillary = [1.0, 2.0, -0.5], [0.0, -1.0, 3.0]
    p, p_anc = softmax(primary), softmax(ancillary)
    mean = [(pc * pa**alpha) ** (1 / (alpha + 1)) for pc, pa in zip(p, p_anc)]
    expected = [m / sum(mean) for m in mean]
    q = linear_self_correction(as_map(primary), as_map(ancillary), alpha)
    assert q.flatten().tolist() == pytest.approx(expected, rel=1e-12)


def test_linear_combination_limits() -> None:
    primary, ancillary = as_map([1.0, 2.0, -0.5]), as_map([0.0, -1.0, 3.0])
    assert torch.allclose(linear_self_correction(primary, ancillary, 0.0), primary.softmax(1))
    far = linear_self_correction(primary, ancillary, 1e6)
    assert torch.allclose(far, ancillary.softmax(1), atol=1e-5)


def test_soft_cross_entropy_by_hand() -> None:
    # softmax([0, ln 3]) = [1/4, 3/4]; target [1/2, 1/2]: -(ln(1/4) + ln(3/4)) / 2
    logits = as_map([0.0, math.log(3.0)])
    loss = soft_cross_entropy(logits, as_map([0.5, 0.5]))
    assert loss.shape == (1, 1, 1)
    assert float(loss) == pytest.approx(-(math.log(0.25) + math.log(0.75)) / 2, rel=1e-12)
    assert float(soft_cross_entropy(logits, as_map([0.0, 0.0]))) == 0.0


def test_no_gradient_flows_into_q() -> None:
    logits = as_map([1.0, 2.0, -0.5]).requires_grad_(True)
    ancillary = as_map([0.0, -1.0, 3.0])
    q = linear_self_correction(logits, ancillary, 2.0)
    assert not q.requires_grad
    soft_cross_entropy(logits, q).sum().backward()
    # d/dl of -sum q log softmax(l) with q fixed is softmax(l) - q; through q it would differ.
    assert torch.allclose(logits.grad, logits.detach().softmax(1) - q)


def test_soft_cross_entropy_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="differ"):
        soft_cross_entropy(torch.zeros(1, 3, 2, 2), torch.zeros(1, 4, 2, 2))
    with pytest.raises(ValueError, match="differ"):
        linear_self_correction(torch.zeros(1, 3, 2, 2), torch.zeros(1, 3, 2, 1), 1.0)
    with pytest.raises(ValueError, match="alpha"):
        linear_self_correction(torch.zeros(1, 3, 2, 2), torch.zeros(1, 3, 2, 2), -1.0)


def test_alpha_schedule_hits_its_endpoints() -> None:
    assert alpha_schedule(0.0) == pytest.approx(30.0)
    assert alpha_schedule(1.0) == pytest.approx(0.5)
    assert alpha_schedule(0.5) == pytest.approx(math.sqrt(30.0 * 0.5))  # exponential: geometric
    assert alpha_schedule(-1.0) == pytest.approx(30.0) and alpha_schedule(2.0) == pytest.approx(0.5)
    assert alpha_schedule(0.5, 10.0, 2.0, "linear") == pytest.approx(6.0)
    assert alpha_schedule(0.7, 10.0, 2.0, "constant") == 10.0
    values = [alpha_schedule(t / 10) for t in range(11)]
    assert all(a > b for a, b in zip(values, values[1:]))


def test_alpha_schedule_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="start, end > 0"):
        alpha_schedule(0.5, 30.0, 0.0)
    with pytest.raises(ValueError, match=">= 0"):
        alpha_schedule(0.5, -1.0, 1.0, "linear")
    with pytest.raises(ValueError, match="shape"):
        alpha_schedule(0.5, shape="cosine")  # type: ignore[arg-type]
