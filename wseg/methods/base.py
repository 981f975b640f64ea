"""The base every method builds on: segmenter, poly-scheduled optimiser, shared evaluation steps."""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from lightning.pytorch import Callback, LightningModule
from torch import Tensor

from wseg.callbacks import ValidationOverlays
from wseg.data.batch import Batch
from wseg.data.records import IGNORE_INDEX
from wseg.metrics import ConfusionMatrix, iou_from_confusion, mean_iou, pixel_accuracy
from wseg.nets import Arch, build_segmenter
from wseg.nets.predict import forward_any_size, predict_probs, resize_probs
from wseg.postprocess import crf_postprocess


def check_method_options(options: dict[str, Any]) -> None:
    """Check the base's numeric options (those present) before anything is built or read.

    Args:
        options: Argument name -> value, e.g. a method's ``init_args``.

    Raises:
        ValueError: A value out of range; the message names the option and the range.

    """

    def number(name: str) -> float | None:
        value = options.get(name)
        if value is None or isinstance(value, bool) or not isinstance(value, int | float):
            return None
        return float(value)

    rules = {
        "lr": (lambda v: v > 0 and math.isfinite(v), "a positive number (0.007 in the papers)"),
        "momentum": (lambda v: 0 <= v < 1, "in [0, 1)"),
        "weight_decay": (lambda v: 0 <= v and math.isfinite(v), "zero or positive"),
        "poly_power": (lambda v: 0 <= v and math.isfinite(v), "zero or positive (0: constant)"),
        "head_lr_mult": (lambda v: v > 0 and math.isfinite(v), "positive"),
        "num_classes": (lambda v: v >= 2, "at least 2 (background and one class)"),
        "log_images_every_n_epochs": (lambda v: v >= 0, "zero (never) or positive"),
        "num_log_images": (lambda v: v >= 0, "zero or positive"),
    }
    problems = []
    for name, (ok, expected) in rules.items():
        value = number(name)
        if value is not None and not ok(value):
            problems.append(f"model.init_args.{name} must be {expected}, got {options[name]!r}")
    scales = options.get("tta_scales") or []
    if any(not isinstance(x, int | float) or not 0 < x < math.inf for x in scales):
        problems.append(f"model.init_args.tta_scales must be positive numbers, got {scales!r}")
    if problems:
        raise ValueError("; ".join(problems))


class WeakSegMethod(LightningModule):
    """Shared training machinery; a method implements `compute_loss` (or `training_step`).

    Validation, test and predict are the same for every method: class probabilities at the input
    size (optionally averaged over flips and scales), mIoU from a confusion matrix accumulated over
    the split and summed over DDP processes, one palette PNG per image id in predict.

    The optimiser follows DeepLab: SGD with momentum and the "poly" schedule
    ``lr * (1 - step / max_steps) ** poly_power`` over ``trainer.estimated_stepping_batches``, and
    ``head_lr_mult`` times the learning rate on the freshly initialised parameters. DeepLab applies
    the 10x to the final classifier only; we apply it to everything outside ``net.encoder`` (the
    smp decoder and head are new too), which is what common DeepLabV3+ re-implementations do.

    Args:
        num_classes: Number of classes, background included (linked from the datamodule).
        class_names: Name of every class, for per-class metrics (linked from the datamodule).
        arch: smp architecture of the segmenter.
        encoder: smp encoder name, or any timm model as ``tu-<name>``.
        encoder_weights: None, "imagenet" (needs internet), "offline-lite0", or a checkpoint path.
        optimizer: "sgd" (the papers') or "adamw".
        lr: Base learning rate (the encoder's).
        momentum: SGD momentum (ignored by AdamW).
        weight_decay: Weight decay of every parameter.
        poly_power: Exponent of the poly learning-rate decay; 0 keeps the rate constant.
        head_lr_mult: Learning-rate factor for parameters outside the encoder.
        tta_flip: Average predictions over horizontal flips in validate, test and predict.
        tta_scales: Average predictions over these input scales (None: the input size only).
        crf_postprocess: Also score predictions refined by the dense CRF (10 mean-field
            iterations, DeepLab-CRF; logged as ``val/miou_crf`` beside the plain ``val/miou``); the
            PNGs of predict are then the refined ones.
        log_images_every_n_epochs: Log image/label/prediction overlays every n epochs; 0: never.
        num_log_images: How many validation images the overlays show.

    """

    def __init__(
        self,
        num_classes: int,
        class_names: list[str] | None = None,
        arch: Arch = "deeplabv3plus",
        encoder: str = "tu-tf_efficientnet_lite0",
        encoder_weights: str | None = None,
        optimizer: Literal["sgd", "adamw"] = "sgd",
        lr: float = 0.01,
        momentum: float = 0.9,
        weight_decay: float = 1e-4,
        poly_power: float = 0.9,
        head_lr_mult: float = 10.0,
        tta_flip: bool = False,
        tta_scales: list[float] | None = None,
        crf_postprocess: bool = False,
        log_images_every_n_epochs: int = 5,
        num_log_images: int = 4,
    ) -> None:
        check_method_options(
            {
                "lr": lr,
                "momentum": momentum,
                "weight_decay": weight_decay,
                "poly_power": poly_power,
                "head_lr_mult": head_lr_mult,
                "num_classes": num_classes,
                "log_images_every_n_epochs": log_images_every_n_epochs,
                "num_log_images": num_log_images,
                "tta_scales": tta_scales,
            }
        )
        super().__init__()
        self.step_terms: dict[str, Any] = {}
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class_names for num_classes={num_classes}")
        self.save_hyperparameters()
        self.configure_models()
        self.configure_losses()
        self.configure_metrics()

    def configure_models(self) -> None:
        """Build ``self.net``, the segmenter trained and evaluated."""
        hp = self.hparams
        self.net = build_segmenter(hp.arch, hp.encoder, hp.encoder_weights, hp.num_classes)

    def configure_losses(self) -> None:
        """Set up loss modules; the base needs none (see `cross_entropy`)."""

    def configure_metrics(self) -> None:
        """Create the confusion-matrix accumulators of validation and test (plain and CRF)."""
        self.val_confusion = ConfusionMatrix(self.hparams.num_classes)
        self.test_confusion = ConfusionMatrix(self.hparams.num_classes)
        if self.hparams.crf_postprocess:
            self.val_confusion_crf = ConfusionMatrix(self.hparams.num_classes)
            self.test_confusion_crf = ConfusionMatrix(self.hparams.num_classes)

    def configure_callbacks(self) -> list[Callback]:
        """Add the overlay images every ``log_images_every_n_epochs`` epochs."""
        every = self.hparams.log_images_every_n_epochs
        return [ValidationOverlays(every, self.hparams.num_log_images)] if every > 0 else []

    @property
    def class_names(self) -> list[str]:
        """Class names (``class_<i>`` where the datamodule gave none)."""
        names = self.hparams.class_names
        return list(names) if names else [f"class_{i}" for i in range(self.hparams.num_classes)]

    def forward(self, image: Tensor) -> Tensor:
        """``B, C, H, W`` logits of ``self.net`` at the size of the ``B, 3, H, W`` input."""
        return forward_any_size(self.net, image)

    def cross_entropy(self, logits: Tensor, target: Tensor) -> Tensor:
        """Average cross-entropy over non-ignored pixels; 0 (with gradient) if all are ignored.

        Args:
            logits: ``B, C, h, w`` logits, upsampled bilinearly to the target size if smaller.
            target: ``B, H, W`` class indices, 255 = ignore.

        Returns:
            Scalar loss.

        """
        logits = resize_probs(logits, tuple(target.shape[-2:]))
        total = F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX, reduction="sum")
        return total / (target != IGNORE_INDEX).sum().clamp_min(1)

    def compute_loss(self, batch: Batch) -> Tensor:
        """Return the method's training loss on a batch (a `wseg.data.batch.Batch`)."""
        raise NotImplementedError(f"{type(self).__name__} must implement compute_loss")

    def log(self, name: str, value: Any, *args: Any, **kwargs: Any) -> None:
        """`LightningModule.log`; in training, a ``train/`` value is also kept in `step_terms`.

        `step_terms` holds the terms logged by this training step (reset at its start), so that
        `wseg.callbacks.NonFiniteGuard` can name the ones that went non-finite.
        """
        if self.training and name.startswith("train/"):
            self.step_terms[name] = value.detach() if isinstance(value, Tensor) else value
        super().log(name, value, *args, **kwargs)

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        """Compute and log ``train/loss``."""
        self.step_terms = {}
        loss = self.compute_loss(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["image"].shape[0])
        return loss

    def predict_probs(self, image: Tensor) -> Tensor:
        """``B, C, H, W`` class probabilities with the configured test-time augmentation."""
        scales = self.hparams.tta_scales or [1.0]
        return predict_probs(self.net, image, flip=self.hparams.tta_flip, scales=scales)

    def eval_probs(self, batch: Batch) -> Tensor:
        """``B, C, H, W`` probabilities that validate, test and predict score (TTA applied).

        Methods whose deployed model reads more than the image (the box-conditioned ancillary
        model) override this one hook.
        """
        return self.predict_probs(batch["image"])

    def _refine(self, batch: Batch, probs: Tensor) -> Tensor:
        """Dense-CRF post-processing of ``probs`` on the batch's images, padding left out."""
        valid = None
        if "size" in batch:
            rows = torch.arange(probs.shape[-2], device=probs.device)
            cols = torch.arange(probs.shape[-1], device=probs.device)
            heights, widths = batch["size"][:, 0], batch["size"][:, 1]
            valid = (rows.view(1, -1, 1) < heights.view(-1, 1, 1)) & (
                cols.view(1, 1, -1) < widths.view(-1, 1, 1)
            )
        return crf_postprocess(batch["image"], probs, valid=valid)

    def _evaluate(self, batch: Batch, stage: str) -> dict[str, Tensor]:
        mask = batch["mask"]
        probs = resize_probs(self.eval_probs(batch), tuple(mask.shape[-2:]))
        pred = probs.argmax(1)
        getattr(self, f"{stage}_confusion").update(pred, mask)
        if self.hparams.crf_postprocess:
            refined = self._refine(batch, probs).argmax(1)
            getattr(self, f"{stage}_confusion_crf").update(refined, mask)
        return {"pred": pred}

    def _log_iou(self, stage: str) -> None:
        matrix = getattr(self, f"{stage}_confusion").compute()
        getattr(self, f"{stage}_confusion").reset()
        self.log(f"{stage}/miou", mean_iou(matrix), prog_bar=True, sync_dist=True)
        self.log(f"{stage}/pixel_acc", pixel_accuracy(matrix), sync_dist=True)
        for name, iou in zip(self.class_names, iou_from_confusion(matrix).tolist()):
            self.log(f"{stage}/iou/{name}", iou, sync_dist=True)
        if self.hparams.crf_postprocess:
            refined = getattr(self, f"{stage}_confusion_crf")
            self.log(f"{stage}/miou_crf", mean_iou(refined.compute()), sync_dist=True)
            refined.reset()

    def validation_step(self, batch: Batch, batch_idx: int) -> dict[str, Tensor]:
        """Accumulate the confusion matrix; return predictions for the overlay callback."""
        return self._evaluate(batch, "val")

    def on_validation_epoch_end(self) -> None:
        """Log ``val/miou``, ``val/pixel_acc`` and ``val/iou/<class>``."""
        self._log_iou("val")

    def test_step(self, batch: Batch, batch_idx: int) -> dict[str, Tensor]:
        """Accumulate the confusion matrix of the test split."""
        return self._evaluate(batch, "test")

    def on_test_epoch_end(self) -> None:
        """Log ``test/miou``, ``test/pixel_acc`` and ``test/iou/<class>``."""
        self._log_iou("test")

    def predict_step(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> dict:
        """Hard labels at the batch size: ``{"id": [...], "pred": uint8 B, H, W}`` on the CPU.

        Evaluation batches also carry ``size`` (long ``B, 2``, each image's ``H, W`` before the
        collate padded it); it is passed on so that the prediction writer crops the padding away.
        """
        probs = self.eval_probs(batch)
        if self.hparams.crf_postprocess:
            probs = self._refine(batch, probs)
        pred = probs.argmax(1).to(torch.uint8).cpu()
        out = {"id": list(batch["id"]), "pred": pred}
        if "size" in batch:
            out["size"] = batch["size"].cpu()
        return out

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Record ``encoder_weights=None``: the checkpoint holds every weight already.

        ``load_from_checkpoint`` rebuilds the network from the saved hyperparameters before loading
        the state dict; with the original setting that would download ImageNet weights or need the
        original weight file, only to overwrite them.
        """
        hparams = checkpoint.get("hyper_parameters")
        if hparams is not None and "encoder_weights" in hparams:
            hparams["encoder_weights"] = None

    def parameter_groups(self) -> list[dict[str, Any]]:
        """Optimiser groups: ``net.encoder`` at ``lr``, every other parameter at ``lr * mult``."""
        encoder = getattr(self.net, "encoder", None)
        encoder_ids = {id(p) for p in encoder.parameters()} if encoder is not None else set()
        params = [p for p in self.parameters() if p.requires_grad]
        lr = self.hparams.lr
        groups = [
            {"params": [p for p in params if id(p) in encoder_ids], "lr": lr},
            {
                "params": [p for p in params if id(p) not in encoder_ids],
                "lr": lr * self.hparams.head_lr_mult if encoder_ids else lr,
            },
        ]
        return [group for group in groups if group["params"]]

    def configure_optimizers(self) -> dict[str, Any]:
        """SGD (or AdamW) with the poly schedule, stepped every optimiser step."""
        hp = self.hparams
        if hp.optimizer == "sgd":
            optimizer = torch.optim.SGD(
                self.parameter_groups(),
                lr=hp.lr,
                momentum=hp.momentum,
                weight_decay=hp.weight_decay,
            )
        else:
            optimizer = torch.optim.AdamW(
                self.parameter_groups(), lr=hp.lr, weight_decay=hp.weight_decay
            )
        total = self.trainer.estimated_stepping_batches
        if not math.isfinite(total):
            raise ValueError("the poly schedule needs a finite trainer.max_epochs or max_steps")
        power = hp.poly_power

        def poly(step: int) -> float:
            return max(0.0, 1.0 - step / max(1, total)) ** power

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, poly)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }
