"""From a wseg checkpoint file to a network: the one loader every consumer of checkpoints uses.

`load_network` builds the image-only segmenter of a Lightning checkpoint of any
`wseg.methods.WeakSegMethod` (its architecture, encoder and classes from the hyperparameters,
its weights from ``net``); `wseg.load`, the PAM of the scribble study and Box2Tag's box segmenter
are built on it. `file_digest` is a checkpoint's identity in a pseudo-label store's configuration.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from wseg.nets.segmenter import build_segmenter

__all__ = [
    "BOX_CONDITIONED",
    "REQUIRED_HPARAMS",
    "LoadedNetwork",
    "deployed_weights",
    "file_digest",
    "load_network",
    "read_checkpoint",
]

REQUIRED_HPARAMS = ("num_classes", "arch", "encoder")
BOX_CONDITIONED = "net.box_encoder."
"""State-dict prefix of the box attention of `wseg.nets.AncillarySegmenter`."""


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes (a network's identity in a store's configuration)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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


@dataclass
class LoadedNetwork:
    """A checkpoint's segmenter and the hyperparameters it was trained with.

    Attributes:
        net: The smp network in eval mode: ``B, 3, H, W`` normalised images to logits.
        hparams: The checkpoint's ``hyper_parameters`` (class names, border, tta scales, ...).
        path: The checkpoint file.

    """

    net: nn.Module
    hparams: dict[str, Any]
    path: Path


def load_network(
    checkpoint: str | os.PathLike, device: str | torch.device = "cpu"
) -> LoadedNetwork:
    """Build the image-only segmenter of a checkpoint of any wseg method, in eval mode.

    Args:
        checkpoint: The ``.ckpt`` file (a run's ``final.ckpt`` or ``checkpoints/*.ckpt``).
        device: Where to put the network.

    Returns:
        The network with the checkpoint's hyperparameters.

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If it is not a wseg checkpoint, or its network cannot segment images alone
            or does not fit the architecture its hyperparameters name.

    """
    path = Path(checkpoint)
    content = read_checkpoint(path)
    hparams = dict(content["hyper_parameters"])
    num_classes = int(hparams["num_classes"])
    if not 1 <= num_classes <= 255:
        raise ValueError(f"{path}: num_classes={num_classes} does not fit uint8 label maps")
    norm = "group" if hparams.get("decoder_norm") == "group" else "batch"
    net = build_segmenter(hparams["arch"], hparams["encoder"], None, num_classes, norm)
    try:
        net.load_state_dict(deployed_weights(content["state_dict"], path))
    except RuntimeError as error:
        raise ValueError(
            f"{path}: its 'net' weights do not fit a {hparams['arch']} / {hparams['encoder']} "
            f"segmenter with {num_classes} classes ({error})"
        ) from error
    return LoadedNetwork(net=net.to(device).eval(), hparams=hparams, path=path)
