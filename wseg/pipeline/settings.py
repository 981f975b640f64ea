"""The named settings of the chains, read from ``wseg/experiments/pipelines.yaml``.

A setting is what ``--setting NAME`` picks: the experiment YAMLs of a chain's stages on one dataset
and the chain's defaults there. The table is data beside the experiments it names, so a new
dataset needs a YAML entry, not code; each chain module turns its entries into its own
``Setting`` dataclass (or a path) with `load_settings`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml

from wseg.constants import EXPERIMENTS

__all__ = ["SETTINGS_FILE", "load_settings"]

SETTINGS_FILE = EXPERIMENTS / "pipelines.yaml"


def _resolve(value: Any, where: str) -> Any:
    """Experiment paths (``*.yaml`` under `EXPERIMENTS`) as checked `Path`s; lists as tuples."""
    if isinstance(value, dict):
        return {key: _resolve(item, f"{where}.{key}") for key, item in value.items()}
    if isinstance(value, list):
        return tuple(_resolve(item, where) for item in value)
    if isinstance(value, str) and value.endswith(".yaml"):
        path = EXPERIMENTS / value
        if not path.is_file():
            raise FileNotFoundError(
                f"{SETTINGS_FILE}: {where} names {value}, which is not in {EXPERIMENTS}"
            )
        return path
    return value


def load_settings(command: str, setting_type: type | None = None) -> dict[str, Any]:
    """The settings of one chain, by name.

    Args:
        command: The chain's ``COMMAND`` (its section of the file).
        setting_type: The chain's ``Setting`` dataclass, built from each entry's keys; None: each
            entry is one experiment path.

    Raises:
        KeyError: The file has no section ``command``.
        ValueError: An entry has keys the dataclass does not take, or lacks one it needs.
        FileNotFoundError: An entry names an experiment YAML that does not exist.

    """
    sections = yaml.safe_load(SETTINGS_FILE.read_text())
    if command not in sections:
        raise KeyError(f"{SETTINGS_FILE}: no section {command!r}; it has {sorted(sections)}")
    settings = {}
    for name, entry in sections[command].items():
        where = f"{command}.{name}"
        value = _resolve(entry, where)
        if setting_type is not None:
            fields = {field.name for field in dataclasses.fields(setting_type)}
            if not isinstance(value, dict) or set(value) - fields:
                extra = sorted(set(value) - fields) if isinstance(value, dict) else value
                raise ValueError(
                    f"{SETTINGS_FILE}: {where} has {extra}; the keys are {sorted(fields)}"
                )
            try:
                value = setting_type(**value)
            except TypeError as error:
                raise ValueError(f"{SETTINGS_FILE}: {where}: {error}") from None
        elif not isinstance(value, Path):
            raise ValueError(f"{SETTINGS_FILE}: {where} must be one experiment YAML, not {entry!r}")
        settings[name] = value
    return settings
