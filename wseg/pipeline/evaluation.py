"""Scoring a finished fit with its method's own ``validate``: the one evaluation path of the chains.

`validate_on_source` runs a stage's fitted method (its ``config.yaml`` class, its ``final.ckpt``)
through ``Trainer.validate`` on any images: the scribble study scores its fits on the curated
training images too, which are not a split of the datamodule. `wseg.compare.validate` runs
``python -m wseg validate`` on the same folders. Both read ``val/miou`` and friends from
`wseg.methods.base.WeakSegMethod.validation_step`, so a chain's numbers are the ones its fits log.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import lightning as L

from wseg.data.dataset import WeakSegDataset
from wseg.data.loader import make_loader
from wseg.data.records import SegmentationSource
from wseg.data.transforms import build_eval_transform, collate
from wseg.methods.base import WeakSegMethod
from wseg.pipeline.stages import FINAL, load_config

__all__ = ["load_method", "validate_on_source"]


def load_method(stage_dir: Path) -> WeakSegMethod:
    """The fitted method of a stage folder: its ``config.yaml`` class with ``final.ckpt`` weights.

    Raises:
        FileNotFoundError: The folder has no ``config.yaml`` or no ``final.ckpt``.
        TypeError: The config's model is not a `WeakSegMethod`.

    """
    checkpoint = stage_dir / FINAL
    if not checkpoint.is_file():
        raise FileNotFoundError(f"{checkpoint}: no final checkpoint; has the stage finished?")
    class_path = load_config(stage_dir / "config.yaml")["model"]["class_path"]
    module, _, name = class_path.rpartition(".")
    # LightningCLI writes the short name of a registered method (``ScribblePAM``)
    cls = getattr(importlib.import_module(module or "wseg.methods"), name, None)
    if not (isinstance(cls, type) and issubclass(cls, WeakSegMethod)):
        raise TypeError(f"{stage_dir / 'config.yaml'}: model {class_path} is not a WeakSegMethod")
    return cls.load_from_checkpoint(checkpoint, map_location="cpu", log_images_every_n_epochs=0)


def validate_on_source(
    stage_dir: Path, source: SegmentationSource, progress: bool = True
) -> dict[str, float]:
    """The method's ``validate`` on the full images of ``source`` (one per batch, no augmentation).

    Args:
        stage_dir: A finished stage folder (``config.yaml``, ``final.ckpt``).
        source: The images, with masks.
        progress: Show Lightning's progress bar.

    Returns:
        The logged metrics (``val/miou``, ``val/pixel_acc``, ``val/iou/<class>``) as fractions.

    """
    model = load_method(stage_dir)
    dataset = WeakSegDataset(source, build_eval_transform(), source.num_classes, with_size=True)
    loader = make_loader(dataset, 1, num_workers=0, pin_memory=False, collate_fn=collate)
    trainer = L.Trainer(
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=progress,
        enable_model_summary=False,
        default_root_dir=str(stage_dir / "eval"),
    )
    (metrics,) = trainer.validate(model, loader, verbose=False)
    return {key: float(value) for key, value in metrics.items()}
