import numpy as np
import pytest

from tests.data.layouts import write_cityscapes, write_png
from wseg.data.datamodule import WeakSegDataModule
from wseg.data.datasets import CityscapesSource, DataWarning, dataset_classes, make_source
from wseg.data.datasets.cityscapes import CITYSCAPES_OBJECTS11_CLASSES, label_lut
from wseg.data.datasets.common import tight_boxes

# labelId: (objects11 index, objects11 with void_as_background, 19-protocol trainId)
EXPECTED = {
    0: (255, 0, 255),  # unlabeled
    1: (255, 0, 255),  # ego vehicle
    7: (0, 0, 0),  # road
    11: (0, 0, 2),  # building
    17: (1, 1, 5),  # pole
    18: (255, 0, 255),  # polegroup
    19: (2, 2, 6),  # traffic light
    20: (3, 3, 7),  # traffic sign
    23: (0, 0, 10),  # sky
    24: (4, 4, 11),  # person
    25: (5, 5, 12),  # rider
    26: (6, 6, 13),  # car
    29: (255, 0, 255),  # caravan
    31: (9, 9, 16),  # train
    33: (11, 11, 18),  # bicycle
}


def test_label_mapping_of_a_hand_made_labelids_image(tmp_path):
    label_ids = np.array([list(EXPECTED)], np.uint8).repeat(2, axis=0)
    write_cityscapes(tmp_path, label_ids, label_ids)
    for column, protocol in enumerate(("objects11", "objects11-void", "19")):
        options = {
            "protocol": protocol.split("-")[0],
            "void_as_background": protocol.endswith("void"),
        }
        sample = CityscapesSource(tmp_path, **options).load(0)
        np.testing.assert_array_equal(sample.mask[0], [row[column] for row in EXPECTED.values()])
    assert CityscapesSource(tmp_path).classes == CITYSCAPES_OBJECTS11_CLASSES
    assert CityscapesSource(tmp_path, protocol="19").classes[0] == "road"
    assert dataset_classes("cityscapes", protocol="19")[18] == "bicycle"
    assert label_lut("objects11")[34:].tolist() == [255] * 222


def test_instances_from_instance_ids_and_components(tmp_path):
    label_ids = np.full((10, 16), 7, np.uint8)
    instance_ids = label_ids.astype(np.int32)
    label_ids[1:4, 1:5] = 26
    instance_ids[1:4, 1:5] = 26000
    label_ids[5:9, 2:4] = 26
    instance_ids[5:9, 2:4] = 26001
    label_ids[6:9, 6:9] = 24  # a person group: class pixels without an instance id
    instance_ids[6:9, 6:9] = 24
    label_ids[0:3, 12] = 17  # one pole cut in two by an occluding sign
    label_ids[3, 11:14] = 20
    label_ids[4:9, 12] = 17
    label_ids[9, 15] = 17  # a one-pixel pole fragment
    instance_ids[label_ids == 17] = 17
    instance_ids[label_ids == 20] = 20
    write_cityscapes(tmp_path, label_ids, instance_ids)
    sample = CityscapesSource(tmp_path).load(0)
    np.testing.assert_array_equal(sample.labels, [1, 1, 1, 3, 6, 6])
    np.testing.assert_array_equal(
        sample.boxes,
        [
            [12, 0, 13, 3],
            [12, 4, 13, 9],
            [15, 9, 16, 10],
            [11, 3, 14, 4],
            [1, 1, 5, 4],
            [2, 5, 4, 9],
        ],
    )
    np.testing.assert_array_equal(sample.boxes, tight_boxes(sample.instance_masks))
    source = CityscapesSource(tmp_path, min_component_pixels=2)
    with pytest.warns(DataWarning, match="1 components below min_component_pixels"):
        sample = source.load(0)
    np.testing.assert_array_equal(sample.labels, [1, 1, 3, 6, 6])
    nineteen = CityscapesSource(tmp_path, protocol="19").load(0)
    np.testing.assert_array_equal(nineteen.labels, [5, 5, 5, 7, 13, 13])
    # The datamodule passes its cityscapes_min_component_pixels on to the reader.
    datamodule = WeakSegDataModule(
        dataset="cityscapes", root=str(tmp_path), cityscapes_min_component_pixels=2
    )
    with pytest.warns(DataWarning, match="1 components below min_component_pixels"):
        sample = datamodule.make_source("train").load(0)
    np.testing.assert_array_equal(sample.labels, [1, 1, 3, 6, 6])


def test_synthetic_cityscapes_layout(synthetic_root):
    source = make_source("cityscapes", synthetic_root / "cityscapes", "train")
    assert len(source) == 6 and source.ids[0].startswith("aachen_")
    count = 0
    for sample in source:
        assert sample.mask.shape == (48, 64)
        np.testing.assert_array_equal(sample.boxes, tight_boxes(sample.instance_masks))
        for instance, label in zip(sample.instance_masks, sample.labels):
            assert (sample.mask[instance] == label).all()
        count += len(sample.labels)
    assert count >= 6
    assert len(CityscapesSource(synthetic_root / "cityscapes", "val")) == 3


def test_missing_folders_and_size_mismatch(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"Cityscapes root .*nowhere does not exist"):
        CityscapesSource(tmp_path / "nowhere")
    write_cityscapes(tmp_path, np.full((4, 6), 7, np.uint8), np.full((4, 6), 7, np.uint8))
    with pytest.raises(FileNotFoundError, match=r"split folder .*leftImg8bit/val not found"):
        CityscapesSource(tmp_path, "val")
    with pytest.raises(ValueError, match="void_as_background applies to the objects11"):
        CityscapesSource(tmp_path, protocol="19", void_as_background=True)
    label_path = tmp_path / "gtFine" / "train" / "ulm" / "ulm_000000_000019_gtFine_labelIds.png"
    write_png(label_path, np.full((5, 6), 7, np.uint8))
    with pytest.raises(ValueError, match=r"leftImg8bit\.png is 4x6 .*labelIds\.png is 5x6"):
        CityscapesSource(tmp_path).load(0)
    write_png(label_path, np.full((4, 6), 40, np.uint8))
    with pytest.raises(ValueError, match=r"labelIds\.png holds values above 33"):
        CityscapesSource(tmp_path).load(0)
