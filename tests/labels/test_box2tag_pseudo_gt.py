"""Box2Tag pseudo ground truth: the three overlap rules by hand, and stores from real networks."""

from __future__ import annotations

from pathlib import Path

import lightning
import numpy as np
import pytest
import torch

from wseg.data.datasets import SYNTHETIC_CLASSES, make_source
from wseg.data.synthetic import generate_synthetic
from wseg.data.weak import box_masks, rect_labels
from wseg.labels.box2tag_pseudo_gt import BoxSegmenter, assemble_pseudo_gt, generate_box2tag
from wseg.methods.box2tag import Box2TagSingleClass

TINY = {
    "arch": "unet",
    "encoder": "tu-mobilenetv3_small_050",
    "encoder_weights": None,
    "log_images_every_n_epochs": 0,
}

# One image row of 8 pixels. Box A (class 1) covers columns 0-4, box B (class 2) columns 2-5.
# A segments columns 1-3 as object; B segments columns 2, 3 and 5. Columns 6-7 lie in no box.
BOXES = np.array([[0, 0, 5, 1], [2, 0, 6, 1]], np.float32)
LABELS = np.array([1, 2])
OBJECTS = [np.array([[0, 1, 1, 1, 0]], bool), np.array([[1, 1, 0, 1]], bool)]


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        # columns 2-3: object in boxes of two classes; B is the smaller box
        ("overlap-small", [0, 1, 2, 2, 0, 2, 0, 0]),
        ("overlap-void", [0, 1, 255, 255, 0, 2, 0, 0]),
        # also void: columns 0 and 4, inside boxes but object in none
        ("overlap-back-void", [255, 1, 255, 255, 255, 2, 0, 0]),
    ],
)
def test_overlap_rules_by_hand(rule: str, expected: list[int]) -> None:
    label = assemble_pseudo_gt((1, 8), BOXES, LABELS, OBJECTS, rule)
    assert label.dtype == np.uint8 and label[0].tolist() == expected


def test_boxes_of_one_class_never_conflict() -> None:
    boxes = np.array([[0, 0, 3, 1], [1, 0, 4, 1]], np.float32)
    objects = [np.array([[1, 1, 0]], bool), np.array([[0, 1, 1]], bool)]
    # column 1: object in box 0, background in box 1 (same class): class 1 under every rule
    for rule in ("overlap-small", "overlap-void", "overlap-back-void"):
        label = assemble_pseudo_gt((1, 5), boxes, np.array([3, 3]), objects, rule)
        assert label[0].tolist() == [3, 3, 3, 3, 0]


def test_assembly_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="rule"):
        assemble_pseudo_gt((1, 8), BOXES, LABELS, OBJECTS, "overlap-big")
    with pytest.raises(ValueError, match="object mask"):
        assemble_pseudo_gt((1, 8), BOXES, LABELS, [OBJECTS[1], OBJECTS[0]])
    with pytest.raises(ValueError, match="2 boxes, 2 labels, 1 masks"):
        assemble_pseudo_gt((1, 8), BOXES, LABELS, OBJECTS[:1])


def save_network(path: Path, name: str, object_logit: float | None = None) -> Path:
    """A real single-class network's checkpoint; with ``object_logit`` it says object (or
    background, if negative) everywhere: its last convolution outputs only the bias."""
    torch.manual_seed(0)
    model = Box2TagSingleClass(num_classes=2, class_names=["background", name], **TINY)
    if object_logit is not None:
        conv = model.net.segmentation_head[0]
        with torch.no_grad():
            conv.weight.zero_()
            conv.bias.copy_(torch.tensor([0.0, object_logit]))
    checkpoint = {
        "state_dict": model.state_dict(),
        "hyper_parameters": dict(model.hparams),
        "pytorch-lightning_version": lightning.__version__,
    }
    torch.save(checkpoint, path)
    return path


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    generate_synthetic(root, num_train=4, num_val=1, size=(48, 64), seed=0, layouts=["voc"])
    return make_source("synthetic", root, "train")


@pytest.fixture(scope="module")
def object_networks(tmp_path_factory) -> dict[str, Path]:
    """Networks that segment every box of bird and bus whole (other classes: no network)."""
    folder = tmp_path_factory.mktemp("nets")
    return {name: save_network(folder / f"{name}.ckpt", name, 20.0) for name in ("bird", "bus")}


def test_whole_box_segmentations_reproduce_the_box_rules(source, object_networks, tmp_path) -> None:
    # Networks that say "object" everywhere, and classes without a network (filled whole), make
    # every box entirely object: overlap-small is Bbox-Rect, the void rules void the conflicts.
    identity = {"name": "synthetic", "split": "train"}
    stores = generate_box2tag(
        source, object_networks, tmp_path, identity, crop_size=32, progress=False
    )
    assert set(stores) == {"overlap-small", "overlap-void", "overlap-back-void"}
    for index, image_id in enumerate(source.ids):
        sample = source[index]
        rect = rect_labels(sample.boxes, sample.labels, sample.size)
        boxes = box_masks(sample.boxes, sample.labels, sample.size, len(SYNTHETIC_CLASSES))
        conflict = boxes[1:].sum(axis=0) > 1
        assert np.array_equal(stores["overlap-small"].read(image_id), rect)
        assert np.array_equal(stores["overlap-void"].read(image_id), np.where(conflict, 255, rect))
        assert np.array_equal(
            stores["overlap-back-void"].read(image_id), stores["overlap-void"].read(image_id)
        )
    small = stores["overlap-small"].manifest
    assert small["config"]["options"]["rule"] == "overlap-small"
    assert small["quality"]["void_fraction"] == 0.0
    assert stores["overlap-void"].manifest["quality"]["void_fraction"] > 0.0
    assert 0.0 < small["quality"]["miou"] < 1.0
    run = small["runs"][-1]
    assert run["generated"] == len(source) and 0.0 < run["box_fbeta"] <= 1.0
    # resumed: nothing left to do, same stores
    again = generate_box2tag(
        source, object_networks, tmp_path, identity, crop_size=32, progress=False
    )
    assert again["overlap-void"].path == stores["overlap-void"].path
    assert again["overlap-void"].manifest["runs"][-1]["generated"] == 0


def test_a_changed_network_makes_new_stores_and_missing_classes_fall_back(
    source, object_networks, tmp_path
) -> None:
    identity = {"name": "synthetic", "split": "train"}
    first = generate_box2tag(
        source, object_networks, tmp_path, identity, ["overlap-void"], crop_size=32, progress=False
    )
    # bird's network now says background everywhere; bus loses its network
    networks = {"bird": save_network(tmp_path / "bird.ckpt", "bird", -20.0)}
    second = generate_box2tag(
        source, networks, tmp_path, identity, ["overlap-void"], crop_size=32, progress=False
    )["overlap-void"]
    assert second.path != first["overlap-void"].path and first["overlap-void"].path.is_dir()
    bird, bus = SYNTHETIC_CLASSES.index("bird"), SYNTHETIC_CLASSES.index("bus")
    without_network = 0
    for index, image_id in enumerate(source.ids):
        sample = source[index]
        label = second.read(image_id)
        assert not (label == bird).any()
        without_network += int((sample.labels != bird).sum())
        if (sample.labels == bus).any():
            assert (label == bus).any()  # no network: the bus boxes are filled whole
    stats = second.manifest["runs"][-1]["stats"]
    assert stats["fallback_no_network"] == without_network < stats["boxes"]


def test_segmenter_masks_have_the_boxes_shapes(source, tmp_path) -> None:
    sample = source[0]
    path = save_network(tmp_path / "random.ckpt", "x")
    with_network = int(sample.labels[0])
    segmenter = BoxSegmenter({with_network: path}, crop_size=32, border=3, batch_size=2)
    masks = segmenter(sample)
    for (x1, y1, x2, y2), label, mask in zip(sample.boxes, sample.labels, masks):
        if label != with_network:
            assert mask is None
            continue
        assert mask.dtype == bool and mask.shape == (int(y2 - y1), int(x2 - x1))
    with pytest.raises(ValueError, match="border"):
        BoxSegmenter({with_network: path}, crop_size=32, border=2)


def test_generation_rejects_unknown_classes_and_missing_files(source, tmp_path) -> None:
    with pytest.raises(ValueError, match="unknown classes"):
        generate_box2tag(source, {"cat": tmp_path / "x.ckpt"}, tmp_path, {}, progress=False)
    with pytest.raises(FileNotFoundError, match="missing"):
        BoxSegmenter({1: tmp_path / "missing.ckpt"})
    with pytest.raises(ValueError, match="rules"):
        generate_box2tag(source, {}, tmp_path, {}, rules=["overlap-big"], progress=False)
