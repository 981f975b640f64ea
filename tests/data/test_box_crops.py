"""Box2Tag's single-class datasets: box selection, crop geometry, negatives, the datamodule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wseg.data.box_crop_geometry import crop_box, kept_boxes, paste_box, scan_crops
from wseg.data.box_crops import BoxCropDataModule, BoxCropDataset, PositiveNegativeSampler
from wseg.data.datasets import DataWarning
from wseg.data.records import Sample, SegmentationSource


def square_sample() -> Sample:
    """20 x 20: a white 10 x 10 box of class 1 at (5, 5), a class-2 box right of it."""
    image = np.zeros((20, 20, 3), np.uint8)
    image[5:15, 5:15] = 255
    mask = np.zeros((20, 20), np.uint8)
    mask[6:14, 6:14] = 1
    mask[0, 0] = 255
    return Sample(
        "square",
        image,
        mask=mask,
        boxes=np.array([[5, 5, 15, 15], [16, 5, 20, 10]], np.float32),
        labels=np.array([1, 2]),
    )


class ListSource(SegmentationSource):
    """A source over given samples."""

    classes = ("background", "one", "two")

    def __init__(self, samples: list[Sample]) -> None:
        self.samples = samples

    @property
    def ids(self) -> list[str]:
        return [s.id for s in self.samples]

    def load(self, index: int) -> Sample:
        return self.samples[index]


def test_kept_boxes_drops_other_class_intersections_and_small_boxes() -> None:
    sample = Sample(
        "a",
        np.zeros((100, 100, 3), np.uint8),
        boxes=np.array(
            [
                [0, 0, 40, 40],  # class 1, intersects the class-2 box: dropped
                [30, 30, 60, 60],  # class 2, intersects box 0: dropped
                [0, 45, 20, 90],  # class 1, touches box 0 only (same class): kept
                [70, 70, 80, 80],  # class 1, longer side 10 <= 0.1 * 100: dropped
                [80, 0, 100, 20],  # class 2, alone, longer side 20: kept
                [60, 0, 80, 20],  # class 1, shares only an edge with box 4: kept
            ],
            np.float32,
        ),
        labels=np.array([1, 2, 1, 1, 2, 1]),
    )
    sample.boxes[2, 1] = 35  # make box 2 overlap box 0 (same class) but not box 1
    assert kept_boxes(sample, 0.1) == [False, False, True, False, True, True]
    assert kept_boxes(sample, 0.25) == [False, False, True, False, False, False]


def test_crop_maps_the_box_onto_the_interior_with_a_border_frame() -> None:
    sample = square_sample()
    crop = crop_box(sample, 0, size=16, border=3)  # 10-px box to 10 interior pixels: scale 1
    expected = np.zeros((16, 16), np.uint8)
    expected[3:13, 3:13] = 255
    assert np.array_equal(crop["image"][..., 0], expected)
    assert crop["valid"].all()
    # the frame is background except where it falls inside the class-2 box (columns 16-17 of
    # the image, crop columns 14-15, rows 5-9 -> crop rows 3-7): void
    border = np.full((16, 16), 255, np.uint8)
    border[:3, :] = border[13:, :] = 0
    border[:, :3] = border[:, 13:] = 0
    border[3:8, 14:16] = 255
    assert np.array_equal(crop["border"], border)
    # true mask: object inside the box, 255 on the frame
    mask = np.full((16, 16), 255, np.uint8)
    mask[3:13, 3:13] = 0
    mask[4:12, 4:12] = 1
    assert np.array_equal(crop["mask"], mask)


def test_crop_frame_outside_the_image_is_void_and_invalid() -> None:
    sample = square_sample()
    crop = crop_box(sample, 1, size=10, border=3)  # box columns 16-20 touch the right edge
    assert not crop["valid"][:, -3:].any()
    assert (crop["border"][:, -3:] == 255).all()
    assert crop["valid"][3:7, 3:7].all()


def test_crop_resizes_and_paste_box_inverts_it() -> None:
    sample = square_sample()
    crop = crop_box(sample, 0, size=26, border=3)  # 10 px -> 20 px: scale 2
    interior = crop["image"][3:23, 3:23, 0]
    assert (interior[1:-1, 1:-1] == 255).all()
    # the outermost interior pixels sit a quarter pixel inside the box edge: bilinear 3/4 white
    assert (interior[0, 1:-1] == 191).all() and (interior[1:-1, -1] == 191).all()
    assert crop["image"][:2, :, 0].max() == 0 and (crop["image"][2, 4:22, 0] == 64).all()
    probs = (crop["mask"] == 1).astype(np.float32)
    back = paste_box(probs, (5, 15, 5, 15), size=26, border=3)
    assert back.shape == (10, 10)
    assert np.array_equal(back >= 0.5, sample.mask[5:15, 5:15] == 1)


def test_crop_rejects_a_box_without_pixels() -> None:
    sample = square_sample()
    sample.boxes[1] = [3, 3, 3, 9]
    with pytest.raises(ValueError, match="no pixels"):
        crop_box(sample, 1)


def test_scan_and_dataset_items() -> None:
    source = ListSource([square_sample()])
    entries = scan_crops(source, min_side_fraction=0.1, progress=False)
    assert [(e.box_index, e.label, e.kept) for e in entries] == [(0, 1, True), (1, 2, True)]
    dataset = BoxCropDataset(source, entries, target_class=1, size=16, border=3)
    item = dataset[0]
    assert item["image"].shape == (3, 16, 16) and item["image"].dtype == torch.float32
    assert item["border"].dtype == torch.long and item["mask"].dtype == torch.long
    assert bool(item["positive"]) and not bool(dataset[1]["positive"])
    assert item["id"] == "square#0"


def test_sampler_takes_every_positive_and_a_fresh_draw_of_negatives() -> None:
    sampler = PositiveNegativeSampler(num_positive=3, num_negative=10, negative_ratio=2.0)
    first, second = list(sampler), list(sampler)
    assert len(first) == len(sampler) == 9
    for order in (first, second):
        assert sorted(i for i in order if i < 3) == [0, 1, 2]
        assert len({i for i in order if i >= 3}) == 6
    assert first != second
    assert len(PositiveNegativeSampler(3, 2, 5.0)) == 5
    with pytest.raises(ValueError, match="negative_ratio"):
        PositiveNegativeSampler(3, 2, -1.0)


def test_datamodule_on_synthetic_data(synthetic_root) -> None:
    datamodule = BoxCropDataModule(
        "bird", root=str(synthetic_root), crop_size=32, batch_size=2, num_workers=0, progress=False
    )
    assert datamodule.num_classes == 2 and datamodule.class_names == ("background", "bird")
    datamodule.setup("fit")
    # bird has 2 kept boxes in the 6 training images; 4 kept boxes of other classes
    assert datamodule.num_negative == 4 and len(datamodule.train_dataset) == 6
    batch = next(iter(datamodule.train_dataloader()))
    assert batch["image"].shape == (2, 3, 32, 32) and batch["positive"].dtype == torch.bool
    assert len(datamodule.train_dataloader()) == 2  # 2 positives + 2 negatives per epoch
    assert len(datamodule.val_dataset) == 2 and all(
        bool(datamodule.val_dataset[i]["positive"]) for i in range(2)
    )


def test_datamodule_falls_back_to_every_box_with_a_warning(synthetic_root) -> None:
    datamodule = BoxCropDataModule(
        "bicycle", root=str(synthetic_root), crop_size=32, num_workers=0, progress=False
    )
    with pytest.warns(DataWarning, match="none of the 1 boxes of 'bicycle'"):
        datamodule.setup("fit")
    assert len(datamodule.val_dataset) == 1


def test_datamodule_rejects_bad_arguments(synthetic_root) -> None:
    with pytest.raises(ValueError, match="target_class='cat'"):
        BoxCropDataModule("cat", root=str(synthetic_root))
    with pytest.raises(ValueError, match="interior"):
        BoxCropDataModule("bird", root=str(synthetic_root), crop_size=10, border=3)
    with pytest.raises(ValueError, match="min_side_fraction"):
        BoxCropDataModule("bird", root=str(synthetic_root), min_side_fraction=1.5)
