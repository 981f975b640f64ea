import numpy as np
import pytest

from wseg.data.scribbles import seed_from_id, synthesize_scribbles
from wseg.data.strong_split import load_split, make_strong_split, save_split
from wseg.data.weak import box_masks, box_pixel_bounds, image_tags, rect_labels


def test_box_pixel_bounds_floor_ceil_and_clip():
    assert box_pixel_bounds((1, 2, 4, 5), (10, 10)) == (2, 5, 1, 4)
    assert box_pixel_bounds((1.5, 2.2, 3.1, 4.9), (10, 10)) == (2, 5, 1, 4)
    assert box_pixel_bounds((-3, -1, 12, 20), (8, 10)) == (0, 8, 0, 10)
    r0, r1, c0, c1 = box_pixel_bounds((11, 2, 15, 4), (8, 10))
    assert c0 == c1 == 10 and (r0, r1) == (2, 4)
    assert box_pixel_bounds((3, 3, 3, 3), (8, 10)) == (3, 3, 3, 3)
    # float32 round-off of a transformed box does not widen it by a pixel
    assert box_pixel_bounds((0.9999996, 2.0000004, 4.0000004, 4.9999996), (8, 10)) == (2, 5, 1, 4)
    assert box_pixel_bounds((0.99, 2.01, 4.01, 4.99), (8, 10)) == (2, 5, 0, 5)


def test_rect_labels_smallest_box_wins():
    boxes = [(0, 0, 2, 2), (0, 0, 4, 3), (3, 2, 5, 4)]
    labels = [1, 2, 3]
    expected = np.array(
        [
            [1, 1, 2, 2, 0],
            [1, 1, 2, 2, 0],
            [2, 2, 2, 3, 3],
            [0, 0, 0, 3, 3],
        ],
        dtype=np.uint8,
    )
    np.testing.assert_array_equal(rect_labels(boxes, labels, (4, 5)), expected)
    # The order of the boxes does not matter: the small box is not hidden by the large one.
    reordered = rect_labels(boxes[::-1], labels[::-1], (4, 5))
    np.testing.assert_array_equal(reordered, expected)


def test_rect_labels_no_boxes_is_background():
    out = rect_labels(np.zeros((0, 4)), np.zeros(0), (3, 4))
    assert out.dtype == np.uint8 and out.shape == (3, 4) and not out.any()


def test_rect_labels_rejects_label_count_mismatch():
    with pytest.raises(ValueError, match="2 boxes but 1 labels"):
        rect_labels([(0, 0, 1, 1), (1, 1, 2, 2)], [1], (3, 3))


def test_box_masks_channels():
    out = box_masks([(0, 0, 2, 2), (1, 1, 3, 2)], [1, 2], (2, 4), num_classes=4)
    assert out.dtype == np.float32 and out.shape == (4, 2, 4)
    np.testing.assert_array_equal(out[1], [[1, 1, 0, 0], [1, 1, 0, 0]])
    np.testing.assert_array_equal(out[2], [[0, 0, 0, 0], [0, 1, 1, 0]])
    np.testing.assert_array_equal(out[3], np.zeros((2, 4)))
    np.testing.assert_array_equal(out[0], [[0, 0, 1, 1], [0, 0, 0, 1]])


def test_box_masks_rejects_out_of_range_label():
    with pytest.raises(ValueError, match="1..2"):
        box_masks([(0, 0, 1, 1)], [3], (2, 2), num_classes=3)


def test_image_tags():
    np.testing.assert_array_equal(image_tags([2, 2, 4], 5), [1, 0, 1, 0, 1])
    np.testing.assert_array_equal(image_tags([], 3), [1, 0, 0])
    np.testing.assert_array_equal(image_tags([1], 3, background=False), [0, 1, 0])
    with pytest.raises(ValueError):
        image_tags([0], 3)


def _two_object_mask() -> tuple[np.ndarray, np.ndarray]:
    mask = np.zeros((40, 48), dtype=np.uint8)
    mask[5:20, 4:30] = 1
    mask[22:36, 20:44] = 2
    mask[0:3, :] = 255
    instances = np.zeros((2, 40, 48), dtype=bool)
    instances[0, 5:20, 4:30] = True
    instances[1, 22:36, 20:44] = True
    return mask, instances


@pytest.mark.parametrize("use_instances", [False, True])
def test_scribbles_carry_true_classes_and_touch_every_region(use_instances):
    mask, instances = _two_object_mask()
    scribble = synthesize_scribbles(mask, instances if use_instances else None, width=3, seed=1)
    labelled = scribble != 255
    np.testing.assert_array_equal(scribble[labelled], mask[labelled])
    assert set(np.unique(scribble[labelled]).tolist()) == {0, 1, 2}
    # Thin strokes: a small part of each region, never the ignore band.
    assert not labelled[0:3].any()
    for label in (0, 1, 2):
        fraction = (scribble == label).sum() / (mask == label).sum()
        assert 0 < fraction < 0.4


def test_scribbles_are_deterministic_per_seed_and_vary_across_seeds():
    mask, _ = _two_object_mask()
    first = synthesize_scribbles(mask, seed=seed_from_id("img_0001"))
    again = synthesize_scribbles(mask, seed=seed_from_id("img_0001"))
    np.testing.assert_array_equal(first, again)
    others = [synthesize_scribbles(mask, seed=seed_from_id(f"img_{i}")) for i in range(4)]
    assert any(not np.array_equal(first, other) for other in others)


def test_scribble_width_grows_stroke():
    mask, _ = _two_object_mask()
    thin = synthesize_scribbles(mask, width=1, seed=0, length_fraction=(1.0, 1.0))
    thick = synthesize_scribbles(mask, width=5, seed=0, length_fraction=(1.0, 1.0))
    assert (thick != 255).sum() > 2 * (thin != 255).sum()
    # Width 1 draws the skeleton path itself: a one-pixel-wide stroke in the first object.
    object_rows = np.nonzero((thin == 1).any(axis=1))[0]
    assert len(object_rows) <= 3


def test_scribbles_skip_tiny_regions_and_reject_bad_width():
    mask = np.zeros((20, 20), dtype=np.uint8)
    mask[2:4, 2:4] = 3
    scribble = synthesize_scribbles(mask, min_area=16)
    assert 3 not in scribble
    with pytest.raises(ValueError, match="width"):
        synthesize_scribbles(mask, width=0)


def test_seed_from_id_is_stable():
    assert seed_from_id("a", 0) == seed_from_id("a", 0)
    assert seed_from_id("a", 0) != seed_from_id("a", 1)
    assert seed_from_id("a", 0) != seed_from_id("b", 0)


def test_strong_split_sizes_and_determinism():
    ids = [f"im{i:03d}" for i in range(50)]
    split = make_strong_split(ids, num_strong=7, seed=3)
    assert len(split) == 7 and split <= set(ids)
    assert make_strong_split(reversed(ids), num_strong=7, seed=3) == split
    assert make_strong_split(ids, num_strong=7, seed=4) != split
    assert len(make_strong_split(ids, strong_fraction=0.1)) == 5
    assert len(make_strong_split(ids, strong_fraction=0.0)) == 0
    assert make_strong_split(ids, strong_fraction=1.0) == set(ids)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_strong": 51}, "num_strong=51"),
        ({"num_strong": 5, "strong_fraction": 0.1}, "exactly one"),
        ({}, "exactly one"),
        ({"strong_fraction": 1.5}, "strong_fraction"),
    ],
)
def test_strong_split_bad_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_strong_split([str(i) for i in range(50)], **kwargs)


def test_split_save_load_round_trip_and_no_silent_overwrite(tmp_path):
    path = tmp_path / "run" / "strong_split.txt"
    save_split({"b", "a", "c"}, path)
    assert path.read_text() == "a\nb\nc\n"
    assert load_split(path) == ["a", "b", "c"]
    save_split(["c", "a", "b"], path)
    with pytest.raises(FileExistsError, match="different id list"):
        save_split(["a", "b"], path)
    assert load_split(path) == ["a", "b", "c"]
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        load_split(tmp_path / "missing.txt")
