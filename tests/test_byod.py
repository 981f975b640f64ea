"""The README's "Bring your own data" walk-through, run as written on a tiny box-only COCO JSON.

The dataset is the user's layout (``data/my_dataset``: JPEGs, a training JSON with boxes only and
categories no built-in class list has, a validation JSON with masks, a folder of new photos),
made from generated synthetic images. Every ``python -m`` line of the README's block runs as a
subprocess in a fresh folder; the placeholders the README explains (``<hash>``, ``<run id>``,
``<epoch>``) are filled in from what the previous command wrote, and the fit gets a tiny budget.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tiny_data import BYOD_CATEGORIES, write_box_only_coco

from wseg.cli import main
from wseg.data.check import DataCheckError
from wseg.data.synthetic import generate_synthetic
from wseg.labels.__main__ import main as labels_main

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "experiments" / "byod" / "coco_boxes.yaml"
TINY_FIT = [
    "--trainer.max_epochs", "1",
    "--data.init_args.crop_size", "64",
    "--data.init_args.batch_size", "2",
    "--data.init_args.num_workers", "0",
    "--trainer.enable_progress_bar", "false",
]  # fmt: skip


def readme_commands() -> list[str]:
    """The ``python -m`` lines of the README block after the ``byod-walkthrough`` marker."""
    text = (REPO / "README.md").read_text()
    start = text.index("<!-- byod-walkthrough")
    block = text[text.index("```", start) + 3 :]
    block = block[: block.index("```")]
    return [line.strip() for line in block.splitlines() if line.strip().startswith("python -m")]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    synthetic = generate_synthetic(
        tmp_path_factory.mktemp("synthetic"), num_train=6, num_val=2, size=(64, 64), seed=0
    )
    work = tmp_path_factory.mktemp("byod")
    write_box_only_coco(synthetic, work / "data" / "my_dataset", photos=2)
    return work


def fill_in(command: str, work: Path) -> list[str]:
    """The README command as argv, with its placeholders resolved in ``work``."""
    if "<hash>" in command:
        (store,) = (work / "data" / "pseudo").glob("grabcut-*")
        command = re.sub(r"data/pseudo/grabcut-<hash>", str(store), command)
    if "<run id>" in command:
        (checkpoint,) = (work / "runs").glob("wseg/*/checkpoints/*.ckpt")
        command = re.sub(r"\S*<run id>\S*", str(checkpoint), command)
    argv = shlex.split(command)
    assert argv[:2] == ["python", "-m"], command
    argv = [sys.executable, *argv[1:]]
    argv = [str(REPO / a) if a.startswith("experiments/") else a for a in argv]
    if argv[3] == "fit":
        argv += TINY_FIT
    return argv


@pytest.mark.xdist_group("byod")
def test_readme_walkthrough_box_only_coco_with_own_classes(workdir, tmp_path, monkeypatch) -> None:
    commands = readme_commands()
    assert [c.split()[2] for c in commands] == ["wseg.data", "wseg.labels", "wseg", "wseg"]
    outputs = []
    for command in commands:
        done = subprocess.run(
            fill_in(command, workdir), cwd=workdir, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        outputs.append(done.stdout)
    names = ["background", *BYOD_CATEGORIES.values()]
    assert f"classes (7, background first): {', '.join(names)}" in outputs[0]
    assert "validation" not in outputs[0] or "no masks" not in outputs[0]  # val has masks
    assert "quality not measured: no image of the split has a mask" in outputs[1]
    (saved,) = (workdir / "runs").glob("wseg/*/class_names.txt")
    assert saved.read_text().split() == names
    predictions = sorted((workdir / "predictions").glob("*.png"))
    assert [p.name for p in predictions] == ["photo_0.png", "photo_1.png"]
    label = np.array(Image.open(predictions[0]))
    assert label.shape == (64, 64) and label.max() < len(names)
    assert len(list((workdir / "predictions" / "overlays").glob("*.png"))) == 2
    # The LightningCLI's predict on the same images-only folder gives the same labels.
    (checkpoint,) = (workdir / "runs").glob("wseg/*/checkpoints/*.ckpt")
    photos = workdir / "data" / "my_dataset" / "new_photos"
    monkeypatch.chdir(tmp_path)
    main([
        "predict", "--config", str(CONFIG), "--ckpt_path", str(checkpoint),
        "--data.init_args.root", str(workdir / "data" / "my_dataset"),
        "--data.init_args.predict_images", str(photos),
        "--prediction_writer.output_dir", str(workdir / "predict"),
        "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
    ])  # fmt: skip
    again = np.array(Image.open(workdir / "predict" / "photo_0.png"))
    assert (again == label).mean() > 0.99
    assert not (tmp_path / "config.yaml").exists()  # a predict makes no run folder


@pytest.mark.xdist_group("byod")
def test_fit_checks_the_data_before_any_run_starts(workdir, tmp_path) -> None:
    broken = tmp_path / "data" / "my_dataset"
    shutil.copytree(workdir / "data" / "my_dataset", broken)
    (broken / "train" / "train_002.jpg").write_bytes(b"\xff\xd8 broken")
    args = [
        "fit", "--config", str(CONFIG),
        "--data.init_args.root", str(broken),
        "--trainer.logger.init_args.save_dir", str(tmp_path / "runs"),
        *TINY_FIT,
    ]  # fmt: skip
    with pytest.raises(DataCheckError, match=r"cannot decode image .*train_002\.jpg"):
        main(args)
    assert not (tmp_path / "runs").exists()  # no W&B run, no checkpoint folder


@pytest.mark.xdist_group("byod")
def test_generate_writes_nothing_when_the_check_fails(workdir, tmp_path, monkeypatch) -> None:
    shutil.copytree(workdir / "data" / "my_dataset", tmp_path / "data" / "my_dataset")
    (tmp_path / "data" / "my_dataset" / "train" / "train_004.jpg").unlink()
    monkeypatch.chdir(tmp_path)
    argv = ["generate", "--config", str(CONFIG), "--generator", "rect", "--out", "data/pseudo"]
    with pytest.raises(SystemExit, match=r"(?s)nothing written.*train_004\.jpg"):
        labels_main(argv)
    assert not (tmp_path / "data" / "pseudo").exists()
