import numpy as np
import pytest
import torch

from tests.data.fixtures_datamodule import CLASSES, make_sample
from wseg.data.records import Sample
from wseg.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    build_eval_transform,
    build_train_transform,
    collate,
    transform_sample,
)
from wseg.data.weak import box_pixel_bounds, rect_labels

C = len(CLASSES)


@pytest.mark.parametrize("object_crop_p", [0.0, 1.0])
@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("crop_size", [32, 100])
def test_boxes_still_bound_their_objects_after_scale_crop_flip(seed, crop_size, object_crop_p):
    transform = build_train_transform(
        crop_size=crop_size, scale_range=(0.5, 2.0), flip=True, object_crop_p=object_crop_p
    )
    transform.set_random_seed(seed)
    sample = make_sample("a", seed=seed)
    out = transform_sample(transform, sample, C, keep_instance_masks=True)
    boxes, instances = out["boxes"].numpy(), out["instance_masks"].numpy()
    assert out["image"].shape == (3, crop_size, crop_size)
    assert len(boxes) == len(instances) <= len(sample.boxes)
    if crop_size == 100:  # 2 x 48 < 100: nothing is cut, every box survives
        assert len(boxes) == len(sample.boxes)
    for box, instance in zip(boxes, instances):
        r0, r1, c0, c1 = box_pixel_bounds(box, (crop_size, crop_size))
        if not instance.any():
            # A sliver of the box survived the crop but no pixel centre of the object did.
            assert min(box[2] - box[0], box[3] - box[1]) < 1.0
            continue
        rows, cols = np.nonzero(instance)
        # The box contains the object ...
        assert r0 <= rows.min() and rows.max() < r1 and c0 <= cols.min() and cols.max() < c1
        if crop_size == 100:
            # ... and, when the crop cuts nothing, is tight up to one pixel of nearest resampling.
            assert rows.min() <= r0 + 1 and r1 <= rows.max() + 2
            assert cols.min() <= c0 + 1 and c1 <= cols.max() + 2


def _content_rows(mask: torch.Tensor) -> slice:
    """Rows of the crop that hold image content (the sample mask has no void pixels)."""
    rows = torch.nonzero((mask != 255).any(1)).flatten()
    return slice(int(rows.min()), int(rows.max()) + 1)


def _void_free_sample(seed: int):
    sample = make_sample("a", seed=seed)
    sample.mask[sample.mask == 255] = 0
    return sample


def test_flip_mirrors_box_and_mask_exactly():
    sample = _void_free_sample(3)
    height, width = sample.size
    # crop 48 x 48 of the 40 x 48 image at scale 1: all columns kept, rows padded at random
    transform = build_train_transform(crop_size=48, scale_range=(1.0, 1.0), flip=True)
    seen = set()
    for seed in range(20):
        transform.set_random_seed(seed)
        out = transform_sample(transform, sample, C)
        rows = _content_rows(out["mask"])
        assert rows.stop - rows.start == height
        content = out["mask"][rows].numpy()
        flipped = not np.array_equal(content, sample.mask)
        expected_mask = sample.mask[:, ::-1] if flipped else sample.mask
        np.testing.assert_array_equal(content, expected_mask)
        expected = sample.boxes.copy()
        if flipped:
            expected[:, [0, 2]] = width - sample.boxes[:, [2, 0]]
        expected[:, [1, 3]] += rows.start
        np.testing.assert_allclose(out["boxes"][:, :4].numpy(), expected, atol=1e-4)
        seen.add(flipped)
    assert seen == {True, False}


def test_padding_is_ignore_everywhere():
    sample = _void_free_sample(1)
    transform = build_train_transform(crop_size=64, scale_range=(1.0, 1.0), flip=False)
    pseudo = np.full((C, 40, 48), 1.0 / C, np.float32)
    scribble = np.full((40, 48), 255, np.uint8)
    scribble[10, 10:20] = 0
    out = transform_sample(transform, sample, C, scribble=scribble, pseudo=pseudo)
    padded = out["mask"] == 255
    assert int(padded.sum()) == 64 * 64 - 40 * 48
    assert (out["box_label"][padded] == 255).all()
    assert (out["scribble"][padded] == 255).all()
    assert (out["box_mask"][:, padded] == 0).all()
    assert (out["pseudo"][:, padded] == 0).all()
    assert (out["image"][:, padded] == 0).all()
    # Inside the image nothing is ignore; every pixel has one box-mask channel at least.
    assert (out["box_label"][~padded] != 255).all()
    assert (out["box_mask"][:, ~padded].sum(0) >= 1).all()
    torch.testing.assert_close(out["pseudo"][:, ~padded].sum(0), torch.ones(40 * 48))
    assert int((out["scribble"] == 0).sum()) == 10


def test_soft_pseudo_label_stays_a_distribution():
    sample = make_sample("a", seed=2)
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(C, 40, 48)).astype(np.float32)
    pseudo = np.exp(logits) / np.exp(logits).sum(0, keepdims=True)
    transform = build_train_transform(crop_size=36, scale_range=(0.5, 2.0))
    for seed in range(5):
        transform.set_random_seed(seed)
        out = transform_sample(transform, sample, C, pseudo=pseudo)
        inside = out["box_label"] != 255
        sums = out["pseudo"].sum(0)
        torch.testing.assert_close(sums[inside], torch.ones(int(inside.sum())))
        assert (sums[~inside] == 0).all() and (out["pseudo"] >= 0).all()


def test_hard_pseudo_follows_the_mask_geometry():
    sample = make_sample("a", seed=4)
    transform = build_train_transform(crop_size=30, scale_range=(0.7, 1.6))
    for seed in range(5):
        transform.set_random_seed(seed)
        out = transform_sample(transform, sample, C, pseudo=sample.mask.copy())
        torch.testing.assert_close(out["pseudo"], out["mask"])


def test_box_labels_are_computed_from_transformed_boxes():
    sample = make_sample("a", seed=5)
    transform = build_train_transform(crop_size=40, scale_range=(0.8, 1.5))
    transform.set_random_seed(7)
    out = transform_sample(transform, sample, C)
    boxes = out["boxes"].numpy()
    expected = rect_labels(boxes[:, :4], boxes[:, 4].astype(int), (40, 40))
    valid = out["box_label"].numpy() != 255
    np.testing.assert_array_equal(out["box_label"].numpy()[valid], expected[valid])
    present = set(boxes[:, 4].astype(int).tolist())
    assert out["tags"].tolist() == [1.0] + [float(c in present) for c in range(1, C)]


def test_tags_background_absent_when_boxes_cover_the_crop():
    sample = make_sample("a", size=(20, 20))
    sample.boxes = np.array([[0, 0, 20, 20]], np.float32)
    sample.labels = np.array([2])
    out = transform_sample(build_eval_transform(), sample, C)
    assert out["tags"].tolist() == [0.0, 0.0, 1.0, 0.0]
    assert (out["box_label"] == 2).all()


def test_eval_transform_keeps_full_image_and_normalises():
    sample = make_sample("a", size=(37, 45), seed=1)
    out = transform_sample(build_eval_transform(), sample, C)
    assert out["image"].shape == (3, 37, 45)
    expected = (sample.image[5, 7] / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    np.testing.assert_allclose(out["image"][:, 5, 7].numpy(), expected, rtol=1e-5)
    np.testing.assert_array_equal(out["mask"].numpy(), sample.mask)
    np.testing.assert_allclose(out["boxes"][:, :4].numpy(), sample.boxes)


def test_missing_mask_is_all_ignore():
    sample = make_sample("a", with_mask=False)
    out = transform_sample(build_eval_transform(), sample, C)
    assert (out["mask"] == 255).all()


def test_size_mismatch_names_the_sample():
    sample = make_sample("img7")
    with pytest.raises(ValueError, match=r"scribble of img7 .*memory://img7"):
        transform_sample(build_eval_transform(), sample, C, scribble=np.zeros((3, 3), np.uint8))
    with pytest.raises(ValueError, match="3 channels, expected 4"):
        transform_sample(
            build_eval_transform(), sample, C, pseudo=np.zeros((3, 40, 48), np.float32)
        )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"crop_size": 0}, "crop_size"),
        ({"scale_range": (2.0, 1.0)}, "scale_range"),
        ({"color_jitter": -0.1}, "color_jitter"),
        ({"object_crop_p": 1.5}, "object_p"),
    ],
)
def test_bad_transform_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_train_transform(**kwargs)


def test_collate_pads_with_ignore_and_keeps_box_lists():
    eval_transform = build_eval_transform()
    small = transform_sample(eval_transform, make_sample("s", size=(20, 24), seed=1), C)
    large = transform_sample(eval_transform, make_sample("l", size=(30, 28), seed=2), C)
    for item in (small, large):
        item["strong"] = torch.tensor(True)
    batch = collate([small, large])
    assert batch["image"].shape == (2, 3, 30, 28)
    assert batch["mask"].dtype == torch.long and batch["mask"].shape == (2, 30, 28)
    assert (batch["mask"][0, 20:] == 255).all() and (batch["mask"][0, :, 24:] == 255).all()
    assert (batch["box_label"][0, 20:] == 255).all()
    assert (batch["image"][0, :, 20:] == 0).all()
    assert (batch["box_mask"][0, :, :, 24:] == 0).all()
    torch.testing.assert_close(batch["mask"][0, :20, :24], small["mask"])
    assert batch["tags"].shape == (2, C) and batch["strong"].dtype == torch.bool
    assert batch["id"] == ["s", "l"]
    assert isinstance(batch["boxes"], list) and batch["boxes"][1].shape[1] == 5


def test_collate_rejects_mixed_keys():
    eval_transform = build_eval_transform()
    first = transform_sample(eval_transform, make_sample("x"), C)
    second = transform_sample(
        eval_transform, make_sample("y"), C, scribble=np.zeros((40, 48), np.uint8)
    )
    with pytest.raises(ValueError, match="x and y carry different keys"):
        collate([first, second])


def _one_rare_object_scene() -> Sample:
    """200 x 200: nine class-1 boxes along the left edge, one 6-px class-2 box at the right."""
    mask = np.zeros((200, 200), np.uint8)
    boxes, labels = [], []
    for k in range(9):
        boxes.append((2, 5 + 21 * k, 22, 20 + 21 * k))
        labels.append(1)
    boxes.append((180, 150, 186, 156))
    labels.append(2)
    for (x1, y1, x2, y2), label in zip(boxes, labels):
        mask[y1:y2, x1:x2] = label
    image = np.zeros((200, 200, 3), np.uint8)
    return Sample("rare", image, mask, np.asarray(boxes, np.float32), np.asarray(labels))


def _rare_class_share(object_crop_p: float, draws: int = 200) -> float:
    transform = build_train_transform(32, (1.0, 1.0), flip=False, object_crop_p=object_crop_p)
    transform.set_random_seed(0)
    sample = _one_rare_object_scene()
    hits = 0
    for _ in range(draws):
        out = transform_sample(transform, sample, C)
        hits += bool((out["mask"] == 2).any())
    return hits / draws


def test_object_crops_find_the_rare_class_that_uniform_crops_miss():
    # Class-balanced: half the object crops pick class 2 and hold its centre (so some of it);
    # a uniform 32-px crop of 200 px meets the 6-px box about (32 + 6)^2 / 169^2 = 5% of the time.
    assert _rare_class_share(1.0) >= 0.4
    assert _rare_class_share(0.0) <= 0.15


def test_object_crop_holds_the_centre_of_a_box():
    transform = build_train_transform(32, (1.0, 1.0), flip=False, object_crop_p=1.0)
    transform.set_random_seed(1)
    sample = _one_rare_object_scene()
    for _ in range(50):
        out = transform_sample(transform, sample, C)
        assert (out["mask"] > 0).any()  # every crop holds (the centre of) some object
