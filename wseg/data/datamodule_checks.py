"""The checks of `wseg.data.datamodule.WeakSegDataModule`'s options, run before anything is read.

The messages name the datamodule's options, as a config file or the command line spells them.
"""

from __future__ import annotations


def check_datamodule_options(
    *,
    dataset: str,
    num_strong: int | None,
    strong_fraction: float | None,
    strong_split_file: str | None,
    strong_only: bool,
    strong_per_batch: int | None,
    crop_size: int,
    scale_range: tuple[float, float],
    object_crop_p: float,
    batch_size: int,
    val_batch_size: int,
    num_workers: int | None,
    scribbles: str,
    scribble_dir: str | None,
    scribble_width: int,
    curated_scribbles: bool,
) -> None:
    """Reject a datamodule configuration that is invalid or contradicts itself.

    Args:
        dataset: Dataset layout: ``voc``, ``cityscapes``, ``coco`` or ``synthetic``.
        num_strong: Size of the fully labelled subset F, or None.
        strong_fraction: Fraction of the training images in F, or None.
        strong_split_file: Text file of F's ids, or None.
        strong_only: Train only on F.
        strong_per_batch: Fixed number of F images in every training batch, or None.
        crop_size: Side of the square training crop.
        scale_range: ``(low, high)`` of the random training scale.
        object_crop_p: Share of object-centred training crops.
        batch_size: Training batch size.
        val_batch_size: Validation/test/predict batch size.
        num_workers: DataLoader worker processes, or None.
        scribbles: ``none``, ``dataset`` or ``synthesize``.
        scribble_dir: VOC: folder of ScribbleSup XMLs under the root, or None.
        scribble_width: Stroke width in pixels of the scribbles.
        curated_scribbles: Curate the scribbles with the full masks.

    Raises:
        ValueError: An option is out of range, or two options contradict each other.

    """
    if dataset not in ("voc", "cityscapes", "coco", "synthetic"):
        raise ValueError(f"dataset must be voc, cityscapes, coco or synthetic, got {dataset!r}")
    if num_strong is not None and strong_fraction is not None:
        raise ValueError(
            f"set num_strong ({num_strong}) or strong_fraction ({strong_fraction}), not both"
        )
    if num_strong is not None and num_strong < 0:
        raise ValueError(f"num_strong must be >= 0, got {num_strong}")
    if strong_fraction is not None and not 0.0 <= strong_fraction <= 1.0:
        raise ValueError(f"strong_fraction must lie in [0, 1], got {strong_fraction}")
    if crop_size <= 0:
        raise ValueError(f"crop_size must be positive, got {crop_size}")
    low, high = scale_range
    if not 0 < low <= high:
        raise ValueError(f"scale_range must satisfy 0 < low <= high, got {scale_range}")
    if not 0.0 <= object_crop_p <= 1.0:
        raise ValueError(f"object_crop_p must be in [0, 1], got {object_crop_p}")
    for name, value in (("batch_size", batch_size), ("val_batch_size", val_batch_size)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if num_workers is not None and num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}")
    if scribble_width < 1:
        raise ValueError(f"scribble_width must be >= 1, got {scribble_width}")
    if scribbles not in ("none", "dataset", "synthesize"):
        raise ValueError(f"scribbles must be none, dataset or synthesize, got {scribbles!r}")
    if scribbles == "dataset" and dataset in ("cityscapes", "coco"):
        raise ValueError(
            f"scribbles='dataset' needs scribble files, which the {dataset} layout has "
            "none of; use scribbles='synthesize'"
        )
    if scribbles == "dataset" and dataset == "voc" and scribble_dir is None:
        raise ValueError("scribbles='dataset' on voc needs scribble_dir (the XML folder)")
    if curated_scribbles and scribbles == "none":
        raise ValueError(
            "curated_scribbles=True needs scribbles ('dataset' or 'synthesize') to curate"
        )
    if strong_per_batch is not None:
        if not 0 <= strong_per_batch <= batch_size:
            raise ValueError(
                f"strong_per_batch={strong_per_batch} must lie in [0, batch_size={batch_size}]"
            )
        if strong_only:
            raise ValueError("strong_per_batch has no effect with strong_only=True; drop one")
    has_split = num_strong is not None or strong_fraction is not None or strong_split_file
    if (strong_only or strong_per_batch is not None) and not has_split:
        raise ValueError(
            f"strong_only={strong_only}, strong_per_batch={strong_per_batch} need a "
            "strong/weak split: set num_strong, strong_fraction or strong_split_file"
        )
