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
from tiny_data import TINY_COCO, write_box_only_coco

from wseg.cli import main
from wseg.data.config import datamodule_from_config
from wseg.data.datasets import make_source
from wseg.data.synthetic import generate_synthetic
from wseg.labels.generate import generate
from wseg.labels.generators import build_generator

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = REPO / "experiments"
SETTINGS_FILE = EXPERIMENTS / "pipelines.yaml"  # not a fit: the table of the chains' settings
SYNTHETIC = {"num_train": 6, "num_val": 2, "size": (64, 64), "seed": 0}


def experiment_files() -> list[Path]:
    """Every runnable experiment (shared fragments, sweeps and the chains' settings excluded)."""
    return sorted(
        path
        for path in EXPERIMENTS.rglob("*.yaml")
        if "_shared" not in path.parts and "sweeps" not in path.parts and path != SETTINGS_FILE
    )


def stage_overrides(config: Path) -> list[str]:
    """Later stages of multi-stage methods: no earlier-stage checkpoints, F drawn from tiny data.

    Checkpoint arguments (``*_checkpoint``) become null (each method documents what it does
    without one); a split file is not written into the repository and F holds 3 tiny images.
    """
    model = yaml.safe_load(config.read_text())["model"].get("init_args", {})
    args = []
    for key in sorted(k for k in model if k.endswith("_checkpoint")):
        args += [f"--model.init_args.{key}", "null"]
    data = data_section(config)
    if "strong_split_file" in data:
        args += ["--data.init_args.strong_split_file", "null"]
    if "num_strong" in data:
        args += ["--data.init_args.num_strong", "3"]
    return args


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
        "byod": write_box_only_coco(root, tmp_path_factory.mktemp("data") / "my_dataset"),
    }


@pytest.fixture(scope="module")
def tiny_stores(tiny_roots, tmp_path_factory) -> dict[tuple[str, str], Path]:
    """CRF-from-boxes stores (the real generator) of the tiny training splits, made on demand."""
    stores: dict[tuple[str, str], Path] = {}
    out = tmp_path_factory.mktemp("stores")

    def store(dataset: str, split: str) -> Path:
        if (dataset, split) not in stores:
            root = tiny_roots[dataset]
            identity = {"name": dataset, "root": str(root), "split": split}
            source = make_source(dataset, root, split)
            summary = generate(source, build_generator("crf"), out, identity, progress=False)
            stores[dataset, split] = summary.store.path
        return stores[dataset, split]

    return store


def test_every_experiment_is_found() -> None:
    names = {path.relative_to(EXPERIMENTS).as_posix() for path in experiment_files()}
    assert {"demo/supervised.yaml", "demo/bbox_rect.yaml", "supervised_voc.yaml"} <= names


@pytest.mark.parametrize(
    "config", experiment_files(), ids=lambda p: p.relative_to(EXPERIMENTS).as_posix()
)
def test_experiment_fits_a_few_batches(config: Path, tiny_roots, tiny_stores, tmp_path) -> None:
    data = data_section(config)
    dataset = data["dataset"]
    own_data = "byod" in config.parts  # a user's layout: the tiny box-only COCO JSON
    if dataset == "coco" and not own_data and not TINY_COCO.is_dir():
        pytest.skip(f"{TINY_COCO} (the shared real photographs) is not beside this checkout")
    root = tiny_roots["byod" if own_data else dataset]
    args = ["fit", "--config", str(config), "--data.init_args.root", str(root)]
    if dataset == "synthetic":
        args += ["--data.init_args.synthetic_num_train", str(SYNTHETIC["num_train"])]
        args += ["--data.init_args.synthetic_num_val", str(SYNTHETIC["num_val"])]
        args += ["--data.init_args.synthetic_size", "[64, 64]"]
    if data.get("pseudo_labels"):  # a store made by an earlier stage: make it for the tiny data
        store = tiny_stores(dataset, data.get("train_split", "train"))
        args += ["--data.init_args.pseudo_labels", str(store)]
    if own_data:  # the walk-through's store, made from the run's own data section
        readers = datamodule_from_config(config, [f"init_args.root={root}"])
        source = readers.make_source(readers.train_split)
        identity = {"name": "coco", "root": str(root), "split": readers.train_split}
        summary = generate(source, build_generator("rect"), tmp_path, identity, progress=False)
        args += ["--data.init_args.pseudo_labels", str(summary.store.path)]
    if data.get("strong_per_batch"):  # a fixed F share of the tiny batches of 2
        args += ["--data.init_args.strong_per_batch", "1"]
    args += stage_overrides(config)
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
        "--trainer.check_val_every_n_epoch", "null",
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
