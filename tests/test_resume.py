"""A fit killed with SIGKILL continues in its own run folder and W&B run when rerun as it was."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import torch
import yaml

from wseg.data.synthetic import generate_synthetic
from wseg.runs import last_checkpoint

EPOCHS, STEPS_PER_EPOCH = 8, 4


def write_config(tmp_path: Path, wandb: bool = True) -> Path:
    root = generate_synthetic(tmp_path / "synthetic", num_train=8, num_val=1, size=(64, 64))
    data = {"dataset": "synthetic", "root": str(root), "synthetic_num_train": 8}
    data |= {"synthetic_num_val": 1, "synthetic_size": [64, 64], "crop_size": 64}
    data |= {"batch_size": 2, "num_workers": 0}
    logger = {"project": "p", "save_dir": str(tmp_path / "runs"), "offline": True}
    config = {
        "model": {
            "class_path": "Supervised",
            "init_args": {"encoder": "tu-mobilenetv3_small_050", "log_images_every_n_epochs": 0},
        },
        "data": {"class_path": "WeakSegDataModule", "init_args": data},
        "trainer": {
            "max_epochs": EPOCHS,
            "accelerator": "cpu",
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "logger": {"class_path": "lightning.pytorch.loggers.WandbLogger", "init_args": logger}
            if wandb
            else False,
            "default_root_dir": str(tmp_path),
            "callbacks": [
                {
                    "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                    "init_args": {"save_last": True, "monitor": "val/miou", "mode": "max"},
                }
            ],
        },
    }
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def command(config: Path) -> list[str]:
    return [sys.executable, "-m", "wseg", "fit", "--config", str(config)]


def environment(tmp_path: Path) -> dict[str, str]:
    """Each command on its own, as from a shell: no W&B service of this test process shared.

    (An in-process fit of an earlier test starts one and names it in ``WANDB_SERVICE``; the
    killed fit's run would stay "in use" there.)
    """
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}
    return {**env, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path)}


def run_folders(runs: Path) -> list[Path]:
    return sorted(
        p for p in runs.iterdir() if p.is_dir() and p.name not in (".wseg_resume", "wandb")
    )


@pytest.mark.parametrize(
    "wandb", [True, pytest.param(False, marks=pytest.mark.slow)], ids=["wandb", "no_logger"]
)
def test_a_killed_fit_continues_when_rerun_and_a_finished_one_is_not_retrained(
    tmp_path, wandb: bool
) -> None:
    config, env = write_config(tmp_path, wandb), environment(tmp_path)
    runs = tmp_path / "runs" / "p" if wandb else tmp_path / "runs"
    log = (tmp_path / "killed.log").open("w")
    process = subprocess.Popen(
        command(config), stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
    )
    deadline = time.monotonic() + 300
    last = None
    while time.monotonic() < deadline and process.poll() is None and last is None:
        found = list(runs.glob("*/checkpoints/last.ckpt"))
        last = found[0] if found and zipfile.is_zipfile(found[0]) else None  # written whole
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, (tmp_path / "killed.log").read_text()
    assert last is not None
    killed_at = torch.load(last, map_location="cpu", weights_only=False)["global_step"]
    assert 0 < killed_at < EPOCHS * STEPS_PER_EPOCH
    (folder,) = run_folders(runs)

    rerun = subprocess.run(command(config), capture_output=True, text=True, env=env, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"continuing the interrupted run in {folder}" in rerun.stderr
    assert f"Restoring states from the checkpoint path at {last}" in rerun.stderr
    assert run_folders(runs) == [folder]  # the same run folder, so the same W&B run id
    final = torch.load(last, map_location="cpu", weights_only=False)
    assert final["epoch"] == EPOCHS - 1 and final["global_step"] == EPOCHS * STEPS_PER_EPOCH
    state = next(v for k, v in final["callbacks"].items() if k.startswith("ModelCheckpoint"))
    assert 0.0 <= float(state["best_model_score"]) <= 1.0  # val/miou measured across both
    if wandb:  # both processes logged to the one W&B run
        offline = sorted(p.name for p in (tmp_path / "runs" / "wandb").glob("offline-run-*"))
        assert len(offline) == 2 and {name.rsplit("-", 1)[1] for name in offline} == {folder.name}

    again = subprocess.run(command(config), capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 1 and "Traceback" not in again.stderr
    assert "finished" in again.stderr and f"its folder is {folder}" in again.stderr
    assert "pass --resume false to start a new run" in again.stderr
    assert run_folders(runs) == [folder]


def test_the_checkpoint_resumed_from_is_the_last_whole_one(tmp_path) -> None:
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    assert last_checkpoint(tmp_path) is None
    torch.save({"epoch": 0}, folder / "epoch=0-step=4.ckpt")
    torch.save({"epoch": 1}, folder / "last.ckpt")
    assert last_checkpoint(tmp_path) == folder / "last.ckpt"
    data = (folder / "last.ckpt").read_bytes()
    (folder / "last.ckpt").write_bytes(data[: len(data) // 2])  # cut short by a kill
    assert last_checkpoint(tmp_path) == folder / "epoch=0-step=4.ckpt"


def test_resume_true_without_an_earlier_run_is_an_error(tmp_path) -> None:
    config, env = write_config(tmp_path), environment(tmp_path)
    result = subprocess.run(
        [*command(config), "--resume", "true"], capture_output=True, text=True, env=env
    )
    assert result.returncode == 1
    assert "--resume true: this config has no earlier run under" in result.stderr


pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_a_run_of_the_same_command_still_running_is_not_joined(tmp_path) -> None:
    """The record of a killed run names a dead process; a live one is refused, not resumed."""
    config, env = write_config(tmp_path), environment(tmp_path)
    first = subprocess.run(
        [*command(config), "--trainer.max_epochs", "1"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert first.returncode == 0, first.stderr[-2000:]
    (record,) = (tmp_path / "runs" / "p" / ".wseg_resume").glob("*.json")
    data = json.loads(record.read_text())
    assert data["status"] == "finished" and data["pid"] != os.getpid()
    record.write_text(json.dumps({**data, "status": "running", "pid": os.getpid()}))  # alive
    again = subprocess.run(
        [*command(config), "--trainer.max_epochs", "1"], capture_output=True, text=True, env=env
    )
    assert again.returncode == 1
    assert f"is running now (process {os.getpid()})" in again.stderr
