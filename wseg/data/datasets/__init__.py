"""Dataset readers (VOC, Cityscapes, COCO, synthetic) behind one factory, `make_source`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, get_args

from wseg.data.datasets.cityscapes import CityscapesSource, cityscapes_classes
from wseg.data.datasets.coco import COCOSource, coco_classes
from wseg.data.datasets.common import DataWarning, ProblemCounter, with_background
from wseg.data.datasets.voc import VOCSource, voc_xml_classes
from wseg.data.records import VOC_CLASSES, SegmentationSource

# The synthetic dataset (wseg.data.synthetic) draws the first six VOC classes, with their VOC
# indices and names, so its VOC layout is read by `VOCSource` with this shorter class list.
SYNTHETIC_CLASSES: tuple[str, ...] = VOC_CLASSES[:7]
SYNTHETIC_SCRIBBLE_DIR = "Scribbles"

DatasetName = Literal["synthetic", "voc", "coco", "cityscapes"]
DATASET_NAMES: tuple[str, ...] = get_args(DatasetName)
"""The names `make_source` reads (the ``--dataset`` choices of the commands)."""

__all__ = [
    "DATASET_NAMES",
    "SYNTHETIC_CLASSES",
    "CityscapesSource",
    "COCOSource",
    "DataWarning",
    "ProblemCounter",
    "VOCSource",
    "dataset_classes",
    "make_source",
    "resolve_class_names",
    "voc_xml_classes",
]


def dataset_classes(dataset: DatasetName, **options: Any) -> tuple[str, ...]:
    """Class names of a dataset, background first, known before any file is read.

    Args:
        dataset: ``voc``, ``cityscapes``, ``coco`` or ``synthetic``.
        **options: The reader options that `make_source` gets; only ``classes`` (voc, coco),
            ``protocol`` (cityscapes) and ``class_map`` (coco) matter here; ``class_map="json"``
            needs the resolved ``classes`` (see `resolve_class_names`).

    """
    if dataset == "voc":
        return tuple(options.get("classes", VOC_CLASSES))
    if dataset == "cityscapes":
        return cityscapes_classes(options.get("protocol", "objects11"))
    if dataset == "coco":
        if options.get("classes") is None and options.get("class_map") == "json":
            raise ValueError("class_map='json': resolve the names first (resolve_class_names)")
        return coco_classes(options.get("class_map", "voc"), classes=options.get("classes"))
    if dataset == "synthetic":
        return SYNTHETIC_CLASSES
    raise ValueError(f"unknown dataset {dataset!r}; expected voc, cityscapes, coco or synthetic")


def resolve_class_names(
    dataset: DatasetName,
    root: str | Path,
    splits: list[str],
    class_names: list[str] | str | None,
    category_map: dict[str, str] | None = None,
) -> tuple[str, ...] | None:
    """The class names a user asked for, background first, or None for the dataset's own.

    Args:
        dataset: ``voc``, ``cityscapes``, ``coco`` or ``synthetic``.
        root: Dataset root.
        splits: The splits that will be read; the first is the training split.
        class_names: A list of names (``background`` is added first), ``"from_data"`` (voc: the
            sorted names of the splits' XMLs; coco: the training JSON's categories in id order)
            or None.
        category_map: COCO: JSON category name -> class name.

    Raises:
        ValueError: Names for a dataset with fixed classes, or an unknown keyword.

    """
    if class_names is None:
        return None
    if dataset in ("cityscapes", "synthetic"):
        raise ValueError(
            f"class_names cannot be set for {dataset}: its classes are fixed "
            "(cityscapes: choose the protocol)"
        )
    if isinstance(class_names, str):
        if class_names != "from_data":
            raise ValueError(f"class_names must be a list or 'from_data', got {class_names!r}")
        if dataset == "voc":
            return voc_xml_classes(root, splits)
        annotation = Path(root) / "annotations" / f"instances_{splits[0]}.json"
        return coco_classes("json", annotation, category_map=category_map)
    return with_background(class_names)


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
