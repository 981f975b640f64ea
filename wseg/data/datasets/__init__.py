"""Dataset readers (VOC, Cityscapes, COCO, synthetic) behind one factory, `make_source`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from wseg.data.datasets.cityscapes import CityscapesSource, cityscapes_classes
from wseg.data.datasets.coco import COCOSource, coco_classes
from wseg.data.datasets.common import DataWarning, ProblemCounter
from wseg.data.datasets.voc import VOCSource
from wseg.data.records import VOC_CLASSES, SegmentationSource

# The synthetic dataset (wseg.data.synthetic) draws the first six VOC classes, with their VOC
# indices and names, so its VOC layout is read by `VOCSource` with this shorter class list.
SYNTHETIC_CLASSES: tuple[str, ...] = VOC_CLASSES[:7]
SYNTHETIC_SCRIBBLE_DIR = "Scribbles"

DatasetName = Literal["voc", "cityscapes", "coco", "synthetic"]

__all__ = [
    "SYNTHETIC_CLASSES",
    "CityscapesSource",
    "COCOSource",
    "DataWarning",
    "ProblemCounter",
    "VOCSource",
    "dataset_classes",
    "make_source",
]


def dataset_classes(dataset: DatasetName, **options: Any) -> tuple[str, ...]:
    """Class names of a dataset, background first, known before any file is read.

    Args:
        dataset: ``voc``, ``cityscapes``, ``coco`` or ``synthetic``.
        **options: The reader options that `make_source` gets; only ``classes`` (voc),
            ``protocol`` (cityscapes) and ``class_map`` (coco) matter here.

    """
    if dataset == "voc":
        return tuple(options.get("classes", VOC_CLASSES))
    if dataset == "cityscapes":
        return cityscapes_classes(options.get("protocol", "objects11"))
    if dataset == "coco":
        return coco_classes(options.get("class_map", "voc"))
    if dataset == "synthetic":
        return SYNTHETIC_CLASSES
    raise ValueError(f"unknown dataset {dataset!r}; expected voc, cityscapes, coco or synthetic")


def make_source(
    dataset: DatasetName, root: str | Path, split: str, **options: Any
) -> SegmentationSource:
    """Build the reader of a dataset split.

    Args:
        dataset: ``voc``, ``cityscapes``, ``coco`` or ``synthetic`` (the VOC layout that
            ``python -m wseg.data.synthetic --out ROOT`` writes under ``ROOT/voc``, with its
            scribbles).
        root: Dataset root; for ``synthetic`` the generator's output folder.
        split: Split name (``train``, ``val``, ``train_aug``, ``train2017``, ...).
        **options: Keyword arguments of the reader class.

    """
    if dataset == "voc":
        return VOCSource(root, split, **options)
    if dataset == "cityscapes":
        return CityscapesSource(root, split, **options)
    if dataset == "coco":
        return COCOSource(root, split, **options)
    if dataset == "synthetic":
        options = {"scribble_dir": SYNTHETIC_SCRIBBLE_DIR, **options}
        return VOCSource(Path(root) / "voc", split, classes=SYNTHETIC_CLASSES, **options)
    raise ValueError(f"unknown dataset {dataset!r}; expected voc, cityscapes, coco or synthetic")
