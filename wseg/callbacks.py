"""Callbacks: validation overlays (W&B panels, PNG files), palette-PNG predictions, W&B run, NaNs.

The prediction writer writes one palette PNG per image id; config saving also reaches W&B, with
the hyperparameters beside the resolved config and the best validation score in the summary; the
non-finite guard stops (or skips the batch of) a fit whose loss or gradients are not finite.
"""

from __future__ import annotations

import math
import os
import tempfile
import warnings
from argparse import Namespace
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.trainer.states import TrainerFn
from PIL import Image
from torch import Tensor

from wseg.data.records import IGNORE_INDEX, voc_palette
from wseg.errors import WsegError
from wseg.runs import local_run_dir, run_dir, use_run_dir_for_checkpoints
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
        if self.output_dir is None:
            self.folder = run_dir(trainer) / "predictions"

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


Shown = list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]
"""Overlay images of one validation: (id, image, ground truth, prediction) each."""


class ValidationOverlays(Callback):
    """Every n epochs and at a fit's last validation, show the first validation images.

    With a `WandbLogger` they go to W&B as ``val/overlays`` (the image with toggleable
    ground-truth and prediction masks); in every case they are written as PNG panels
    (image | ground truth | prediction) to ``<run folder>/overlays/epoch_<e>/<id>.png``.

    The last validation of a fit is shown whatever ended the fit (``max_epochs``, ``max_steps``
    in mid-epoch, early stopping, ``max_time``): a rule such as ``epoch == max_epochs - 1`` would
    miss all but the first. So the images of every validation are kept (rank zero), and those of
    the last one, if its epoch is not a multiple of n, are shown in ``on_train_end``, under that
    validation's epoch and global step.

    Args:
        every_n_epochs: Epoch interval (epoch 0 included).
        num_images: Number of images shown.

    """

    def __init__(self, every_n_epochs: int = 5, num_images: int = 4) -> None:
        self.every_n_epochs = every_n_epochs
        self.num_images = num_images
        self._shown: Shown = []
        self._pending: tuple[Shown, int, int] | None = None
        self._run_dir = Path(".")

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Resolve the run's folder on every process (`run_dir` is a collective)."""
        self._run_dir = run_dir(trainer)

    def _collecting(self, trainer: Trainer) -> bool:
        return not trainer.sanity_checking and trainer.is_global_zero

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Forget images kept from before this fit."""
        self._pending = None

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
        if not self._collecting(trainer) or len(self._shown) >= self.num_images:
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
        """Show the images every n epochs; keep them otherwise, in case the fit ends here."""
        if not self._collecting(trainer) or not self._shown:
            return
        shown = (self._shown, trainer.current_epoch, trainer.global_step)
        self._shown = []
        self._pending = None if trainer.current_epoch % self.every_n_epochs == 0 else shown
        if self._pending is None:
            self._show(trainer, pl_module, *shown)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Show the fit's last validation if its epoch was not one of the n."""
        if self._pending is not None and trainer.is_global_zero:
            self._show(trainer, pl_module, *self._pending)
        self._pending = None

    def _show(
        self, trainer: Trainer, pl_module: LightningModule, shown: Shown, epoch: int, step: int
    ) -> None:
        """Write the PNG panels of one validation and send its images to W&B."""
        names = getattr(pl_module, "class_names", None) or []
        labels = {i: name for i, name in enumerate(names)} | {IGNORE_INDEX: "ignore"}
        folder = self._run_dir / "overlays" / f"epoch_{epoch:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        for image_id, image, mask, pred in shown:
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
                    for image_id, image, mask, pred in shown
                ]
                logger.log_metrics({"val/overlays": images}, step=step)


class RunFolderCheckpoints(Callback):
    """Put the checkpoints of a fit without a logger into its run folder (`wseg.runs.run_dir`).

    Lightning would write them to ``<default_root_dir>/checkpoints``, by default in the working
    directory, even under ``fast_dev_run`` (its ``save_last`` at the end of training).
    """

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Point checkpoint callbacks without a ``dirpath`` at the run folder (fit only)."""
        if stage == TrainerFn.FITTING:
            use_run_dir_for_checkpoints(trainer)


HPARAMS_PREFIX = "hparams/"
"""Where `RunConfigCallback` puts ``log_hyperparams`` in the W&B config."""


def _monitored_metrics(trainer: Trainer) -> dict[str, str]:
    """Each metric a checkpoint callback monitors, with its mode; ``val/miou`` (max) if none.

    Args:
        trainer: The trainer whose ``checkpoint_callbacks`` are read.

    Returns:
        Metric name -> ``"max"`` or ``"min"``.

    """
    modes = {
        callback.monitor: getattr(callback, "mode", "max")
        for callback in trainer.checkpoint_callbacks
        if getattr(callback, "monitor", None)
    }
    return modes or {"val/miou": "max"}


def _wandb_loggers(trainer: Trainer) -> list[WandbLogger]:
    return [logger for logger in trainer.loggers if isinstance(logger, WandbLogger)]


def _log_hyperparams_under(logger: WandbLogger, prefix: str) -> None:
    """Make ``logger.log_hyperparams`` write its keys under ``prefix`` (once per logger)."""
    log = logger.log_hyperparams
    if getattr(log, "prefix", None) == prefix:
        return

    def log_prefixed(params: Mapping[str, Any] | Namespace) -> None:
        params = vars(params) if isinstance(params, Namespace) else params
        log({f"{prefix}{key}": value for key, value in params.items()})

    log_prefixed.prefix = prefix  # type: ignore[attr-defined]
    logger.log_hyperparams = log_prefixed  # type: ignore[method-assign]


class RunConfigCallback(SaveConfigCallback):
    """Save the resolved config in the run's own folder; make it and the best score W&B's.

    Lightning's callback writes to ``trainer.log_dir``, which every W&B run saved to the same
    ``save_dir`` shares, so runs would replace each other's config; this one writes to the run's
    folder (`wseg.runs.run_dir`, beside ``checkpoints/``). With a `WandbLogger` (rank zero only;
    without one nothing more happens):

    - the W&B config is the resolved config, nested keys flattened with "/"
      (``model/init_args/lr``), and the YAML file is attached as ``lightning_config.yaml`` (W&B
      writes a ``config.yaml`` of its own);
    - what Lightning logs with ``log_hyperparams`` (the model's and datamodule's
      ``save_hyperparameters``, linked values such as ``num_classes`` included) goes under
      ``hparams/`` (``hparams/lr``): flat, those keys would overwrite the config's own keys of the
      same name (the CLI's top-level ``optimizer`` by the model's ``optimizer`` argument);
    - after every validation of a fit, the W&B summary holds the best value so far of each metric
      a `ModelCheckpoint` monitors, in its mode (``val/miou``, max, where none monitors one), and
      the latest as ``<metric>_last`` (``val/miou_last``); W&B alone would keep the latest.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["save_to_log_dir"] = False  # `save_config` writes to the run's folder instead
        super().__init__(*args, **kwargs)
        self._best: dict[str, float] = {}

    def save_config(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Write ``config.yaml`` to the run's folder (fit only) and push it to W&B (rank 0).

        Only a fit makes a run folder; ``predict``, ``validate`` and ``test`` without a logger
        would otherwise write ``config.yaml`` into the working directory.
        """
        if stage == TrainerFn.FITTING:
            folder = local_run_dir(trainer)
            folder.mkdir(parents=True, exist_ok=True)
            self.parser.save(
                self.config,
                folder / self.config_filename,
                skip_none=False,
                overwrite=self.overwrite,
                multifile=self.multifile,
            )
        for logger in _wandb_loggers(trainer):
            config = self.parser.dump(self.config, skip_none=False, format="yaml")
            files = Path(logger.experiment.dir)
            path = files / f"lightning_{self.config_filename}"
            path.write_text(config)
            logger.experiment.save(str(path), base_path=str(files), policy="now")
            logger.experiment.config.update(_flatten(self.config.as_dict()), allow_val_change=True)
            _log_hyperparams_under(logger, HPARAMS_PREFIX)

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Start the best scores afresh."""
        self._best = {}

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Put the best and the latest monitored scores in the W&B summary (rank 0, fit only).

        Lightning has sent this validation's metrics to the loggers by now, so the summary's
        latest value is replaced right after it arrives.
        """
        if trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING:
            return
        loggers = _wandb_loggers(trainer) if trainer.is_global_zero else []
        if not loggers:
            return
        for name, mode in _monitored_metrics(trainer).items():
            if name not in trainer.callback_metrics:
                continue
            value = float(trainer.callback_metrics[name])
            best = self._best.get(name, math.nan)
            better = value > best if mode == "max" else value < best
            if better or (math.isnan(best) and not math.isnan(value)):
                self._best[name] = best = value
            for logger in loggers:
                logger.experiment.summary[name] = best
                logger.experiment.summary[f"{name}_last"] = value


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        flat: dict[str, Any] = {}
        for key, value in tree.items():
            flat |= _flatten(value, f"{prefix}{key}/")
        return flat
    return {prefix.rstrip("/"): tree}


class NonFiniteError(WsegError, RuntimeError):
    """A fit met a loss, gradient or weight that is not finite (the message says where, why)."""


def _is_power_of_ten(count: int) -> bool:
    return count > 0 and str(count).rstrip("0") == "1"


def _format_term(name: str, value: Any) -> str:
    return f"{name}={float(value):.4g}"


def _non_finite_tensors(tensors: Mapping[str, Tensor | None]) -> list[str]:
    """Names of the floating-point tensors of ``tensors`` that hold a NaN or an infinity."""
    named = [(n, t) for n, t in tensors.items() if t is not None and t.is_floating_point()]
    if not named:
        return []
    finite = torch.stack([torch.isfinite(t).all() for _, t in named]).tolist()
    return [name for (name, _), ok in zip(named, finite) if not ok]


class NonFiniteGuard(Callback):
    """Stop a fit (or skip the batch) when the loss or the gradients are not finite.

    Checked before every optimiser step, so a non-finite loss never reaches the weights, and the
    normalisation statistics (buffers) that the batch's forward pass changed are restored. With
    ``action="stop"`` the fit ends with `NonFiniteError`, naming the global step, the batch's image
    ids, the logged ``train/`` terms that are not finite (`WeakSegMethod.step_terms`), the
    learning rate and the precision. With ``action="skip"`` the batch's gradients are dropped
    (the step still counts in ``global_step``), with a counted warning, ``train/skipped_batches``
    in the logs and a summary when the fit ends. Under fp16 mixed precision, overflowing gradients
    are the gradient scaler's business (it skips the step and lowers its scale); only the loss and
    the statistics are checked then. Whatever the action, a checkpoint whose weights are not all
    finite is never written: saving it raises `NonFiniteError`.

    Args:
        action: ``stop`` the fit (default) or ``skip`` the batch.

    """

    def __init__(self, action: Literal["stop", "skip"] = "stop") -> None:
        if action not in ("stop", "skip"):
            raise ValueError(f"nonfinite.action must be 'stop' or 'skip', got {action!r}")
        self.action = action
        self.skipped = 0
        self.skipped_steps: list[int] = []
        self._losses: list[Tensor] = []
        self._terms: list[dict[str, Any]] = []
        self._ids: list[str] = []
        self._buffers: dict[str, Tensor] = {}

    def state_dict(self) -> dict[str, Any]:
        """The skip count, kept across a resumed fit."""
        return {"skipped": self.skipped, "skipped_steps": list(self.skipped_steps)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the skip count of a resumed fit."""
        self.skipped = int(state_dict.get("skipped", 0))
        self.skipped_steps = list(state_dict.get("skipped_steps", []))

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        """Note the batch's ids; keep the buffers the forward passes may change (a few kB).

        With gradient accumulation, one optimiser step follows several batches: the buffers are
        kept at the first of them, the ids and losses of all.
        """
        if batch_idx % max(1, trainer.accumulate_grad_batches) == 0:
            self._losses, self._terms, self._ids = [], [], []
            self._buffers = {n: b.detach().clone() for n, b in pl_module.named_buffers()}
        if isinstance(batch, dict) and "id" in batch:
            self._ids += [str(i) for i in batch["id"]]

    def on_before_backward(
        self, trainer: Trainer, pl_module: LightningModule, loss: Tensor
    ) -> None:
        """Keep the losses the gradients come from, and the terms the method logged for each."""
        self._losses.append(loss.detach())
        self._terms.append(dict(getattr(pl_module, "step_terms", {}) or {}))

    def on_before_optimizer_step(
        self, trainer: Trainer, pl_module: LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        """Stop, or drop this step, if the loss or (without a gradient scaler) a gradient is bad."""
        finite = [torch.isfinite(loss).all() for loss in self._losses]
        loss_bad = bool(finite) and not bool(torch.stack(finite).all())
        gradients: list[str] = []
        total = 0
        if getattr(trainer.precision_plugin, "scaler", None) is None:
            grads = {n: p.grad for n, p in pl_module.named_parameters()}
            gradients = _non_finite_tensors(grads)
            total = sum(g is not None for g in grads.values())
        buffers = _non_finite_tensors(dict(pl_module.named_buffers()))
        bad = loss_bad or bool(gradients) or bool(buffers)
        # One decision for every DDP rank: a rank stopping alone would leave the others waiting.
        if not trainer.strategy.reduce_boolean_decision(bad, all=False):
            return
        with torch.no_grad():
            for name, buffer in pl_module.named_buffers():
                if name in self._buffers:
                    buffer.copy_(self._buffers[name])
        if self.action == "stop":
            raise NonFiniteError(
                self._describe(trainer, pl_module, optimizer, gradients, total, buffers)
            )
        for group in optimizer.param_groups:
            for parameter in group["params"]:
                parameter.grad = None
        self.skipped += 1
        self.skipped_steps.append(trainer.global_step)
        if _is_power_of_ten(self.skipped):
            warnings.warn(
                f"skipped {self.skipped} training batch{'es' if self.skipped > 1 else ''} with a "
                f"non-finite loss or gradients so far (this one at global step "
                f"{trainer.global_step}, images {', '.join(self._ids) or '?'})",
                stacklevel=2,
            )

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """Log ``train/skipped_batches`` (skip mode)."""
        if self.action == "skip":
            pl_module.log("train/skipped_batches", float(self.skipped), batch_size=1)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Summarise the skipped batches of the fit."""
        if self.skipped:
            steps = ", ".join(str(s) for s in self.skipped_steps[:10])
            more = ", ..." if len(self.skipped_steps) > 10 else ""
            warnings.warn(
                f"the fit skipped {self.skipped} of {trainer.global_step} training "
                f"batches for a non-finite loss or gradients (global steps {steps}{more})",
                stacklevel=2,
            )

    def on_save_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        """Refuse to write a checkpoint whose weights are not all finite."""
        state = checkpoint.get("state_dict", {})
        bad = _non_finite_tensors(state)
        if bad:
            raise NonFiniteError(
                f"not saving a checkpoint at global step {trainer.global_step}: {len(bad)} of "
                f"{len(state)} weight tensors are not finite ({', '.join(bad[:3])}"
                f"{', ...' if len(bad) > 3 else ''}). " + _causes(trainer)
            )

    def _describe(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        optimizer: torch.optim.Optimizer,
        gradients: list[str],
        total: int,
        buffers: list[str],
    ) -> str:
        # The terms of every batch since the last step; a term is shown non-finite if it was
        # in any of them (gradient accumulation), else with its latest value.
        scalars: dict[str, float] = {}
        for index, terms in enumerate(self._terms):
            for name, value in (terms or {"loss": self._losses[index]}).items():
                if isinstance(value, Tensor) and value.numel() != 1:
                    continue
                if math.isfinite(scalars.get(name, 0.0)):
                    scalars[name] = float(value)
        bad = [_format_term(n, v) for n, v in scalars.items() if not math.isfinite(v)]
        good = [_format_term(n, v) for n, v in scalars.items() if math.isfinite(v)]
        step = trainer.global_step
        where = f"global step {step} (epoch {trainer.current_epoch}"
        where += f", images {', '.join(self._ids)})" if self._ids else ")"
        lines = [f"non-finite training loss, gradients or statistics at {where}:"]
        if bad:
            lines.append(f"  loss terms not finite: {', '.join(bad)}")
        else:
            lines.append("  every logged loss term is finite")
        if good:
            lines.append(f"  finite: {', '.join(good)}")
        if gradients:
            names = ", ".join(gradients[:3]) + (", ..." if len(gradients) > 3 else "")
            lines.append(f"  {len(gradients)} of {total} gradient tensors not finite ({names})")
        if buffers:
            names = ", ".join(buffers[:3]) + (", ..." if len(buffers) > 3 else "")
            lines.append(
                f"  {len(buffers)} normalisation statistics (buffers) not finite after the forward "
                f"pass ({names})"
            )
        lr = optimizer.param_groups[0].get("lr") if optimizer.param_groups else None
        lines.append(
            "  the weights were not updated with them (the statistics were restored) and no "
            "checkpoint holds them. " + _causes(trainer, lr)
        )
        lines.append(
            "  To skip such batches with a counted warning instead: --nonfinite.action skip"
        )
        return "\n".join(lines)


def _causes(trainer: Trainer, lr: float | None = None) -> str:
    """The usual causes of a non-finite loss, with this fit's learning rate and precision."""
    if lr is None and trainer.optimizers and trainer.optimizers[0].param_groups:
        lr = trainer.optimizers[0].param_groups[0].get("lr")
    precision = str(trainer.precision)
    if precision.startswith("16"):
        overflow = f"an fp16 overflow (precision={precision}; try bf16-mixed or 32-true)"
    else:
        overflow = f"with precision={precision} rarely an overflow"
    return (
        f"Usual causes: a learning rate too high (lr={'?' if lr is None else f'{lr:g}'} now; try "
        f"10x lower), {overflow}, or a loss term dividing by zero or taking log(0) on these "
        "images (check their labels)."
    )
