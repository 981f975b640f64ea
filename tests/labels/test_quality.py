import numpy as np
import pytest

from wseg.data.records import Sample, SegmentationSource
from wseg.data.store import PseudoLabelStore
from wseg.labels.quality import box_fbeta, evaluate_store, fbeta, format_quality


class ListSource(SegmentationSource):
    classes = ("background", "a", "b")

    def __init__(self, samples):
        self.samples = samples

    @property
    def ids(self):
        return [s.id for s in self.samples]

    def load(self, index):
        return self.samples[index]


def test_fbeta_hand_computed():
    pred = np.array([1, 1, 1, 1, 0, 0], bool)
    target = np.array([1, 1, 0, 0, 0, 1], bool)
    # precision 2/4, recall 2/3: (1.3 * 0.5 * 2/3) / (0.3 * 0.5 + 2/3)
    assert fbeta(pred, target) == pytest.approx(1.3 * 0.5 * (2 / 3) / (0.15 + 2 / 3))
    assert fbeta(target, target) == pytest.approx(1.0)
    assert fbeta(np.zeros(6, bool), target) == 0.0
    with pytest.raises(ValueError, match="at least one"):
        fbeta(pred, np.zeros(6, bool))


def toy_sample(instance: bool) -> Sample:
    mask = np.zeros((4, 6), np.uint8)
    mask[1:3, 1:3] = 1  # object a, box 0
    mask[0:2, 4:6] = 2  # object b, box 1
    mask[3, 5] = 255
    masks = np.stack([mask == 1, mask == 2]) if instance else None
    boxes = np.array([[1, 1, 3, 3], [3, 0, 6, 4]], np.float32)
    image = np.zeros((4, 6, 3), np.uint8)
    return Sample("s", image, mask, boxes, np.array([1, 2]), masks)


def test_box_fbeta_inside_boxes_with_void_left_out():
    label = np.zeros((4, 6), np.uint8)
    label[1:3, 1:3] = 1  # box 0: perfect
    label[0:4, 3:6] = 2  # box 1 (rows 0-3, cols 3-5): 11 predicted (void (3,5) left out), 4 true
    for instance in (True, False):
        scores = box_fbeta(label, toy_sample(instance))
        precision, recall = 4 / 11, 1.0
        expected = 1.3 * precision * recall / (0.3 * precision + recall)
        assert scores == [(1, pytest.approx(1.0)), (2, pytest.approx(expected))]


def test_evaluate_store_hand_computed(tmp_path):
    sample = toy_sample(instance=False)
    other = Sample("t", np.zeros((4, 6, 3), np.uint8), None, np.zeros((0, 4)), np.zeros(0))
    missing = Sample("u", np.zeros((4, 6, 3), np.uint8), np.zeros((4, 6), np.uint8))
    store = PseudoLabelStore.create_or_resume(tmp_path, {"generator": "toy"})
    label = sample.mask.copy()
    label[3, 5] = 0
    label[0, 0] = 255  # void in the pseudo label: left out of IoU, counted as void
    label[1, 1] = 0  # one pixel of a lost
    store.write("s", label)
    store.write("t", np.zeros((4, 6), np.uint8))
    report = evaluate_store(store, ListSource([sample, other, missing]), progress=False)
    # background: 14 true (24 - 4 - 4 - 1 void - 1 pseudo-void) + 1 false positive (1,1)
    assert report["per_class_iou"]["background"] == pytest.approx(14 / 15)
    assert report["per_class_iou"]["a"] == pytest.approx(3 / 4)
    assert report["per_class_iou"]["b"] == pytest.approx(1.0)
    assert report["miou"] == pytest.approx((14 / 15 + 3 / 4 + 1) / 3)
    assert report["void_fraction"] == pytest.approx(1 / 24)
    fb_a = 1.0 * 1.0 * (3 / 4) * 1.3 / (0.3 + 3 / 4)
    assert report["per_class_fbeta"] == {"a": pytest.approx(fb_a), "b": pytest.approx(1.0)}
    assert report["fbeta"] == pytest.approx((fb_a + 1) / 2)
    assert (report["images"], report["boxes"], report["missing"], report["without_mask"]) == (
        1,
        2,
        1,
        1,
    )
    table = format_quality(report, title="toy")
    assert "toy" in table and f"{100 * report['miou']:5.1f}" in table


def test_size_mismatch_names_the_file(tmp_path):
    store = PseudoLabelStore.create_or_resume(tmp_path, {"generator": "toy"})
    store.write("s", np.zeros((3, 3), np.uint8))
    with pytest.raises(ValueError, match="s.png.*image s"):
        evaluate_store(store, ListSource([toy_sample(True)]), progress=False)
