"""The test set-up installs the ``export`` extra, pinned, so the ONNX comparison test runs."""

import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

REPO = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_export_extra_is_pinned_and_installed_by_make() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    extra = pyproject["project"]["optional-dependencies"]["export"]
    assert {_name(r) for r in extra} == {"onnx", "onnxscript", "onnxruntime"}
    pins = {
        _name(line): line.split("==")[1]
        for line in (REPO / "constraints.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    }
    assert all(_name(r) in pins for r in extra), sorted(set(map(_name, extra)) - set(pins))
    assert "-e '.[dev,export]'" in (REPO / "Makefile").read_text()
    assert "-e '.[dev,export]'" in (REPO / "README.md").read_text()


def test_the_export_extra_is_installed_here() -> None:
    # the ONNX comparison test in test_inference.py must run, not skip, in the pinned set-up
    import onnx
    import onnxruntime
    import onnxscript

    assert onnx.__version__ and onnxruntime.__version__ and onnxscript.__version__
