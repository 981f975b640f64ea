import numpy as np
import pytest
import torch
from lightning import Trainer
from PIL import Image

from tests.data.fixtures_datamodule import CLASSES, MemorySource
from wseg.callbacks import PredictionWriter, save_palette_png
from wseg.data import WeakSegDataModule
from wseg.data.records import voc_palette
from wseg.methods.supervised import Supervised
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


def test_prediction_writer_crops_to_the_size_of_each_image(tmp_path) -> None:
    preds = torch.arange(2 * 4 * 5, dtype=torch.uint8).reshape(2, 4, 5) % 7
    writer = PredictionWriter(output_dir=str(tmp_path))
    sizes = torch.tensor([[4, 5], [2, 3]])
    writer.write_on_batch_end(
        None, None, {"id": ["a", "b"], "pred": preds, "size": sizes}, None, None, 0
    )
    with Image.open(tmp_path / "b.png") as png:
        assert np.array_equal(np.asarray(png), preds[1, :2, :3].numpy())
    # without ``size`` in the prediction, the batch's is used (methods that override predict_step)
    writer.write_on_batch_end(
        None, None, {"id": ["c"], "pred": preds[1:]}, None, {"size": sizes[1:]}, 0
    )
    with Image.open(tmp_path / "c.png") as png:
        assert np.asarray(png).shape == (2, 3)


def test_predict_with_batches_of_differently_sized_images_writes_each_size(tmp_path) -> None:
    sizes = [(40, 48), (28, 36), (36, 24)]

    class Mixed(WeakSegDataModule):
        def __init__(self) -> None:
            super().__init__(crop_size=24, batch_size=2, val_batch_size=2, num_workers=0)
            self._class_names = CLASSES

        def make_source(self, split):
            return MemorySource(len(sizes), prefix=split, sizes=sizes)

    torch.manual_seed(0)
    model = Supervised(
        num_classes=len(CLASSES), encoder="tu-mobilenetv3_small_050", encoder_weights=None
    )
    writer = PredictionWriter(output_dir=str(tmp_path))
    trainer = Trainer(
        accelerator="cpu",
        logger=False,
        callbacks=[writer],
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    predictions = trainer.predict(model, datamodule=Mixed(), return_predictions=True)
    assert [p["pred"].shape for p in predictions] == [(2, 40, 48), (1, 36, 24)]  # padded batch
    assert torch.equal(predictions[0]["size"], torch.tensor([[40, 48], [28, 36]]))
    assert writer.written == len(sizes)
    for index, size in enumerate(sizes):
        with Image.open(tmp_path / f"val{index:03d}.png") as png:
            assert np.asarray(png).shape == size
    padded = predictions[0]["pred"][1]
    with Image.open(tmp_path / "val001.png") as png:
        assert np.array_equal(np.asarray(png), padded[:28, :36].numpy())
