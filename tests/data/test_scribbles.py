"""Curated scribbles (PAM paper sec. 2.2): true classes at scribble positions, images dropped."""

import numpy as np
import pytest
import torch

from wseg.data import WeakSegDataModule
from wseg.data.datasets import DataWarning
from wseg.data.records import Sample, SegmentationSource
from wseg.data.scribbles import (
    curate_scribbles,
    curated_scribble_ids,
    sample_scribble,
    scribbles_cover_classes,
    synthesize_scribbles,
)

CLASSES = ("background", "a", "b")


def test_curate_scribbles_hand_computed() -> None:
    mask = np.array([[0, 0, 1, 1], [0, 255, 1, 2]], np.uint8)
    scribble = np.array([[2, 255, 1, 0], [0, 1, 255, 255]], np.uint8)
    expected = np.array([[0, 255, 1, 1], [0, 255, 255, 255]], np.uint8)
    np.testing.assert_array_equal(curate_scribbles(scribble, mask), expected)
    with pytest.raises(ValueError, match="does not match"):
        curate_scribbles(scribble[:1], mask)


def test_scribbles_cover_classes() -> None:
    mask = np.array([[0, 0, 1, 255]], np.uint8)
    assert scribbles_cover_classes(np.array([[0, 255, 1, 255]], np.uint8), mask)
    assert not scribbles_cover_classes(np.array([[0, 0, 255, 255]], np.uint8), mask)
    assert scribbles_cover_classes(np.array([[0, 255, 1, 2]], np.uint8), mask)  # extra is fine


def image_with(scribble_rows: dict[int, int], image_id: str) -> Sample:
    """8x8 image: rows 0-3 background, rows 4-5 class 1, rows 6-7 class 2; given rows scribbled."""
    mask = np.zeros((8, 8), np.uint8)
    mask[4:6] = 1
    mask[6:] = 2
    image = np.stack([mask * 100] * 3, axis=-1).astype(np.uint8)
    scribble = np.full((8, 8), 255, np.uint8)
    for row, label in scribble_rows.items():
        scribble[row, 1:7] = label
    return Sample(
        id=image_id, image=image, mask=mask, scribble=scribble, source=f"mem://{image_id}"
    )


class ScribbleSource(SegmentationSource):
    """Three images: complete scribbles, one wrong-class stroke, and class 2 never scribbled."""

    classes = CLASSES

    def __init__(self) -> None:
        self.samples = [
            image_with({1: 0, 4: 1, 7: 2}, "complete"),
            image_with({1: 0, 4: 2, 7: 2}, "wrong_class"),  # row 4 is class 1, tagged 2
            image_with({1: 0, 4: 1}, "missing_b"),
        ]

    @property
    def ids(self) -> list[str]:
        return [s.id for s in self.samples]

    def load(self, index: int) -> Sample:
        return self.samples[index]


def test_sample_scribble_modes_and_curation() -> None:
    source = ScribbleSource()
    wrong = source[1]
    raw = sample_scribble(wrong, "dataset")
    assert raw[4, 3] == 2
    curated = sample_scribble(wrong, "dataset", curated=True)
    assert curated[4, 3] == 1 and curated[7, 3] == 2
    synthesised = sample_scribble(wrong, "synthesize", width=1, seed=3)
    np.testing.assert_array_equal(
        synthesised, synthesize_scribbles(wrong.mask, None, width=1, seed=_seed("wrong_class", 3))
    )
    with pytest.raises(ValueError, match="mode must be"):
        sample_scribble(wrong, "none")
    no_mask = Sample(id="x", image=wrong.image, scribble=wrong.scribble, source="mem://x")
    with pytest.raises(ValueError, match=r"'x' \(mem://x\) has no full mask; curated"):
        sample_scribble(no_mask, "dataset", curated=True)
    with pytest.raises(ValueError, match="no scribble"):
        sample_scribble(Sample(id="y", image=wrong.image, mask=wrong.mask), "dataset")


def _seed(image_id: str, seed: int) -> int:
    from wseg.data.scribbles import seed_from_id

    return seed_from_id(image_id, seed)


def test_curated_ids_drop_images_missing_a_class() -> None:
    source = ScribbleSource()
    assert curated_scribble_ids(source, "dataset", progress=False) == ["complete", "wrong_class"]
    assert curated_scribble_ids(source, "dataset", positions=[2, 0], progress=False) == ["complete"]


class ScribbleDataModule(WeakSegDataModule):
    def __init__(self, **kwargs) -> None:
        options = {"dataset": "voc", "scribble_dir": "x", "crop_size": 8, "batch_size": 1}
        super().__init__(**{**options, "num_workers": 0, "scale_range": (1.0, 1.0), **kwargs})
        self._class_names = CLASSES

    def make_source(self, split: str, evaluation: bool = False) -> SegmentationSource:
        return ScribbleSource()


def test_datamodule_curated_scribbles_relabel_and_drop_with_a_count() -> None:
    dm = ScribbleDataModule(scribbles="dataset", curated_scribbles=True, flip=False)
    with pytest.warns(DataWarning, match=r"dropping 1 of 3 training images.*'missing_b'"):
        dm.setup("fit")
    assert [dm.train_dataset.source.ids[i] for i in dm.train_dataset.indices] == [
        "complete",
        "wrong_class",
    ]
    items = {item["id"]: item for item in (dm.train_dataset[0], dm.train_dataset[1])}
    scribble, mask = items["wrong_class"]["scribble"], items["wrong_class"]["mask"]
    labelled = scribble != 255
    assert labelled.sum() == 18 and torch.equal(scribble[labelled], mask[labelled])


def test_datamodule_without_curation_keeps_every_image_and_raw_classes() -> None:
    dm = ScribbleDataModule(scribbles="dataset", flip=False)
    dm.setup("fit")
    assert len(dm.train_dataset) == 3
    item = dm.train_dataset[1]
    assert int(item["scribble"][4, 3]) == 2


def test_curated_scribbles_need_scribbles() -> None:
    with pytest.raises(ValueError, match="curated_scribbles=True needs scribbles"):
        WeakSegDataModule(dataset="synthetic", curated_scribbles=True)
