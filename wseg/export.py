"""Export a loaded `wseg.inference.Segmenter` as a self-contained TorchScript or ONNX model.

The exported module includes the input normalisation: it takes float RGB images in 0..1,
``B, 3, H, W`` (sides multiples of 32), and returns ``B, C, H, W`` logits; the arg-max over ``C``
is the label map. It is traced at one ``H, W`` with a free batch size; the TorchScript of the
default DeepLabV3+ also runs other sizes that are multiples of 32 (checked in the tests), the
ONNX graph only the traced one. ``torch.jit`` is deprecated in recent PyTorch and warns so.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn

from wseg.inference import Segmenter, normalize

Format = Literal["torchscript", "onnx"]
FORMATS: tuple[str, ...] = ("torchscript", "onnx")
MULTIPLE = 32
ONNX_OPSET = 17


class NormalizedNet(nn.Module):
    """A segmenter with its input normalisation: float 0..1 RGB ``B, 3, H, W`` to logits.

    Args:
        net: Maps normalised ``B, 3, H, W`` images to ``B, C, H, W`` logits.
        mean: Per-channel mean of the normalisation.
        std: Per-channel standard deviation of the normalisation.

    """

    def __init__(self, net: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.net = net
        self.mean = tuple(mean)
        self.std = tuple(std)

    def forward(self, image: Tensor) -> Tensor:
        """``B, C, H, W`` logits of float RGB images in 0..1."""
        return self.net(normalize(image, self.mean, self.std))


def example_input(model: Segmenter, height: int, width: int) -> Tensor:
    """A random ``1, 3, H, W`` image in 0..1 on the model's device to trace with.

    Raises:
        ValueError: If a side is not a positive multiple of 32 (what smp networks accept).

    """
    if height <= 0 or width <= 0 or height % MULTIPLE or width % MULTIPLE:
        raise ValueError(f"height and width must be positive multiples of 32, got {height}x{width}")
    generator = torch.Generator().manual_seed(0)
    return torch.rand(1, 3, height, width, generator=generator).to(model.device)


def export_torchscript(model: Segmenter, path: Path, height: int, width: int) -> Path:
    """Trace the normalised network with `torch.jit.trace` and save it.

    Args:
        model: The loaded segmenter.
        path: The ``.pt`` file to write (``torch.jit.load`` reads it).
        height: Image height it is traced at.
        width: Image width it is traced at.

    Returns:
        ``path``.

    """
    wrapped = NormalizedNet(model.net, model.mean, model.std).eval()
    with torch.no_grad():
        traced = torch.jit.trace(wrapped, example_input(model, height, width))
    traced.save(str(path))
    return path


def require_onnx() -> None:
    """Check that the ``onnx`` package, which `torch.onnx.export` writes with, is installed.

    Raises:
        ImportError: If it is not, saying how to install it.

    """
    try:
        importlib.import_module("onnx")
    except ImportError as error:
        raise ImportError(
            "ONNX export needs the onnx package, which is not installed: pip install onnx"
        ) from error


def export_onnx(model: Segmenter, path: Path, height: int, width: int) -> Path:
    """Export the normalised network to ONNX (opset 17; input ``image``, output ``logits``).

    Uses the TorchScript-based exporter (``dynamo=False``), which needs only ``onnx``; the
    batch axis is dynamic.

    Args:
        model: The loaded segmenter.
        path: The ``.onnx`` file to write.
        height: Image height it is traced at.
        width: Image width it is traced at.

    Returns:
        ``path``.

    Raises:
        ImportError: If ``onnx`` is not installed.

    """
    require_onnx()
    wrapped = NormalizedNet(model.net, model.mean, model.std).eval()
    torch.onnx.export(
        wrapped,
        (example_input(model, height, width),),
        str(path),
        input_names=["image"],
        output_names=["logits"],
        dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=ONNX_OPSET,
        dynamo=False,
    )
    return path


def export(model: Segmenter, path: Path, format: Format, height: int, width: int) -> Path:
    """Export ``model`` to ``path`` in ``format`` (see `export_torchscript`, `export_onnx`)."""
    exporters = {"torchscript": export_torchscript, "onnx": export_onnx}
    if format not in exporters:
        raise ValueError(f"unknown export format {format!r}; expected one of {list(FORMATS)}")
    return exporters[format](model, path, height, width)
