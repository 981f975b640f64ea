"""Colour overlays of label maps on images (VOC palette), for W&B panels, PNG files and the demo."""

from __future__ import annotations

import numpy as np
from torch import Tensor

from wseg.data.records import IGNORE_INDEX, voc_palette


def to_uint8_image(image: Tensor) -> np.ndarray:
    """Turn a normalised ``3, H, W`` tensor into a displayable ``H, W, 3`` ``uint8`` array.

    The normalisation is undone by stretching the image's own range to 0..255, which works
    whatever mean and std the datamodule used.

    Args:
        image: ``3, H, W`` float tensor.

    Returns:
        ``H, W, 3`` ``uint8`` array.

    """
    array = image.detach().float().cpu().permute(1, 2, 0).numpy()
    low, high = float(array.min()), float(array.max())
    scaled = (array - low) / (high - low) if high > low else np.zeros_like(array)
    return (scaled * 255).round().astype(np.uint8)


def colorize(label: np.ndarray) -> np.ndarray:
    """Map an ``H, W`` label map to VOC palette colours, ``H, W, 3`` ``uint8``."""
    return voc_palette()[np.asarray(label, dtype=np.uint8)]


def overlay(image: np.ndarray, label: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend palette colours over an image; ignored pixels (255) show the image unchanged.

    Args:
        image: ``H, W, 3`` ``uint8`` image.
        label: ``H, W`` label map, 255 = ignore.
        alpha: Weight of the label colour.

    Returns:
        ``H, W, 3`` ``uint8`` blend.

    Raises:
        ValueError: If the sizes differ.

    """
    label = np.asarray(label)
    if image.shape[:2] != label.shape:
        raise ValueError(f"image size {image.shape[:2]} != label size {label.shape}")
    blend = (1 - alpha) * image.astype(np.float32) + alpha * colorize(label).astype(np.float32)
    blend = np.where((label == IGNORE_INDEX)[..., None], image.astype(np.float32), blend)
    return blend.round().astype(np.uint8)


def panel(image: np.ndarray, *labels: np.ndarray, alpha: float = 0.5, gap: int = 4) -> np.ndarray:
    """Put the image and one overlay per label map side by side, with white gaps.

    Args:
        image: ``H, W, 3`` ``uint8`` image.
        *labels: ``H, W`` label maps (e.g. ground truth, prediction).
        alpha: Weight of the label colour in each overlay.
        gap: Width in pixels of the white separator.

    Returns:
        ``H, (1 + len(labels)) * W + len(labels) * gap, 3`` ``uint8`` array.

    """
    separator = np.full((image.shape[0], gap, 3), 255, dtype=np.uint8)
    tiles = [image]
    for label in labels:
        tiles += [separator, overlay(image, label, alpha)]
    return np.concatenate(tiles, axis=1)
