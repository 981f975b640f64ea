import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from wseg.data.datasets import make_source
from wseg.data.synthetic import bbox_rect_miou, generate_synthetic, main


def listing(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_exact_layout(synthetic_root):
    files = set(listing(synthetic_root))
    for stem in ("train_00000", "val_00002"):
        for expected in (
            f"voc/JPEGImages/{stem}.jpg",
            f"voc/SegmentationClass/{stem}.png",
            f"voc/SegmentationObject/{stem}.png",
            f"voc/Annotations/{stem}.xml",
            f"voc/Scribbles/{stem}.xml",
        ):
            assert expected in files
    assert "voc/ImageSets/Segmentation/train.txt" in files
    assert (synthetic_root / "voc/ImageSets/Segmentation/val.txt").read_text().split() == [
        "val_00000", "val_00001", "val_00002"
    ]  # fmt: skip
    for suffix in (
        "leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png",
        "gtFine/train/bremen/bremen_000001_000019_gtFine_labelIds.png",
        "gtFine/val/frankfurt/frankfurt_000002_000019_gtFine_instanceIds.png",
    ):
        assert f"cityscapes/{suffix}" in files
    assert len([f for f in files if f.endswith(".jpg")]) == 9
    with Image.open(synthetic_root / "voc/SegmentationClass/train_00000.png") as png:
        assert png.mode == "P" and png.getpalette()[3:6] == [128, 0, 0]
    with Image.open(
        synthetic_root
        / "cityscapes/gtFine/train/aachen/aachen_000000_000019_gtFine_instanceIds.png"
    ) as png:
        values = np.asarray(png)
    assert values.dtype == np.uint16 and (values >= 1000).any() == (values // 1000 >= 24).any()
    manifest = json.loads((synthetic_root / "manifest.json").read_text())
    assert manifest["size"] == [48, 64] and manifest["num_train"] == 6


def test_objects_are_not_rectangles_and_overlap(tmp_path):
    root = generate_synthetic(tmp_path, num_train=30, num_val=0, size=(64, 80), layouts=("voc",))
    fills, overlapping = [], 0
    for sample in make_source("synthetic", root, "train", scribble_dir=None):
        widths = sample.boxes[:, 2] - sample.boxes[:, 0]
        heights = sample.boxes[:, 3] - sample.boxes[:, 1]
        fills += (sample.instance_masks.sum(axis=(1, 2)) / (widths * heights)).tolist()
        for i in range(len(sample.boxes)):
            for j in range(i):
                a, b = sample.boxes[i], sample.boxes[j]
                if (
                    sample.labels[i] != sample.labels[j]
                    and a[0] < b[2]
                    and b[0] < a[2]
                    and a[1] < b[3]
                    and b[1] < a[3]
                ):
                    overlapping += 1
    fills = np.array(fills)
    assert 0.4 < np.median(fills) < 0.9 and (fills < 0.95).all()
    assert overlapping >= 5
    assert (
        len(set(np.concatenate([s.labels for s in make_source("synthetic", root, "train")]))) == 6
    )


def test_deterministic_for_a_seed(tmp_path):
    options = {"num_train": 3, "num_val": 1, "size": (40, 48)}
    first = listing(generate_synthetic(tmp_path / "a", seed=3, **options))
    second = listing(generate_synthetic(tmp_path / "b", seed=3, **options))
    other = listing(generate_synthetic(tmp_path / "c", seed=4, **options))
    assert first == second
    assert first.keys() == other.keys()
    assert first["voc/JPEGImages/train_00000.jpg"] != other["voc/JPEGImages/train_00000.jpg"]
    # Image i depends on the seed and i only, not on how many images come before or after.
    longer = listing(
        generate_synthetic(tmp_path / "d", seed=3, num_train=5, num_val=1, size=(40, 48))
    )
    assert (
        longer["voc/SegmentationClass/train_00002.png"]
        == first["voc/SegmentationClass/train_00002.png"]
    )


def test_reuse_refuse_and_overwrite(tmp_path):
    root = generate_synthetic(
        tmp_path / "s", num_train=2, num_val=1, size=(32, 32), layouts=("voc",)
    )
    marker = root / "voc" / "JPEGImages" / "train_00000.jpg"
    stamp = marker.stat().st_mtime_ns
    assert generate_synthetic(root, num_train=2, num_val=1, size=(32, 32), layouts=("voc",)) == root
    assert marker.stat().st_mtime_ns == stamp
    with pytest.raises(FileExistsError, match=r"already holds a different dataset.*overwrite=True"):
        generate_synthetic(root, num_train=3, num_val=1, size=(32, 32), layouts=("voc",))
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="files without a manifest"):
        generate_synthetic(foreign, num_train=1, num_val=1, size=(32, 32))
    generate_synthetic(
        root, num_train=3, num_val=1, size=(32, 32), layouts=("cityscapes",), overwrite=True
    )
    assert (
        not (root / "voc").exists()
        and len(make_source("cityscapes", root / "cityscapes", "train")) == 3
    )
    generate_synthetic(
        foreign, num_train=1, num_val=1, size=(32, 32), layouts=("voc",), overwrite=True
    )
    assert (foreign / "notes.txt").read_text() == "keep me"
    with pytest.raises(ValueError, match="unknown layouts"):
        generate_synthetic(tmp_path / "x", layouts=("kitti",))


def test_bbox_rect_miou_is_like_real_data(tmp_path):
    root = generate_synthetic(tmp_path, num_train=40, num_val=0, layouts=("voc",))
    miou = bbox_rect_miou(root)
    assert 55 <= miou <= 80
    assert bbox_rect_miou(root, limit=5) != miou


def test_cli_reports_miou(tmp_path, capsys):
    size = ["--size", "48", "64"]
    main(["--out", str(tmp_path / "cli"), "--num-train", "4", "--num-val", "1", *size, "--report"])
    out = capsys.readouterr().out
    assert f"synthetic dataset in {tmp_path / 'cli'}" in out
    assert "Bbox-Rect label mIoU vs true masks (train): " in out
    assert len(make_source("synthetic", tmp_path / "cli", "val")) == 1
    assert len(make_source("cityscapes", tmp_path / "cli" / "cityscapes", "train")) == 4
