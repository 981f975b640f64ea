"""The stage machinery of `wseg.pipeline`: one ``python -m wseg fit`` run per stage, restartable.

A stage whose ``final.ckpt`` exists is skipped, so an interrupted chain resumes at its first
unfinished stage. Each stage writes, in its own folder, the config it ran with, its logs,
``final.ckpt`` and ``metrics.json``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from lightning.pytorch import Callback, LightningModule, Trainer

from wseg.data.weak import load_split

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"
FINAL = "final.ckpt"
METRICS = "metrics.json"
SPLIT_KEYS = (
    "num_strong",
    "strong_fraction",
    "strong_split_file",
    "strong_only",
    "strong_per_batch",
)


class StageCheckpoint(Callback):
    """Write the final weights and metrics of a run that finished training (not on interrupts).

    The file is written under a temporary name and renamed, so it exists only for complete runs:
    the pipeline takes its presence as "stage done".

    Args:
        path: Where the final checkpoint goes; ``metrics.json`` (the last logged metrics) is
            written beside it.

    """

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Save ``path`` and ``metrics.json`` unless training was interrupted."""
        if trainer.interrupted:
            return
        temporary = self.path.with_name(self.path.name + ".tmp")
        trainer.save_checkpoint(temporary)  # collective: every rank calls, rank 0 writes
        trainer.strategy.barrier()
        if trainer.is_global_zero:
            metrics = {key: float(value) for key, value in trainer.callback_metrics.items()}
            metrics["global_step"] = trainer.global_step
            (self.path.parent / METRICS).write_text(json.dumps(metrics, indent=2, sort_keys=True))
            os.replace(temporary, self.path)


@dataclass(frozen=True)
class Stage:
    """One run of a chain.

    Args:
        name: Stage name (its folder under the setting's folder).
        config: The experiment YAML it runs.
        split: Which of the chain's id lists is its F (e.g. ``strong`` or ``ancillary_half``);
            None leaves the config's own split settings alone.
        strong_only: Train on F only.
        model_args: Fixed ``model.init_args`` values.
        data_args: Fixed ``data.init_args`` values (e.g. a pseudo-label store).
        inputs: ``model.init_args`` names set to the ``final.ckpt`` of the named earlier stage.

    """

    name: str
    config: Path
    split: str | None = "strong"
    strong_only: bool = False
    model_args: dict[str, Any] = field(default_factory=dict)
    data_args: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, str] = field(default_factory=dict)


def load_config(path: Path) -> dict[str, Any]:
    """An experiment YAML as a dict, with a ``data: <fragment>.yaml`` reference inlined."""
    if not path.is_file():
        raise FileNotFoundError(f"experiment config not found: {path}")
    config = yaml.safe_load(path.read_text())
    if isinstance(config.get("data"), str):
        config["data"] = yaml.safe_load((path.parent / config["data"]).read_text())
    return config


def data_overrides(extra: Sequence[str]) -> dict[str, Any]:
    """The ``--data.init_args.KEY VALUE`` (or ``=VALUE``) arguments among ``extra``, parsed."""
    prefix = "--data.init_args."
    found: dict[str, Any] = {}
    items = list(extra)
    for index, item in enumerate(items):
        if not item.startswith(prefix):
            continue
        key, equals, value = item[len(prefix) :].partition("=")
        if not equals:
            if index + 1 >= len(items):
                raise ValueError(f"{item} has no value")
            value = items[index + 1]
        found[key] = yaml.safe_load(value)
    return found


def stage_config(
    stage: Stage, setting_name: str, out: Path, splits: dict[str, Path] | None = None
) -> dict:
    """The stage's experiment config with its split, inputs, output folder and final checkpoint.

    Args:
        stage: The stage.
        setting_name: Name used in the run's name.
        out: The chain's folder (the stage writes to ``out/<stage.name>``).
        splits: The chain's id lists by name, for stages with a ``split``.

    Returns:
        The config, ready to write and pass to ``python -m wseg fit --config``.

    """
    config = load_config(stage.config)
    stage_dir = out / stage.name
    data = config["data"].setdefault("init_args", {})
    if stage.split is not None:
        if not splits or stage.split not in splits:
            raise ValueError(f"stage {stage.name!r} trains on split {stage.split!r}, not given")
        split_file = splits[stage.split]
        for key in SPLIT_KEYS:
            data.pop(key, None)
        data.update(
            strong_split_file=str(split_file),
            num_strong=len(load_split(split_file)),
            strong_only=stage.strong_only,
        )
    data.update(stage.data_args)
    model = config["model"].setdefault("init_args", {})
    model.update(stage.model_args)
    for key, source in stage.inputs.items():
        model[key] = str(out / source / FINAL)
    trainer = config.setdefault("trainer", {})
    trainer["default_root_dir"] = str(stage_dir)
    logger = trainer.get("logger")
    if isinstance(logger, dict) and "init_args" in logger:
        logger["init_args"].update(save_dir=str(stage_dir), name=f"{setting_name}_{stage.name}")
    callbacks = trainer.get("callbacks") or []
    callbacks.append(
        {
            "class_path": "wseg.pipeline.stages.StageCheckpoint",
            "init_args": {"path": str(stage_dir / FINAL)},
        }
    )
    trainer["callbacks"] = callbacks
    return config


def _record_wall_time(path: Path, seconds: float) -> None:
    """Add the stage's wall time (process start to exit) to its ``metrics.json``."""
    metrics = json.loads(path.read_text()) if path.exists() else {}
    metrics["wall_s"] = round(seconds, 1)
    path.write_text(json.dumps(metrics, indent=2, sort_keys=True))


def run_stages(
    stages: Sequence[Stage],
    setting_name: str,
    out: Path,
    splits: dict[str, Path] | None = None,
    extra: Sequence[str] = (),
    dry_run: bool = False,
) -> dict[str, dict[str, float]]:
    """Run every stage without a ``final.ckpt`` as ``python -m wseg fit``, in order.

    Args:
        stages: The chain.
        setting_name: Name used in run names.
        out: The setting's folder.
        splits: The id lists the stages train on, by name (None: the stages name none).
        extra: Arguments appended to every stage's command (e.g. ``--trainer.devices 4``).
        dry_run: Print the commands instead of running them.

    Returns:
        The final metrics of each finished stage (``metrics.json``: the last logged metrics,
        ``global_step``, and ``wall_s``, the stage's wall time in seconds).

    Raises:
        RuntimeError: If a stage fails or ends without its final checkpoint.

    """
    results: dict[str, dict[str, float]] = {}
    for stage in stages:
        stage_dir = out / stage.name
        final = stage_dir / FINAL
        if final.exists():
            print(f"[pipeline] {stage.name}: done ({final}), skipped", flush=True)
        else:
            stage_dir.mkdir(parents=True, exist_ok=True)
            path = stage_dir / "config.yaml"
            config = stage_config(stage, setting_name, out, splits)
            path.write_text(yaml.safe_dump(config, sort_keys=False))
            command = [sys.executable, "-m", "wseg", "fit", "--config", str(path), *extra]
            print(f"[pipeline] {stage.name}: {' '.join(command)}", flush=True)
            if dry_run:
                continue
            start = time.perf_counter()
            code = subprocess.run(command, check=False).returncode
            if code != 0 or not final.exists():
                raise RuntimeError(
                    f"stage {stage.name!r} failed (exit code {code}, {final} "
                    f"{'present' if final.exists() else 'missing'}); its config is {path}; "
                    "rerun the same command to retry from this stage"
                )
            _record_wall_time(stage_dir / METRICS, time.perf_counter() - start)
        metrics = stage_dir / METRICS
        if metrics.exists():
            results[stage.name] = json.loads(metrics.read_text())
    return results


def report(results: dict[str, dict[str, float]], metric: str = "val/miou") -> None:
    """Print one line per stage with its final ``metric``."""
    for name, metrics in results.items():
        value = metrics.get(metric)
        print(f"[pipeline] {name:>15}: {metric} {'n/a' if value is None else f'{value:.4f}'}")
