"""Tiny test data: a few generated 64-px synthetic images, and where the shared photographs are."""

import json
from pathlib import Path
from typing import Any


def synthetic(num_train: int, num_val: int = 2, **more: Any) -> dict[str, Any]:
    """``data.init_args`` of a tiny synthetic dataset (64x64), plus ``more``."""
    return {
        "synthetic_num_train": num_train,
        "synthetic_num_val": num_val,
        "synthetic_size": [64, 64],
        **more,
    }


def data_args(root: Path, values: dict[str, Any]) -> list[str]:
    """``--data.init_args.root ROOT`` and one ``--data.init_args.KEY VALUE`` pair per value."""
    args = ["--data.init_args.root", str(root)]
    for key, value in values.items():
        args += [f"--data.init_args.{key}", value if isinstance(value, str) else json.dumps(value)]
    return args


TINY_FIT = [
    "--data.init_args.crop_size", "64",
    "--data.init_args.batch_size", "2",
    "--data.init_args.val_batch_size", "2",
    "--data.init_args.num_workers", "0",
    "--model.init_args.encoder", "tu-mobilenetv3_small_050",
    "--model.init_args.encoder_weights", "null",
]  # fmt: skip
"""Fit arguments of a seconds-long fit: 64-px crops, batches of 2, a tiny random encoder."""

TINY_COCO = Path(__file__).resolve().parents[2] / "shared" / "data" / "tiny_coco"
"""The 100 shared real COCO photographs (``../shared/data/tiny_coco``); tests using them skip,
saying so, in a checkout that has no ``../shared`` beside it."""

CAMVID = TINY_COCO.parent / "camvid"
"""The 468 shared real CamVid street frames in the Cityscapes layout (``../shared/data/camvid``);
tests using them skip, saying so, where it is absent."""


def camvid_subset(out: Path, frames: dict[str, int]) -> Path:
    """A few real CamVid frames per split, copied in the Cityscapes layout to ``out`` (a tmp dir).

    Args:
        out: Where the small dataset is written.
        frames: Split -> number of frames (the first of the split's list).

    Returns:
        ``out``.
    """
    import shutil

    for split, count in frames.items():
        names = (CAMVID / f"{split}.txt").read_text().split()[:count]
        for folder, suffixes in (
            ("leftImg8bit", ("leftImg8bit",)),
            ("gtFine", ("gtFine_labelIds", "gtFine_instanceIds")),
        ):
            target = out / folder / split / "camvid"
            target.mkdir(parents=True, exist_ok=True)
            for name in names:
                for suffix in suffixes:
                    file = f"{name}_{suffix}.png"
                    shutil.copy(CAMVID / folder / split / "camvid" / file, target / file)
    return out


BYOD_CATEGORIES = {
    11: "crack",
    12: "pothole",
    13: "patch",
    14: "sign",
    15: "manhole",
    16: "marking",
}
"""The tiny box-only dataset's own categories (COCO ids and names that no built-in class list has),
standing for the synthetic set's six classes in order."""


def write_box_only_coco(synthetic_root: Path, out: Path, photos: int = 3) -> Path:
    """A user's dataset in the COCO layout, made from a generated synthetic set (VOC layout).

    ``out/train`` and ``out/val`` hold the JPEGs; ``annotations/instances_train.json`` has boxes
    only (``bbox``, no ``segmentation``), ``instances_val.json`` boxes and RLE masks, both with
    `BYOD_CATEGORIES`. ``out/new_photos`` holds ``photos`` unlabelled images (for ``segment``).
    """
    import numpy as np
    from PIL import Image
    from pycocotools import mask as mask_utils

    from wseg.data.datasets import make_source

    ids = sorted(BYOD_CATEGORIES)
    for split, with_masks in (("train", False), ("val", True)):
        source = make_source("synthetic", synthetic_root, split)
        images, annotations = [], []
        (out / split).mkdir(parents=True, exist_ok=True)
        for index in range(len(source)):
            sample = source[index]
            name = f"{split}_{index:03d}.jpg"
            Image.fromarray(sample.image).save(out / split / name, quality=95)
            height, width = sample.size
            images.append({"id": index + 1, "file_name": name, "height": height, "width": width})
            for k, (box, label) in enumerate(zip(sample.boxes, sample.labels)):
                x1, y1, x2, y2 = (float(v) for v in box)
                annotation = {
                    "id": len(annotations) + 1,
                    "image_id": index + 1,
                    "category_id": ids[int(label) - 1],
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "iscrowd": 0,
                }
                if with_masks:
                    rle = mask_utils.encode(np.asfortranarray(sample.instance_masks[k], np.uint8))
                    annotation["segmentation"] = {
                        "counts": rle["counts"].decode(),
                        "size": rle["size"],
                    }
                annotations.append(annotation)
            if split == "val" and index < photos:
                (out / "new_photos").mkdir(exist_ok=True)
                Image.fromarray(sample.image).save(out / "new_photos" / f"photo_{index}.jpg")
        categories = [{"id": i, "name": n} for i, n in BYOD_CATEGORIES.items()]
        (out / "annotations").mkdir(parents=True, exist_ok=True)
        data = {"images": images, "annotations": annotations, "categories": categories}
        (out / "annotations" / f"instances_{split}.json").write_text(json.dumps(data))
    return out
