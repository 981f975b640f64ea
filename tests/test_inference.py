"""Using a trained model: `wseg.load`, ``segment``, and the ``segment`` / ``export`` commands."""

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch import Trainer
from PIL import Image
from torch.utils.data import DataLoader

import wseg
from wseg.__main__ import main
from wseg.data.datasets import DataWarning
from wseg.data.transforms import IMAGENET_MEAN, IMAGENET_STD, build_eval_transform
from wseg.inference import Segmenter, normalize
from wseg.methods import Ancillary, Box2Seg, Supervised
from wseg.nets.predict import forward_any_size

ENCODER = "tu-mobilenetv3_small_050"
CLASSES = [f"thing_{i}" for i in range(7)]

pytestmark = [
    pytest.mark.filterwarnings("ignore:`torch.jit.*` is deprecated:FutureWarning"),
    pytest.mark.filterwarnings("ignore:You defined a `validation_step` but have no"),
]


def _trainer(root: Path) -> Trainer:
    return Trainer(
        max_steps=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(root),
    )


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """A 7-class Supervised model fitted one step, and untrained Box2Seg and Ancillary ones."""
    root = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    model = Supervised(
        num_classes=len(CLASSES),
        class_names=CLASSES,
        encoder=ENCODER,
        encoder_weights=None,
        log_images_every_n_epochs=0,
    )
    batch = {"image": torch.randn(2, 3, 64, 64), "mask": torch.randint(0, 7, (2, 64, 64))}
    trainer = _trainer(root)
    trainer.fit(model, DataLoader([batch], batch_size=None))
    paths = {"supervised": root / "supervised.ckpt"}
    trainer.save_checkpoint(paths["supervised"])
    others = {
        "box2seg": Box2Seg(num_classes=3, arch="fpn", encoder=ENCODER),
        "ancillary": Ancillary(num_classes=3, encoder=ENCODER),
    }
    for name, other in others.items():
        trainer.strategy.connect(other)
        paths[name] = root / f"{name}.ckpt"
        trainer.save_checkpoint(paths[name])
    return paths


@pytest.fixture(scope="module")
def model(checkpoints) -> Segmenter:
    return wseg.load(checkpoints["supervised"])


def _image(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_import_wseg_stays_cheap() -> None:
    code = "import sys, wseg; assert 'torch' not in sys.modules; assert callable(wseg.load)"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_load_takes_everything_from_the_checkpoint(model, checkpoints) -> None:
    assert model.num_classes == 7 and model.class_names == CLASSES
    assert model.mean == IMAGENET_MEAN and model.std == IMAGENET_STD
    assert model.tta_scales == (0.75, 1.0, 1.25)
    assert model.checkpoint == checkpoints["supervised"]
    assert not model.net.training and model.device == torch.device("cpu")
    weights = torch.load(checkpoints["supervised"], weights_only=True)["state_dict"]
    name = next(iter(model.net.state_dict()))
    assert torch.equal(model.net.state_dict()[name], weights[f"net.{name}"])


def test_normalisation_matches_the_datamodule(model) -> None:
    rgb = _image(40, 56)
    expected = torch.from_numpy(build_eval_transform()(image=rgb)["image"]).permute(2, 0, 1)
    assert torch.allclose(model.to_tensor(rgb)[0], expected, atol=1e-5)


def test_segment_reads_paths_arrays_and_pil_images(model, tmp_path) -> None:
    rgb = _image(45, 61)
    path = tmp_path / "photo.png"
    Image.fromarray(rgb).save(path)
    with torch.no_grad():
        logits = forward_any_size(model.net, model.to_tensor(rgb))
    expected = logits[0].argmax(0).numpy().astype(np.uint8)
    for source in (rgb, path, str(path), Image.fromarray(rgb).convert("RGBA")):
        labels = model.segment(source)
        assert labels.dtype == np.uint8 and labels.shape == (45, 61)
        np.testing.assert_array_equal(labels, expected)


@pytest.mark.parametrize(("tta", "crf"), [(True, False), (False, True), (True, True)])
def test_tta_and_crf_give_label_maps(model, tta: bool, crf: bool) -> None:
    labels = model.segment(_image(37, 50, seed=1), tta=tta, crf=crf)
    assert labels.dtype == np.uint8 and labels.shape == (37, 50)
    assert labels.max() < model.num_classes


def test_segment_rejects_bad_inputs(model, tmp_path) -> None:
    with pytest.raises(ValueError, match="uint8"):
        model.segment(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="H, W, 3"):
        model.segment(np.zeros((8, 8), np.uint8))
    with pytest.raises(TypeError, match="path, a PIL image or a numpy array"):
        model.segment(3)
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        model.segment(tmp_path / "missing.jpg")


def test_load_errors_name_the_file_and_the_problem(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="nothing.ckpt"):
        wseg.load(tmp_path / "nothing.ckpt")
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="garbage.ckpt is not a wseg checkpoint: torch.load"):
        wseg.load(garbage)
    weights = tmp_path / "weights.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}}, weights)
    with pytest.raises(ValueError, match="weights.pth is not a wseg checkpoint: it lacks hyper"):
        wseg.load(weights)
    other = tmp_path / "other.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"num_classes": 3}}, other)
    with pytest.raises(ValueError, match="lacks hyper_parameters.arch, hyper_parameters.encoder"):
        wseg.load(other)


def test_load_box2seg_uses_the_deployed_branch_and_refuses_the_ancillary(checkpoints) -> None:
    model = wseg.load(checkpoints["box2seg"])
    assert model.num_classes == 3 and model.class_names == ["class_0", "class_1", "class_2"]
    assert model.segment(_image(33, 40)).shape == (33, 40)
    with pytest.raises(ValueError, match="ancillary.ckpt: its network is the box-conditioned"):
        wseg.load(checkpoints["ancillary"])


def _folder(path: Path) -> Path:
    path.mkdir()
    Image.fromarray(_image(40, 56, seed=2)).save(path / "b.png")
    Image.fromarray(_image(33, 47, seed=3)).save(path / "a.JPG")
    (path / "notes.txt").write_text("not an image")
    return path


def test_segment_command_writes_labels_and_overlays(checkpoints, tmp_path) -> None:
    images, out = _folder(tmp_path / "images"), tmp_path / "out"
    ckpt = str(checkpoints["supervised"])
    main(["segment", ckpt, str(images), "--out", str(out), "--tta"])
    assert sorted(p.name for p in out.glob("*.png")) == ["a.png", "b.png"]
    for stem, size in (("a", (47, 33)), ("b", (56, 40))):
        with Image.open(out / f"{stem}.png") as png:
            assert png.mode == "P" and png.size == size
            assert np.asarray(png).max() < len(CLASSES)
        with Image.open(out / "overlays" / f"{stem}.png") as overlay:
            assert overlay.mode == "RGB" and overlay.size == size
    before = (out / "a.png").stat().st_mtime_ns
    with pytest.raises(SystemExit, match="4 output files exist already.*--overwrite"):
        main(["segment", ckpt, str(images), "--out", str(out)])
    assert (out / "a.png").stat().st_mtime_ns == before
    main(["segment", ckpt, str(images), "--out", str(out), "--crf", "--overwrite"])
    assert (out / "a.png").stat().st_mtime_ns != before


def test_segment_command_errors(checkpoints, tmp_path) -> None:
    ckpt = str(checkpoints["supervised"])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SystemExit, match="no images .* in .*empty"):
        main(["segment", ckpt, str(empty), "--out", str(tmp_path / "o1")])
    images = _folder(tmp_path / "images")
    with pytest.raises(SystemExit, match="checkpoint not found: .*missing.ckpt"):
        main(["segment", str(tmp_path / "missing.ckpt"), str(images), "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="b.png is an input image"):
        main(["segment", ckpt, str(images), "--out", str(images), "--overwrite"])
    (images / "c.bmp").write_bytes(b"truncated")
    (images / "d.jpg").write_bytes(b"\xff\xd8 truncated")
    with pytest.warns(DataWarning, match=r"skipped 2 unreadable images so far .*d\.jpg"):
        with pytest.raises(SystemExit, match=r"2 of 4 images could not be read .* other 2") as end:
            main(["segment", ckpt, str(images), "--out", str(tmp_path / "o2")])
    assert "cannot decode image" in str(end.value) and "c.bmp" in str(end.value)
    # the good images were segmented all the same
    assert sorted(p.name for p in (tmp_path / "o2").glob("*.png")) == ["a.png", "b.png"]
    assert len(list((tmp_path / "o2" / "overlays").glob("*.png"))) == 2
    Image.fromarray(_image(8, 8)).save(images / "a.png")
    with pytest.raises(SystemExit, match="a.JPG and .*a.png would both be written as a.png"):
        main(["segment", ckpt, str(images), "--out", str(tmp_path / "o3")])


def test_export_torchscript_matches_the_network(model, checkpoints, tmp_path) -> None:
    out = tmp_path / "model.pt"
    ckpt = str(checkpoints["supervised"])
    main(["export", ckpt, "--format", "torchscript", "--out", str(out), "--height", "64"])
    exported = torch.jit.load(str(out))
    with torch.no_grad():
        for shape in ((2, 3, 64, 512), (1, 3, 96, 64)):
            image = torch.rand(*shape)
            expected = model.net(normalize(image, IMAGENET_MEAN, IMAGENET_STD))
            assert torch.allclose(exported(image), expected, atol=1e-5)
    with pytest.raises(SystemExit, match="model.pt exists already.*--overwrite"):
        main(["export", ckpt, "--format", "torchscript", "--out", str(out)])
    with pytest.raises(SystemExit, match="multiples of 32, got 50x512"):
        main(["export", ckpt, "--format", "torchscript", "--out", str(out), "--overwrite",
              "--height", "50"])  # fmt: skip


def test_export_default_is_torch_export_with_dynamic_batch_and_sides(
    model, checkpoints, tmp_path, capsys
) -> None:
    out = tmp_path / "model.pt2"
    ckpt = str(checkpoints["supervised"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        main(["export", ckpt, "--out", str(out), "--height", "64", "--width", "64"])
    # the default path prints nothing and warns nothing (torch.jit.trace's deprecation included)
    assert [str(w.message) for w in caught] == []
    assert capsys.readouterr().out == ""
    program = torch.export.load(str(out)).module()
    with torch.no_grad():
        for shape in ((2, 3, 64, 64), (1, 3, 96, 64), (3, 3, 64, 160)):
            image = torch.rand(*shape)
            expected = model.net(normalize(image, IMAGENET_MEAN, IMAGENET_STD))
            assert torch.allclose(program(image), expected, atol=1e-5), shape


def test_export_onnx_without_onnx_says_how_to_install(checkpoints, tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "onnx", None)  # as if not installed
    out = tmp_path / "model.onnx"
    with pytest.raises(SystemExit, match=r"pip install 'wseg\[export\]'"):
        main(["export", str(checkpoints["supervised"]), "--format", "onnx", "--out", str(out)])
    assert not out.exists()


def test_export_onnx_matches_the_network_in_onnx_runtime(model, checkpoints, tmp_path) -> None:
    onnx = pytest.importorskip("onnx", reason="pip install 'wseg[export]'")
    ort = pytest.importorskip("onnxruntime", reason="pip install 'wseg[export]'")
    out = tmp_path / "model.onnx"
    main(["export", str(checkpoints["supervised"]), "--format", "onnx", "--out", str(out),
          "--height", "64", "--width", "64"])  # fmt: skip
    graph = onnx.load(str(out)).graph
    assert [i.name for i in graph.input] == ["image"] and graph.output[0].name == "logits"
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        for shape in ((2, 3, 64, 64), (1, 3, 96, 64), (3, 3, 64, 160)):
            image = torch.rand(*shape)
            expected = model.net(normalize(image, IMAGENET_MEAN, IMAGENET_STD)).numpy()
            (logits,) = session.run(None, {"image": image.numpy()})
            assert logits.shape == expected.shape
            assert np.allclose(logits, expected, atol=1e-4), shape


def test_other_commands_go_to_the_lightning_cli(monkeypatch, capsys) -> None:
    calls = []
    monkeypatch.setattr("wseg.cli.main", lambda args=None: calls.append(args))
    main(["fit", "--config", "experiment.yaml"])
    assert calls == [["fit", "--config", "experiment.yaml"]]
    assert capsys.readouterr().out == ""
    main(["--help"])
    assert calls[-1] == ["--help"] and "{segment,export} --help" in capsys.readouterr().out


def test_python_m_wseg_dispatches_segment() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "wseg", "segment", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0 and "--overwrite" in result.stdout and "--tta" in result.stdout
