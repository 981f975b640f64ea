"""Every experiment YAML parses, instantiates and fits a few batches on tiny data in its layout.

The data section of each experiment is kept (dataset kind, splits, protocol); only the root points
to tiny generated data in that exact layout (VOC with a ``train_aug`` list, Cityscapes), or to the
real tiny_coco photographs. The model keeps its method and options; the encoder is swapped for a
tiny random one so that a fit takes seconds.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from wseg.cli import main
from wseg.data.synthetic import generate_synthetic

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = REPO / "experiments"
TINY_COCO = REPO.parent / "shared" / "data" / "tiny_coco"
SYNTHETIC = {"num_train": 6, "num_val": 2, "size": (64, 64), "seed": 0}


def experiment_files() -> list[Path]:
    """Every runnable experiment (shared fragments and sweeps excluded)."""
    return sorted(
        path
        for path in EXPERIMENTS.rglob("*.yaml")
        if "_shared" not in path.parts and "sweeps" not in path.parts
    )


def data_section(config: Path) -> dict:
    """The experiment's data init_args, following a ``data: <fragment>.yaml`` reference."""
    data = yaml.safe_load(config.read_text())["data"]
    if isinstance(data, str):
        data = yaml.safe_load((config.parent / data).read_text())
    return data["init_args"]


@pytest.fixture(scope="module")
def tiny_roots(tmp_path_factory) -> dict[str, Path]:
    """Tiny synthetic data in the VOC (with train_aug) and Cityscapes layouts."""
    root = generate_synthetic(tmp_path_factory.mktemp("data") / "synthetic", **SYNTHETIC)
    splits = root / "voc" / "ImageSets" / "Segmentation"
    shutil.copy(splits / "train.txt", splits / "train_aug.txt")
    return {
        "synthetic": root,
        "voc": root / "voc",
        "cityscapes": root / "cityscapes",
        "coco": TINY_COCO,
    }


def test_every_experiment_is_found() -> None:
    names = {path.relative_to(EXPERIMENTS).as_posix() for path in experiment_files()}
    assert {"demo/supervised.yaml", "demo/bbox_rect.yaml", "supervised_voc.yaml"} <= names


@pytest.mark.parametrize(
    "config", experiment_files(), ids=lambda p: p.relative_to(EXPERIMENTS).as_posix()
)
def test_experiment_fits_a_few_batches(config: Path, tiny_roots, tmp_path) -> None:
    dataset = data_section(config)["dataset"]
    if dataset == "coco" and not TINY_COCO.is_dir():
        pytest.skip(f"{TINY_COCO} (the shared real photographs) is not beside this checkout")
    args = ["fit", "--config", str(config), "--data.init_args.root", str(tiny_roots[dataset])]
    if dataset == "synthetic":
        args += ["--data.init_args.synthetic_num_train", str(SYNTHETIC["num_train"])]
        args += ["--data.init_args.synthetic_num_val", str(SYNTHETIC["num_val"])]
        args += ["--data.init_args.synthetic_size", "[64, 64]"]
    args += [
        "--data.init_args.crop_size", "64",
        "--data.init_args.batch_size", "2",
        "--data.init_args.val_batch_size", "1",
        "--data.init_args.num_workers", "0",
        "--model.init_args.encoder", "tu-mobilenetv3_small_050",
        "--model.init_args.encoder_weights", "null",
        "--model.init_args.log_images_every_n_epochs", "0",
        "--trainer.accelerator", "cpu",
        "--trainer.devices", "1",
        "--trainer.precision", "32",
        "--trainer.max_steps", "2",
        "--trainer.val_check_interval", "2",
        "--trainer.limit_val_batches", "1",
        "--trainer.enable_progress_bar", "false",
        "--trainer.default_root_dir", str(tmp_path),
        "--trainer.logger.init_args.save_dir", str(tmp_path),
    ]  # fmt: skip
    cli = main(args)
    assert cli.trainer.global_step == 2
    assert cli.model.hparams.num_classes == cli.datamodule.num_classes
    assert 0.0 <= float(cli.trainer.callback_metrics["val/miou"]) <= 1.0
    cli.trainer.logger.experiment.finish()
