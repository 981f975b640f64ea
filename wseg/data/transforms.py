"""Joint augmentation of an image and all its labels, and the batch collate.

Geometry is applied once, by albumentations, to the image, mask, boxes, scribble and pseudo label
together; box masks, Bbox-Rect labels and tags are then computed from the transformed boxes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import albumentations as A
import cv2
import numpy as np
import torch
from albumentations.augmentations.crops.transforms import BaseCrop

from wseg.data.records import IGNORE_INDEX, Sample
from wseg.data.weak import box_masks, image_tags, rect_labels

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_ADDITIONAL_TARGETS = {"valid": "mask", "scribble": "mask", "pseudo": "mask"}
_BBOX_PARAMS = {"format": "pascal_voc", "label_fields": ["box_classes", "box_index"], "clip": True}


class ObjectCrop(BaseCrop):
    """A fixed-size crop that, with probability ``object_p``, holds the centre of one object.

    Foreground oversampling for datasets whose small or rare objects random crops seldom meet
    (CamVid's poles, signs and bicycles): the object is drawn class-balanced from the image's
    boxes (first a class uniformly among those present, then one of its boxes), and the crop's
    corner uniformly among the positions that keep the box centre inside the crop. Only boxes
    are used, so every weak method may use it. Otherwise (or without boxes) the crop is uniform.
    The image must be at least the crop size (pad it first).

    Args:
        size: Side of the square crop.
        object_p: Probability of an object-centred crop.

    """

    def __init__(self, size: int, object_p: float) -> None:
        super().__init__(p=1.0)
        if size <= 0 or not 0.0 <= object_p <= 1.0:
            raise ValueError(f"need size > 0 and 0 <= object_p <= 1, got {size}, {object_p}")
        self.size = size
        self.object_p = object_p

    def get_params_dependent_on_data(
        self, params: dict[str, Any], data: dict[str, Any]
    ) -> dict[str, tuple[int, int, int, int]]:
        """The crop corners: ``{"crop_coords": (x1, y1, x2, y2)}`` in pixels."""
        height, width = params["shape"][:2]
        if height < self.size or width < self.size:
            raise ValueError(f"ObjectCrop of {self.size} px on a {height}x{width} image: pad first")
        low_x, high_x, low_y, high_y = 0.0, float(width - self.size), 0.0, float(height - self.size)
        boxes = np.asarray(data.get("bboxes", np.zeros((0, 5))))
        if len(boxes) and self.py_random.random() < self.object_p:
            classes = sorted({float(c) for c in boxes[:, 4]})
            chosen = self.py_random.choice(classes)
            box = self.py_random.choice([b for b in boxes if float(b[4]) == chosen])
            centre_x = 0.5 * (box[0] + box[2]) * width  # boxes are normalised here
            centre_y = 0.5 * (box[1] + box[3]) * height
            low_x, high_x = _window(centre_x, self.size, width)
            low_y, high_y = _window(centre_y, self.size, height)
        x1 = int(self.py_random.uniform(low_x, high_x))
        y1 = int(self.py_random.uniform(low_y, high_y))
        return {"crop_coords": (x1, y1, x1 + self.size, y1 + self.size)}


def _window(centre: float, size: int, extent: int) -> tuple[float, float]:
    """The range of crop starts in ``[0, extent - size]`` that keep ``centre`` inside the crop."""
    low = min(max(0.0, centre - size + 1), extent - size)
    high = max(min(float(extent - size), centre), low)
    return low, high


def build_train_transform(
    crop_size: int = 321,
    scale_range: tuple[float, float] = (0.5, 2.0),
    flip: bool = True,
    color_jitter: float = 0.0,
    object_crop_p: float = 0.0,
) -> A.Compose:
    """Training augmentation: random scale, pad with ignore, random crop, flip, jitter, normalise.

    Label maps are resized with exact nearest-neighbour sampling (``INTER_NEAREST_EXACT``, pixel
    centres aligned with the box coordinates) and padded with 255; soft pseudo labels are resized
    the same way, so every pixel keeps a probability vector. Boxes are clipped to the crop and
    dropped when nothing of them is left. `transform_sample` sets padded image pixels to 0 (the
    mean colour after normalisation) and padded soft labels and box masks to all-zero vectors.

    Args:
        crop_size: Side of the square training crop (the papers use 321 on VOC).
        scale_range: Range of the random scale factor, drawn uniformly.
        flip: Whether to flip horizontally with probability 0.5.
        color_jitter: Brightness, contrast and saturation jitter strength (hue: a quarter of it);
            0 disables it, as in the papers.
        object_crop_p: Share of crops centred on an object drawn class-balanced from the boxes
            (`ObjectCrop`); 0 (the papers' uniform random crop) keeps the pipeline unchanged.

    Returns:
        The albumentations pipeline, for `transform_sample`.

    """
    if crop_size <= 0:
        raise ValueError(f"crop_size must be positive, got {crop_size}")
    low, high = scale_range
    if not 0 < low <= high:
        raise ValueError(f"scale_range must satisfy 0 < low <= high, got {scale_range}")
    if color_jitter < 0:
        raise ValueError(f"color_jitter must be >= 0, got {color_jitter}")
    steps: list[A.BasicTransform] = [
        A.RandomScale(
            scale_limit=(low - 1.0, high - 1.0),
            interpolation=cv2.INTER_LINEAR,
            mask_interpolation=cv2.INTER_NEAREST_EXACT,
            p=1.0,
        ),
    ]
    if object_crop_p > 0:
        steps.append(
            A.PadIfNeeded(
                crop_size,
                crop_size,
                position="random",
                border_mode=cv2.BORDER_CONSTANT,
                fill=0,
                fill_mask=IGNORE_INDEX,
            )
        )
        steps.append(ObjectCrop(crop_size, object_crop_p))
    else:
        steps.append(
            A.RandomCrop(
                crop_size,
                crop_size,
                pad_if_needed=True,
                pad_position="random",
                border_mode=cv2.BORDER_CONSTANT,
                fill=0,
                fill_mask=IGNORE_INDEX,
            )
        )
    if flip:
        steps.append(A.HorizontalFlip(p=0.5))
    if color_jitter > 0:
        steps.append(
            A.ColorJitter(
                brightness=color_jitter,
                contrast=color_jitter,
                saturation=color_jitter,
                hue=min(color_jitter / 4, 0.5),
                p=1.0,
            )
        )
    steps.append(A.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD))
    return A.Compose(steps, bbox_params=_BBOX_PARAMS, additional_targets=_ADDITIONAL_TARGETS)


def build_eval_transform() -> A.Compose:
    """Build the validation, test and prediction pipeline: the full image, only normalised.

    Returns:
        The albumentations pipeline, for `transform_sample`.

    """
    return A.Compose(
        [A.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD)], additional_targets=_ADDITIONAL_TARGETS
    )


def transform_sample(
    transform: A.Compose,
    sample: Sample,
    num_classes: int,
    scribble: np.ndarray | None = None,
    pseudo: np.ndarray | None = None,
    keep_instance_masks: bool = False,
) -> dict[str, Any]:
    """Apply one pipeline jointly to a sample and its extra labels; derive the box labels after it.

    Args:
        transform: A pipeline from `build_train_transform` or `build_eval_transform`.
        sample: The sample as read from its source.
        num_classes: Number of classes, background included.
        scribble: Optional ``uint8`` ``H, W`` scribble labels (255 = unlabelled).
        pseudo: Optional pseudo label, ``uint8`` ``H, W`` (hard) or ``float32`` ``C+1, H, W``.
        keep_instance_masks: Also return the transformed instance masks of the kept boxes.

    Returns:
        Tensors: ``image`` float ``3, H, W``; ``mask``, ``box_label`` (and ``scribble``, hard
        ``pseudo``) long ``H, W``, 255 on padding and where unknown; ``box_mask`` float
        ``C+1, H, W`` and soft ``pseudo`` float ``C+1, H, W``, all-zero on padding; ``boxes``
        float ``K, 5`` (``x1, y1, x2, y2, class``); ``tags`` float ``C+1``; ``instance_masks``
        bool ``K, H, W`` when asked; ``id``.

    """
    size = sample.size
    mask = sample.mask if sample.mask is not None else np.full(size, IGNORE_INDEX, np.uint8)
    _check_shape(sample, "mask", mask.shape, size)
    targets: dict[str, Any] = {
        "image": sample.image,
        "mask": mask,
        "valid": np.zeros(size, np.uint8),
    }
    boxes = np.asarray(sample.boxes, np.float32).reshape(-1, 4)
    classes = np.asarray(sample.labels, np.int64).reshape(-1)
    moves_boxes = "bboxes" in transform.processors
    if moves_boxes:
        targets.update(bboxes=boxes, box_classes=classes, box_index=np.arange(len(classes)))
    if scribble is not None:
        _check_shape(sample, "scribble", scribble.shape, size)
        targets["scribble"] = scribble
    soft = pseudo is not None and pseudo.ndim == 3
    if pseudo is not None:
        _check_shape(sample, "pseudo label", pseudo.shape[-2:], size)
        if soft and pseudo.shape[0] != num_classes:
            raise ValueError(
                f"soft pseudo label of {sample.id} has {pseudo.shape[0]} channels, "
                f"expected {num_classes}"
            )
        targets["pseudo"] = np.ascontiguousarray(pseudo.transpose(1, 2, 0)) if soft else pseudo
    keep_instances = keep_instance_masks and sample.instance_masks is not None
    if keep_instances:
        targets["masks"] = list(np.asarray(sample.instance_masks, np.uint8))

    out = transform(**targets)

    padded = out["valid"] == IGNORE_INDEX
    image = np.ascontiguousarray(out["image"].transpose(2, 0, 1))
    # Padding is exactly 0 after normalisation (the mean colour), as in the collate's padding.
    image[:, padded] = 0.0
    new_size = padded.shape
    kept = np.arange(len(classes))
    if moves_boxes:
        boxes = np.asarray(out["bboxes"], np.float32).reshape(-1, 4)
        classes = np.asarray(out["box_classes"], np.int64).reshape(-1)
        kept = np.asarray(out["box_index"], np.int64).reshape(-1)
    box_label = rect_labels(boxes, classes, new_size)
    box_label[padded] = IGNORE_INDEX
    box_mask = box_masks(boxes, classes, new_size, num_classes)
    box_mask[:, padded] = 0.0
    result: dict[str, Any] = {
        "image": torch.from_numpy(image),
        "mask": torch.from_numpy(out["mask"].astype(np.int64)),
        "boxes": torch.from_numpy(np.concatenate([boxes, classes[:, None]], axis=1)).float(),
        "box_mask": torch.from_numpy(box_mask),
        "box_label": torch.from_numpy(box_label.astype(np.int64)),
        "tags": torch.from_numpy(image_tags(classes, num_classes, bool(box_mask[0].any()))),
        "id": sample.id,
    }
    if scribble is not None:
        result["scribble"] = torch.from_numpy(out["scribble"].astype(np.int64))
    if pseudo is not None:
        if soft:
            probabilities = out["pseudo"].transpose(2, 0, 1).astype(np.float32)
            probabilities[:, padded] = 0.0
            result["pseudo"] = torch.from_numpy(np.ascontiguousarray(probabilities))
        else:
            result["pseudo"] = torch.from_numpy(out["pseudo"].astype(np.int64))
    if keep_instances:
        instances = np.stack(out["masks"]) if len(out["masks"]) else np.zeros((0, *new_size))
        result["instance_masks"] = torch.from_numpy(instances[kept] == 1)
    return result


def _check_shape(sample: Sample, name: str, shape: Sequence[int], size: tuple[int, int]) -> None:
    if tuple(shape) != tuple(size):
        raise ValueError(
            f"{name} of {sample.id} ({sample.source or 'in memory'}) has size {tuple(shape)}, "
            f"image has {tuple(size)}"
        )


def collate(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Batch per-image dicts: stack tensors, pad spatial ones to the largest image, keep lists.

    Padding is ignore everywhere: 255 for long label maps, 0 for the normalised image (the mean
    colour), for box masks and for soft pseudo labels. ``boxes`` and ``id`` stay per-image lists.

    Args:
        samples: Outputs of `transform_sample`, each with ``strong`` added by the dataset.

    Returns:
        The batch, a `wseg.data.batch.Batch` for the datamodule's items.

    """
    keys = set(samples[0])
    for sample in samples[1:]:
        if set(sample) != keys:
            raise ValueError(
                f"samples {samples[0]['id']} and {sample['id']} carry different keys: "
                f"{sorted(keys)} vs {sorted(sample)}"
            )
    height = max(int(s["image"].shape[-2]) for s in samples)
    width = max(int(s["image"].shape[-1]) for s in samples)
    batch: dict[str, Any] = {}
    for key in samples[0]:
        values = [s[key] for s in samples]
        if key in ("id", "boxes", "instance_masks"):
            batch[key] = values
        elif values[0].dim() >= 2:
            fill = IGNORE_INDEX if values[0].dtype == torch.long else 0.0
            batch[key] = torch.stack([_pad(v, height, width, fill) for v in values])
        else:
            batch[key] = torch.stack(values)
    return batch


def _pad(tensor: torch.Tensor, height: int, width: int, fill: float) -> torch.Tensor:
    """Pad the last two dimensions at the bottom and right to ``height, width``."""
    extra_h, extra_w = height - tensor.shape[-2], width - tensor.shape[-1]
    if extra_h == 0 and extra_w == 0:
        return tensor
    return torch.nn.functional.pad(tensor, (0, extra_w, 0, extra_h), value=fill)
