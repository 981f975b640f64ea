"""Segmentation networks: any smp architecture with any smp/timm encoder, and encoder weights."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import segmentation_models_pytorch as smp
from torch import nn

from wseg.nets.pretrained import (
    LITE0_TIMM_NAME,
    OFFLINE_LITE0,
    load_checkpoint_tensors,
    load_matching,
    offline_lite0_state_dict,
)

Arch = Literal[
    "deeplabv3plus",
    "deeplabv3",
    "unet",
    "unetplusplus",
    "upernet",
    "pspnet",
    "fpn",
    "linknet",
    "manet",
    "pan",
    "segformer",
]
CHECKPOINT_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin")
DecoderNorm = Literal["batch", "group"]


def is_checkpoint_path(encoder_weights: str) -> bool:
    """Tell whether ``encoder_weights`` names a file rather than a weight set ("imagenet")."""
    return encoder_weights.endswith(CHECKPOINT_SUFFIXES) or "/" in encoder_weights


def group_norm_decoder(net: nn.Module, max_groups: int = 8) -> nn.Module:
    """Replace every batch norm outside ``net.encoder`` by a group norm, in place.

    Group norm computes the same function in training and in evaluation, whatever the batch
    holds. Each layer of ``C`` channels gets ``gcd(C, max_groups)`` groups and starts, like the
    batch norm it replaces, as the identity affine map (weight 1, bias 0).

    Args:
        net: An smp network (its encoder keeps its batch norms).
        max_groups: The most groups a layer gets.

    Returns:
        ``net``.

    """
    for name, child in net.named_children():
        if name == "encoder":
            continue
        if isinstance(child, nn.BatchNorm2d):
            channels = child.num_features
            setattr(net, name, nn.GroupNorm(math.gcd(channels, max_groups), channels))
        else:
            group_norm_decoder(child, max_groups)
    return net


def build_segmenter(
    arch: Arch,
    encoder: str,
    encoder_weights: str | None,
    num_classes: int,
    decoder_norm: DecoderNorm = "batch",
    **kwargs: Any,
) -> nn.Module:
    """Build a segmentation network through smp and load its encoder weights.

    Args:
        arch: smp architecture name.
        encoder: smp encoder name, or any timm model as ``tu-<name>``.
        encoder_weights: None (random); a weight set smp downloads (e.g. "imagenet", needs
            internet); "offline-lite0" (ImageNet EfficientNet-Lite0 from the installed package,
            encoder ``tu-tf_efficientnet_lite0`` only); or the path of a .pth/.pt/.ckpt file holding
            the encoder's or a whole network's state dict (only the encoder part is loaded).
        num_classes: Output channels, background included.
        decoder_norm: ``batch`` (smp's) or ``group`` (`group_norm_decoder`) normalisation
            outside the encoder.
        **kwargs: Passed to `smp.create_model` (e.g. ``encoder_depth``, ``decoder_channels``).

    Returns:
        A plain ``nn.Module`` mapping ``B, 3, H, W`` images (sides divisible by 32) to
        ``B, num_classes, H, W`` logits; its encoder is ``net.encoder``.

    Raises:
        ValueError: For "offline-lite0" with another encoder, or a checkpoint without the encoder.
        FileNotFoundError: If a checkpoint path does not exist.

    """
    if decoder_norm not in ("batch", "group"):
        raise ValueError(f"decoder_norm must be 'batch' or 'group', got {decoder_norm!r}")
    from_file = encoder_weights is not None and is_checkpoint_path(encoder_weights)
    smp_weights = None if from_file or encoder_weights == OFFLINE_LITE0 else encoder_weights
    net = smp.create_model(
        arch, encoder_name=encoder, encoder_weights=smp_weights, classes=num_classes, **kwargs
    )
    if encoder_weights == OFFLINE_LITE0:
        if encoder != f"tu-{LITE0_TIMM_NAME}":
            raise ValueError(
                f"encoder_weights='{OFFLINE_LITE0}' fits encoder 'tu-{LITE0_TIMM_NAME}' only, "
                f"not '{encoder}'"
            )
        load_matching(net.encoder, offline_lite0_state_dict(), f"package {OFFLINE_LITE0}")
    elif from_file:
        path = Path(encoder_weights)
        load_matching(net.encoder, load_checkpoint_tensors(path), str(path))
    return group_norm_decoder(net) if decoder_norm == "group" else net
