"""Faults met by a real fit from an experiment YAML: a non-finite loss, a fit without a logger."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import torch

from wseg.callbacks import NonFiniteError, NonFiniteGuard
from wseg.cli import main
from wseg.data.synthetic import generate_synthetic

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = REPO / "experiments"


@pytest.fixture(autouse=True)
def _bare_argv(monkeypatch) -> None:
    """LightningCLI warns when both ``args`` and pytest's own ``sys.argv`` are present."""
    monkeypatch.setattr(sys, "argv", ["wseg"])


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory) -> Path:
    """Tiny synthetic data in the VOC layout, with the ``train_aug`` list the VOC YAMLs train on."""
    root = generate_synthetic(
        tmp_path_factory.mktemp("data") / "synthetic", num_train=4, num_val=2, size=(64, 64)
    )
    splits = root / "voc" / "ImageSets" / "Segmentation"
    shutil.copy(splits / "train.txt", splits / "train_aug.txt")
    return root / "voc"


def voc_fit(root: Path, out: Path, *more: str) -> list[str]:
    """``fit`` of ``supervised_voc.yaml`` as shipped, on the tiny data, with a tiny encoder."""
    return [
        "fit", "--config", str(EXPERIMENTS / "supervised_voc.yaml"),
        "--data.init_args.root", str(root),
        "--data.init_args.crop_size", "64",
        "--data.init_args.batch_size", "2",
        "--data.init_args.num_workers", "0",
        "--model.init_args.encoder", "tu-mobilenetv3_small_050",
        "--model.init_args.encoder_weights", "null",
        "--model.init_args.log_images_every_n_epochs", "0",
        "--trainer.accelerator", "cpu",
        "--trainer.precision", "32",
        "--trainer.max_steps", "4",
        "--trainer.val_check_interval", "2",
        "--trainer.check_val_every_n_epoch", "null",
        "--trainer.limit_val_batches", "1",
        "--trainer.enable_progress_bar", "false",
        "--trainer.default_root_dir", str(out),
        "--trainer.logger.init_args.save_dir", str(out),
        *more,
    ]  # fmt: skip


def checkpoints(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.ckpt"))


def test_an_experiment_yaml_stops_on_a_non_finite_loss_and_saves_no_checkpoint(
    voc_root, tmp_path
) -> None:
    with pytest.raises(NonFiniteError) as error:
        main(voc_fit(voc_root, tmp_path, "--model.init_args.lr", "1e9"))
    message = str(error.value)
    assert "at global step 1 (epoch 0, images " in message
    assert "learning rate too high" in message and "precision=32-true" in message
    assert checkpoints(tmp_path) == []


def test_skip_finishes_the_fit_with_finite_checkpoints(voc_root, tmp_path) -> None:
    cli = main(
        voc_fit(voc_root, tmp_path, "--model.init_args.lr", "1e9", "--nonfinite.action", "skip")
    )
    (guard,) = [c for c in cli.trainer.callbacks if isinstance(c, NonFiniteGuard)]
    assert guard.action == "skip" and guard.skipped >= 1
    cli.trainer.logger.experiment.finish()
    saved = checkpoints(tmp_path)
    assert saved and any(path.name == "last.ckpt" for path in saved)
    for path in saved:
        state = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
        assert all(torch.isfinite(t).all() for t in state.values() if t.is_floating_point())
