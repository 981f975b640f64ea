"""The wheel carries what the pipelines need: built, installed outside the checkout, run there."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]

# Run in the installed copy: every chain's every setting names YAMLs that exist inside it.
CHECK_SETTINGS = r"""
import dataclasses, sys
from pathlib import Path
import wseg
from wseg.pipeline import commands

site = Path(sys.argv[1]).resolve()
assert Path(wseg.__file__).resolve().is_relative_to(site), wseg.__file__

def paths(value):
    if isinstance(value, Path):
        yield value
    elif dataclasses.is_dataclass(value):
        for field in dataclasses.fields(value):
            yield from paths(getattr(value, field.name))
    elif isinstance(value, dict):
        for item in value.values():
            yield from paths(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from paths(item)

count = 0
for name, module in commands().items():
    for setting, value in module.SETTINGS.items():
        for path in paths(value):
            assert path.resolve().is_relative_to(site), (name, setting, path)
            assert path.is_file(), (name, setting, path)
            count += 1
print("yaml files checked:", count)
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """wseg built as a wheel from a copy of the package and installed into a folder of its own."""
    root = tmp_path_factory.mktemp("packaging")
    source = root / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(
        REPO / "wseg", source / "wseg", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    wheels = root / "wheels"
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(source)],
        check=True,
        cwd=root,
    )
    (wheel,) = wheels.glob("wseg-*.whl")
    site = root / "site"
    subprocess.run(
        [*pip, "install", "--no-deps", "--no-index", "--target", str(site), str(wheel)],
        check=True,
        cwd=root,
    )
    return site


def run_installed(site: Path, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site), "WANDB_MODE": "offline"}
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_every_setting_of_every_chain_finds_its_yamls_in_the_installed_wheel(
    installed: Path, tmp_path: Path
) -> None:
    done = run_installed(installed, ["-c", CHECK_SETTINGS, str(installed)], tmp_path)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.split(":")[-1]) > 40


def test_a_chain_runs_from_the_installed_wheel_outside_the_checkout(
    installed: Path, tmp_path: Path
) -> None:
    args = ["-m", "wseg.pipeline", "box2seg", "--setting", "demo", "--out", "runs", "--dry-run"]
    done = run_installed(installed, args, tmp_path)
    assert done.returncode == 0, done.stderr
    packaged = installed / "wseg" / "experiments" / "demo"
    for stage, yaml_name in (("pretrain", "box2seg_pretrain.yaml"), ("main", "box2seg.yaml")):
        written = yaml.safe_load((tmp_path / "runs" / "demo" / stage / "config.yaml").read_text())
        experiment = yaml.safe_load((packaged / yaml_name).read_text())
        assert written["model"]["class_path"] == experiment["model"]["class_path"]
        assert f"--config runs/demo/{stage}/config.yaml" in done.stdout


def test_the_checkouts_experiments_folder_is_the_packaged_one() -> None:
    assert (REPO / "experiments").resolve() == (REPO / "wseg" / "experiments").resolve()
