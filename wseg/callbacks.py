"""Callbacks: validation overlays (W&B panels, PNG files), palette-PNG predictions, W&B config.

The prediction writer writes one palette PNG per image id; config saving also reaches W&B.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.loggers import WandbLogger
from PIL import Image
from torch import Tensor

from wseg.data.records import IGNORE_INDEX, voc_palette
from wseg.runs import local_run_dir, run_dir
from wseg.visualize import panel, to_uint8_image


def _safe_name(image_id: str) -> str:
    return image_id.replace("/", "__").replace("\\", "__")


def save_palette_png(label: np.ndarray, path: str | Path) -> None:
    """Write an ``H, W`` label map as an indexed PNG with the VOC palette, atomically.

    Args:
        label: ``H, W`` array of class indices 0..255.
        path: Destination file; its folder is created.

    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(np.asarray(label, dtype=np.uint8), mode="P")
    image.putpalette(voc_palette().reshape(-1).tolist())
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".png")
    os.close(handle)
    try:
        image.save(temporary)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def _crop(array: np.ndarray | Tensor, size: Tensor | None) -> np.ndarray:
    """Return the top-left ``size`` (``H, W``) of an ``H', W'[, 3]`` map as ``uint8`` numpy."""
    if isinstance(array, Tensor):
        array = array.cpu().numpy()
    if size is not None:
        array = array[: int(size[0]), : int(size[1])]
    return np.ascontiguousarray(array, dtype=np.uint8)


class PredictionWriter(BasePredictionWriter):
    """Write each predicted label map as ``<output_dir>/<id>.png`` (VOC palette).

    Each map is cropped to its image's own size, ``size`` (long ``B, 2``: ``H, W``) of the
    prediction or else of the batch, so the padding the collate adds to evaluation batches of
    differently sized images never reaches the PNGs; without ``size`` the map is written whole.
    An existing file with different content is never replaced silently: the writer raises unless
    ``overwrite`` is set; an identical file is left alone. Ids with ``/`` become ``__`` in names.

    Args:
        output_dir: Folder of the PNGs; None: ``predictions/`` in the run's folder (`run_dir`).
        overwrite: Replace existing files whose content differs.

    """

    def __init__(self, output_dir: str | None = None, overwrite: bool = False) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = output_dir
        self.overwrite = overwrite
        self.written = 0
        self.folder = Path(output_dir) if output_dir else None

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Resolve the output folder on every process (`run_dir` is a collective)."""
        folder = run_dir(trainer)
        if self.output_dir is None:
            self.folder = folder / "predictions"

    def write_on_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        prediction: Any,
        batch_indices: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Write the batch's predictions, one PNG per id."""
        assert self.folder is not None, "setup() resolves the folder"
        sizes = prediction.get("size")
        if sizes is None and isinstance(batch, dict):
            sizes = batch.get("size")
        for index, (image_id, label) in enumerate(zip(prediction["id"], prediction["pred"])):
            array = _crop(label, None if sizes is None else sizes[index])
            path = self.folder / f"{_safe_name(image_id)}.png"
            if path.exists():
                if np.array_equal(np.asarray(Image.open(path)), array):
                    continue
                if not self.overwrite:
                    raise FileExistsError(
                        f"{path} exists with a different prediction; choose another output_dir "
                        "or set overwrite=True"
                    )
            save_palette_png(array, path)
            self.written += 1


class ValidationOverlays(Callback):
    """Every n epochs, show the first validation images with ground truth and prediction.

    With a `WandbLogger` they go to W&B as ``val/overlays`` (the image with toggleable
    ground-truth and prediction masks); in every case they are written as PNG panels
    (image | ground truth | prediction) to ``<run folder>/overlays/epoch_<e>/<id>.png``.

    Args:
        every_n_epochs: Epoch interval (epoch 0 included).
        num_images: Number of images shown.

    """

    def __init__(self, every_n_epochs: int = 5, num_images: int = 4) -> None:
        self.every_n_epochs = every_n_epochs
        self.num_images = num_images
        self._shown: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]] = []
        self._run_dir = Path(".")

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Resolve the run's folder on every process (`run_dir` is a collective)."""
        self._run_dir = run_dir(trainer)

    def _active(self, trainer: Trainer) -> bool:
        return (
            not trainer.sanity_checking
            and trainer.is_global_zero
            and trainer.current_epoch % self.every_n_epochs == 0
        )

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Start a new set of images."""
        self._shown = []

    def on_validation_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Keep images until ``num_images`` are collected."""
        if not self._active(trainer) or len(self._shown) >= self.num_images:
            return
        for index in range(min(len(batch["id"]), self.num_images - len(self._shown))):
            size = batch["size"][index] if "size" in batch else None
            self._shown.append(
                (
                    str(batch["id"][index]),
                    _crop(to_uint8_image(batch["image"][index]), size),
                    _crop(batch["mask"][index], size),
                    _crop(outputs["pred"][index], size),
                )
            )

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Send the collected images to W&B and write the PNG panels."""
        if not self._active(trainer) or not self._shown:
            return
        names = getattr(pl_module, "class_names", None) or []
        labels = {i: name for i, name in enumerate(names)} | {IGNORE_INDEX: "ignore"}
        folder = self._run_dir / "overlays" / f"epoch_{trainer.current_epoch:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        for image_id, image, mask, pred in self._shown:
            Image.fromarray(panel(image, mask, pred)).save(folder / f"{_safe_name(image_id)}.png")
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                import wandb

                images = [
                    wandb.Image(
                        image,
                        caption=image_id,
                        masks={
                            "ground_truth": {"mask_data": mask, "class_labels": labels},
                            "prediction": {"mask_data": pred, "class_labels": labels},
                        },
                    )
                    for image_id, image, mask, pred in self._shown
                ]
                logger.log_metrics({"val/overlays": images}, step=trainer.global_step)
        self._shown = []


class RunConfigCallback(SaveConfigCallback):
    """Save the resolved config as ``config.yaml`` in the run's own folder, and send it to W&B.

    Lightning's callback writes to ``trainer.log_dir``, which every W&B run saved to the same
    ``save_dir`` shares, so runs would replace each other's config; this one writes to the run's
    folder (`wseg.runs.run_dir`, beside ``checkpoints/``). With a `WandbLogger`, the config also
    becomes the W&B run's config (nested keys flattened with "/") and the YAML file is attached to
    the run as ``lightning_config.yaml`` (W&B writes a ``config.yaml`` of its own).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["save_to_log_dir"] = False  # `save_config` writes to the run's folder instead
        super().__init__(*args, **kwargs)

    def save_config(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Write ``config.yaml`` to the run's folder and push it to every W&B logger (rank 0)."""
        folder = local_run_dir(trainer)
        folder.mkdir(parents=True, exist_ok=True)
        self.parser.save(
            self.config,
            folder / self.config_filename,
            skip_none=False,
            overwrite=self.overwrite,
            multifile=self.multifile,
        )
        for logger in trainer.loggers:
            if not isinstance(logger, WandbLogger):
                continue
            config = self.parser.dump(self.config, skip_none=False, format="yaml")
            files = Path(logger.experiment.dir)
            path = files / f"lightning_{self.config_filename}"
            path.write_text(config)
            logger.experiment.save(str(path), base_path=str(files), policy="now")
            logger.experiment.config.update(_flatten(self.config.as_dict()), allow_val_change=True)


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        flat: dict[str, Any] = {}
        for key, value in tree.items():
            flat |= _flatten(value, f"{prefix}{key}/")
        return flat
    return {prefix.rstrip("/"): tree}
