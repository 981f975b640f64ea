"""The batch the datamodule yields: `WeakSegDataset` items joined by `wseg.data.transforms.collate`.

``B`` images per batch, padded at the bottom and right to the largest ``H, W`` of the batch
(255 in long label maps, 0 in the normalised image, box masks and soft pseudo labels); ``C + 1``
classes, background included.
"""

# No `from __future__ import annotations`: on 3.11 it hides NotRequired from __optional_keys__.
from typing import NotRequired, TypedDict

from torch import Tensor


class Batch(TypedDict):
    """One batch of `wseg.data.WeakSegDataModule`.

    Attributes:
        image: float32 ``B, 3, H, W``, ImageNet-normalised (0 on padding).
        mask: long ``B, H, W`` full labels, 255 where unknown or padded; trusted only where
            ``strong``.
        strong: bool ``B``: the image is in the fully labelled subset F.
        boxes: per image a float32 ``K, 5`` tensor ``x1, y1, x2, y2, class`` (a list, not stacked).
        box_mask: float32 ``B, C+1, H, W`` per-class box indicators (`wseg.data.weak.box_masks`).
        box_label: long ``B, H, W`` Bbox-Rect labels (`wseg.data.weak.rect_labels`), 255 on padding.
        tags: float32 ``B, C+1`` image-level labels (`wseg.data.weak.image_tags`).
        id: the image ids (a list of str).
        scribble: long ``B, H, W`` scribble labels, 255 unlabelled; training batches with
            ``scribbles`` set.
        pseudo: pseudo labels of training batches with ``pseudo_labels`` set: hard, long
            ``B, H, W`` (255 unknown), or soft, float32 ``B, C+1, H, W``.
        size: long ``B, 2``, each image's ``(H, W)`` before padding; validation, test and
            prediction batches.

    """

    image: Tensor
    mask: Tensor
    strong: Tensor
    boxes: list[Tensor]
    box_mask: Tensor
    box_label: Tensor
    tags: Tensor
    id: list[str]
    scribble: NotRequired[Tensor]
    pseudo: NotRequired[Tensor]
    size: NotRequired[Tensor]
