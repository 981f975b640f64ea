"""Your own data: class names from the data, box-only training splits, and the data check."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.data.layouts import voc_xml, write_coco, write_voc
from wseg.data.__main__ import main as data_main
from wseg.data.check import DataCheckError, check_datamodule, format_checks, require_clean
from wseg.data.datamodule import WeakSegDataModule
from wseg.data.datasets import COCOSource, VOCSource, voc_xml_classes
from wseg.data.datasets.common import with_background
from wseg.data.run_files import save_class_names

pytestmark = pytest.mark.filterwarnings("ignore::wseg.data.datasets.DataWarning")


def own_coco(tmp_path, categories, annotations, split="s"):
    """A COCO layout with these categories (ids and names of the user's choosing)."""
    images = [{"id": 1, "file_name": "a.jpg", "height": 20, "width": 30}]
    root = write_coco(tmp_path, images, annotations, split)
    path = root / "annotations" / f"instances_{split}.json"
    data = json.loads(path.read_text())
    data["categories"] = categories
    path.write_text(json.dumps(data))
    return root


BOXES = [
    {"id": 1, "image_id": 1, "category_id": 40, "bbox": [1, 1, 5, 5], "iscrowd": 0},
    {"id": 2, "image_id": 1, "category_id": 7, "bbox": [10, 2, 4, 4], "iscrowd": 0},
    {"id": 3, "image_id": 1, "category_id": 9, "bbox": [20, 5, 4, 4], "iscrowd": 0},
]
CATEGORIES = [{"id": 40, "name": "pothole"}, {"id": 7, "name": "crack"}, {"id": 9, "name": "oil"}]


def test_coco_json_classes_any_names_in_id_order(tmp_path):
    root = own_coco(tmp_path, CATEGORIES, BOXES)
    source = COCOSource(root, "s", class_map="json")
    assert source.classes == ("background", "crack", "oil", "pothole")
    sample = source.load(0)
    assert sample.mask is None  # boxes only
    np.testing.assert_array_equal(sample.labels, [3, 1, 2])
    np.testing.assert_array_equal(sample.boxes[0], [1, 1, 6, 6])


def test_coco_category_map_merges_and_drops(tmp_path):
    root = own_coco(tmp_path, CATEGORIES, BOXES)
    mapping = {"pothole": "damage", "crack": "damage", "oil": "background"}
    source = COCOSource(root, "s", class_map="json", category_map=mapping)
    assert source.classes == ("background", "damage")
    np.testing.assert_array_equal(source.load(0).labels, [1, 1])


def test_coco_explicit_classes_fix_the_order_and_name_strangers(tmp_path):
    root = own_coco(tmp_path, CATEGORIES, BOXES)
    source = COCOSource(root, "s", classes=["oil", "crack", "pothole"])
    assert source.classes == ("background", "oil", "crack", "pothole")
    np.testing.assert_array_equal(source.load(0).labels, [3, 2, 1])
    with pytest.raises(ValueError, match=r"category 'pothole' \(id 40\) in .*instances_s\.json is "
                       r"not one of the classes \['oil', 'crack'\].*category_map"):  # fmt: skip
        COCOSource(root, "s", classes=["oil", "crack"])
    with pytest.raises(ValueError, match=r"unknown category name 'crack'.*class_map='json'"):
        COCOSource(root, "s")


def test_class_name_lists_are_checked():
    assert with_background(["a", "b"]) == ("background", "a", "b")
    assert with_background(["background", "a"]) == ("background", "a")
    with pytest.raises(ValueError, match="distinct"):
        with_background(["a", "a"])
    with pytest.raises(ValueError, match="at least one class"):
        with_background([])


def voc_own_classes(tmp_path):
    """Two training images with XMLs only (no masks); one validation image with a mask only."""
    root = tmp_path / "voc"
    write_voc(root, "t1", xml=voc_xml([("scratch", (2, 2, 6, 6)), ("dent", (7, 1, 12, 8))]))
    write_voc(root, "t2", xml=voc_xml([("dent", (1, 1, 4, 4))]))
    mask = np.zeros((8, 12), np.uint8)
    mask[2:5, 2:6] = 2
    write_voc(root, "v1", mask=mask, split="val")
    return root


def test_voc_xml_classes_sorted_and_box_only_training(tmp_path):
    root = voc_own_classes(tmp_path)
    assert voc_xml_classes(root, ["train", "val"]) == ("background", "dent", "scratch")
    train = VOCSource(root, "train", require_masks=False, classes=["dent", "scratch"])
    sample = train.load(0)
    assert sample.mask is None and sample.labels.tolist() == [2, 1]
    with pytest.raises(FileNotFoundError, match=r"no boxes for image .*v1\.jpg"):
        VOCSource(root, "val").load(0)
    val = VOCSource(root, "val", require_boxes=False, classes=["dent", "scratch"])
    assert val.load(0).boxes.shape == (0, 4) and val.load(0).mask.max() == 2


def test_datamodule_classes_from_data_reach_the_readers(tmp_path):
    root = voc_own_classes(tmp_path)
    dm = WeakSegDataModule(
        dataset="voc", root=str(root), require_masks=False, class_names="from_data"
    )
    assert dm.class_names == ("background", "dent", "scratch") and dm.num_classes == 3
    reports = {r.role: r for r in check_datamodule(dm, progress=False)}
    train = reports["train"]
    assert (train.images, train.with_masks, train.boxes) == (2, 0, 3)
    assert reports["train"].box_classes == {"dent": 2, "scratch": 1}
    val = reports["val+test+predict"]
    assert (val.with_masks, val.with_boxes, val.errors) == (1, 0, [])
    listed = WeakSegDataModule(dataset="voc", root=str(root), class_names=["scratch", "dent"])
    assert listed.class_names == ("background", "scratch", "dent")
    with pytest.raises(ValueError, match="class_names cannot be set for synthetic"):
        WeakSegDataModule(dataset="synthetic", class_names=["a"])


def test_class_names_file_is_never_replaced(tmp_path):
    path = tmp_path / "run" / "class_names.txt"
    save_class_names(("background", "dent"), path)
    assert path.read_text() == "background\ndent\n"
    save_class_names(("background", "dent"), path)  # the same names: fine
    with pytest.raises(ValueError, match=r"class_names\.txt holds other class names"):
        save_class_names(("background", "scratch"), path)
    assert path.read_text() == "background\ndent\n"


def test_validation_without_masks_is_a_warning_not_an_error(tmp_path):
    root = own_coco(tmp_path, CATEGORIES, BOXES, split="train")
    own_coco(tmp_path, CATEGORIES, BOXES, split="val")
    dm = WeakSegDataModule(dataset="coco", root=str(root), class_names="from_data")
    reports = require_clean(dm, progress=False)
    text = format_checks(reports, list(dm.class_names))
    assert "validation split 'val' has no masks: val/miou is not measured" in text
    assert "no errors" in text


def test_check_reports_every_bad_file_and_fails(tmp_path, capsys):
    root = voc_own_classes(tmp_path)
    (root / "JPEGImages" / "t2.jpg").write_bytes(b"\xff\xd8 broken")
    write_voc(root, "t3", xml="<annotation><object><name>dent</name></annotation")
    (root / "JPEGImages" / "t3.jpg").unlink()
    dm = WeakSegDataModule(dataset="voc", root=str(root), require_masks=False)
    with pytest.raises(DataCheckError) as caught:
        require_clean(dm, progress=False)
    message = str(caught.value)
    assert "cannot decode image" in message and "t2.jpg" in message
    assert "t3.jpg" in message
    config = tmp_path / "run.yaml"
    config.write_text(
        "data:\n  class_path: WeakSegDataModule\n  init_args:\n"
        f"    dataset: voc\n    root: {root}\n    require_masks: false\n"
        "    class_names: [dent, scratch]\n"
    )
    assert data_main(["check", "--config", str(config), "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert "train (train)" in out and "2 errors" in out and "t2.jpg" in out
    (root / "ImageSets" / "Segmentation" / "train.txt").write_text("t1\n")
    assert data_main(["check", "--config", str(config), "--no-progress"]) == 0
    assert "no errors" in capsys.readouterr().out
    assert data_main(["check", "--config", str(tmp_path / "none.yaml")]) == 2
