"""Measured comparisons (speed ratios, label quality), run by hand or with make bench.

The method tables share their data and training helpers: `dataset_root`, `segmentation_data`
and `describe_data` (the synthetic set or tiny_coco at one crop size), `fit_timed` (a quiet
training run of a fixed number of steps, timed) and `val_miou`.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # lightning and wseg load when a helper runs: gpu_check answers in seconds
    from lightning.pytorch import LightningDataModule, LightningModule

TINY_COCO = Path(__file__).resolve().parents[2] / "shared" / "data" / "tiny_coco"
"""The 100 real COCO photographs, read in place beside the checkout (``../shared/data``)."""


def dataset_root(args: argparse.Namespace, out: Path) -> Path:
    """The root of ``args.data``: ``args.root`` for tiny_coco, else a synthetic set made in ``out``.

    The synthetic set has ``args.train_images`` / ``args.val_images`` square images of side
    ``args.size``.
    """
    from wseg.data.synthetic import generate_synthetic

    if args.data == "tiny_coco":
        return Path(args.root)
    return generate_synthetic(
        out / "synthetic",
        num_train=args.train_images,
        num_val=args.val_images,
        size=(args.size, args.size),
    )


def segmentation_data(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """`WeakSegDataModule` arguments for ``args.data`` (synthetic or tiny_coco) at ``args.size``.

    tiny_coco: train2017 / val2017 mapped to the VOC classes, ``args.size``-px crops, scale
    jitter 0.5-1.5 and full-size validation one image at a time (its photos differ in size).
    Synthetic: ``args.train_images`` / ``args.val_images`` square images of side ``args.size``,
    jitter 0.75-1.5.
    """
    size = args.size
    if args.data == "tiny_coco":
        return {
            "dataset": "coco",
            "root": str(root),
            "train_split": "train2017",
            "val_split": "val2017",
            "coco_class_map": "voc",
            "crop_size": size,
            "scale_range": (0.5, 1.5),
            "val_batch_size": 1,
        }
    return {
        "dataset": "synthetic",
        "root": str(root),
        "synthetic_num_train": args.train_images,
        "synthetic_num_val": args.val_images,
        "synthetic_size": (size, size),
        "crop_size": size,
        "scale_range": (0.75, 1.5),
        "val_batch_size": 8,
    }


def describe_data(args: argparse.Namespace, train_images: int) -> str:
    """One line naming the data of ``args.data`` for a printed table."""
    if args.data == "tiny_coco":
        return f"tiny_coco: {train_images} train2017 photos, val2017, {args.size} px crops"
    return f"Synthetic: {args.train_images} train / {args.val_images} val, {args.size} px"


def fit_timed(
    model: LightningModule,
    datamodule: LightningDataModule,
    steps: int,
    root_dir: Path,
    accelerator: str = "cpu",
) -> float:
    """Train ``model`` for ``steps`` optimiser steps without validation or logs; return seconds.

    Afterwards ``model.trainer`` is the trainer used (its ``callback_metrics`` hold the last
    training losses; ``save_checkpoint`` saves the model). Lightning's per-fit notices (devices
    found, tips, "max_steps reached") are silenced so that a table of many fits stays readable;
    its warnings still show.
    """
    from lightning.pytorch import Trainer

    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
    trainer = Trainer(
        max_steps=steps,
        max_epochs=-1,
        accelerator=accelerator,
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        default_root_dir=root_dir,
    )
    start = time.perf_counter()
    trainer.fit(model, datamodule)
    return time.perf_counter() - start


def val_miou(model: LightningModule, datamodule: LightningDataModule) -> float:
    """Validation mIoU of ``model`` on ``datamodule`` in percent (CPU, quiet)."""
    from lightning.pytorch import Trainer

    trainer = Trainer(accelerator="cpu", logger=False, enable_progress_bar=False)
    (metrics,) = trainer.validate(model, datamodule, verbose=False)
    return 100 * float(metrics["val/miou"])
