"""Cityscapes reader: the 19 train classes, or the self-correction paper's 11 object classes."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from wseg.data.datasets.common import (
    ProblemCounter,
    check_same_size,
    read_image,
    read_label_map,
    tight_boxes,
)
from wseg.data.records import IGNORE_INDEX, Sample, SegmentationSource

# (labelId, name, trainId) of the official cityscapesScripts label table; 255 = ignored in eval.
LABELS: tuple[tuple[int, str, int], ...] = (
    (0, "unlabeled", 255),
    (1, "ego vehicle", 255),
    (2, "rectification border", 255),
    (3, "out of roi", 255),
    (4, "static", 255),
    (5, "dynamic", 255),
    (6, "ground", 255),
    (7, "road", 0),
    (8, "sidewalk", 1),
    (9, "parking", 255),
    (10, "rail track", 255),
    (11, "building", 2),
    (12, "wall", 3),
    (13, "fence", 4),
    (14, "guard rail", 255),
    (15, "bridge", 255),
    (16, "tunnel", 255),
    (17, "pole", 5),
    (18, "polegroup", 255),
    (19, "traffic light", 6),
    (20, "traffic sign", 7),
    (21, "vegetation", 8),
    (22, "terrain", 9),
    (23, "sky", 10),
    (24, "person", 11),
    (25, "rider", 12),
    (26, "car", 13),
    (27, "truck", 14),
    (28, "bus", 15),
    (29, "caravan", 255),
    (30, "trailer", 255),
    (31, "train", 16),
    (32, "motorcycle", 17),
    (33, "bicycle", 18),
)
LABEL_IDS = {name: label_id for label_id, name, _ in LABELS}

CITYSCAPES_19_CLASSES: tuple[str, ...] = tuple(
    name for _, name, train_id in sorted(LABELS, key=lambda row: row[2]) if train_id != 255
)
OBJECT_CLASSES = (
    "pole",
    "traffic light",
    "traffic sign",
    "person",
    "rider",
    "car",
    "truck",
    "bus",
    "train",
    "motorcycle",
    "bicycle",
)
CITYSCAPES_OBJECTS11_CLASSES: tuple[str, ...] = ("background", *OBJECT_CLASSES)
# Object classes that Cityscapes annotates without instance ids: their instances are the
# connected components of the class mask.
COMPONENT_CLASSES = ("pole", "traffic light", "traffic sign")


def cityscapes_classes(protocol: Literal["objects11", "19"] = "objects11") -> tuple[str, ...]:
    """Class names of a protocol, in index order (see `CityscapesSource`).

    Args:
        protocol: ``objects11`` or ``19``.

    """
    if protocol == "objects11":
        return CITYSCAPES_OBJECTS11_CLASSES
    if protocol == "19":
        return CITYSCAPES_19_CLASSES
    raise ValueError(f"protocol must be 'objects11' or '19', got {protocol!r}")


def label_lut(protocol: Literal["objects11", "19"], void_as_background: bool = False) -> np.ndarray:
    """Build the 256-entry lookup table from Cityscapes labelIds to the protocol's class indices.

    Args:
        protocol: ``objects11`` or ``19``.
        void_as_background: objects11 only: map the labelIds ignored by the 19-class protocol
            (unlabeled, ego vehicle, parking, caravan, ...) to background instead of 255.

    """
    classes = cityscapes_classes(protocol)
    lut = np.full(256, IGNORE_INDEX, np.uint8)
    for label_id, name, train_id in LABELS:
        if protocol == "19":
            lut[label_id] = train_id
        elif name in classes:
            lut[label_id] = classes.index(name)
        elif train_id != 255 or void_as_background:
            lut[label_id] = 0
    return lut


class CityscapesSource(SegmentationSource):
    """A split of Cityscapes (``gtFine``), with boxes and instance masks of the object classes.

    Layout under ``root``::

        leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png
        gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png
        gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_instanceIds.png

    Image ids are ``<city>_<seq>_<frame>``, sorted.

    Protocols:

    - ``objects11`` (the self-correction paper, Ibrahim et al. 2020): class 0 is background and
      1..11 are pole, traffic light, traffic sign, person, rider, car, truck, bus, train,
      motorcycle, bicycle. The paper assigns "all other classes" to background; we read that as
      the other 8 of the 19 evaluated classes (road, sidewalk, building, wall, fence, vegetation,
      terrain, sky). Pixels that the 19-class protocol ignores (unlabeled, ego vehicle, out of roi,
      static, dynamic, ground, parking, rail track, guard rail, bridge, tunnel, polegroup,
      caravan, trailer) stay 255, so evaluation matches the official one on the 11 classes;
      ``void_as_background=True`` makes them background instead.
    - ``19``: the official 19 train classes with their trainIds. There is no background class:
      index 0 is ``road``, ``num_classes`` is 19 and void is 255. Box-supervised methods, which
      treat class 0 as background, should use ``objects11``.

    Boxes and instance masks: for person, rider, car, truck, bus, train, motorcycle and bicycle,
    one per instance id ``labelId * 1000 + k`` of ``instanceIds.png``; pixels of these classes
    without an instance id (crowd "group" regions) keep their class in the mask but get no box.
    Pole, traffic light and traffic sign have no instance ids in Cityscapes; their instances are
    the 8-connected components of the class's pixels, so an occluded pole may give two boxes.
    Components smaller than ``min_component_pixels`` get no box (counted warning).

    Args:
        root: Dataset root (holding ``leftImg8bit/`` and ``gtFine/``).
        split: ``train``, ``val`` or ``test``.
        protocol: ``objects11`` or ``19`` (see above).
        void_as_background: objects11 only: void pixels become background instead of 255.
        min_component_pixels: Smallest connected component of pole, traffic light or traffic sign
            pixels that becomes an instance.

    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        protocol: Literal["objects11", "19"] = "objects11",
        void_as_background: bool = False,
        min_component_pixels: int = 1,
    ) -> None:
        self.root = Path(root)
        self.split = split
        self.protocol = protocol
        self.classes = cityscapes_classes(protocol)
        if void_as_background and protocol != "objects11":
            raise ValueError("void_as_background applies to the objects11 protocol only")
        self.lut = label_lut(protocol, void_as_background)
        self.min_component_pixels = min_component_pixels
        self.problems = ProblemCounter(f"Cityscapes {self.root}")
        if not self.root.is_dir():
            raise FileNotFoundError(
                f"Cityscapes root {self.root} does not exist; expected a folder with "
                "leftImg8bit/ and gtFine/"
            )
        self.image_dir = self.root / "leftImg8bit" / split
        self.label_dir = self.root / "gtFine" / split
        for folder in (self.image_dir, self.label_dir):
            if not folder.is_dir():
                raise FileNotFoundError(
                    f"Cityscapes split folder {folder} not found; expected <city>/ subfolders"
                )
        suffix = "_leftImg8bit.png"
        self._ids = sorted(p.name[: -len(suffix)] for p in self.image_dir.glob(f"*/*{suffix}"))
        if not self._ids:
            raise FileNotFoundError(f"no *{suffix} images under {self.image_dir}/<city>/")

    @property
    def ids(self) -> list[str]:
        """Image ids ``<city>_<seq>_<frame>``, sorted."""
        return self._ids

    def _path(self, image_id: str, folder: Path, suffix: str) -> Path:
        return folder / image_id.split("_")[0] / f"{image_id}_{suffix}.png"

    def load(self, index: int) -> Sample:
        """Read image, class mask, boxes and instance masks of one image."""
        image_id = self._ids[index]
        image_path = self._path(image_id, self.image_dir, "leftImg8bit")
        label_path = self._path(image_id, self.label_dir, "gtFine_labelIds")
        instance_path = self._path(image_id, self.label_dir, "gtFine_instanceIds")
        image = read_image(image_path)
        label_ids = read_label_map(label_path, "labelIds map")
        check_same_size(image, image_path, label_ids, label_path)
        if label_ids.dtype != np.uint8 or label_ids.max() > 33:
            raise ValueError(f"labelIds map {label_path} holds values above 33")
        instance_ids = read_label_map(instance_path, "instanceIds map")
        check_same_size(image, image_path, instance_ids, instance_path)
        masks, labels = self._instances(label_ids, instance_ids.astype(np.int32), label_path)
        return Sample(
            id=image_id,
            image=image,
            mask=self.lut[label_ids],
            boxes=tight_boxes(masks),
            labels=labels,
            instance_masks=masks,
            source=str(image_path),
        )

    def _instances(
        self, label_ids: np.ndarray, instance_ids: np.ndarray, label_path: Path
    ) -> tuple[np.ndarray, np.ndarray]:
        masks: list[np.ndarray] = []
        labels: list[int] = []
        for name in OBJECT_CLASSES:
            label_id = LABEL_IDS[name]
            target = int(self.lut[label_id])
            class_pixels = label_ids == label_id
            if not class_pixels.any():
                continue
            if name in COMPONENT_CLASSES:
                count, components, stats, _ = cv2.connectedComponentsWithStats(
                    class_pixels.astype(np.uint8), connectivity=8
                )
                large = np.flatnonzero(stats[1:, cv2.CC_STAT_AREA] >= self.min_component_pixels)
                self.problems.add(
                    "components below min_component_pixels left without a box",
                    label_path,
                    count - 1 - len(large),
                )
                masks.extend(components == k + 1 for k in large)
                labels.extend([target] * len(large))
            else:
                ids = np.unique(instance_ids[class_pixels])
                for instance in ids[ids >= 1000]:
                    masks.append(instance_ids == instance)
                    labels.append(target)
        height, width = label_ids.shape
        stacked = np.array(masks, bool).reshape(-1, height, width)
        return stacked, np.array(labels, np.int64)
