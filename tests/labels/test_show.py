"""``python -m wseg.labels show``: panels of image | boxes | pseudo label | truth."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from wseg.data.datasets import make_source
from wseg.data.store import PseudoLabelStore
from wseg.data.synthetic import generate_synthetic
from wseg.labels.__main__ import main
from wseg.labels.generate import generate
from wseg.labels.generators import RectGenerator
from wseg.labels.show import GAP, draw_boxes, show_store
from wseg.visualize import overlay

SIZE = (48, 64)


@pytest.fixture(scope="module")
def rect_store(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("synthetic")
    generate_synthetic(root, num_train=5, num_val=1, size=SIZE, seed=1, layouts=["voc"])
    source = make_source("synthetic", root, "train")
    identity = {"name": "synthetic", "root": str(root), "split": "train"}
    summary = generate(source, RectGenerator(), root / "pseudo", identity, progress=False)
    return root, summary.store.path


def read_rgb(path: Path) -> np.ndarray:
    return cv2.imread(str(path))[..., ::-1]


def test_show_writes_panels_beside_the_store(rect_store, capsys) -> None:
    root, store_path = rect_store
    before = sorted(p.name for p in store_path.iterdir())
    main(["show", str(store_path), "--num", "3"])
    out = store_path.with_name(store_path.name + "-show")
    panels = sorted(out.glob("*.png"))
    assert len(panels) == 3
    assert "3 panels" in capsys.readouterr().out
    assert sorted(p.name for p in store_path.iterdir()) == before  # the store is untouched
    source = make_source("synthetic", root, "train")
    ids = list(source.ids)
    # Spread over the split: the first and the last image are shown.
    assert {ids[0], ids[-1]} <= {p.stem for p in panels}
    store = PseudoLabelStore(store_path)
    sample = source[0]
    picture = read_rgb(out / f"{sample.id}.png")
    width = SIZE[1]
    assert picture.shape == (SIZE[0], 4 * width + 3 * GAP, 3)
    tiles = [picture[:, i * (width + GAP) : i * (width + GAP) + width] for i in range(4)]
    np.testing.assert_array_equal(tiles[0], sample.image)
    np.testing.assert_array_equal(
        tiles[1], draw_boxes(sample.image, sample.boxes, sample.labels, source.classes)
    )
    np.testing.assert_array_equal(tiles[2], overlay(sample.image, store.read(sample.id)))
    np.testing.assert_array_equal(tiles[3], overlay(sample.image, sample.mask))
    assert (picture[:, width : width + GAP] == 255).all()


def test_draw_boxes_outlines_each_box_in_its_class_colour() -> None:
    image = np.zeros((40, 40, 3), np.uint8)
    drawn = draw_boxes(image, np.array([[5.0, 20.0, 30.0, 35.0]]), np.array([1]), ["bg", "a"])
    np.testing.assert_array_equal(drawn[34, 15], [128, 0, 0])  # bottom edge, VOC colour of 1
    assert (drawn[22:33, 16:28] == 0).all()  # the inside (right of the name) is left as it was
    assert (image == 0).all()  # the input is not modified


def test_show_ids_and_bad_requests(rect_store, tmp_path) -> None:
    root, store_path = rect_store
    store = PseudoLabelStore(store_path)
    source = make_source("synthetic", root, "train")
    one = source.ids[1]
    assert [p.stem for p in show_store(store, source, tmp_path, ids=[one], progress=False)] == [one]
    with pytest.raises(ValueError, match="not in the split"):
        show_store(store, source, tmp_path, ids=["nope"], progress=False)
    with pytest.raises(ValueError, match="into the store"):
        show_store(store, source, store_path, progress=False)
    with pytest.raises(SystemExit, match="num must be >= 1"):
        main(["show", str(store_path), "--num", "0", "--out", str(tmp_path)])
