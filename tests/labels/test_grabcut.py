import cv2
import numpy as np
import pytest

from wseg.data.weak import rect_labels
from wseg.labels.grabcut import grabcut_box, grabcut_labels

SIZE = (48, 64)


def scene(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A red disk (centre 24, 30; radius 12) on a noisy green background."""
    rng = np.random.default_rng(seed)
    image = np.zeros((*SIZE, 3), np.uint8)
    image[:] = (40, 140, 40)
    yy, xx = np.mgrid[: SIZE[0], : SIZE[1]]
    disk = (yy - 24) ** 2 + (xx - 30) ** 2 < 12**2
    image[disk] = (210, 50, 50)
    noise = rng.integers(-15, 16, image.shape)
    return np.clip(image.astype(int) + noise, 0, 255).astype(np.uint8), disk


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return (a & b).sum() / (a | b).sum()


@pytest.mark.parametrize("context", [1.0, None])
def test_disk_in_box_is_segmented(context):
    image, disk = scene()
    boxes = np.array([[18, 12, 42, 36]], np.float32)  # the disk's tight box
    label, counts = grabcut_labels(image, boxes, np.array([3]), context=context)
    assert counts["grabcut"] == 1 and counts["boxes"] == 1
    assert set(np.unique(label)) == {0, 3}
    rect = rect_labels(boxes, [3], SIZE) == 3
    assert iou(label == 3, disk) > 0.95 > iou(rect, disk)
    assert not (label[~rect] != 0).any()  # outside every box: background


def test_smallest_box_wins_where_boxes_overlap():
    image, disk = scene()
    image[22:27, 28:33] = (30, 30, 220)  # a small blue square in front of the disk
    square = np.zeros(SIZE, bool)
    square[22:27, 28:33] = True
    boxes = np.array([[18, 12, 42, 36], [28, 22, 33, 27]], np.float32)
    label, counts = grabcut_labels(image, boxes, np.array([3, 5]))
    assert (label[square] == 5).all()
    assert iou(label == 3, disk & ~square) > 0.9
    assert counts["boxes"] == 2


def test_all_fallbacks_equal_bbox_rect():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (*SIZE, 3), dtype=np.uint8)
    boxes = np.array([[2, 3, 40, 30], [10, 10, 20.5, 44], [30.2, 1, 63, 47], [5, 5, 9, 8]])
    labels = np.array([1, 2, 1, 4])
    label, counts = grabcut_labels(image, boxes, labels, min_size=1000)
    np.testing.assert_array_equal(label, rect_labels(boxes, labels, SIZE))
    assert counts["fallback_small"] == 4 and counts["grabcut"] == 0


def test_degenerate_boxes_fall_back_and_are_counted():
    image, _ = scene()
    boxes = np.array([[5, 5, 8, 30], [70, 50, 80, 60]], np.float32)
    label, counts = grabcut_labels(image, boxes, np.array([1, 3]))
    assert counts["fallback_small"] == 1  # 3 px wide
    assert counts["skipped_empty_box"] == 1  # outside the image
    np.testing.assert_array_equal(label, rect_labels(boxes[:1], [1], SIZE))
    whole = np.array([[0, 0, 64, 48]], np.float32)
    label, counts = grabcut_labels(image, whole, np.array([2]))
    assert counts["fallback_no_background"] == 1
    assert (label == 2).all()


def test_no_foreground_falls_back_to_the_rectangle():
    # A uniform image: both colour models are the same single colour, so the graph cut's
    # smoothness term alone decides and textbook GrabCut (no core) returns no foreground.
    image = np.full((*SIZE, 3), 90, np.uint8)
    boxes = np.array([[10, 10, 30, 30]], np.float32)
    label, counts = grabcut_labels(image, boxes, np.array([2]), core=0.0)
    assert counts["fallback_empty"] == 1
    np.testing.assert_array_equal(label, rect_labels(boxes, [2], SIZE))


def test_deterministic_and_empty_box_list():
    image, _ = scene(3)
    boxes = np.array([[18, 12, 42, 36], [0, 0, 30, 20]], np.float32)
    first, _ = grabcut_labels(image, boxes, np.array([3, 1]))
    second, _ = grabcut_labels(image, boxes, np.array([3, 1]))
    np.testing.assert_array_equal(first, second)
    label, counts = grabcut_labels(image, np.zeros((0, 4)), np.zeros(0))
    assert not label.any() and counts["boxes"] == 0


@pytest.mark.parametrize(
    ("boxes", "labels", "match"),
    [
        ([[10, 10, 5, 20]], [1], "x2 < x1"),
        ([[0, 0, np.nan, 5]], [1], "non-finite"),
        ([[0, 0, 5, 5]], [0], "1..254"),
        ([[0, 0, 5, 5]], [1, 2], "K labels"),
    ],
)
def test_bad_boxes_name_the_image(boxes, labels, match):
    image, _ = scene()
    with pytest.raises(ValueError, match=f"img_7.*{match}|{match}") as error:
        grabcut_labels(image, np.array(boxes, float), np.array(labels), name="img_7")
    assert "img_7" in str(error.value)


def test_bad_image():
    with pytest.raises(ValueError, match="img_7: expected an RGB uint8"):
        grabcut_labels(np.zeros(SIZE, np.uint8), np.zeros((0, 4)), np.zeros(0), name="img_7")


def faint_disk(radius: int = 7) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A small, low-contrast disk in strong noise, with its tight box."""
    rng = np.random.default_rng(0)
    image = np.zeros((*SIZE, 3), np.uint8)
    image[:] = (100, 120, 100)
    yy, xx = np.mgrid[: SIZE[0], : SIZE[1]]
    disk = (yy - 24) ** 2 + (xx - 30) ** 2 < radius**2
    image[disk] = (130, 105, 100)
    noise = rng.integers(-25, 26, image.shape)
    image = np.clip(image.astype(int) + noise, 0, 255).astype(np.uint8)
    rows, cols = np.nonzero(disk)
    box = np.array([[cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]], np.float32)
    return image, disk, box


def test_upsampling_a_small_box_lets_grabcut_find_its_object():
    # At 13 x 13 px the smoothness term outweighs the faint colour difference and the cut keeps no
    # foreground; upsampled 5x (sqrt(169) = 13 -> 64) the object's area gain grows with the square
    # of the scale but its boundary cost only linearly, so GrabCut segments it.
    image, disk, box = faint_disk()
    label, counts = grabcut_labels(image, box, np.array([1]), upsample_to=0, core=0.0)
    assert counts["fallback_empty"] == 1
    label, counts = grabcut_labels(image, box, np.array([1]), upsample_to=64, core=0.0)
    assert counts["grabcut"] == 1
    assert iou(label == 1, disk) > 0.95 > iou(rect_labels(box, [1], SIZE) == 1, disk)
    assert label.shape == SIZE and not label[~(rect_labels(box, [1], SIZE) == 1)].any()


def test_upsample_to_below_the_box_size_changes_nothing():
    image, _ = scene()
    boxes = np.array([[18, 12, 42, 36]], np.float32)  # sqrt(area) = 24
    plain, _ = grabcut_labels(image, boxes, np.array([3]), upsample_to=0)
    same, _ = grabcut_labels(image, boxes, np.array([3]), upsample_to=24)
    np.testing.assert_array_equal(plain, same)


def test_core_is_definite_foreground():
    # The uniform image of the fallback test: without a core GrabCut keeps nothing; with
    # core = 0.2 the 20 x 20 box shrunk by sqrt(0.2) per side, x, y in [15.53, 24.47], i.e.
    # pixels 15..24, is definite foreground, so GrabCut cannot return an empty box.
    image = np.full((*SIZE, 3), 90, np.uint8)
    boxes = np.array([[10, 10, 30, 30]], np.float32)
    label, counts = grabcut_labels(image, boxes, np.array([2]))  # core = 0.2 is the default
    assert counts["grabcut"] == 1 and counts["fallback_empty"] == 0
    assert (label[15:25, 15:25] == 2).all()
    assert not label[:10].any() and not label[:, :10].any()  # outside the box


@pytest.mark.parametrize("options", [{"upsample_to": -1}, {"core": 1.0}, {"core": -0.1}])
def test_bad_options_name_the_image(options):
    image, _ = scene()
    with pytest.raises(ValueError, match="img_7: need upsample_to >= 0 and 0 <= core < 1"):
        grabcut_labels(image, np.zeros((0, 4)), np.zeros(0), name="img_7", **options)


def test_small_box_rule_keeps_the_rectangle_and_counts_it():
    # Hand-made boxes on the disk scene: 4 px wide (below min_size = 5) and 3 px tall keep their
    # whole rectangle, counted as fallback_small; the 5 x 5 box, the disk's 24 x 24 box and a
    # 40 x 30 box go to GrabCut. Only the last is above 32 x 32 px (1200 > 1024 pixels), so it
    # alone is counted in boxes_over_32px, and not as a fallback.
    image, _ = scene()
    boxes = np.array(
        [[2, 2, 6, 20], [50, 40, 62, 43], [44, 2, 49, 7], [18, 12, 42, 36], [0, 0, 40, 30]],
        np.float32,
    )
    labels = np.array([1, 2, 4, 3, 5])
    label, counts = grabcut_labels(image, boxes, labels)
    assert counts["fallback_small"] == 2
    assert counts["grabcut"] + counts["fallback_empty"] == 3
    assert (label[2:20, 2:6] == 1).all() and (label[40:43, 50:62] == 2).all()
    assert counts["boxes_over_32px"] == 1 and counts["fallback_over_32px"] == 0
    # min_size = 4 sends the 4-px-wide box to GrabCut too; the 3-px-tall one still falls back.
    _, counts = grabcut_labels(image, boxes, labels, min_size=4)
    assert counts["fallback_small"] == 1


@pytest.mark.parametrize("scale", [0.5, 2.0])
def test_grabcut_box_resamples_and_returns_the_input_size(scale):
    image, disk = scene()
    init = np.full(SIZE, cv2.GC_BGD, np.uint8)
    init[12:36, 18:42] = cv2.GC_PR_FGD
    foreground = grabcut_box(image, init, scale=scale)
    assert foreground.shape == SIZE
    assert iou(foreground, disk) > 0.85
    assert not foreground[init == cv2.GC_BGD].any()
