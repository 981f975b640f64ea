"""Seeded synthetic segmentation data written in the exact PASCAL VOC and Cityscapes layouts.

The scenes are drawn by `wseg.data.synthetic_scenes`; this module writes them to disk (images,
masks, annotation and scribble XMLs, split lists, the manifest) and offers the command line.
"""

from __future__ import annotations

import argparse
import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from wseg.data.datasets import SYNTHETIC_CLASSES, SYNTHETIC_SCRIBBLE_DIR, make_source
from wseg.data.records import voc_palette
from wseg.data.synthetic_scenes import cityscapes_scene, voc_scene
from wseg.data.weak import rect_labels
from wseg.metrics import confusion_matrix, mean_iou

GENERATOR_VERSION = 1
MANIFEST = "manifest.json"
LAYOUTS = ("voc", "cityscapes")


def _write_palette_png(path: Path, values: np.ndarray) -> None:
    png = Image.fromarray(values, mode="P")
    png.putpalette(voc_palette().reshape(-1).tolist())
    png.save(path)


def _voc_xml(
    image_id: str, size: tuple[int, int], objects: Sequence[tuple[str, np.ndarray]]
) -> str:
    """Write a VOC annotation XML; boxes become 1-based inclusive ``xmin = x1 + 1, xmax = x2``."""
    parts = [
        "<annotation>",
        "  <folder>VOC2012</folder>",
        f"  <filename>{image_id}.jpg</filename>",
        f"  <size><width>{size[1]}</width><height>{size[0]}</height><depth>3</depth></size>",
        "  <segmented>1</segmented>",
    ]
    for name, (x1, y1, x2, y2) in objects:
        parts += [
            "  <object>",
            f"    <name>{name}</name>",
            "    <pose>Unspecified</pose><truncated>0</truncated><difficult>0</difficult>",
            f"    <bndbox><xmin>{int(x1) + 1}</xmin><ymin>{int(y1) + 1}</ymin>"
            f"<xmax>{int(x2)}</xmax><ymax>{int(y2)}</ymax></bndbox>",
            "  </object>",
        ]
    return "\n".join([*parts, "</annotation>", ""])


def _scribble_xml(image_id: str, size: tuple[int, int], strokes: Sequence) -> str:
    """Write a ScribbleSup XML: per stroke one ``<polygon>`` with a ``<tag>`` and points."""
    parts = [
        "<annotation>",
        f"  <filename>{image_id}.jpg</filename>",
        f"  <size><width>{size[1]}</width><height>{size[0]}</height></size>",
    ]
    for tag, points in strokes:
        parts.append(f"  <polygon>\n    <tag>{tag}</tag>")
        parts += [f"    <point><X>{x:g}</X><Y>{y:g}</Y></point>" for x, y in points]
        parts.append("  </polygon>")
    return "\n".join([*parts, "</annotation>", ""])


def _write_voc(root: Path, splits: dict[str, int], size: tuple[int, int], seed: int) -> None:
    for folder in (
        "JPEGImages",
        "SegmentationClass",
        "SegmentationObject",
        "Annotations",
        SYNTHETIC_SCRIBBLE_DIR,
        "ImageSets/Segmentation",
    ):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for split_index, (split, count) in enumerate(splits.items()):
        ids = []
        for i in tqdm(range(count), desc=f"synthetic voc {split}", leave=False):
            rng = np.random.default_rng((seed, 0, split_index, i))
            image_id = f"{split}_{i:05d}"
            image, class_map, instance_map, labels, strokes = voc_scene(rng, size)
            quality = int(rng.integers(70, 96))
            ok, jpeg = cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
            assert ok, "OpenCV failed to encode a JPEG"
            (root / "JPEGImages" / f"{image_id}.jpg").write_bytes(jpeg.tobytes())
            _write_palette_png(root / "SegmentationClass" / f"{image_id}.png", class_map)
            _write_palette_png(root / "SegmentationObject" / f"{image_id}.png", instance_map)
            objects = []
            for k, label in enumerate(labels, start=1):
                ys, xs = np.nonzero(instance_map == k)
                # Annotators box the whole visible object, void band included: grow by one pixel.
                box = (xs.min() - 1, ys.min() - 1, xs.max() + 2, ys.max() + 2)
                box = np.clip(box, 0, [size[1], size[0], size[1], size[0]])
                objects.append((SYNTHETIC_CLASSES[label], box))
            (root / "Annotations" / f"{image_id}.xml").write_text(_voc_xml(image_id, size, objects))
            (root / SYNTHETIC_SCRIBBLE_DIR / f"{image_id}.xml").write_text(
                _scribble_xml(image_id, size, strokes)
            )
            ids.append(image_id)
        (root / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(ids) + "\n")


def _write_cityscapes(root: Path, splits: dict[str, int], size: tuple[int, int], seed: int) -> None:
    cities = {"train": ("aachen", "bremen"), "val": ("frankfurt",)}
    for split_index, (split, count) in enumerate(splits.items()):
        for i in tqdm(range(count), desc=f"synthetic cityscapes {split}", leave=False):
            rng = np.random.default_rng((seed, 1, split_index, i))
            city = cities.get(split, (split,))[i % len(cities.get(split, (split,)))]
            stem = f"{city}_{i:06d}_000019"
            image, label_ids, instance_ids = cityscapes_scene(rng, size)
            image_dir = root / "leftImg8bit" / split / city
            label_dir = root / "gtFine" / split / city
            image_dir.mkdir(parents=True, exist_ok=True)
            label_dir.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(image_dir / f"{stem}_leftImg8bit.png")
            Image.fromarray(label_ids).save(label_dir / f"{stem}_gtFine_labelIds.png")
            Image.fromarray(instance_ids.astype(np.uint16)).save(
                label_dir / f"{stem}_gtFine_instanceIds.png"
            )


def generate_synthetic(
    out: str | Path,
    num_train: int = 200,
    num_val: int = 50,
    size: tuple[int, int] = (128, 160),
    seed: int = 0,
    layouts: Sequence[str] = LAYOUTS,
    overwrite: bool = False,
) -> Path:
    """Write the synthetic dataset (``out/voc`` and/or ``out/cityscapes``), or reuse it.

    The same configuration already written under ``out`` (its ``manifest.json`` says so) is
    returned at once. A different dataset, or other files, under ``out`` are never replaced
    unless ``overwrite`` is True, which deletes ``out/voc``, ``out/cityscapes`` and the manifest
    (nothing else) first.

    Args:
        out: Output folder.
        num_train: Number of images in the ``train`` split.
        num_val: Number of images in the ``val`` split.
        size: ``(height, width)`` of every image.
        seed: Random seed; image ``i`` of a split depends only on the seed, the layout, the split
            and ``i``.
        layouts: Which layouts to write: ``voc``, ``cityscapes`` or both.
        overwrite: Replace a different synthetic dataset found under ``out``.

    Returns:
        ``out`` as a `Path`.

    """
    out = Path(out)
    unknown = set(layouts) - set(LAYOUTS)
    if unknown:
        raise ValueError(f"unknown layouts {sorted(unknown)}; expected a subset of {LAYOUTS}")
    if min(size) < 32:
        raise ValueError(f"size must be at least 32x32 pixels, got {size}")
    config = {
        "generator_version": GENERATOR_VERSION,
        "num_train": num_train,
        "num_val": num_val,
        "size": list(size),
        "seed": seed,
        "layouts": sorted(layouts),
    }
    manifest = out / MANIFEST
    if manifest.is_file() and json.loads(manifest.read_text()) == config:
        return out
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            found = (
                json.dumps(json.loads(manifest.read_text()))
                if manifest.is_file()
                else "files without a manifest"
            )
            raise FileExistsError(
                f"{out} already holds a different dataset ({found}); wanted {json.dumps(config)}. "
                "Choose another folder or pass overwrite=True (--overwrite)."
            )
        for name in (*LAYOUTS, MANIFEST):
            path = out / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    out.mkdir(parents=True, exist_ok=True)
    splits = {"train": num_train, "val": num_val}
    if "voc" in layouts:
        _write_voc(out / "voc", splits, tuple(size), seed)
    if "cityscapes" in layouts:
        _write_cityscapes(out / "cityscapes", splits, tuple(size), seed)
    # The manifest comes last: an interrupted run leaves none, and the next run asks before
    # deleting its partial output.
    manifest.write_text(json.dumps(config, indent=2) + "\n")
    return out


def bbox_rect_miou(root: str | Path, split: str = "train", limit: int | None = None) -> float:
    """Mean IoU (%) of Bbox-Rect labels against the true masks of the synthetic VOC layout.

    Boxes come from the instance masks, as the readers give them; void pixels are not counted;
    classes absent from both the labels and the masks are left out of the mean.

    Args:
        root: The generator's output folder.
        split: Split to measure.
        limit: Measure only the first ``limit`` images.

    """
    source = make_source("synthetic", root, split, scribble_dir=None)
    confusion = torch.zeros(source.num_classes, source.num_classes, dtype=torch.long)
    count = len(source) if limit is None else min(limit, len(source))
    for index in tqdm(range(count), desc="Bbox-Rect mIoU", leave=False):
        sample = source[index]
        predicted = rect_labels(sample.boxes, sample.labels, sample.size)
        confusion += confusion_matrix(
            torch.from_numpy(predicted.astype(np.int64)),
            torch.from_numpy(sample.mask.astype(np.int64)),
            source.num_classes,
        )
    return 100 * mean_iou(confusion)


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: ``python -m wseg.data.synthetic --out DIR [--report]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--num-train", type=int, default=200, help="images in the train split")
    parser.add_argument("--num-val", type=int, default=50, help="images in the val split")
    parser.add_argument("--size", type=int, nargs=2, default=(128, 160), help="height width")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--layouts", nargs="+", default=list(LAYOUTS), choices=LAYOUTS)
    parser.add_argument("--overwrite", action="store_true", help="replace a different dataset")
    parser.add_argument(
        "--report", action="store_true", help="print the Bbox-Rect label mIoU of the train split"
    )
    args = parser.parse_args(argv)
    out = generate_synthetic(
        args.out,
        args.num_train,
        args.num_val,
        tuple(args.size),
        args.seed,
        args.layouts,
        args.overwrite,
    )
    print(f"synthetic dataset in {out}")
    if args.report and "voc" in args.layouts:
        print(f"Bbox-Rect label mIoU vs true masks (train): {bbox_rect_miou(out):.1f}")


if __name__ == "__main__":
    main()
