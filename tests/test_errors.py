"""Bad input on the command line: one clear message, a non-zero exit, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from wseg.cli import main
from wseg.errors import TRACEBACK_VARIABLE, run_command
from wseg.pipeline.stages import StageError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _bare_argv(monkeypatch) -> None:
    monkeypatch.setattr(sys, "argv", ["wseg"])


def tiny_config(tmp_path: Path, **model: object) -> Path:
    config = tmp_path / "experiment.yaml"
    data = {"dataset": "synthetic", "root": str(tmp_path / "synthetic"), "num_workers": 0}
    data |= {"synthetic_num_train": 2, "synthetic_num_val": 1, "synthetic_size": [64, 64]}
    config.write_text(
        yaml.safe_dump(
            {
                "model": {
                    "class_path": "Supervised",
                    "init_args": {"encoder": "tu-mobilenetv3_small_050", **model},
                },
                "data": {"class_path": "WeakSegDataModule", "init_args": data},
                "trainer": {"max_steps": 1, "accelerator": "cpu", "logger": False},
            }
        )
    )
    return config


def wseg(*args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "OMP_NUM_THREADS": "1", **env}
    return subprocess.run(
        [sys.executable, "-m", "wseg", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=environment,
        timeout=300,
    )


def test_an_option_error_is_one_message_without_traceback_unless_asked(tmp_path) -> None:
    config = tiny_config(tmp_path, lr=-0.01)
    result = wseg("fit", "--config", str(config))
    assert result.returncode == 1
    assert "python -m wseg fit: error: model.init_args.lr must be a positive number" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr
    shown = wseg("fit", "--config", str(config), **{TRACEBACK_VARIABLE: "1"})
    assert shown.returncode == 1 and "Traceback" in shown.stderr
    assert not (tmp_path / "synthetic").exists()  # stopped before any data was made or read


def test_a_data_check_error_is_one_message_without_traceback(tmp_path) -> None:
    config = tiny_config(tmp_path)
    args = ["--data.init_args.dataset", "voc", "--data.init_args.root", str(tmp_path / "none")]
    result = wseg("fit", "--config", str(config), *args)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "python -m wseg fit: error: the data check found problems" in result.stderr


def test_numeric_options_are_checked_before_any_data_is_read(tmp_path) -> None:
    """from_data reads the VOC XMLs when the datamodule is built: the lr error comes first."""
    config = tiny_config(tmp_path, momentum=1.5, head_lr_mult=0)
    voc = ["--data.init_args.dataset", "voc", "--data.init_args.root", str(tmp_path / "none")]
    voc += ["--data.init_args.class_names", "from_data"]
    with pytest.raises(ValueError) as error:
        main(["fit", "--config", str(config), *voc])
    assert str(error.value) == (
        "model.init_args.momentum must be in [0, 1), got 1.5; "
        "model.init_args.head_lr_mult must be positive, got 0.0"
    )


def test_yaml_syntax_errors_name_the_file(tmp_path, capsys) -> None:
    config = tmp_path / "broken.yaml"
    config.write_text("model:\n  class_path: Supervised\n  init_args: {lr: 0.1\ndata: x\n")
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(config)])
    err = capsys.readouterr().err
    assert f'in "{config}", line 3' in err and "<unicode string>" not in err
    fragment = tmp_path / "data_broken.yaml"
    fragment.write_text("class_path: WeakSegDataModule\ninit_args: {root: [\n")
    config.write_text("model:\n  class_path: Supervised\ndata: data_broken.yaml\n")
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(config)])
    err = capsys.readouterr().err
    assert "data_broken.yaml" in err and "<unicode string>" not in err


def test_run_command_prints_clean_errors_and_passes_others(capsys, monkeypatch) -> None:
    def bad() -> None:
        raise FileNotFoundError("split list x.txt not found")

    with pytest.raises(SystemExit) as exit_info:
        run_command("python -m wseg.labels", bad)
    assert exit_info.value.code == 1
    assert capsys.readouterr().err.startswith(
        "python -m wseg.labels: error: split list x.txt not found\n"
    )

    def failed_stage() -> None:
        raise StageError("stage 'fit' failed (exit code 1, final.ckpt missing)")

    with pytest.raises(SystemExit):
        run_command("python -m wseg.pipeline", failed_stage)
    assert "python -m wseg.pipeline: error: stage 'fit' failed" in capsys.readouterr().err
    with pytest.raises(ZeroDivisionError):  # a bug keeps its traceback
        run_command("python -m wseg.labels", lambda: 1 / 0)
    monkeypatch.setenv(TRACEBACK_VARIABLE, "1")
    with pytest.raises(FileNotFoundError):
        run_command("python -m wseg.labels", bad)


def test_generate_reports_a_missing_root_without_traceback(tmp_path) -> None:
    args = ["generate", "--dataset", "voc", "--root", str(tmp_path / "none"), "--generator", "rect"]
    result = subprocess.run(
        [sys.executable, "-m", "wseg.labels", *args, "--out", str(tmp_path / "stores")],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=300,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("python -m wseg.labels: error: VOC root ")
