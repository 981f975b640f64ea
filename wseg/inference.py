"""Use a trained model: load the segmenter of any wseg checkpoint and label images with it.

    model = wseg.load("runs/.../final.ckpt")
    labels = model.segment("photo.jpg", tta=True, crf=True)  # uint8 H, W class indices

``python -m wseg segment`` and ``python -m wseg export`` (`wseg.tools`) are built on it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from wseg.data.datasets.common import read_image
from wseg.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from wseg.nets.checkpoint import load_network
from wseg.nets.predict import predict_probs

ImageInput = str | os.PathLike | Image.Image | np.ndarray
"""What `Segmenter.segment` reads: a file path, a PIL image or an ``H, W, 3`` uint8 array."""

TTA_SCALES = (0.75, 1.0, 1.25)
"""Scales of ``tta=True`` when the checkpoint sets no ``tta_scales`` (those of `wseg.compare`)."""


def normalize(images: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """Normalise float RGB images in 0..1 as the datamodule does: ``(image - mean) / std``.

    Args:
        images: ``B, 3, H, W`` float images in 0..1.
        mean: Per-channel mean.
        std: Per-channel standard deviation.

    Returns:
        ``B, 3, H, W`` normalised images.

    """
    mean_t = images.new_tensor(mean).view(1, 3, 1, 1)
    std_t = images.new_tensor(std).view(1, 3, 1, 1)
    return (images - mean_t) / std_t


def as_rgb(image: ImageInput) -> np.ndarray:
    """Read an image input as a contiguous uint8 ``H, W, 3`` RGB array.

    Args:
        image: A path (str or `os.PathLike`), a PIL image (any mode; converted to RGB) or an
            ``H, W, 3`` uint8 numpy array.

    Returns:
        uint8 ``H, W, 3`` array, contiguous and writable (copied only when needed).

    Raises:
        FileNotFoundError: If a path does not exist.
        ValueError: If a file cannot be decoded, or an array is not uint8 ``H, W, 3``.
        TypeError: For any other input type.

    """
    if isinstance(image, (str, os.PathLike)):
        rgb = read_image(Path(image))
    elif isinstance(image, Image.Image):
        rgb = np.asarray(image.convert("RGB"))
    elif isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(
                f"need an H, W, 3 uint8 RGB array, got shape {image.shape} of {image.dtype}"
            )
        rgb = image
    else:
        raise TypeError(f"need a path, a PIL image or a numpy array, got {type(image).__name__}")
    return np.require(rgb, requirements=["C", "W"])


@dataclass
class Segmenter:
    """A trained segmentation network with what using it needs: classes and normalisation.

    Attributes:
        net: The network, in eval mode: ``B, 3, H, W`` normalised images to logits.
        class_names: Name of every class, background (index 0) included.
        mean: Per-channel mean of the input normalisation (images in 0..1).
        std: Per-channel standard deviation of the input normalisation.
        tta_scales: Input scales averaged (with horizontal flips) by ``tta=True``.
        checkpoint: The file it was loaded from, if any.

    """

    net: nn.Module
    class_names: list[str]
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    tta_scales: tuple[float, ...] = TTA_SCALES
    checkpoint: Path | None = None

    @property
    def num_classes(self) -> int:
        """Number of classes, background included."""
        return len(self.class_names)

    @property
    def device(self) -> torch.device:
        """Where the network's parameters are."""
        return next(self.net.parameters()).device

    def to_tensor(self, rgb: np.ndarray) -> Tensor:
        """uint8 ``H, W, 3`` RGB to the ``1, 3, H, W`` normalised float tensor on `device`."""
        image = torch.from_numpy(rgb).to(self.device).permute(2, 0, 1)[None].float() / 255.0
        return normalize(image, self.mean, self.std)

    @torch.inference_mode()
    def probs(self, image: ImageInput, tta: bool = False) -> Tensor:
        """Class probabilities at the input size.

        Args:
            image: See `as_rgb`.
            tta: Average over horizontal flips and the scales ``tta_scales``.

        Returns:
            ``1, C, H, W`` float probabilities on `device`.

        """
        scales = self.tta_scales if tta else (1.0,)
        return predict_probs(self.net, self.to_tensor(as_rgb(image)), flip=tta, scales=scales)

    @torch.inference_mode()
    def segment(self, image: ImageInput, tta: bool = False, crf: bool = False) -> np.ndarray:
        """Label every pixel of an image.

        Args:
            image: A path, a PIL image or an ``H, W, 3`` uint8 RGB array (see `as_rgb`).
            tta: Average the probabilities over horizontal flips and the scales ``tta_scales``
                (as ``tta_flip`` and ``tta_scales`` do in validation).
            crf: Refine the probabilities with the dense CRF (`wseg.postprocess.crf_postprocess`:
                DeepLab-CRF parameters, 10 mean-field iterations), as ``crf_postprocess`` does.

        Returns:
            uint8 ``H, W`` class indices at the input's size.

        """
        rgb = as_rgb(image)
        probs = self.probs(rgb, tta=tta)
        if crf:
            from wseg.postprocess import crf_postprocess

            pixels = torch.from_numpy(rgb).to(self.device).permute(2, 0, 1)[None].contiguous()
            probs = crf_postprocess(pixels, probs)
        return probs[0].argmax(0).to(torch.uint8).cpu().numpy()


def load(checkpoint: str | os.PathLike, device: str | torch.device = "cpu") -> Segmenter:
    """Load the segmentation network of a checkpoint of any wseg method, ready to segment.

    The architecture, encoder, number of classes and class names come from the checkpoint's
    hyperparameters; the weights from its ``net`` (the deployed segmenter every method trains).
    The input normalisation is the datamodule's (ImageNet mean and std of
    `wseg.data.transforms`), which every wseg method trains with and no checkpoint stores.
    ``tta=True`` uses the checkpoint's ``tta_scales`` when it sets them, else `TTA_SCALES`.

    Args:
        checkpoint: The ``.ckpt`` file (e.g. a run's ``final.ckpt`` or ``checkpoints/*.ckpt``).
        device: Where to put the network.

    Returns:
        The `Segmenter`, in eval mode.

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If it is not a wseg checkpoint or its network cannot segment images alone.

    """
    loaded = load_network(checkpoint, device)
    hparams = loaded.hparams
    num_classes = int(hparams["num_classes"])
    names = hparams.get("class_names")
    class_names = list(names) if names else [f"class_{i}" for i in range(num_classes)]
    scales = hparams.get("tta_scales")
    return Segmenter(
        net=loaded.net,
        class_names=class_names,
        tta_scales=tuple(scales) if scales else TTA_SCALES,
        checkpoint=loaded.path,
    )
