"""PASCAL VOC 2012 (+ SBD) reader: images, class masks, boxes (instance PNGs or XML), scribbles."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from wseg.data.datasets.common import (
    ProblemCounter,
    check_same_size,
    class_index,
    clean_boxes,
    majority_label,
    read_image,
    read_label_map,
    tight_boxes,
    with_background,
)
from wseg.data.records import IGNORE_INDEX, VOC_CLASSES, Sample, SegmentationSource

MASK_DIRS = ("SegmentationClass", "SegmentationClassAug")


class VOCSource(SegmentationSource):
    """A split of a dataset in the PASCAL VOC 2012 layout, optionally with SBD and ScribbleSup.

    Layout under ``root``::

        JPEGImages/<id>.jpg
        SegmentationClass/<id>.png       palette PNG of class indices, 255 = void boundary
        SegmentationClassAug/<id>.png    SBD-augmented masks (grey-level class indices)
        SegmentationObject/<id>.png      instance indices 1..K, 0 background, 255 void
        Annotations/<id>.xml             VOC XML boxes (1-based, inclusive coordinates)
        ImageSets/Segmentation/<split>.txt
        <scribble_dir>/<id>.xml          ScribbleSup scribbles (optional)

    Masks: with ``mask_dir="auto"`` each image takes ``SegmentationClass/<id>.png`` when it exists
    (the finer VOC annotation) and ``SegmentationClassAug/<id>.png`` otherwise.

    Boxes: the tight box of each instance of ``SegmentationObject/<id>.png`` when that file exists
    (the instance's class is the majority class of the class mask under it; the 255 boundary band
    belongs to no instance, so the box bounds the instance's interior), otherwise the objects of
    ``Annotations/<id>.xml``. XML coordinates are 1-based and inclusive; they become pixel-edge
    boxes ``x1 = xmin - 1, y1 = ymin - 1, x2 = xmax, y2 = ymax``. Objects marked ``difficult`` or
    ``truncated`` are kept (they are real objects whose pixels the mask labels). Boxes reaching
    out of the image are clipped and boxes left without area are dropped, both with a counted
    `DataWarning`; an XML without objects gives an image without boxes (all background).

    Scribbles: ScribbleSup XML, one ``<polygon>`` per stroke with a ``<tag>`` (a class name or
    ``background``) and ``<point><X>..</X><Y>..</Y></point>`` vertices in 0-based pixel
    coordinates; each stroke is drawn as a 1-pixel polyline through the pixel centres dilated by
    a disc of diameter ``scribble_width``, in file order (a later stroke overwrites an earlier one
    where they cross).

    Args:
        root: Dataset root (the ``VOC2012`` folder).
        split: Name of the split list ``ImageSets/Segmentation/<split>.txt`` (``train``, ``val``,
            ``train_aug``, ...).
        mask_dir: Where class masks come from: ``auto`` (see above) or one of the two folders.
        scribble_dir: Folder of scribble XMLs, relative to ``root``; None for no scribbles.
        scribble_width: Width in pixels of the rendered scribble strokes.
        box_source: Where boxes come from: ``auto`` (see above), ``instances`` or ``xml`` only.
        require_masks: Raise when an image has no class mask; False reads detection-only
            datasets (``mask`` is then None where the file is missing).
        require_boxes: Raise when an image has neither instance masks nor an XML; False gives
            it no boxes (validation images, which need only their masks).
        classes: Class names, background first; XML and scribble tags must be among them (your
            own names: see `voc_xml_classes`).

    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        mask_dir: Literal["auto", "SegmentationClass", "SegmentationClassAug"] = "auto",
        scribble_dir: str | None = None,
        scribble_width: int = 3,
        box_source: Literal["auto", "instances", "xml"] = "auto",
        require_masks: bool = True,
        require_boxes: bool = True,
        classes: Sequence[str] = VOC_CLASSES,
    ) -> None:
        self.root = Path(root)
        self.split = split
        if mask_dir not in ("auto", *MASK_DIRS):
            raise ValueError(f"mask_dir must be 'auto' or one of {MASK_DIRS}, got {mask_dir!r}")
        if box_source not in ("auto", "instances", "xml"):
            raise ValueError(f"box_source must be auto, instances or xml, got {box_source!r}")
        if scribble_width < 1:
            raise ValueError(f"scribble_width must be at least 1, got {scribble_width}")
        self.mask_dir = mask_dir
        self.box_source = box_source
        self.scribble_width = scribble_width
        self.require_masks = require_masks
        self.require_boxes = require_boxes
        self.classes = with_background(classes)
        self.problems = ProblemCounter(f"VOC {self.root}")
        if not self.root.is_dir():
            raise FileNotFoundError(
                f"VOC root {self.root} does not exist; expected a folder with JPEGImages/, "
                "SegmentationClass/ and ImageSets/Segmentation/"
            )
        if not (self.root / "JPEGImages").is_dir():
            raise FileNotFoundError(f"VOC root {self.root} has no JPEGImages/ folder")
        split_file = self.root / "ImageSets" / "Segmentation" / f"{split}.txt"
        if not split_file.is_file():
            found = sorted(p.stem for p in split_file.parent.glob("*.txt"))
            raise FileNotFoundError(
                f"split list {split_file} not found; expected one image id per line "
                f"(splits found: {', '.join(found) or 'none'})"
            )
        self._ids = [
            line.split()[0] for line in split_file.read_text().splitlines() if line.strip()
        ]
        self.scribble_root = None
        if scribble_dir is not None:
            self.scribble_root = self.root / scribble_dir
            if not self.scribble_root.is_dir():
                raise FileNotFoundError(f"scribble folder {self.scribble_root} does not exist")

    @property
    def ids(self) -> list[str]:
        """Image ids of the split list, in file order."""
        return self._ids

    def load(self, index: int) -> Sample:
        """Read image, class mask, boxes (+ instance masks) and scribbles of one image."""
        image_id = self._ids[index]
        image_path = self.root / "JPEGImages" / f"{image_id}.jpg"
        image = read_image(image_path)
        mask = self._load_mask(image_id, image, image_path)
        sample = Sample(id=image_id, image=image, mask=mask, source=str(image_path))
        object_path = self.root / "SegmentationObject" / f"{image_id}.png"
        xml_path = self.root / "Annotations" / f"{image_id}.xml"
        if self.box_source != "xml" and object_path.is_file() and mask is not None:
            self._instances_from_png(sample, object_path, image_path)
        elif self.box_source != "instances" and xml_path.is_file():
            self._boxes_from_xml(sample, xml_path)
        elif self.require_boxes:
            expected = {"auto": f"{object_path} or {xml_path}", "xml": str(xml_path)}
            raise FileNotFoundError(
                f"no boxes for image {image_path}: expected "
                f"{expected.get(self.box_source, object_path)}"
                + (" (instance masks need the class mask)" if mask is None else "")
            )
        if self.scribble_root is not None:
            scribble_path = self.scribble_root / f"{image_id}.xml"
            sample.scribble = read_scribble_xml(
                scribble_path, sample.size, self.classes, self.scribble_width, self.problems
            )
        return sample

    def _load_mask(self, image_id: str, image: np.ndarray, image_path: Path) -> np.ndarray | None:
        folders = MASK_DIRS if self.mask_dir == "auto" else (self.mask_dir,)
        candidates = [self.root / folder / f"{image_id}.png" for folder in folders]
        for path in candidates:
            if path.is_file():
                mask = read_label_map(path, "class mask")
                check_same_size(image, image_path, mask, path)
                self._check_mask_values(mask, path)
                return mask
        if self.require_masks:
            raise FileNotFoundError(
                f"image {image_path} has no class mask: expected "
                f"{' or '.join(str(p) for p in candidates)}"
            )
        return None

    def _check_mask_values(self, mask: np.ndarray, path: Path) -> None:
        values = np.unique(mask)
        bad = values[(values >= len(self.classes)) & (values != IGNORE_INDEX)]
        if bad.size:
            raise ValueError(
                f"class mask {path} holds values {bad.tolist()} outside 0..{len(self.classes) - 1} "
                "and 255; is it a colour image saved as grey levels?"
            )

    def _instances_from_png(self, sample: Sample, path: Path, image_path: Path) -> None:
        instances = read_label_map(path, "instance mask")
        check_same_size(sample.image, image_path, instances, path)
        ids = np.unique(instances)
        ids = ids[(ids != 0) & (ids != IGNORE_INDEX)]
        masks = instances[None] == ids[:, None, None]
        labels = np.array([majority_label(sample.mask[m]) for m in masks], np.int64)
        self.problems.add(
            "instances without a class under them dropped", path, int((labels == 0).sum())
        )
        masks = masks[labels > 0]
        sample.labels = labels[labels > 0]
        sample.instance_masks = masks
        sample.boxes = tight_boxes(masks)

    def _boxes_from_xml(self, sample: Sample, path: Path) -> None:
        boxes, labels = read_voc_xml(path, self.classes)
        keep = clean_boxes(boxes, sample.size, path, self.problems)
        sample.boxes = boxes[keep]
        sample.labels = labels[keep]


def voc_xml_classes(root: str | Path, splits: Sequence[str]) -> tuple[str, ...]:
    """The class names of a VOC-layout dataset's XMLs: ``background``, then sorted by name.

    Reads ``Annotations/<id>.xml`` of every id of the given splits (missing XMLs are skipped:
    `wseg.data.check` reports them). Sorting makes the order independent of the files' order;
    adding a class to the data later shifts the indices after it, which is why a run saves its
    names (``class_names.txt`` beside its checkpoints, and in the checkpoint).

    Args:
        root: Dataset root.
        splits: Split names (``ImageSets/Segmentation/<split>.txt``).

    Raises:
        ValueError: No XML of these splits names an object.

    """
    root = Path(root)
    names: set[str] = set()
    for split in dict.fromkeys(splits):
        split_file = root / "ImageSets" / "Segmentation" / f"{split}.txt"
        if not split_file.is_file():
            raise FileNotFoundError(f"split list {split_file} not found")
        for line in split_file.read_text().splitlines():
            if not line.strip():
                continue
            path = root / "Annotations" / f"{line.split()[0]}.xml"
            if path.is_file():
                for obj in _parse_xml(path).iter("object"):
                    name = (obj.findtext("name") or "").strip()
                    if name and name != "background":
                        names.add(name)
    if not names:
        raise ValueError(
            f"no object names in the XMLs of {root / 'Annotations'} for splits {list(splits)}"
        )
    return with_background(sorted(names))


def read_voc_xml(path: Path, classes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Read the objects of a VOC XML file as pixel-edge boxes (unclipped) and class indices.

    Args:
        path: The XML file.
        classes: Class names, background first.

    Returns:
        ``float32`` ``K, 4`` boxes ``x1, y1, x2, y2`` and ``int64`` ``K`` class indices.

    Raises:
        ValueError: The file is not valid XML, an object lacks its name or box, or a class name is
            not in ``classes``.

    """
    root = _parse_xml(path)
    boxes, labels = [], []
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip()
        if not name:
            raise ValueError(f"an <object> without <name> in {path}")
        labels.append(class_index(classes, name, path))
        box = obj.find("bndbox")
        try:
            xmin, ymin, xmax, ymax = (
                float(box.findtext(tag)) for tag in ("xmin", "ymin", "xmax", "ymax")
            )
        except (AttributeError, TypeError, ValueError):
            raise ValueError(
                f"object {name!r} in {path} lacks a numeric <bndbox> with xmin/ymin/xmax/ymax"
            ) from None
        # VOC pixels are numbered from 1 and xmax is the last column inside the box.
        boxes.append((xmin - 1, ymin - 1, xmax, ymax))
    return np.array(boxes, np.float32).reshape(-1, 4), np.array(labels, np.int64)


def read_scribble_xml(
    path: Path,
    size: tuple[int, int],
    classes: Sequence[str],
    width: int = 3,
    problems: ProblemCounter | None = None,
) -> np.ndarray:
    """Render a ScribbleSup XML file as a label map: stroke pixels hold their class, 255 elsewhere.

    Args:
        path: The XML file.
        size: ``(height, width)`` of the image.
        classes: Class names, background first; the tag ``background`` means class 0.
        width: Stroke width in pixels.
        problems: Where vertices outside the image are counted (they are drawn clipped).

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: The file is not valid XML, a stroke has no tag or a malformed point, or a tag
            is not a class name.

    """
    if not path.is_file():
        raise FileNotFoundError(f"scribble file not found: {path}")
    root = _parse_xml(path)
    height, image_width = size
    scribble = np.full((height, image_width), IGNORE_INDEX, np.uint8)
    outside = 0
    for polygon in root.iter("polygon"):
        tag = (polygon.findtext("tag") or "").strip()
        if not tag:
            raise ValueError(f"a scribble <polygon> without <tag> in {path}")
        label = 0 if tag == "background" else class_index(classes, tag, path)
        try:
            points = np.array(
                [
                    (float(point.findtext("X")), float(point.findtext("Y")))
                    for point in polygon.iter("point")
                ],
                np.float64,
            ).reshape(-1, 2)
        except (TypeError, ValueError):
            raise ValueError(f"a scribble <point> without numeric <X>/<Y> in {path}") from None
        if len(points) == 0:
            continue
        outside += int(((points < 0) | (points > (image_width - 1, height - 1))).any(axis=1).sum())
        _draw_stroke(scribble, np.round(points).astype(np.int32), label, width)
    if problems is not None:
        problems.add("scribble points outside the image drawn clipped", path, outside)
    return scribble


def _draw_stroke(scribble: np.ndarray, vertices: np.ndarray, label: int, width: int) -> None:
    # A 1-pixel polyline dilated by a disc is exactly ``width`` pixels wide for odd widths, unlike
    # OpenCV's thick lines; a single vertex becomes a dot.
    stroke = np.zeros(scribble.shape, np.uint8)
    vertices = np.concatenate([vertices, vertices[-1:]]) if len(vertices) == 1 else vertices
    cv2.polylines(stroke, [vertices.reshape(-1, 1, 2)], False, 1, thickness=1)
    if width > 1:
        stroke = cv2.dilate(stroke, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (width, width)))
    scribble[stroke > 0] = label


def _parse_xml(path: Path) -> ET.Element:
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {path}")
    try:
        return ET.parse(path).getroot()
    except ET.ParseError as error:
        raise ValueError(f"cannot parse XML file {path}: {error}") from error
