"""The contract every method in `wseg.methods.METHODS` keeps (smp's BaseModelTester style)."""

import pytest
import torch
from fake_batches import NUM_CLASSES, TINY, batch_loader, make_batch, quiet_trainer

from wseg.methods import METHODS, WeakSegMethod


@pytest.fixture(params=METHODS, ids=lambda cls: cls.__name__)
def model(request) -> WeakSegMethod:
    torch.manual_seed(0)
    return request.param(num_classes=NUM_CLASSES, **TINY)


@pytest.mark.parametrize("size", [(64, 64), (50, 70)])
def test_forward_shape(model: WeakSegMethod, size) -> None:
    logits = model.eval()(torch.randn(2, 3, *size))
    assert logits.shape == (2, NUM_CLASSES, *size)


def test_loss_is_finite_with_gradients(model: WeakSegMethod) -> None:
    loss = model.train().compute_loss(make_batch())
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_predict_step(model: WeakSegMethod) -> None:
    batch = make_batch(size=(40, 56))
    out = model.eval().predict_step(batch, 0)
    assert out["id"] == batch["id"]
    assert out["pred"].shape == (2, 40, 56) and out["pred"].dtype == torch.uint8
    assert int(out["pred"].max()) < NUM_CLASSES


def test_fit_validate_and_checkpoint_round_trip(model: WeakSegMethod, tmp_path) -> None:
    trainer = quiet_trainer(tmp_path, max_epochs=1)
    trainer.fit(model, batch_loader(2), batch_loader(1))
    assert 0.0 <= float(trainer.callback_metrics["val/miou"]) <= 1.0
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    restored = type(model).load_from_checkpoint(path)
    assert restored.hparams == model.hparams
    image = make_batch()["image"]
    with torch.no_grad():
        assert torch.equal(restored.eval()(image), model.eval()(image))
