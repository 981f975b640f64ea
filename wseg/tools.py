"""Commands that use a trained checkpoint: ``python -m wseg segment`` and ``python -m wseg export``.

    python -m wseg segment CKPT IMAGES_DIR --out DIR [--tta] [--crf] [--device cpu] [--overwrite]
    python -m wseg export CKPT [--format export|torchscript|onnx] --out FILE [--height H --width W]

``segment`` writes ``DIR/<stem>.png`` (palette PNG label maps, the VOC palette of the prediction
writer) and ``DIR/overlays/<stem>.png`` (the labels blended over the image) for every image of
IMAGES_DIR; an image that cannot be read is skipped with a counted warning, the others are
written, and the command then exits non-zero naming every skipped file. Neither command replaces
an existing file unless ``--overwrite`` is given.
"""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Sequence
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from wseg.data.datasets.common import DataWarning
from wseg.data.datasets.folder import list_images

OVERLAYS = "overlays"
COMMANDS = ("segment", "export")


class UnreadableImagesError(ValueError):
    """``segment`` skipped images it could not read (it wrote the others, listed in ``written``)."""

    def __init__(self, message: str, written: list[Path]) -> None:
        super().__init__(message)
        self.written = written


def output_paths(images: Sequence[Path], out: Path, overwrite: bool) -> list[tuple[Path, Path]]:
    """The label and overlay file of every image, checked before anything is written.

    Raises:
        FileExistsError: If an output exists and ``overwrite`` is False.
        ValueError: If an output would replace one of the input images (even with ``overwrite``).

    """
    pairs = [(out / f"{path.stem}.png", out / OVERLAYS / f"{path.stem}.png") for path in images]
    inputs = {path.resolve() for path in images}
    outputs = [path for pair in pairs for path in pair]
    clash = [path for path in outputs if path.resolve() in inputs]
    if clash:
        raise ValueError(f"{clash[0]} is an input image; choose an --out outside the image folder")
    existing = [path for path in outputs if path.exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f"{len(existing)} output files exist already, e.g. {existing[0]}; choose another "
            "--out or pass --overwrite to replace them"
        )
    return pairs


def segment_folder(
    checkpoint: Path,
    images_dir: Path,
    out: Path,
    tta: bool = False,
    crf: bool = False,
    device: str = "cpu",
    overwrite: bool = False,
) -> list[Path]:
    """Segment every image of a folder; write label PNGs and overlays.

    Args:
        checkpoint: A wseg checkpoint (see `wseg.inference.load`).
        images_dir: Folder of ``.jpg``, ``.jpeg``, ``.png`` or ``.bmp`` images (not recursive).
        out: Output folder: ``<stem>.png`` label maps and ``overlays/<stem>.png``.
        tta: Flip and multi-scale averaging (`wseg.inference.Segmenter.segment`).
        crf: Dense-CRF refinement.
        device: Torch device of the network.
        overwrite: Replace existing outputs.

    Returns:
        The label PNGs written, in the order of the images.

    Raises:
        FileNotFoundError: If the checkpoint or the folder is missing.
        FileExistsError: If outputs exist and ``overwrite`` is False (nothing is written).
        ValueError: For a checkpoint that is not wseg's or an empty folder.
        UnreadableImagesError: Some images could not be decoded: each was skipped with a counted
            warning, every other one written; raised at the end, naming every file skipped.

    """
    from wseg.callbacks import save_palette_png
    from wseg.inference import as_rgb, load
    from wseg.visualize import overlay

    images = list_images(images_dir)
    pairs = output_paths(images, out, overwrite)
    model = load(checkpoint, device)
    (out / OVERLAYS).mkdir(parents=True, exist_ok=True)
    written, unreadable = [], []
    for path, (label_path, overlay_path) in zip(tqdm(images, desc="segment", unit="img"), pairs):
        try:
            rgb = as_rgb(path)
        except (OSError, ValueError) as error:
            unreadable.append(str(error))
            warnings.warn(
                f"segment: skipped {len(unreadable)} unreadable image"
                f"{'s' if len(unreadable) > 1 else ''} so far ({error})",
                DataWarning,
                stacklevel=2,
            )
            continue
        label = model.segment(rgb, tta=tta, crf=crf)
        save_palette_png(label, label_path)
        Image.fromarray(overlay(rgb, label)).save(overlay_path)
        written.append(label_path)
    if unreadable:
        raise UnreadableImagesError(
            f"{len(unreadable)} of {len(images)} images could not be read and were skipped; "
            f"the other {len(written)} were segmented into {out}:\n  " + "\n  ".join(unreadable),
            written,
        )
    return written


def export_checkpoint(
    checkpoint: Path,
    out: Path,
    format: str,
    height: int = 512,
    width: int = 512,
    device: str = "cpu",
    overwrite: bool = False,
) -> Path:
    """Export a checkpoint's network (normalisation included; see `wseg.export`).

    Args:
        checkpoint: A wseg checkpoint.
        out: The file to write.
        format: ``export`` (torch.export ``.pt2``), ``torchscript`` or ``onnx``.
        height: Height of the example image it is exported with (a multiple of 32).
        width: Width of the example image it is exported with (a multiple of 32).
        device: Torch device it is exported on.
        overwrite: Replace an existing ``out``.

    Returns:
        ``out``.

    Raises:
        FileExistsError: If ``out`` exists and ``overwrite`` is False.
        ImportError: For ``onnx`` without the onnx and onnxscript packages.

    """
    from wseg.export import export, require_onnx
    from wseg.inference import load

    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists already; choose another --out or pass --overwrite")
    if format == "onnx":
        require_onnx()  # before the slow load
    model = load(checkpoint, device)
    out.parent.mkdir(parents=True, exist_ok=True)
    return export(model, out, format, height, width)


def build_parser() -> argparse.ArgumentParser:
    """The ``segment`` and ``export`` sub-commands."""
    from wseg.export import FORMATS

    parser = argparse.ArgumentParser(prog="python -m wseg", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    segment = commands.add_parser("segment", help="segment a folder of images")
    segment.add_argument("checkpoint", type=Path, help="a wseg checkpoint (.ckpt)")
    segment.add_argument("images_dir", type=Path, help="folder of .jpg/.jpeg/.png/.bmp images")
    segment.add_argument("--out", type=Path, required=True, help="output folder")
    segment.add_argument("--tta", action="store_true", help="average flips and scales")
    segment.add_argument("--crf", action="store_true", help="refine with the dense CRF")
    export = commands.add_parser(
        "export", help="export the network (torch.export .pt2, TorchScript or ONNX)"
    )
    export.add_argument("checkpoint", type=Path, help="a wseg checkpoint (.ckpt)")
    export.add_argument(
        "--format",
        default="export",
        choices=list(FORMATS),
        help="export: torch.export .pt2, dynamic batch and sides (default); torchscript: "
        "torch.jit.trace .pt for older consumers; onnx: dynamic batch and sides, needs "
        "pip install 'wseg[export]'",
    )
    export.add_argument("--out", type=Path, required=True, help="file to write")
    export.add_argument(
        "--height", type=int, default=512, help="example (traced) height, a multiple of 32"
    )
    export.add_argument(
        "--width", type=int, default=512, help="example (traced) width, a multiple of 32"
    )
    for command in (segment, export):
        command.add_argument("--device", default="cpu", help="torch device (default: cpu)")
        command.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    return parser


def main(argv: Sequence[str] | None = None) -> list[Path]:
    """Run ``segment`` or ``export``; user errors exit with their message, no traceback.

    Args:
        argv: Arguments, the command first (None: ``sys.argv[1:]``).

    Returns:
        The files written.

    """
    args = build_parser().parse_args(argv)
    try:
        if args.command == "segment":
            return segment_folder(
                args.checkpoint,
                args.images_dir,
                args.out,
                tta=args.tta,
                crf=args.crf,
                device=args.device,
                overwrite=args.overwrite,
            )
        out = export_checkpoint(
            args.checkpoint,
            args.out,
            args.format,
            height=args.height,
            width=args.width,
            device=args.device,
            overwrite=args.overwrite,
        )
        return [out]
    except (OSError, ValueError, ImportError) as error:
        raise SystemExit(f"python -m wseg {args.command}: error: {error}") from error
