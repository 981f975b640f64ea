"""COCO JSON reader: instances become boxes and masks, crowds ignore; COCO or VOC classes."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pycocotools import mask as mask_utils

from wseg.data.datasets.common import (
    ProblemCounter,
    clean_boxes,
    read_image,
    tight_boxes,
    with_background,
)
from wseg.data.records import IGNORE_INDEX, VOC_CLASSES, Sample, SegmentationSource

# The 80 COCO categories in category-id order.
COCO_NAMES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
    "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip
COCO_CLASSES: tuple[str, ...] = ("background", *COCO_NAMES)
# COCO names of the 20 VOC classes that COCO spells differently; the other 14 share their names.
COCO_TO_VOC = {
    "airplane": "aeroplane",
    "motorcycle": "motorbike",
    "couch": "sofa",
    "dining table": "diningtable",
    "potted plant": "pottedplant",
    "tv": "tvmonitor",
}


def coco_classes(
    class_map: Literal["voc", "coco", "json"] = "voc",
    annotation_path: str | Path | None = None,
    classes: Sequence[str] | None = None,
    category_map: Mapping[str, str] | None = None,
) -> tuple[str, ...]:
    """Class names of a class map, background first (see `COCOSource`).

    Args:
        class_map: ``voc`` (the 20 VOC classes), ``coco`` (all 80) or ``json`` (the categories of
            ``annotation_path``, in category-id order, renamed by ``category_map``).
        annotation_path: The instances JSON (``json`` only).
        classes: Explicit class names, which take precedence over ``class_map``; ``background``
            is put first if it is not there.
        category_map: JSON category name -> class name (``background`` drops a category).

    """
    if classes is not None:
        return with_background(classes)
    if class_map == "voc":
        return VOC_CLASSES
    if class_map == "coco":
        return COCO_CLASSES
    if class_map == "json":
        if annotation_path is None:
            raise ValueError("class_map='json' needs the annotation file to read the names from")
        path = Path(annotation_path)
        categories = _read_json(path).get("categories")
        if not isinstance(categories, list):
            raise ValueError(f"{path} has no 'categories' list")
        names = [_renamed(c["name"], category_map) for c in _sorted_categories(categories, path)]
        return with_background(dict.fromkeys(n for n in names if n != "background"))
    raise ValueError(f"class_map must be 'voc', 'coco' or 'json', got {class_map!r}")


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"COCO annotation file {path} not found")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a COCO instances file (a JSON object)")
    return data


def _sorted_categories(categories: list, path: Path) -> list[dict]:
    try:
        return sorted(categories, key=lambda c: int(c["id"]))
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{path}: every category needs an integer 'id' and a 'name'") from error


def _renamed(name: str, category_map: Mapping[str, str] | None) -> str:
    return category_map.get(name, name) if category_map else name


MAX_LISTED = 10
"""Malformed annotations listed in the error (all are counted)."""


def _annotation_name(annotation: Any, position: int) -> str:
    if isinstance(annotation, dict) and "id" in annotation:
        return f"annotation id {annotation['id']!r}"
    return f"annotation #{position} (no 'id')"


def _annotation_problem(annotation: Any, image_ids: set) -> tuple[str, str] | None:
    """``(field, what is wrong)`` of a malformed annotation, or None."""
    if not isinstance(annotation, dict):
        return "annotation", f"is not a JSON object: {annotation!r}"
    if "image_id" not in annotation:
        return "image_id", "missing"
    if annotation["image_id"] not in image_ids:
        return "image_id", f"{annotation['image_id']!r} is not the id of an entry of 'images'"
    if "category_id" not in annotation:
        return "category_id", "missing"
    if "bbox" not in annotation and not annotation.get("segmentation"):
        return "bbox", "missing (and no segmentation to take the box from)"
    if "bbox" in annotation:
        box = annotation["bbox"]
        numbers = isinstance(box, list) and all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in box
        )
        if not numbers or len(box) != 4 or not all(np.isfinite(box)):
            return "bbox", f"{json.dumps(box)} is not four finite numbers [x, y, width, height]"
    return None


class COCOSource(SegmentationSource):
    """A split of a dataset in the COCO layout (instances JSON), read with pycocotools.

    Layout under ``root``::

        <split>/<file_name>                      images named by the JSON
        annotations/instances_<split>.json       unless ``annotation_file`` is given

    Every image of the JSON is a sample (images without annotations are all background); ids
    are the file names without extension.

    Classes: ``class_map="coco"`` keeps the 80 categories (indices 1..80 in category-id order);
    ``"voc"`` keeps the 20 VOC categories under their VOC names and indices (airplane =
    aeroplane, motorcycle = motorbike, couch = sofa, dining table = diningtable, potted plant =
    pottedplant, tv = tvmonitor) and makes the pixels of the other 60 categories background,
    as the COCO-to-VOC transfer works do; they get no box. ``"json"`` takes the JSON's own
    categories, any names and ids, as classes 1..C in category-id order (your own dataset).
    ``classes`` (explicit names) fixes the classes and their order instead; every category of the
    JSON must then be one of them. ``category_map`` renames categories first (several may map
    to one class; ``background`` drops one: its pixels are background and it gives no box).

    Masks: instance polygons and RLEs are rasterised with pycocotools and painted largest first,
    so a smaller object in front of a larger one stays visible; crowd regions
    (``iscrowd=1``) of a kept category are 255 (ignore) unless an instance covers them, and
    give no box. Boxes are the tight boxes of the instance masks (consistent with VOC); for an
    annotation without segmentation the JSON box ``x, y, w, h`` becomes ``x, y, x + w, y + h``
    and the image's ``mask`` and ``instance_masks`` are None (counted warning). Boxes out of the
    image are clipped, boxes without area or instances whose mask is empty are dropped (counted
    warnings).

    Malformed annotations are errors when the JSON is opened, all listed at once, each naming the
    file, the annotation id and the field: an ``image_id`` that is not an image of ``images``, a
    ``bbox`` that is not four finite numbers (required where there is no segmentation), a missing
    ``category_id``. With ``skip_bad_annotations`` they are dropped with a counted warning.

    Args:
        root: Dataset root.
        split: Image folder name, also the default annotation file's suffix (``train2017``).
        annotation_file: Path of the instances JSON, relative to ``root`` or absolute; default
            ``annotations/instances_<split>.json``.
        class_map: ``voc``, ``coco`` or ``json`` (see above).
        classes: Explicit class names (``background`` first, or it is added); None: from
            ``class_map``.
        category_map: JSON category name -> class name (see above).
        skip_bad_annotations: Drop malformed annotations (see above) with a counted warning
            instead of failing.

    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train2017",
        annotation_file: str | None = None,
        class_map: Literal["voc", "coco", "json"] = "voc",
        classes: Sequence[str] | None = None,
        category_map: Mapping[str, str] | None = None,
        skip_bad_annotations: bool = False,
    ) -> None:
        self.root = Path(root)
        self.split = split
        self.class_map = class_map
        self.category_map = dict(category_map or {})
        if class_map not in ("voc", "coco", "json"):
            raise ValueError(f"class_map must be 'voc', 'coco' or 'json', got {class_map!r}")
        self.problems = ProblemCounter(f"COCO {self.root}")
        if not self.root.is_dir():
            raise FileNotFoundError(
                f"COCO root {self.root} does not exist; expected <split>/ image folders and "
                "annotations/instances_<split>.json"
            )
        self.image_dir = self.root / split
        if not self.image_dir.is_dir():
            raise FileNotFoundError(f"COCO image folder {self.image_dir} not found")
        default_file = f"annotations/instances_{split}.json"
        self.annotation_path = self.root / (annotation_file or default_file)
        data = _read_json(self.annotation_path)
        try:
            self._images = list(data["images"])
            categories = _sorted_categories(list(data["categories"]), self.annotation_path)
            annotations = data.get("annotations", [])
        except (KeyError, TypeError) as error:
            raise ValueError(
                f"{self.annotation_path} is not a COCO instances file with images and "
                f"categories: {error!r}"
            ) from error
        if classes is None and class_map == "json":
            named = [_renamed(c["name"], self.category_map) for c in categories]
            classes = [n for n in dict.fromkeys(named) if n != "background"]
        self.classes = coco_classes(class_map, classes=classes)
        self._category_class = self._map_categories(categories, explicit=classes is not None)
        self._annotations: dict[Any, list[dict]] = defaultdict(list)
        for annotation in self._checked(annotations, skip_bad_annotations):
            self._annotations[annotation["image_id"]].append(annotation)
        self._ids = [Path(image["file_name"]).stem for image in self._images]
        if len(set(self._ids)) != len(self._ids):
            raise ValueError(f"{self.annotation_path} names the same image file twice")

    def _checked(self, annotations: Any, skip: bool) -> list[dict]:
        """The annotations with a known image, a category and a well-formed box (see class doc)."""
        if not isinstance(annotations, list):
            raise ValueError(f"{self.annotation_path}: 'annotations' is not a list")
        image_ids = {image.get("id") for image in self._images if isinstance(image, dict)}
        kept, problems = [], []
        for position, annotation in enumerate(annotations):
            problem = _annotation_problem(annotation, image_ids)
            if problem is None:
                kept.append(annotation)
                continue
            field, message = problem
            name = _annotation_name(annotation, position)
            problems.append(f"{name}, field {field!r}: {message}")
            if skip:
                self.problems.add(f"annotations with a bad {field!r} dropped", self.annotation_path)
        if problems and not skip:
            listed = "\n  ".join(problems[:MAX_LISTED])
            more = (
                f"\n  ... and {len(problems) - MAX_LISTED} more"
                if len(problems) > MAX_LISTED
                else ""
            )
            raise ValueError(
                f"{self.annotation_path}: {len(problems)} malformed annotation"
                f"{'s' if len(problems) > 1 else ''} (fix them, or drop them with a counted "
                f"warning: skip_bad_annotations=True):\n  {listed}{more}"
            )
        return kept

    def _map_categories(self, categories: list[dict], explicit: bool) -> dict[int, int]:
        mapping = {}
        for category in categories:
            name = _renamed(category["name"], self.category_map)
            if name == "background":
                mapping[category["id"]] = 0
            elif explicit:
                if name not in self.classes:
                    raise ValueError(
                        f"category {category['name']!r} (id {category['id']}) in "
                        f"{self.annotation_path} is not one of the classes "
                        f"{list(self.classes[1:])}; add it to the class names, or map it with "
                        f"category_map={{{category['name']!r}: 'background'}} to drop it"
                    )
                mapping[category["id"]] = self.classes.index(name)
            elif name not in COCO_NAMES:
                raise ValueError(
                    f"unknown category name {name!r} in {self.annotation_path}; class_map="
                    f"{self.class_map!r} expects the 80 COCO categories (your own categories: "
                    "class_map='json', or give the class names)"
                )
            elif self.class_map == "coco":
                mapping[category["id"]] = COCO_CLASSES.index(name)
            else:
                voc_name = COCO_TO_VOC.get(name, name)
                in_voc = voc_name in VOC_CLASSES
                mapping[category["id"]] = VOC_CLASSES.index(voc_name) if in_voc else 0
        return mapping

    @property
    def ids(self) -> list[str]:
        """Image file names without extension, in the JSON's order."""
        return self._ids

    def load(self, index: int) -> Sample:
        """Read the image and rasterise its annotations."""
        record = self._images[index]
        image_path = self.image_dir / record["file_name"]
        image = read_image(image_path)
        height, width = image.shape[:2]
        if (record.get("height", height), record.get("width", width)) != (height, width):
            raise ValueError(
                f"size mismatch: image {image_path} is {height}x{width} (HxW) but "
                f"{self.annotation_path} says {record['height']}x{record['width']}"
            )
        sample = Sample(id=self._ids[index], image=image, source=str(image_path))
        annotations = []
        for annotation in self._annotations.get(record["id"], []):
            if annotation["category_id"] not in self._category_class:
                raise ValueError(
                    f"annotation {annotation.get('id')} in {self.annotation_path} has unknown "
                    f"category id {annotation['category_id']}"
                )
            if self._category_class[annotation["category_id"]] > 0:
                annotations.append(annotation)
        if all(annotation.get("segmentation") for annotation in annotations):
            self._rasterise(sample, annotations)
        else:
            self.problems.add(
                "images with annotations lacking segmentation (mask left unknown)",
                self.annotation_path,
            )
            self._json_boxes(sample, [a for a in annotations if not a.get("iscrowd", 0)])
        return sample

    def _decode(self, annotation: dict, height: int, width: int) -> np.ndarray:
        segmentation = annotation["segmentation"]
        if isinstance(segmentation, list):
            rles = mask_utils.frPyObjects(segmentation, height, width)
            rle = mask_utils.merge(rles)
        elif isinstance(segmentation.get("counts"), list):
            rle = mask_utils.frPyObjects(segmentation, height, width)
        else:
            rle = segmentation
        return mask_utils.decode(rle).astype(bool)

    def _rasterise(self, sample: Sample, annotations: list[dict]) -> None:
        height, width = sample.size
        mask = np.zeros((height, width), np.uint8)
        crowds = [a for a in annotations if a.get("iscrowd", 0)]
        instances = [a for a in annotations if not a.get("iscrowd", 0)]
        for crowd in crowds:
            mask[self._decode(crowd, height, width)] = IGNORE_INDEX
        decoded = [self._decode(a, height, width) for a in instances]
        empty = [not m.any() for m in decoded]
        self.problems.add("instances with an empty mask dropped", self.annotation_path, sum(empty))
        kept = [(m, a) for m, a, e in zip(decoded, instances, empty) if not e]
        for instance_mask, annotation in sorted(kept, key=lambda pair: -int(pair[0].sum())):
            mask[instance_mask] = self._category_class[annotation["category_id"]]
        sample.mask = mask
        sample.instance_masks = np.array([m for m, _ in kept], bool).reshape(-1, height, width)
        labels = [self._category_class[a["category_id"]] for _, a in kept]
        sample.labels = np.array(labels, np.int64)
        sample.boxes = tight_boxes(sample.instance_masks)

    def _json_boxes(self, sample: Sample, annotations: list[dict]) -> None:
        boxes = np.array([a["bbox"] for a in annotations], np.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        keep = clean_boxes(boxes, sample.size, self.annotation_path, self.problems)
        labels = np.array([self._category_class[a["category_id"]] for a in annotations], np.int64)
        sample.boxes = boxes[keep]
        sample.labels = labels[keep]
