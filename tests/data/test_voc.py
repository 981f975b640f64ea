import warnings

import numpy as np
import pytest

from tests.data.layouts import scribble_xml, voc_xml, write_jpeg, write_png, write_voc
from wseg.data.datasets import (
    SYNTHETIC_CLASSES,
    DataWarning,
    ProblemCounter,
    VOCSource,
    dataset_classes,
    make_source,
)
from wseg.data.datasets.common import tight_boxes
from wseg.data.datasets.voc import read_scribble_xml
from wseg.data.records import VOC_CLASSES


def test_synthetic_voc_instances_boxes_and_masks(synthetic_root):
    source = make_source("synthetic", synthetic_root, "train")
    assert source.classes == SYNTHETIC_CLASSES == dataset_classes("synthetic")
    assert len(source) == 6
    boxes_seen = 0
    for sample in source:
        assert sample.image.shape == (48, 64, 3) and sample.image.dtype == np.uint8
        assert set(np.unique(sample.mask)) <= set(range(7)) | {255}
        assert sample.instance_masks.shape == (len(sample.boxes), 48, 64)
        np.testing.assert_array_equal(sample.boxes, tight_boxes(sample.instance_masks))
        for instance, label in zip(sample.instance_masks, sample.labels):
            # Every pixel of an instance carries the instance's class in the class mask.
            assert (sample.mask[instance] == label).all()
        boxes_seen += len(sample.boxes)
    assert boxes_seen >= 6


def test_synthetic_voc_xml_boxes_bound_the_instances(synthetic_root):
    from_png = make_source("synthetic", synthetic_root, "train")
    from_xml = make_source("synthetic", synthetic_root, "train", box_source="xml")
    for a, b in zip(from_png, from_xml):
        assert b.instance_masks is None
        np.testing.assert_array_equal(a.labels, b.labels)
        # The generator boxes the whole object, void band included: one pixel more per side.
        expected = a.boxes + np.array([-1, -1, 1, 1], np.float32)
        expected = expected.clip(0, [64, 48, 64, 48])
        np.testing.assert_array_equal(b.boxes, expected)


def test_synthetic_scribbles_lie_in_their_class(synthetic_root):
    source = make_source("synthetic", synthetic_root, "train")
    for sample in source:
        labelled = sample.scribble != 255
        assert labelled.any()
        np.testing.assert_array_equal(sample.mask[labelled], sample.scribble[labelled])
        assert 0 in sample.scribble  # background strokes


def test_xml_coordinates_convert_to_pixel_edges(tmp_path):
    mask = np.zeros((8, 12), np.uint8)
    write_voc(
        tmp_path, mask=mask, xml=voc_xml([("dog", (1, 2, 10, 5)), ("cat", (3.0, 3.0, 4.0, 4.0))])
    )
    sample = VOCSource(tmp_path).load(0)
    np.testing.assert_array_equal(sample.boxes, [[0, 1, 10, 5], [2, 2, 4, 4]])
    np.testing.assert_array_equal(sample.labels, [12, 8])
    assert sample.instance_masks is None


def test_instance_png_boxes_and_majority_class(tmp_path):
    mask = np.zeros((8, 12), np.uint8)
    instances = np.zeros((8, 12), np.uint8)
    instances[1:4, 2:6] = 1
    mask[1:4, 2:6] = 15
    mask[1, 2] = 3  # a stray pixel of another class: the majority decides
    instances[5:7, 7:11] = 2
    mask[5:7, 7:11] = 8
    instances[4, :] = 255
    mask[4, :] = 255
    write_voc(tmp_path, mask=mask, instances=instances, xml=voc_xml([]))
    sample = VOCSource(tmp_path).load(0)
    np.testing.assert_array_equal(sample.boxes, [[2, 1, 6, 4], [7, 5, 11, 7]])
    np.testing.assert_array_equal(sample.labels, [15, 8])
    assert sample.instance_masks.sum() == 12 + 8


def test_mask_dir_auto_prefers_segmentation_class(tmp_path):
    write_voc(tmp_path, "a", mask=np.full((8, 12), 1, np.uint8), xml=voc_xml([]))
    write_png(tmp_path / "SegmentationClassAug" / "a.png", np.full((8, 12), 2, np.uint8))
    write_voc(
        tmp_path,
        "b",
        mask=np.full((8, 12), 3, np.uint8),
        mask_dir="SegmentationClassAug",
        xml=voc_xml([]),
    )
    auto = VOCSource(tmp_path)
    assert auto.load(0).mask[0, 0] == 1 and auto.load(1).mask[0, 0] == 3
    aug = VOCSource(tmp_path, mask_dir="SegmentationClassAug")
    assert aug.load(0).mask[0, 0] == 2
    with pytest.raises(
        FileNotFoundError, match=r"b\.jpg has no class mask.*SegmentationClass/b\.png"
    ):
        VOCSource(tmp_path, mask_dir="SegmentationClass").load(1)


def test_image_without_mask(tmp_path):
    write_voc(tmp_path, xml=voc_xml([("cat", (1, 1, 3, 3))]))
    with pytest.raises(FileNotFoundError, match=r"JPEGImages/a\.jpg has no class mask"):
        VOCSource(tmp_path).load(0)
    sample = VOCSource(tmp_path, require_masks=False).load(0)
    assert sample.mask is None
    np.testing.assert_array_equal(sample.boxes, [[0, 0, 3, 3]])


def test_image_without_any_box_annotation(tmp_path):
    write_voc(tmp_path, mask=np.zeros((8, 12), np.uint8))
    with pytest.raises(FileNotFoundError, match=r"no boxes for image .*a\.jpg.*Annotations/a\.xml"):
        VOCSource(tmp_path).load(0)


def test_image_with_empty_xml_is_all_background(tmp_path):
    write_voc(tmp_path, mask=np.zeros((8, 12), np.uint8), xml=voc_xml([]))
    sample = VOCSource(tmp_path).load(0)
    assert sample.boxes.shape == (0, 4) and sample.labels.shape == (0,)


def test_box_outside_image_is_clipped_with_counted_warning(tmp_path):
    xml = voc_xml([("cat", (-4, 2, 20, 5)), ("dog", (2, 2, 3, 3))])
    write_voc(tmp_path, mask=np.zeros((8, 12), np.uint8), xml=xml)
    source = VOCSource(tmp_path)
    with pytest.warns(
        DataWarning, match=r"1 boxes clipped to the image in 1 file \(first: .*a\.xml\)"
    ):
        sample = source.load(0)
    np.testing.assert_array_equal(sample.boxes, [[0, 1, 12, 5], [1, 1, 3, 3]])
    assert source.problems.count("boxes clipped to the image") == 1


def test_zero_area_box_is_dropped_with_counted_warning(tmp_path):
    xml = voc_xml([("cat", (5, 2, 4, 6)), ("dog", (13, 1, 20, 4)), ("cow", (1, 1, 2, 2))])
    write_voc(tmp_path, mask=np.zeros((8, 12), np.uint8), xml=xml)
    source = VOCSource(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sample = source.load(0)
    np.testing.assert_array_equal(sample.labels, [10])
    # The second box is clipped to x1 = 12 = x2 first, then dropped.
    assert [w.category for w in caught] == [DataWarning, DataWarning]
    assert source.problems.count("boxes clipped to the image") == 1
    assert source.problems.count("boxes without area dropped") == 2


def test_unknown_class_name_in_xml(tmp_path):
    write_voc(tmp_path, mask=np.zeros((8, 12), np.uint8), xml=voc_xml([("unicorn", (1, 1, 2, 2))]))
    with pytest.raises(ValueError, match=r"unknown class name 'unicorn' in .*a\.xml"):
        VOCSource(tmp_path).load(0)


def test_background_is_not_a_box_class(tmp_path):
    write_voc(
        tmp_path, mask=np.zeros((8, 12), np.uint8), xml=voc_xml([("background", (1, 1, 2, 2))])
    )
    with pytest.raises(ValueError, match="unknown class name 'background'"):
        VOCSource(tmp_path).load(0)


def test_corrupt_and_truncated_images(tmp_path):
    write_voc(tmp_path, "a", mask=np.zeros((8, 12), np.uint8), xml=voc_xml([]))
    write_voc(tmp_path, "b", mask=np.zeros((8, 12), np.uint8), xml=voc_xml([]))
    (tmp_path / "JPEGImages" / "a.jpg").write_bytes(b"not a jpeg at all")
    valid = (tmp_path / "JPEGImages" / "b.jpg").read_bytes()
    (tmp_path / "JPEGImages" / "b.jpg").write_bytes(valid[: len(valid) // 2])
    source = VOCSource(tmp_path)
    with pytest.raises(ValueError, match=r"cannot decode image .*a\.jpg"):
        source.load(0)
    with pytest.raises(ValueError, match=r"cannot decode image .*b\.jpg"):
        source.load(1)


def test_mask_size_mismatch_names_both_files(tmp_path):
    write_voc(tmp_path, mask=np.zeros((7, 12), np.uint8), xml=voc_xml([]))
    with pytest.raises(
        ValueError, match=r"size mismatch: image .*a\.jpg is 8x12.*SegmentationClass/a\.png is 7x12"
    ):
        VOCSource(tmp_path).load(0)


def test_mask_with_out_of_range_values(tmp_path):
    write_voc(tmp_path, mask=np.full((8, 12), 40, np.uint8), xml=voc_xml([]))
    with pytest.raises(ValueError, match=r"a\.png holds values \[40\]"):
        VOCSource(tmp_path).load(0)


def test_missing_root_split_and_images(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"VOC root .*nowhere does not exist.*JPEGImages"):
        VOCSource(tmp_path / "nowhere")
    write_voc(tmp_path, mask=np.zeros((8, 12), np.uint8), xml=voc_xml([]))
    with pytest.raises(
        FileNotFoundError, match=r"Segmentation/val\.txt not found.*splits found: train"
    ):
        VOCSource(tmp_path, split="val")
    with pytest.raises(FileNotFoundError, match=r"scribble folder .*Scribbles does not exist"):
        VOCSource(tmp_path, scribble_dir="Scribbles")
    (tmp_path / "ImageSets" / "Segmentation" / "train.txt").write_text("a\nmissing\n")
    with pytest.raises(FileNotFoundError, match=r"image file not found: .*missing\.jpg"):
        VOCSource(tmp_path).load(1)


def test_scribble_rendering(tmp_path):
    path = tmp_path / "s.xml"
    path.write_text(
        scribble_xml(
            [("background", [(1, 1), (1, 6)]), ("dog", [(3, 4), (9, 4)]), ("cat", [(11, 0)])]
        )
    )
    scribble = read_scribble_xml(path, (8, 12), VOC_CLASSES, width=3)
    expected = np.full((8, 12), 255, np.uint8)
    expected[1:7, 0:3] = 0  # a vertical 3-pixel-wide stroke with rounded ends
    expected[0, 1] = expected[7, 1] = 0
    expected[0, 0] = expected[0, 2] = 255
    expected[3:6, 3:10] = 12
    expected[4, 2] = expected[4, 10] = 12  # the later stroke overwrites the background one
    expected[0:2, 11] = 8
    expected[0, 10] = 8
    np.testing.assert_array_equal(scribble, expected)
    thin = read_scribble_xml(path, (8, 12), VOC_CLASSES, width=1)
    assert (thin == 12).sum() == 7 and (thin == 0).sum() == 6 and (thin == 8).sum() == 1


def test_scribble_errors_and_points_outside(tmp_path):
    path = tmp_path / "s.xml"
    path.write_text(scribble_xml([("griffin", [(1, 1), (2, 2)])]))
    with pytest.raises(ValueError, match=r"unknown class name 'griffin' in .*s\.xml"):
        read_scribble_xml(path, (8, 12), VOC_CLASSES)
    path.write_text(scribble_xml([("dog", [(1, 1), (30, 1)])]))
    problems = ProblemCounter("test")
    with pytest.warns(DataWarning, match="scribble points outside the image"):
        scribble = read_scribble_xml(path, (8, 12), VOC_CLASSES, width=1, problems=problems)
    assert (scribble[1] == 12).sum() == 11
    with pytest.raises(FileNotFoundError, match=r"scribble file not found: .*none\.xml"):
        read_scribble_xml(tmp_path / "none.xml", (8, 12), VOC_CLASSES)
    path.write_text("<annotation><polygon>")
    with pytest.raises(ValueError, match=r"cannot parse XML file .*s\.xml"):
        read_scribble_xml(path, (8, 12), VOC_CLASSES)


def test_problem_counter_warns_at_powers_of_ten():
    counter = ProblemCounter("demo")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for index in range(12):
            counter.add("boxes clipped to the image", f"f{index % 7}.xml")
        counter.add("nothing", "g.xml", 0)
    assert [str(w.message) for w in caught] == [
        "demo: 1 boxes clipped to the image in 1 file (first: f0.xml)",
        "demo: 10 boxes clipped to the image in 7 files (first: f0.xml)",
    ]
    assert counter.count("boxes clipped to the image") == 12
    assert counter.num_files("boxes clipped to the image") == 7
    assert counter.count("nothing") == 0
    assert counter.summary() == ["12 boxes clipped to the image in 7 files (first: f0.xml)"]


def test_factory_classes_and_errors(tmp_path):
    assert dataset_classes("voc") == VOC_CLASSES
    assert dataset_classes("coco", class_map="coco")[1] == "person"
    assert len(dataset_classes("cityscapes", protocol="19")) == 19
    with pytest.raises(ValueError, match="unknown dataset 'kitti'"):
        dataset_classes("kitti")
    with pytest.raises(ValueError, match="unknown dataset 'kitti'"):
        make_source("kitti", tmp_path, "train")
    write_jpeg(tmp_path / "JPEGImages" / "x.jpg", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(FileNotFoundError, match="splits found: none"):
        make_source("voc", tmp_path, "train")
