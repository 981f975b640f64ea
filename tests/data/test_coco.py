import contextlib
import io
import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from tiny_data import TINY_COCO

from tests.data.layouts import write_coco
from wseg.data.datasets import COCOSource, DataWarning, dataset_classes, make_source
from wseg.data.datasets.common import tight_boxes
from wseg.data.records import VOC_CLASSES

# pycocotools 2.0 on numpy 2 warns about its own __array__ use.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def block(rows: slice, cols: slice, size=(20, 30)) -> np.ndarray:
    mask = np.zeros(size, np.uint8)
    mask[rows, cols] = 1
    return mask


def uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO's uncompressed RLE: run lengths over the column-major pixels, zeros first."""
    flat = mask.flatten(order="F")
    changes = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate([[0], changes, [flat.size]])).tolist()
    return {"counts": runs if flat[0] == 0 else [0, *runs], "size": list(mask.shape)}


def compressed_rle(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask))
    return {"counts": rle["counts"].decode(), "size": rle["size"]}


@pytest.fixture
def coco_root(tmp_path):
    images = [
        {"id": 7, "file_name": "img7.jpg", "height": 20, "width": 30},
        {"id": 8, "file_name": "img8.jpg", "height": 20, "width": 30},
        {"id": 9, "file_name": "img9.jpg", "height": 20, "width": 30},
    ]
    annotations = [
        # A cat drawn in front of the dog it overlaps: smaller instances win, whatever the order.
        {"id": 1, "image_id": 7, "category_id": 16, "iscrowd": 0, "bbox": [0, 0, 1, 1],
         "segmentation": [[8, 4, 14, 4, 14, 8, 8, 8]]},
        {"id": 2, "image_id": 7, "category_id": 17, "iscrowd": 0, "bbox": [0, 0, 1, 1],
         "segmentation": [[2, 2, 12, 2, 12, 10, 2, 10]]},
        {"id": 3, "image_id": 7, "category_id": 5, "iscrowd": 0, "bbox": [0, 0, 1, 1],
         "segmentation": uncompressed_rle(block(slice(12, 15), slice(20, 24)))},
        {"id": 4, "image_id": 7, "category_id": 1, "iscrowd": 1, "bbox": [0, 15, 10, 5],
         "segmentation": compressed_rle(block(slice(15, 20), slice(0, 10)))},
        {"id": 5, "image_id": 7, "category_id": 47, "iscrowd": 0, "bbox": [0, 0, 1, 1],
         "segmentation": [[20, 0, 25, 0, 25, 5, 20, 5]]},
        # Detection-only annotations: JSON boxes, one reaching out of the image.
        {"id": 6, "image_id": 8, "category_id": 3, "iscrowd": 0, "bbox": [25.5, 10, 10, 4]},
        {"id": 7, "image_id": 8, "category_id": 63, "iscrowd": 0, "bbox": [1, 1, 3, 3]},
    ]  # fmt: skip
    return write_coco(tmp_path, images, annotations)


def test_polygons_rle_crowd_and_voc_mapping(coco_root):
    source = COCOSource(coco_root, "s")
    assert source.ids == ["img7", "img8", "img9"]
    sample = source.load(0)
    expected = np.zeros((20, 30), np.uint8)
    expected[2:10, 2:12] = VOC_CLASSES.index("dog")
    expected[4:8, 8:14] = VOC_CLASSES.index("cat")
    expected[12:15, 20:24] = VOC_CLASSES.index("aeroplane")
    expected[15:20, 0:10] = 255  # crowd of people; the banana (not VOC) is background
    np.testing.assert_array_equal(sample.mask, expected)
    np.testing.assert_array_equal(sample.labels, [8, 12, 1])
    np.testing.assert_array_equal(sample.boxes, [[8, 4, 14, 8], [2, 2, 12, 10], [20, 12, 24, 15]])
    assert sample.instance_masks.sum(axis=(1, 2)).tolist() == [24, 80, 12]
    empty = source.load(2)
    assert empty.boxes.shape == (0, 4) and not empty.mask.any()


def test_coco_class_map_keeps_all_80(coco_root):
    source = make_source("coco", coco_root, "s", class_map="coco")
    assert source.classes == dataset_classes("coco", class_map="coco") and len(source.classes) == 81
    sample = source.load(0)
    np.testing.assert_array_equal(sample.labels, [16, 17, 5, 47])
    assert (sample.mask[0:5, 20:25] == 47).all()


def test_detection_only_annotations_use_json_boxes(coco_root):
    source = COCOSource(coco_root, "s")
    with pytest.warns(DataWarning) as caught:
        sample = source.load(1)
    assert sample.mask is None and sample.instance_masks is None
    np.testing.assert_array_equal(sample.boxes, [[25.5, 10, 30, 14], [1, 1, 4, 4]])
    np.testing.assert_array_equal(sample.labels, [7, 20])
    assert source.problems.count("boxes clipped to the image") == 1
    assert len(caught) == 2


def test_bad_coco_input(coco_root):
    with pytest.raises(FileNotFoundError, match=r"COCO root .*nowhere does not exist"):
        COCOSource(coco_root / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"COCO image folder .*train2017 not found"):
        COCOSource(coco_root)
    (coco_root / "t").mkdir()
    with pytest.raises(FileNotFoundError, match=r"annotation file .*instances_t\.json not found"):
        COCOSource(coco_root, "t")
    path = coco_root / "annotations" / "instances_s.json"
    original = path.read_text()
    data = json.loads(original)
    data["images"][0]["height"] = 21
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"img7\.jpg is 20x30 .*instances_s\.json says 21x30"):
        COCOSource(coco_root, "s").load(0)
    data["categories"][0]["name"] = "martian"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"unknown category name 'martian' in .*instances_s\.json"):
        COCOSource(coco_root, "s")
    path.write_text("{")
    with pytest.raises(ValueError, match=r"instances_s\.json is not valid JSON"):
        COCOSource(coco_root, "s")
    path.write_text(original)
    (coco_root / "s" / "img7.jpg").write_bytes(b"\xff\xd8 broken")
    with pytest.raises(ValueError, match=r"cannot decode image .*img7\.jpg"):
        COCOSource(coco_root, "s", annotation_file="annotations/instances_s.json").load(0)


@pytest.mark.skipif(not TINY_COCO.is_dir(), reason="tiny_coco is not at ../shared/data")
@pytest.mark.parametrize("split", ["train2017", "val2017"])
def test_tiny_coco_real_photos(split):
    source = COCOSource(TINY_COCO, split)
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(TINY_COCO / "annotations" / f"instances_{split}.json"))
    voc_ids = {
        c["id"]
        for c in coco.loadCats(coco.getCatIds())
        if c["name"]
        in (*VOC_CLASSES, "airplane", "motorcycle", "couch", "dining table", "potted plant", "tv")
    }
    assert len(voc_ids) == 20
    total = 0
    for index, record in enumerate(source._images):
        sample = source.load(index)
        assert sample.image.shape == (record["height"], record["width"], 3)
        np.testing.assert_array_equal(sample.boxes, tight_boxes(sample.instance_masks))
        annotations = coco.loadAnns(
            coco.getAnnIds(imgIds=record["id"], catIds=list(voc_ids), iscrowd=False)
        )
        reference = [coco.annToMask(a).astype(bool) for a in annotations]
        reference = [m for m in reference if m.any()]
        assert len(reference) == len(sample.instance_masks)
        for mine, theirs in zip(sample.instance_masks, reference):
            np.testing.assert_array_equal(mine, theirs)
        areas = sample.instance_masks.sum(axis=(1, 2))
        for instance, label, area in zip(sample.instance_masks, sample.labels, areas):
            # A pixel of an instance carries its class unless a smaller instance covers it.
            smaller = sample.instance_masks[areas < area].any(axis=0)
            assert (sample.mask[instance & ~smaller] == label).all()
        total += len(sample.boxes)
    assert total > 50


def rewrite(coco_root, change) -> None:
    """Apply ``change`` to the annotations of split ``s``."""
    path = coco_root / "annotations" / "instances_s.json"
    data = json.loads(path.read_text())
    change(data["annotations"])
    path.write_text(json.dumps(data))


def test_annotation_of_an_unknown_image_is_an_error_naming_file_id_and_field(coco_root):
    rewrite(coco_root, lambda annotations: annotations[5].update(image_id=999))
    with pytest.raises(ValueError) as error:
        COCOSource(coco_root, "s")
    message = str(error.value)
    assert "instances_s.json: 1 malformed annotation" in message
    assert "annotation id 6, field 'image_id': 999 is not the id of an entry of 'images'" in message


@pytest.mark.parametrize(
    "bbox, shown",
    [([1, 2, 3], "[1, 2, 3]"), (None, "null"), ("a", '"a"'), ([1, 2, "a", 4], '[1, 2, "a", 4]')],
)
def test_malformed_bbox_is_an_error_naming_file_id_and_field(coco_root, bbox, shown):
    rewrite(coco_root, lambda annotations: annotations[6].update(bbox=bbox))
    with pytest.raises(ValueError) as error:
        COCOSource(coco_root, "s")
    assert "instances_s.json: 1 malformed annotation" in str(error.value)
    assert f"annotation id 7, field 'bbox': {shown} is not four finite numbers" in str(error.value)


def test_every_malformed_annotation_is_listed_or_skipped_with_a_counted_warning(coco_root):
    def break_three(annotations):
        annotations[5]["bbox"] = [1, 2, 3]
        annotations[6]["image_id"] = 999
        del annotations[0]["id"], annotations[0]["category_id"]

    rewrite(coco_root, break_three)
    with pytest.raises(ValueError, match="3 malformed annotations") as error:
        COCOSource(coco_root, "s")
    assert "annotation #0 (no 'id'), field 'category_id': missing" in str(error.value)
    with pytest.warns(DataWarning, match=r"1 annotations with a bad 'bbox' dropped"):
        source = COCOSource(coco_root, "s", skip_bad_annotations=True)
    assert source.problems.count("annotations with a bad 'image_id' dropped") == 1
    assert len(source.load(1).boxes) == 0  # both of img8's annotations were dropped


def test_the_datamodule_option_skips_bad_annotations(coco_root):
    from wseg.data import WeakSegDataModule

    rewrite(coco_root, lambda annotations: annotations[6].update(bbox="a"))
    options = {"dataset": "coco", "root": str(coco_root), "train_split": "s", "val_split": "s"}
    with pytest.raises(ValueError, match="annotation id 7, field 'bbox'"):
        WeakSegDataModule(**options).make_source("s")
    with pytest.warns(DataWarning, match="1 annotations with a bad 'bbox' dropped"):
        source = WeakSegDataModule(**options, coco_skip_bad_annotations=True).make_source("s")
    assert len(source) == 3
