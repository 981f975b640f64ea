"""Export a loaded `wseg.inference.Segmenter` standalone: torch.export, TorchScript or ONNX.

The exported module includes the input normalisation: it takes float RGB images in 0..1,
``B, 3, H, W`` (sides multiples of 32), and returns ``B, C, H, W`` logits; the arg-max over ``C``
is the label map. ``export`` (the default: a ``.pt2`` file, ``torch.export.load(path).module()``)
and ``onnx`` (the torch.export-based exporter; needs ``pip install "wseg[export]"``) are exported
with a dynamic batch and dynamic sides (any multiple of 32). ``torchscript`` (``torch.jit.trace``,
for older consumers) is traced at one size with a free batch; it also runs other sizes for the
default DeepLabV3+, and recent PyTorch warns that ``torch.jit`` is deprecated.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.export import Dim

from wseg.inference import Segmenter, normalize

Format = Literal["export", "torchscript", "onnx"]
FORMATS: tuple[str, ...] = ("export", "torchscript", "onnx")
MULTIPLE = 32
MAX_SIDE = 8192
ONNX_OPSET = 18  # the lowest the torch.export-based ONNX exporter writes
ONNX_PACKAGES = ("onnx", "onnxscript")


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


def example_input(model: Segmenter, height: int, width: int, batch: int = 1) -> Tensor:
    """A random ``batch, 3, H, W`` image in 0..1 on the model's device to trace with.

    Raises:
        ValueError: If a side is not a positive multiple of 32 (what smp networks accept).

    """
    if height <= 0 or width <= 0 or height % MULTIPLE or width % MULTIPLE:
        raise ValueError(f"height and width must be positive multiples of 32, got {height}x{width}")
    generator = torch.Generator().manual_seed(0)
    return torch.rand(batch, 3, height, width, generator=generator).to(model.device)


def dynamic_shapes() -> dict[str, dict[int, Any]]:
    """torch.export's dynamic dimensions of ``image``: any batch, sides any multiple of 32."""
    blocks = MAX_SIDE // MULTIPLE
    return {
        "image": {
            0: Dim("batch", min=1, max=4096),
            2: MULTIPLE * Dim("height_blocks", min=1, max=blocks),
            3: MULTIPLE * Dim("width_blocks", min=1, max=blocks),
        }
    }


def export_program(model: Segmenter, path: Path, height: int, width: int) -> Path:
    """Export the normalised network with `torch.export` (dynamic batch and sides) and save it.

    The example is a batch of two (a batch of one would fix the batch size), ``height x width``.

    Args:
        model: The loaded segmenter.
        path: The ``.pt2`` file to write (``torch.export.load(path).module()`` runs it).
        height: Height of the example input.
        width: Width of the example input.

    Returns:
        ``path``.

    """
    wrapped = NormalizedNet(model.net, model.mean, model.std).eval()
    example = example_input(model, height, width, batch=2)
    with torch.no_grad():
        program = torch.export.export(wrapped, (example,), dynamic_shapes=dynamic_shapes())
    torch.export.save(program, str(path))
    return path


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
    """Check that ``onnx`` and ``onnxscript``, which `torch.onnx.export` needs, are installed.

    Raises:
        ImportError: If one is not, saying how to install them.

    """
    for name in ONNX_PACKAGES:
        try:
            importlib.import_module(name)
        except ImportError as error:
            raise ImportError(
                f"ONNX export needs the {' and '.join(ONNX_PACKAGES)} packages ({name} is not "
                "installed): pip install 'wseg[export]' (or pip install onnx onnxscript)"
            ) from error


def export_onnx(model: Segmenter, path: Path, height: int, width: int) -> Path:
    """Export the normalised network to ONNX (opset 18; input ``image``, output ``logits``).

    Uses the torch.export-based exporter (``dynamo=True``, needs ``onnx`` and ``onnxscript``)
    with the dynamic batch and sides of `export_program`.

    Args:
        model: The loaded segmenter.
        path: The ``.onnx`` file to write.
        height: Height of the example input.
        width: Width of the example input.

    Returns:
        ``path``.

    Raises:
        ImportError: If ``onnx`` or ``onnxscript`` is not installed.

    """
    require_onnx()
    wrapped = NormalizedNet(model.net, model.mean, model.std).eval()
    with torch.no_grad():
        program = torch.onnx.export(
            wrapped,
            (example_input(model, height, width, batch=2),),
            input_names=["image"],
            output_names=["logits"],
            dynamic_shapes=dynamic_shapes(),
            opset_version=ONNX_OPSET,
            dynamo=True,
            verbose=False,
        )
    program.save(str(path))
    return path


def export(model: Segmenter, path: Path, format: Format, height: int, width: int) -> Path:
    """Export ``model`` to ``path`` in ``format``.

    See `export_program` (``export``), `export_torchscript` and `export_onnx`.
    """
    exporters = {"export": export_program, "torchscript": export_torchscript, "onnx": export_onnx}
    if format not in exporters:
        raise ValueError(f"unknown export format {format!r}; expected one of {list(FORMATS)}")
    return exporters[format](model, path, height, width)
