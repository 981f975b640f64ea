from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from lightning import Trainer
from PIL import Image

from tests.data.fixtures_datamodule import CLASSES, MemorySource
from wseg.callbacks import PredictionWriter, ValidationOverlays, save_palette_png
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


class Memory(WeakSegDataModule):
    """The real datamodule over in-memory samples of the given sizes (no files)."""

    def __init__(self, sizes: list[tuple[int, int]], val_batch_size: int = 2) -> None:
        super().__init__(crop_size=24, batch_size=2, val_batch_size=val_batch_size, num_workers=0)
        self._class_names = CLASSES
        self.sizes = sizes

    def make_source(self, split, evaluation: bool = False):
        return MemorySource(len(self.sizes), prefix=split, sizes=self.sizes)


def tiny_model(**kwargs) -> Supervised:
    torch.manual_seed(0)
    return Supervised(
        num_classes=len(CLASSES),
        encoder="tu-mobilenetv3_small_050",
        encoder_weights=None,
        **kwargs,
    )


def test_predict_with_batches_of_differently_sized_images_writes_each_size(tmp_path) -> None:
    sizes = [(40, 48), (28, 36), (36, 24)]
    model = tiny_model()
    writer = PredictionWriter(output_dir=str(tmp_path))
    trainer = Trainer(
        accelerator="cpu",
        logger=False,
        callbacks=[writer],
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    predictions = trainer.predict(model, datamodule=Memory(sizes), return_predictions=True)
    assert [p["pred"].shape for p in predictions] == [(2, 40, 48), (1, 36, 24)]  # padded batch
    assert torch.equal(predictions[0]["size"], torch.tensor([[40, 48], [28, 36]]))
    assert writer.written == len(sizes)
    for index, size in enumerate(sizes):
        with Image.open(tmp_path / f"val{index:03d}.png") as png:
            assert np.asarray(png).shape == size
    padded = predictions[0]["pred"][1]
    with Image.open(tmp_path / "val001.png") as png:
        assert np.array_equal(np.asarray(png), padded[:28, :36].numpy())


def test_overlays_show_every_n_epochs_and_the_last_validation_of_a_step_limited_fit(
    tmp_path,
) -> None:
    """Validations end epochs 0, 1 and 2; ``max_steps`` stops the fit one step into epoch 3."""
    overlays = ValidationOverlays(every_n_epochs=5, num_images=1)
    trainer = Trainer(
        accelerator="cpu",
        logger=False,
        callbacks=[overlays],
        max_steps=7,
        limit_train_batches=2,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(tiny_model(log_images_every_n_epochs=0), datamodule=Memory([(24, 24)] * 4, 1))
    assert trainer.global_step == 7  # three full epochs of 2 steps, one step into the fourth
    # epoch 0 is on the grid of 5, epoch 1 is not, epoch 2 is the fit's last validation
    # no logger: the run's own folder under default_root_dir, not default_root_dir itself
    overlays_dir = tmp_path / "runs" / "run_0" / "overlays"
    folders = sorted(path.name for path in overlays_dir.iterdir())
    assert folders == ["epoch_000", "epoch_002"]
    (png,) = (overlays_dir / "epoch_002").glob("*.png")
    with Image.open(png) as image:
        assert image.size[1] == 24


EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
TRAINING_CONFIGS = sorted(
    path for path in EXPERIMENTS.rglob("*.yaml") if "trainer" in yaml.safe_load(path.read_text())
)


def test_training_experiments_are_found() -> None:
    names = {path.relative_to(EXPERIMENTS).as_posix() for path in TRAINING_CONFIGS}
    assert {"demo/supervised.yaml", "supervised_voc.yaml", "box2seg/voc_pretrain.yaml"} <= names
    assert len(names) >= 60


@pytest.mark.parametrize(
    "config", TRAINING_CONFIGS, ids=lambda p: p.relative_to(EXPERIMENTS).as_posix()
)
def test_every_training_experiment_logs_the_learning_rate_each_step(config: Path) -> None:
    callbacks = yaml.safe_load(config.read_text())["trainer"].get("callbacks") or []
    monitors = [
        callback.get("init_args") or {}
        for callback in callbacks
        if callback["class_path"]
        in ("LearningRateMonitor", "lightning.pytorch.callbacks.LearningRateMonitor")
    ]
    assert monitors == [{"logging_interval": "step"}]
