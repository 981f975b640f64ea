"""Reference methods of the box papers: full supervision (Supervised) and Bbox-Rect.

Bbox-Rect (Papandreou et al. 2015, section 4.1; Dai et al. 2015): every pixel inside a box takes
the box's class, overlaps go to the smallest box, and the network is trained on these labels as
if they were masks. Both are plain per-pixel cross-entropy; they differ only in the target.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from wseg.data.batch import Batch
from wseg.data.records import IGNORE_INDEX
from wseg.methods.base import WeakSegMethod


class Supervised(WeakSegMethod):
    """Cross-entropy on the full masks (the upper bound of every weak method).

    Args:
        strong_only: Train only on the fully labelled subset F (images whose ``strong`` flag is
            set); the other images' pixels are ignored. The datamodule's ``strong_only`` option
            drops the weak images from the loader instead, which saves their compute.
        **kwargs: `WeakSegMethod` arguments.

    """

    def __init__(self, strong_only: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)

    def compute_loss(self, batch: Batch) -> Tensor:
        """Per-pixel cross-entropy against ``mask`` (only strong images if ``strong_only``)."""
        target = batch["mask"]
        if self.hparams.strong_only:
            target = target.masked_fill(~batch["strong"].view(-1, 1, 1), IGNORE_INDEX)
        return self.cross_entropy(self(batch["image"]), target)


class BboxRect(WeakSegMethod):
    """Cross-entropy on Bbox-Rect labels: every box filled with its class, background elsewhere.

    Takes the `WeakSegMethod` arguments.
    """

    def compute_loss(self, batch: Batch) -> Tensor:
        """Per-pixel cross-entropy against ``box_label``."""
        return self.cross_entropy(self(batch["image"]), batch["box_label"])
