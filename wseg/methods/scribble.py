"""Scribble supervision of the PAM gap study (local + global predictive annotator models).

The global PAM (partial cross-entropy on scribbled pixels) and the network trained on PFAs.
"""

from __future__ import annotations

from typing import Any, Literal

import torch.nn.functional as F
from torch import Tensor

from wseg.data.batch import Batch
from wseg.data.records import IGNORE_INDEX
from wseg.methods.base import WeakSegMethod
from wseg.nets.predict import resize_probs


def partial_cross_entropy(logits: Tensor, scribble: Tensor) -> Tensor:
    """Cross-entropy averaged over the scribbled pixels only (the paper's WA baseline, sec. 2.1).

    Unlabelled pixels (255) cost nothing, as if they held an extra "None" label whose loss is 0.
    The average runs over the scribbled pixels of the whole batch; a batch without any scribbled
    pixel gives 0 (with a gradient path, so every process of a DDP step still runs backward).

    Args:
        logits: ``B, C, h, w`` logits (upsampled bilinearly to the scribble size if smaller).
        scribble: ``B, H, W`` scribble labels, 255 = unlabelled.

    Returns:
        Scalar loss.

    """
    logits = resize_probs(logits, tuple(scribble.shape[-2:]))
    total = F.cross_entropy(logits, scribble, ignore_index=IGNORE_INDEX, reduction="sum")
    return total / (scribble != IGNORE_INDEX).sum().clamp_min(1)


class ScribblePAM(WeakSegMethod):
    """A segmentation network of the PAM gap study, trained on scribbles or on their PFAs.

    ``target: scribble`` is the global PAM and the paper's baseline (WA rows of Table 1): the
    network learns from the scribbled pixels alone (`partial_cross_entropy`); its softmax on the
    training images is ``P_global`` (`wseg.labels.pam_generators.PFAGenerator`). ``target:
    pseudo`` is the final network trained with ordinary cross-entropy on a PFA store that
    `python -m wseg.pipeline scribbles` (or `wseg.labels.pam_generators`) made: local, global or
    combined PAMs, optionally regularised. The paper uses the same network and schedule for both.

    Args:
        target: ``scribble`` (partial cross-entropy on the batch's ``scribble``) or ``pseudo``
            (cross-entropy on the batch's ``pseudo`` labels).
        **kwargs: `WeakSegMethod` arguments.

    """

    def __init__(self, target: Literal["scribble", "pseudo"] = "scribble", **kwargs: Any) -> None:
        if target not in ("scribble", "pseudo"):
            raise ValueError(f"target must be 'scribble' or 'pseudo', got {target!r}")
        super().__init__(**kwargs)

    def compute_loss(self, batch: Batch) -> Tensor:
        """Partial cross-entropy on ``scribble``, or cross-entropy on the hard ``pseudo`` labels."""
        key = self.hparams.target
        if key not in batch:
            how = (
                "set the datamodule's scribbles to 'dataset' or 'synthesize'"
                if key == "scribble"
                else "set the datamodule's pseudo_labels to a PFA store "
                "(python -m wseg.pipeline scribbles makes them)"
            )
            raise KeyError(f"{type(self).__name__}(target={key!r}) needs batch[{key!r}]: {how}")
        target = batch[key]
        if target.is_floating_point():
            raise ValueError(
                f"{type(self).__name__} needs hard labels, got soft ones {tuple(target.shape)}"
            )
        logits = self(batch["image"])
        if key == "scribble":
            return partial_cross_entropy(logits, target)
        return self.cross_entropy(logits, target)
