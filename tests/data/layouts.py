"""Writers of small hand-made dataset files in the real layouts, for edge-case tests."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from wseg.data.records import voc_palette


def write_jpeg(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, quality=95)


def write_png(path: Path, values: np.ndarray, palette: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    png = Image.fromarray(values, mode="P" if palette else None)
    if palette:
        png.putpalette(voc_palette().reshape(-1).tolist())
    png.save(path)


def voc_xml(objects: Sequence[tuple[str, Sequence[float]]], size: tuple[int, int] = (8, 12)) -> str:
    """VOC XML with ``(name, (xmin, ymin, xmax, ymax))`` objects in VOC's 1-based coordinates."""
    body = "".join(
        f"<object><name>{name}</name><difficult>0</difficult><bndbox><xmin>{box[0]}</xmin>"
        f"<ymin>{box[1]}</ymin><xmax>{box[2]}</xmax><ymax>{box[3]}</ymax></bndbox></object>"
        for name, box in objects
    )
    return (
        f"<annotation><filename>x.jpg</filename><size><width>{size[1]}</width>"
        f"<height>{size[0]}</height></size>{body}</annotation>"
    )


def scribble_xml(strokes: Sequence[tuple[str, Sequence[tuple[float, float]]]]) -> str:
    body = "".join(
        f"<polygon><tag>{tag}</tag>"
        + "".join(f"<point><X>{x}</X><Y>{y}</Y></point>" for x, y in points)
        + "</polygon>"
        for tag, points in strokes
    )
    return f"<annotation><filename>x.jpg</filename>{body}</annotation>"


def write_voc(
    root: Path,
    image_id: str = "a",
    size: tuple[int, int] = (8, 12),
    mask: np.ndarray | None = None,
    mask_dir: str = "SegmentationClass",
    xml: str | None = None,
    instances: np.ndarray | None = None,
    split: str = "train",
) -> Path:
    """Write one grey VOC image, optionally its mask, XML and instance PNG; list it in the split."""
    write_jpeg(root / "JPEGImages" / f"{image_id}.jpg", np.full((*size, 3), 128, np.uint8))
    if mask is not None:
        write_png(root / mask_dir / f"{image_id}.png", mask, palette=True)
    if xml is not None:
        (root / "Annotations").mkdir(parents=True, exist_ok=True)
        (root / "Annotations" / f"{image_id}.xml").write_text(xml)
    if instances is not None:
        write_png(root / "SegmentationObject" / f"{image_id}.png", instances, palette=True)
    split_file = root / "ImageSets" / "Segmentation" / f"{split}.txt"
    split_file.parent.mkdir(parents=True, exist_ok=True)
    with split_file.open("a") as handle:
        handle.write(f"{image_id}\n")
    return root


def write_cityscapes(
    root: Path, label_ids: np.ndarray, instance_ids: np.ndarray, split: str = "train"
) -> Path:
    """Write one Cityscapes frame ``ulm_000000_000019`` with the given labelIds and instanceIds."""
    stem = "ulm_000000_000019"
    size = label_ids.shape
    image_dir = root / "leftImg8bit" / split / "ulm"
    label_dir = root / "gtFine" / split / "ulm"
    image_dir.mkdir(parents=True, exist_ok=True)
    write_png(image_dir / f"{stem}_leftImg8bit.png", np.zeros((*size, 3), np.uint8))
    write_png(label_dir / f"{stem}_gtFine_labelIds.png", label_ids.astype(np.uint8))
    write_png(label_dir / f"{stem}_gtFine_instanceIds.png", instance_ids.astype(np.uint16))
    return root


def write_coco(root: Path, images: list[dict], annotations: list[dict], split: str = "s") -> Path:
    """Write grey JPEGs for ``images`` and an instances JSON with the 80 COCO categories."""
    from wseg.data.datasets.coco import COCO_NAMES

    for image in images:
        write_jpeg(
            root / split / image["file_name"],
            np.full((image["height"], image["width"], 3), 90, np.uint8),
        )
    categories = [{"id": index + 1, "name": name} for index, name in enumerate(COCO_NAMES)]
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    data = {"images": images, "annotations": annotations, "categories": categories}
    (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(data))
    return root
