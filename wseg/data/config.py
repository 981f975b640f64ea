"""The datamodule of an experiment YAML, built without the model or the trainer.

Used by the commands that read a run's data but do not train (``python -m wseg.data check``,
``python -m wseg.labels generate --config``), so they read exactly what ``fit`` would read. The
``data`` entry is parsed as LightningCLI parses it (jsonargparse, the same types and short class
names); a ``data: path.yaml`` include is resolved relative to the config file.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from jsonargparse import ArgumentParser
from lightning.pytorch import LightningDataModule


def _key_value(pair: str) -> tuple[list[str], Any]:
    key, sep, value = pair.partition("=")
    if not sep or not key:
        raise ValueError(f"overrides are KEY=VALUE (e.g. init_args.root=data/x), got {pair!r}")
    return key.split("."), yaml.safe_load(value)


def data_config(config: str | Path, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The ``data`` entry of an experiment YAML as a dict, includes resolved, overrides applied.

    Args:
        config: The experiment YAML.
        overrides: ``KEY=VALUE`` pairs under ``data`` (``init_args.root=data/x``), YAML values.

    Raises:
        FileNotFoundError: The config (or its data include) does not exist.
        ValueError: It is not a mapping with a ``data`` entry, or an override is malformed.

    """
    path = Path(config)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} not found")
    loaded = yaml.safe_load(path.read_text())
    if not isinstance(loaded, dict) or "data" not in loaded:
        raise ValueError(
            f"{path} has no 'data' entry (an experiment YAML has model, data, trainer)"
        )
    data = loaded["data"]
    if isinstance(data, str):
        include = (path.parent / data).resolve()
        if not include.is_file():
            raise FileNotFoundError(f"{path}: the data include {data!r} ({include}) not found")
        data = yaml.safe_load(include.read_text())
    if not isinstance(data, dict) or "class_path" not in data:
        raise ValueError(f"{path}: 'data' must have a class_path and init_args")
    data = {"class_path": data["class_path"], "init_args": dict(data.get("init_args") or {})}
    for pair in overrides:
        keys, value = _key_value(pair)
        target = data
        for key in keys[:-1]:
            target = target.setdefault(key, {})
        target[keys[-1]] = value
    return data


def datamodule_from_config(
    config: str | Path, overrides: Sequence[str] = ()
) -> LightningDataModule:
    """Instantiate the datamodule of an experiment YAML (see `data_config`).

    Raises:
        ValueError: The data entry does not parse (unknown argument, wrong type).

    """
    import wseg.data  # noqa: F401  (registers the datamodules for short class names)
    import wseg.data.box_crops  # noqa: F401

    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(LightningDataModule, "data")
    try:
        parsed = parser.parse_object({"data": data_config(config, overrides)})
    except Exception as error:  # jsonargparse raises its own ArgumentError subclasses
        raise ValueError(f"{config}: the data entry does not parse: {error}") from error
    return parser.instantiate(parsed).data
