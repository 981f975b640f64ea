"""Use a trained model: load the segmenter of any wseg checkpoint and label images with it.

    model = wseg.load("runs/.../final.ckpt")
    labels = model.segment("photo.jpg", tta=True, crf=True)  # uint8 H, W class indices

``python -m wseg segment`` and ``python -m wseg export`` (`wseg.tools`) are built on it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from wseg.data.datasets.common import read_image
from wseg.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from wseg.eval import predict_probs
from wseg.nets import build_segmenter

ImageInput = str | os.PathLike | Image.Image | np.ndarray
"""What `Segmenter.segment` reads: a file path, a PIL image or an ``H, W, 3`` uint8 array."""

TTA_SCALES = (0.75, 1.0, 1.25)
"""Scales of ``tta=True`` when the checkpoint sets no ``tta_scales`` (those of `wseg.bench`)."""

REQUIRED_HPARAMS = ("num_classes", "arch", "encoder")
BOX_CONDITIONED = "net.box_encoder."
"""State-dict prefix of the box attention of `wseg.nets.AncillarySegmenter`."""


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


def read_checkpoint(path: Path) -> dict[str, Any]:
    """Read a wseg checkpoint (tensors and plain values only: ``weights_only=True``).

    Args:
        path: A Lightning checkpoint saved while training a `wseg.methods.WeakSegMethod`.

    Returns:
        Its content, with ``hyper_parameters`` holding `REQUIRED_HPARAMS` and a ``state_dict``.

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If it cannot be read or is not a wseg checkpoint (the message says why).

    """
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(
            f"{path} is not a wseg checkpoint: torch.load cannot read it ({error})"
        ) from error
    if not isinstance(content, Mapping):
        raise ValueError(f"{path} is not a wseg checkpoint: it holds a {type(content).__name__}")
    hparams = content.get("hyper_parameters")
    missing = [] if isinstance(content.get("state_dict"), Mapping) else ["state_dict"]
    if not isinstance(hparams, Mapping):
        missing.append("hyper_parameters")
    else:
        missing += [f"hyper_parameters.{key}" for key in REQUIRED_HPARAMS if key not in hparams]
    if missing:
        raise ValueError(f"{path} is not a wseg checkpoint: it lacks {', '.join(missing)}")
    return dict(content)


def deployed_weights(state_dict: Mapping[str, Tensor], path: Path) -> dict[str, Tensor]:
    """The weights of the image-only segmenter of a method's ``net``, prefixes removed.

    A method's segmenter is ``net``; Box2Seg's is ``net.segmenter`` (its `Box2SegNet.export`).

    Args:
        state_dict: The checkpoint's state dict.
        path: The checkpoint file, for error messages.

    Returns:
        Tensors by name as in the plain smp network.

    Raises:
        ValueError: If there is no ``net`` or it is box-conditioned (the Ancillary model).

    """
    if any(key.startswith(BOX_CONDITIONED) for key in state_dict):
        raise ValueError(
            f"{path}: its network is the box-conditioned ancillary model, which needs boxes as "
            "input; segment images with a checkpoint of the primary model (SelfCorrection) instead"
        )
    prefix = "net.segmenter." if any(k.startswith("net.segmenter.") for k in state_dict) else "net."
    weights = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
    if not weights:
        raise ValueError(f"{path} is not a wseg checkpoint: its state_dict has no 'net.*' weights")
    return weights


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
    path = Path(checkpoint)
    content = read_checkpoint(path)
    hparams = content["hyper_parameters"]
    num_classes = int(hparams["num_classes"])
    if not 1 <= num_classes <= 255:
        raise ValueError(f"{path}: num_classes={num_classes} does not fit uint8 label maps")
    names = hparams.get("class_names")
    class_names = list(names) if names else [f"class_{i}" for i in range(num_classes)]
    net = build_segmenter(hparams["arch"], hparams["encoder"], None, num_classes)
    try:
        net.load_state_dict(deployed_weights(content["state_dict"], path))
    except RuntimeError as error:
        raise ValueError(
            f"{path}: its 'net' weights do not fit a {hparams['arch']} / {hparams['encoder']} "
            f"segmenter with {num_classes} classes ({error})"
        ) from error
    scales = hparams.get("tta_scales")
    return Segmenter(
        net=net.to(device).eval(),
        class_names=class_names,
        tta_scales=tuple(scales) if scales else TTA_SCALES,
        checkpoint=path,
    )
