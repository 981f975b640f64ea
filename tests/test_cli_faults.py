"""Faults met by a real fit from an experiment YAML: a non-finite loss, a fit without a logger."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
import wandb

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
def synthetic_root(tmp_path_factory) -> Path:
    """Tiny synthetic data in the VOC (with the ``train_aug`` list) and Cityscapes layouts."""
    root = generate_synthetic(
        tmp_path_factory.mktemp("data") / "synthetic", num_train=4, num_val=2, size=(64, 64)
    )
    splits = root / "voc" / "ImageSets" / "Segmentation"
    shutil.copy(splits / "train.txt", splits / "train_aug.txt")
    return root


@pytest.fixture(scope="module")
def voc_root(synthetic_root) -> Path:
    return synthetic_root / "voc"


def voc_fit(root: Path, out: Path | None, *more: str, config: str = "supervised_voc") -> list[str]:
    """``fit`` of an experiment YAML as shipped, on tiny data, with a tiny encoder.

    ``out`` is the trainer's ``default_root_dir`` and the logger's ``save_dir``; None keeps the
    YAML's (``save_dir: runs``) and Lightning's (the working directory).
    """
    where = [] if out is None else [
        "--trainer.default_root_dir", str(out), "--trainer.logger.init_args.save_dir", str(out)
    ]  # fmt: skip
    return [
        "fit", "--config", str(EXPERIMENTS / f"{config}.yaml"),
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
        *where,
        *more,
    ]  # fmt: skip


SAVE_LAST = {
    "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
    "init_args": {"save_last": True},
}
"""The checkpoint callback alone (the YAMLs' LearningRateMonitor needs a logger)."""


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
    wandb.finish()  # the fit stopped with an error: end its (offline) W&B run here


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


def test_fast_dev_runs_from_one_folder_write_their_run_files_into_folders_of_their_own(
    synthetic_root, tmp_path, monkeypatch
) -> None:
    """fast_dev_run turns the logger off: no class_names.txt or overlays in the working folder."""
    monkeypatch.chdir(tmp_path)
    overlays = ["--model.init_args.log_images_every_n_epochs", "1"]
    main(voc_fit(synthetic_root / "voc", None, *overlays, "--trainer.fast_dev_run", "2"))
    cityscapes = voc_fit(
        synthetic_root / "cityscapes",
        None,
        *overlays,
        "--trainer.fast_dev_run",
        "2",
        config="supervised_cityscapes",
    )
    main(cityscapes)  # other classes: refused before, when both runs wrote into the working folder
    assert sorted(path.name for path in tmp_path.iterdir()) == ["runs"]  # nothing else here
    voc, city = tmp_path / "runs" / "run_0", tmp_path / "runs" / "run_1"
    assert (voc / "class_names.txt").read_text().splitlines()[1] == "aeroplane"
    assert "car" in (city / "class_names.txt").read_text().splitlines()
    assert list((voc / "overlays").rglob("*.png")) and list((city / "overlays").rglob("*.png"))


def test_a_fit_without_logger_keeps_files_and_checkpoints_in_its_run_folder(
    voc_root, tmp_path
) -> None:
    no_logger = ["--trainer.logger", "false", "--trainer.callbacks", json.dumps([SAVE_LAST])]
    cli = main(voc_fit(voc_root, tmp_path, *no_logger))
    run = tmp_path / "runs" / "run_0"
    assert (run / "class_names.txt").is_file() and (run / "config.yaml").is_file()
    assert {path.name for path in (run / "checkpoints").glob("*.ckpt")} >= {"last.ckpt"}
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "class_names.txt").exists()
    assert cli.trainer.global_step == 4
