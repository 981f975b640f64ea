"""The non-finite guard on a real method and Trainer: a NaN image stops the fit or skips a batch."""

import math
import warnings

import pytest
import torch
from fake_batches import NUM_CLASSES, TINY, BatchList, make_batch, quiet_trainer

from wseg.callbacks import NonFiniteError, NonFiniteGuard
from wseg.methods import Supervised


def loader_with_nan_batch(count: int, bad: int) -> torch.utils.data.DataLoader:
    """``count`` hand-made batches; batch ``bad`` has a NaN pixel (its loss is NaN)."""
    batches = [make_batch(seed=seed) for seed in range(count)]
    batches[bad]["image"][0, 0, 5, 5] = math.nan
    return torch.utils.data.DataLoader(BatchList(batches), batch_size=None)


def all_finite(model: torch.nn.Module) -> bool:
    tensors = [*model.parameters(), *model.buffers()]
    return all(bool(torch.isfinite(t).all()) for t in tensors if t.is_floating_point())


def test_a_nan_loss_stops_the_fit_naming_step_term_images_and_causes(tmp_path) -> None:
    torch.manual_seed(0)
    model = Supervised(num_classes=NUM_CLASSES, lr=0.01, **TINY)
    trainer = quiet_trainer(
        tmp_path, max_epochs=1, limit_val_batches=0, callbacks=[NonFiniteGuard()]
    )
    with pytest.raises(NonFiniteError) as error:
        trainer.fit(model, loader_with_nan_batch(4, bad=2))
    message = str(error.value)
    assert "global step 2 (epoch 0, images img_2_0, img_2_1)" in message
    assert "loss terms not finite: train/loss=nan" in message
    assert "learning rate too high (lr=" in message and "precision=32-true" in message
    assert "--nonfinite.action skip" in message
    assert trainer.global_step == 2  # the NaN step never reached the optimiser
    assert all_finite(model)


def test_skip_drops_the_batch_restores_its_statistics_and_counts_it(tmp_path) -> None:
    torch.manual_seed(0)
    model = Supervised(num_classes=NUM_CLASSES, lr=0.01, **TINY)
    guard = NonFiniteGuard(action="skip")
    trainer = quiet_trainer(tmp_path, max_epochs=1, limit_val_batches=0, callbacks=[guard])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(model, loader_with_nan_batch(4, bad=1))
    assert guard.skipped == 1 and guard.skipped_steps == [1]
    assert trainer.global_step == 4  # a skipped step still counts
    assert all_finite(model)
    texts = [str(w.message) for w in caught]
    assert any("skipped 1 training batch with a non-finite" in t and "img_1_0" in t for t in texts)
    assert any("the fit skipped 1 of 4 training batches" in t for t in texts)
    assert float(trainer.callback_metrics["train/skipped_batches"]) == 1.0


def test_a_checkpoint_with_non_finite_weights_is_not_written(tmp_path) -> None:
    model = Supervised(num_classes=NUM_CLASSES, **TINY)
    trainer = quiet_trainer(
        tmp_path, max_steps=1, limit_val_batches=0, callbacks=[NonFiniteGuard()]
    )
    trainer.fit(model, loader_with_nan_batch(2, bad=1))
    with torch.no_grad():
        next(model.net.decoder.parameters()).fill_(math.inf)
    with pytest.raises(NonFiniteError, match="not saving a checkpoint at global step 1: 1 of"):
        trainer.save_checkpoint(tmp_path / "bad.ckpt")
    assert not (tmp_path / "bad.ckpt").exists()


class WithFiniteTerm(Supervised):
    """Supervised that also logs a term which stays finite, as multi-term methods do."""

    def compute_loss(self, batch: dict) -> torch.Tensor:
        self.log("train/loss_prior", 0.5, batch_size=2)
        return super().compute_loss(batch)


def test_the_message_separates_the_non_finite_terms_from_the_finite_ones(tmp_path) -> None:
    model = WithFiniteTerm(num_classes=NUM_CLASSES, **TINY)
    trainer = quiet_trainer(
        tmp_path, max_epochs=1, limit_val_batches=0, callbacks=[NonFiniteGuard()]
    )
    with pytest.raises(NonFiniteError) as error:
        trainer.fit(model, loader_with_nan_batch(2, bad=0))
    assert "loss terms not finite: train/loss=nan\n  finite: train/loss_prior=0.5" in str(
        error.value
    )


def test_an_unknown_action_is_an_error() -> None:
    with pytest.raises(ValueError, match="'stop' or 'skip', got 'ignore'"):
        NonFiniteGuard(action="ignore")  # type: ignore[arg-type]


def test_with_gradient_accumulation_a_nan_in_any_batch_of_the_step_is_named(tmp_path) -> None:
    model = WithFiniteTerm(num_classes=NUM_CLASSES, **TINY)
    trainer = quiet_trainer(
        tmp_path,
        max_epochs=1,
        limit_val_batches=0,
        accumulate_grad_batches=2,
        callbacks=[NonFiniteGuard()],
    )
    with pytest.raises(NonFiniteError) as error:
        trainer.fit(model, loader_with_nan_batch(4, bad=2))  # the first batch of step 1
    message = str(error.value)
    assert "global step 1 (epoch 0, images img_2_0, img_2_1, img_3_0, img_3_1)" in message
    assert "loss terms not finite: train/loss=nan" in message
    assert trainer.global_step == 1 and all_finite(model)
