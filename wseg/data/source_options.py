"""A datamodule's dataset options as the keyword options of `wseg.data.datasets.make_source`.

`wseg.data.datamodule.WeakSegDataModule` keeps them as ``source_options``; the pipelines pass them
on to the readers they build themselves.
"""

from __future__ import annotations

from typing import Any

from wseg.data.datasets import DatasetName, resolve_class_names


def source_options(
    *,
    dataset: DatasetName,
    root: str,
    splits: list[str],
    class_names: list[str] | str | None,
    voc_mask_dir: str,
    box_source: str,
    require_masks: bool,
    cityscapes_protocol: str,
    coco_class_map: str,
    coco_category_map: dict[str, str] | None,
    scribbles: str,
    scribble_dir: str | None,
    scribble_width: int,
    cityscapes_min_component_pixels: int = 1,
    coco_skip_bad_annotations: bool = False,
) -> dict[str, Any]:
    """Assemble the keyword options of one dataset layout's reader (all but root and split).

    Args:
        dataset: Dataset layout: ``voc``, ``cityscapes``, ``coco`` or ``synthetic``.
        root: Dataset root.
        splits: The splits the datamodule reads (where ``class_names="from_data"`` looks).
        class_names: Your own classes, ``from_data``, or None for the dataset's
            (`wseg.data.datasets.resolve_class_names`).
        voc_mask_dir: VOC: ``auto``, ``SegmentationClass`` or ``SegmentationClassAug``.
        box_source: VOC and synthetic: boxes from ``auto``, ``instances`` or ``xml``.
        require_masks: VOC and synthetic: fail on an image without a class mask.
        cityscapes_protocol: Cityscapes: ``objects11`` or ``19``.
        coco_class_map: COCO: ``voc`` or ``coco``.
        coco_category_map: COCO: JSON category name -> class name, or None.
        scribbles: ``none``, ``dataset`` or ``synthesize``; only ``dataset`` reads scribble files.
        scribble_dir: VOC and synthetic: folder of scribble XMLs under root; None on synthetic
            keeps the reader's default.
        scribble_width: Stroke width in pixels of read scribbles.
        cityscapes_min_component_pixels: Cityscapes: smallest pole / traffic light / sign
            component that becomes a box.
        coco_skip_bad_annotations: COCO: drop malformed annotations with a counted warning.

    Returns:
        The options, with ``classes`` when ``class_names`` resolves to a list.

    """
    options: dict[str, Any]
    if dataset in ("voc", "synthetic"):
        reads_scribbles = scribbles == "dataset"
        options = {
            "box_source": box_source,
            "require_masks": require_masks,
            "scribble_width": scribble_width,
            "scribble_dir": scribble_dir if reads_scribbles else None,
        }
        if dataset == "voc":
            options["mask_dir"] = voc_mask_dir
        elif reads_scribbles and scribble_dir is None:
            del options["scribble_dir"]  # the reader's default for synthetic
    elif dataset == "cityscapes":
        options = {"protocol": cityscapes_protocol}
        if cityscapes_min_component_pixels != 1:  # the reader's default: options stay as before
            options["min_component_pixels"] = cityscapes_min_component_pixels
    else:
        options = {"class_map": coco_class_map}
        if coco_category_map:
            options["category_map"] = dict(coco_category_map)
        if coco_skip_bad_annotations:  # the reader's default (False): options stay as before
            options["skip_bad_annotations"] = True
    chosen = resolve_class_names(dataset, root, splits, class_names, coco_category_map)
    if chosen is not None:
        options["classes"] = chosen
    return options
