"""The chains' settings table, `wseg/experiments/pipelines.yaml`, and its errors."""

from dataclasses import dataclass
from pathlib import Path

import pytest

import wseg.pipeline.settings as settings
from wseg.constants import EXPERIMENTS
from wseg.pipeline import commands
from wseg.pipeline.settings import load_settings


@dataclass(frozen=True)
class Pair:
    first: Path
    second: Path
    size: int = 1


def write(tmp_path: Path, monkeypatch, text: str) -> Path:
    path = tmp_path / "pipelines.yaml"
    path.write_text(text)
    monkeypatch.setattr(settings, "SETTINGS_FILE", path)
    return path


def test_every_chain_has_a_section_and_every_path_exists() -> None:
    for command, module in commands().items():
        assert module.SETTINGS, command
        assert "demo" in module.SETTINGS, command


def test_entries_become_dataclasses_with_resolved_paths(tmp_path: Path, monkeypatch) -> None:
    write(
        tmp_path,
        monkeypatch,
        "one:\n  a: demo/supervised.yaml\npair:\n"
        "  base: &b {first: demo/bbox_rect.yaml, second: demo/supervised.yaml}\n"
        "  big: {<<: *b, size: 3}\n",
    )
    assert load_settings("one") == {"a": EXPERIMENTS / "demo/supervised.yaml"}
    pairs = load_settings("pair", Pair)
    assert pairs["base"] == Pair(
        EXPERIMENTS / "demo/bbox_rect.yaml", EXPERIMENTS / "demo/supervised.yaml"
    )
    assert pairs["big"].size == 3 and pairs["big"].first == pairs["base"].first


def test_bad_entries_name_the_file_and_the_entry(tmp_path: Path, monkeypatch) -> None:
    path = write(
        tmp_path,
        monkeypatch,
        "pair:\n  typo: {first: demo/bbox_rect.yaml, secnd: demo/supervised.yaml}\n"
        "  short: {first: demo/bbox_rect.yaml}\n"
        "gone:\n  x: demo/nope.yaml\n"
        "flat:\n  x: {first: demo/bbox_rect.yaml}\n",
    )
    with pytest.raises(ValueError, match=rf"{path}: pair.typo has \['secnd'\]"):
        load_settings("pair", Pair)
    with pytest.raises(FileNotFoundError, match=rf"{path}: gone.x names demo/nope.yaml"):
        load_settings("gone")
    with pytest.raises(ValueError, match="flat.x must be one experiment YAML"):
        load_settings("flat")
    with pytest.raises(KeyError, match="no section 'missing'"):
        load_settings("missing")
    write(tmp_path, monkeypatch, "pair:\n  short: {first: demo/bbox_rect.yaml}\n")
    with pytest.raises(ValueError, match="pair.short: .*second"):
        load_settings("pair", Pair)
