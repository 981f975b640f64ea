import numpy as np
import pytest
import torch
from PIL import Image

from wseg.callbacks import PredictionWriter, save_palette_png
from wseg.data.records import voc_palette
from wseg.visualize import colorize, overlay, panel, to_uint8_image


def test_overlay_blends_palette_and_keeps_ignored_pixels() -> None:
    image = np.full((2, 2, 3), 100, np.uint8)
    label = np.array([[0, 1], [2, 255]], np.uint8)
    out = overlay(image, label, alpha=0.5)
    # VOC palette: 0 black, 1 (128, 0, 0), 2 (0, 128, 0); 255 leaves the image alone.
    assert out[0, 0].tolist() == [50, 50, 50]
    assert out[0, 1].tolist() == [114, 50, 50]
    assert out[1, 0].tolist() == [50, 114, 50]
    assert out[1, 1].tolist() == [100, 100, 100]
    with pytest.raises(ValueError, match="size"):
        overlay(image, np.zeros((3, 2), np.uint8))


def test_colorize_and_panel_shapes() -> None:
    label = np.array([[1, 255]], np.uint8)
    assert colorize(label).tolist() == [[voc_palette()[1].tolist(), voc_palette()[255].tolist()]]
    out = panel(np.zeros((5, 7, 3), np.uint8), np.zeros((5, 7)), np.ones((5, 7)), gap=2)
    assert out.shape == (5, 3 * 7 + 2 * 2, 3)
    assert (out[:, 7:9] == 255).all()


def test_to_uint8_image_stretches_range() -> None:
    image = torch.stack([torch.full((2, 2), -1.0), torch.zeros(2, 2), torch.full((2, 2), 1.0)])
    assert to_uint8_image(image)[0, 0].tolist() == [0, 128, 255]


def test_palette_png_round_trip(tmp_path) -> None:
    label = np.array([[0, 1, 20], [255, 3, 0]], np.uint8)
    save_palette_png(label, tmp_path / "sub" / "a.png")
    with Image.open(tmp_path / "sub" / "a.png") as png:
        assert png.mode == "P"
        assert np.array_equal(np.asarray(png), label)
        assert png.getpalette()[3:6] == [128, 0, 0]
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["a.png"]  # no temp file left


def write(writer: PredictionWriter, ids: list[str], preds: torch.Tensor) -> None:
    writer.write_on_batch_end(None, None, {"id": ids, "pred": preds}, None, None, 0)


def test_prediction_writer_refuses_to_overwrite_different_files(tmp_path) -> None:
    first = torch.zeros(2, 4, 5, dtype=torch.uint8)
    writer = PredictionWriter(output_dir=str(tmp_path))
    write(writer, ["a", "city/b"], first)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "city__b.png"]
    write(writer, ["a"], first[:1])  # identical content: left alone
    assert writer.written == 2
    second = torch.ones(1, 4, 5, dtype=torch.uint8)
    with pytest.raises(FileExistsError, match="a.png exists with a different prediction"):
        write(writer, ["a"], second)
    write(PredictionWriter(output_dir=str(tmp_path), overwrite=True), ["a"], second)
    with Image.open(tmp_path / "a.png") as png:
        assert np.asarray(png).max() == 1
