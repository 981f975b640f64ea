"""The command line end to end on the real datamodule with a tiny synthetic dataset."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from wseg.cli import main
from wseg.methods import BboxRect, Supervised

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _bare_argv(monkeypatch) -> None:
    """LightningCLI warns when both ``args`` and pytest's own ``sys.argv`` are present."""
    monkeypatch.setattr(sys, "argv", ["wseg"])


def common(root: Path, out: Path) -> list[str]:
    return [
        "--data.root", str(root),
        "--data.synthetic_num_train", "4",
        "--data.synthetic_num_val", "2",
        "--data.synthetic_size", "[64, 64]",
        "--data.crop_size", "64",
        "--data.batch_size", "2",
        "--data.num_workers", "0",
        "--trainer.accelerator", "cpu",
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--trainer.default_root_dir", str(out),
    ]  # fmt: skip


MODEL = ["--model.encoder", "tu-mobilenetv3_small_050", "--model.log_images_every_n_epochs", "0"]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory) -> tuple[Path, Path, Path]:
    """One tiny Supervised fit through a YAML config; returns (config, dataset root, checkpoint)."""
    tmp = tmp_path_factory.mktemp("cli")
    config = tmp / "experiment.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "model": {
                    "class_path": "Supervised",
                    "init_args": {"encoder": "tu-mobilenetv3_small_050", "tta_flip": True},
                },
                "data": {"class_path": "WeakSegDataModule", "init_args": {"dataset": "synthetic"}},
                "trainer": {"max_epochs": 1},
            }
        )
    )
    root, out = tmp / "synthetic", tmp / "runs"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", ["wseg"])
        cli = main(["fit", "--config", str(config), *common(root, out)])
    assert isinstance(cli.model, Supervised)
    assert cli.model.hparams.num_classes == cli.datamodule.num_classes
    assert list(cli.model.hparams.class_names) == list(cli.datamodule.class_names)
    assert 0.0 <= float(cli.trainer.callback_metrics["val/miou"]) <= 1.0
    run = Path(cli.trainer.log_dir)
    (checkpoint,) = (run / "checkpoints").glob("*.ckpt")
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["model"]["class_path"] == "wseg.methods.Supervised"
    assert saved["model"]["init_args"]["tta_flip"] is True
    assert (run / "overlays" / "epoch_000").is_dir()
    return config, root, checkpoint


def test_help_lists_subcommands(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert all(name in text for name in ("fit", "validate", "test", "predict"))


def test_fit_help_lists_methods_and_datamodule(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    text = capsys.readouterr().out
    for name in ("wseg.methods.Supervised", "wseg.methods.BboxRect", "WeakSegDataModule"):
        assert name in text


@pytest.mark.parametrize("method", ["Supervised", "BboxRect"])
def test_method_help_shows_documented_arguments(capsys, method: str) -> None:
    with pytest.raises(SystemExit):
        main(["fit", "--model.help", method])
    text = " ".join(capsys.readouterr().out.split())
    assert "--model.encoder_weights" in text and "offline-lite0" in text
    assert "Average predictions over horizontal flips" in text
    assert ("Train only on the fully labelled subset F" in text) == (method == "Supervised")


def test_validate_and_predict_from_checkpoint(fitted, tmp_path) -> None:
    config, root, checkpoint = fitted
    args = ["--config", str(config), *common(root, tmp_path), "--ckpt_path", str(checkpoint)]
    cli = main(["validate", *args])
    assert 0.0 <= float(cli.trainer.callback_metrics["val/miou"]) <= 1.0
    assert "val/miou_crf" not in cli.trainer.callback_metrics
    # Evaluation options on the command line win over the checkpoint's saved hyperparameters.
    cli = main(["validate", *args, "--model.init_args.crf_postprocess", "true"])
    assert cli.model.hparams.crf_postprocess
    assert 0.0 <= float(cli.trainer.callback_metrics["val/miou_crf"]) <= 1.0
    predictions = tmp_path / "predictions"
    main(["predict", *args, "--prediction_writer.output_dir", str(predictions)])
    files = sorted(predictions.glob("*.png"))
    ids = [
        line.strip() for line in (root / "voc" / "ImageSets" / "Segmentation" / "val.txt").open()
    ]
    assert [f.stem for f in files] == sorted(ids)
    with Image.open(files[0]) as png:
        assert png.mode == "P" and png.size == (64, 64)
        assert np.asarray(png).max() < cli.datamodule.num_classes
    # A different model's predictions never replace existing files silently.
    other = BboxRect(num_classes=cli.datamodule.num_classes, encoder="tu-mobilenetv3_small_050")
    other_ckpt = tmp_path / "other.ckpt"
    cli.trainer.strategy.connect(other)
    cli.trainer.save_checkpoint(other_ckpt)
    second = ["--config", str(config), *common(root, tmp_path), "--ckpt_path", str(other_ckpt)]
    second += ["--prediction_writer.output_dir", str(predictions)]
    with pytest.raises(FileExistsError, match="overwrite=True"):
        main(["predict", *second])
    main(["predict", *second, "--prediction_writer.overwrite", "true"])


def test_bbox_rect_fits_from_the_command_line(tmp_path) -> None:
    cli = main(
        ["fit", "--model", "BboxRect", *MODEL, "--data", "WeakSegDataModule"]
        + common(tmp_path / "synthetic", tmp_path)
        + ["--trainer.max_steps", "2", "--trainer.limit_val_batches", "1"]
    )
    assert isinstance(cli.model, BboxRect)
    assert cli.trainer.global_step == 2


def test_a_shipped_yaml_fits_with_the_logger_off(tmp_path) -> None:
    # The YAMLs carry a LearningRateMonitor, which Lightning refuses without a logger.
    config = Path(__file__).resolve().parents[1] / "experiments" / "demo" / "supervised.yaml"
    args = ["fit", "--config", str(config), "--trainer.logger", "false"]
    args += ["--model.init_args.encoder", "tu-mobilenetv3_small_050"]
    args += ["--model.init_args.encoder_weights", "null"]
    args += [arg.replace("--data.", "--data.init_args.") for arg in common(tmp_path, tmp_path)]
    cli = main([*args, "--trainer.max_steps", "1", "--trainer.limit_val_batches", "1"])
    assert cli.trainer.global_step == 1 and cli.trainer.logger is None
    assert not any(type(c).__name__ == "LearningRateMonitor" for c in cli.trainer.callbacks)


def flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat |= flatten(value, f"{prefix}{key}/")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def test_wandb_run_holds_the_resolved_config_the_best_miou_and_last_overlays(
    tmp_path, monkeypatch
) -> None:
    """W&B config: the resolved config, hparams beside it; summary: the best val/miou."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    callbacks = [
        {"class_path": "ModelCheckpoint", "init_args": {"monitor": "val/miou", "mode": "max"}},
        {"class_path": "LearningRateMonitor", "init_args": {"logging_interval": "step"}},
    ]
    config = tmp_path / "experiment.yaml"
    config.write_text(yaml.safe_dump({"trainer": {"callbacks": callbacks}}))
    cli = main(
        ["fit", "--config", str(config), "--model", "Supervised", "--model.lr", "0.05"]
        + ["--model.encoder", "tu-mobilenetv3_small_050", "--model.log_images_every_n_epochs", "5"]
        + ["--data", "WeakSegDataModule", *common(tmp_path / "synthetic", tmp_path)]
        + ["--trainer.max_epochs", "2", "--trainer.log_every_n_steps", "1"]
        + ["--trainer.logger", "WandbLogger", "--trainer.logger.offline", "true"]
        + ["--trainer.logger.save_dir", str(tmp_path)]
    )
    run = cli.trainer.logger.experiment
    folder = Path(cli.trainer.checkpoint_callback.dirpath).parent
    resolved = flatten(yaml.safe_load((folder / "config.yaml").read_text()))
    assert resolved["model/init_args/encoder"] == "tu-mobilenetv3_small_050"
    assert resolved["optimizer"] is None  # the CLI's own optimizer argument, unused
    assert {key: run.config[key] for key in resolved} == resolved
    hparams = {key: value for key, value in cli.model.hparams.items() if key[0] != "_"}
    for key, value in hparams.items():  # the linked num_classes and class_names included
        assert run.config[f"hparams/{key}"] == (list(value) if isinstance(value, tuple) else value)
    assert run.config["hparams/optimizer"] == "sgd"
    assert "encoder" not in run.config and "num_classes" not in run.config
    files = Path(run.dir)
    saved = yaml.safe_load((files / "lightning_config.yaml").read_text())
    assert saved["model"]["class_path"] == "wseg.methods.Supervised"
    best = float(cli.trainer.checkpoint_callback.best_model_score)
    last = float(cli.trainer.callback_metrics["val/miou"])
    assert last < best, "this seeded fit's val/miou drops in epoch 1: best and last differ"
    assert run.summary["val/miou"] == pytest.approx(best)
    assert run.summary["val/miou_last"] == pytest.approx(last)
    assert any(key.startswith("lr-SGD") for key in run.summary.keys())
    run.finish()
    # overlays every 5 epochs (epoch 0) and at the fit's last validation (epoch 1)
    panels = list((files / "media" / "images" / "val").glob("overlays_*.png"))
    assert len({panel.name.split("_")[1] for panel in panels}) == 2, panels
    assert sorted(path.name for path in (folder / "overlays").iterdir()) == [
        "epoch_000",
        "epoch_001",
    ]


def read_metric(run_dir: Path, name: str) -> float:
    (metrics,) = run_dir.rglob("metrics.csv")
    rows = [row for row in csv.DictReader(metrics.open()) if row.get(name)]
    return float(rows[-1][name])


@pytest.mark.slow
def test_ddp_validation_miou_equals_single_process(fitted, tmp_path) -> None:
    config, root, checkpoint = fitted
    results = {}
    for devices, strategy in ((1, "auto"), (2, "ddp")):
        out = tmp_path / f"devices{devices}"
        command = [sys.executable, "-m", "wseg", "validate", "--config", str(config)]
        command += common(root, out) + ["--ckpt_path", str(checkpoint)]
        command += ["--trainer.devices", str(devices), "--trainer.strategy", strategy]
        command += ["--trainer.logger", "CSVLogger", "--trainer.logger.save_dir", str(out)]
        env = dict(os.environ, OMP_NUM_THREADS="1")
        done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-3000:]
        results[devices] = read_metric(out, "val/miou")
    assert results[2] == pytest.approx(results[1], abs=1e-6)


DDP_WANDB_SCRIPT = """
import json, sys
from pathlib import Path
from wseg.cli import main

cli = main(sys.argv[2:])
if cli.trainer.is_global_zero:
    run = cli.trainer.logger.experiment
    summary = {key: run.summary[key] for key in ("val/miou", "val/miou_last")}
    summary["best"] = float(cli.trainer.checkpoint_callback.best_model_score)
    summary["hparams/optimizer"] = run.config["hparams/optimizer"]
    Path(sys.argv[1]).write_text(json.dumps(summary))
    run.finish()
"""


@pytest.mark.slow
def test_wandb_summary_under_ddp_comes_from_rank_zero(tmp_path) -> None:
    script, result = tmp_path / "fit.py", tmp_path / "summary.json"
    script.write_text(DDP_WANDB_SCRIPT)
    config = tmp_path / "experiment.yaml"
    monitor = {"class_path": "ModelCheckpoint", "init_args": {"monitor": "val/miou"}}
    config.write_text(yaml.safe_dump({"trainer": {"callbacks": [monitor]}}))
    command = [sys.executable, str(script), str(result), "fit", "--config", str(config)]
    command += ["--model", "Supervised", *MODEL, "--data", "WeakSegDataModule"]
    command += common(tmp_path / "synthetic", tmp_path) + ["--trainer.max_epochs", "2"]
    command += ["--trainer.devices", "2", "--trainer.strategy", "ddp"]
    command += ["--trainer.logger", "WandbLogger", "--trainer.logger.offline", "true"]
    command += ["--trainer.logger.save_dir", str(tmp_path)]
    env = dict(os.environ, OMP_NUM_THREADS="1", WANDB_MODE="offline", WANDB_DIR=str(tmp_path))
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(result.read_text())
    assert summary["val/miou"] == pytest.approx(summary["best"])
    assert 0.0 <= summary["val/miou_last"] <= summary["val/miou"]
    assert summary["hparams/optimizer"] == "sgd"
    assert len(list((tmp_path / "wandb").glob("offline-run-*"))) == 1  # rank 1 made no run


def test_wandb_runs_sharing_a_save_dir_keep_their_own_files(tmp_path, monkeypatch) -> None:
    """Two W&B runs saved to one folder: each run's config and overlays stay in its own folder."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    folders = []
    for method in ("Supervised", "BboxRect"):
        cli = main(
            ["fit", "--model", method, *MODEL, "--model.log_images_every_n_epochs", "1"]
            + ["--data", "WeakSegDataModule", "--data.num_strong", "2"]
            + common(tmp_path / "synthetic", tmp_path)
            + ["--trainer.max_epochs", "1", "--trainer.limit_val_batches", "1"]
            + ["--trainer.logger", "WandbLogger", "--trainer.logger.offline", "true"]
            + ["--trainer.logger.save_dir", str(tmp_path / "shared")]
        )
        (checkpoint,) = tmp_path.joinpath("shared").rglob(f"{cli.trainer.logger.version}/**/*.ckpt")
        folder = checkpoint.parent.parent
        saved = yaml.safe_load((folder / "config.yaml").read_text())
        assert saved["model"]["class_path"] == f"wseg.methods.{method}"
        assert (folder / "strong_split.txt").is_file()
        assert list((folder / "overlays").rglob("*.png"))
        folders.append(folder)
        cli.trainer.logger.experiment.finish()
    assert folders[0] != folders[1]
    assert not (tmp_path / "shared" / "config.yaml").exists()
