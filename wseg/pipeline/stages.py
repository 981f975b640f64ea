"""The stage machinery of `wseg.pipeline`: one ``python -m wseg fit`` run per stage, restartable.

A stage whose ``final.ckpt`` exists is skipped, so an interrupted chain resumes at its first
unfinished stage. Each stage writes, in its own folder, the config it ran with, its logs,
``final.ckpt`` and ``metrics.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from lightning.pytorch import Callback, LightningModule, Trainer

from wseg.data.strong_split import load_split
from wseg.errors import WsegError

FINAL = "final.ckpt"
METRICS = "metrics.json"
STAGE_RECORD = "stage.json"
SWEEP_ENV = ("WANDB_RUN_ID", "WANDB_SWEEP_ID", "WANDB_SWEEP_PARAM_PATH")
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


def parse_stage_overrides(args: Sequence[str]) -> dict[str, list[str]]:
    """Group ``--STAGE.KEY=VALUE`` (or ``--STAGE.KEY VALUE``) arguments by stage.

    ``--conv.model.init_args.alpha_start=20`` becomes ``{"conv": ["--model.init_args.alpha_start",
    "20"]}``: an argument for that stage's ``python -m wseg fit`` only (what a W&B sweep varies).

    Args:
        args: The arguments.

    Returns:
        Each stage's arguments, in order.

    Raises:
        ValueError: For an argument of another form, or one without a value.

    """
    overrides: dict[str, list[str]] = {}
    items = list(args)
    index = 0
    while index < len(items):
        item = items[index]
        stage, dot, key = item[2:].partition(".")
        if not item.startswith("--") or not dot or not stage or not key:
            raise ValueError(
                f"unrecognised argument {item!r}: stage arguments are --STAGE.KEY=VALUE (e.g. "
                "--conv.model.init_args.alpha_start=20); arguments for every stage go after --"
            )
        key, equals, value = key.partition("=")
        if not equals:
            if index + 1 >= len(items) or items[index + 1].startswith("--"):
                raise ValueError(f"{item} has no value")
            index += 1
            value = items[index]
        overrides.setdefault(stage, []).extend([f"--{key}", value])
        index += 1
    return overrides


def stage_config(
    stage: Stage,
    setting_name: str,
    out: Path,
    splits: dict[str, Path] | None = None,
    folders: Mapping[str, str] | None = None,
) -> dict:
    """The stage's experiment config with its split, inputs, output folder and final checkpoint.

    Args:
        stage: The stage.
        setting_name: Name used in the run's name.
        out: The chain's folder (the stage writes to ``out/<folder>``).
        splits: The chain's id lists by name, for stages with a ``split``.
        folders: Stage name -> folder, for stages that ran elsewhere than ``out/<name>``.

    Returns:
        The config, ready to write and pass to ``python -m wseg fit --config``.

    """
    folders = folders or {}
    config = load_config(stage.config)
    folder = folders.get(stage.name, stage.name)
    stage_dir = out / folder
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
        model[key] = str(out / folders.get(source, source) / FINAL)
    trainer = config.setdefault("trainer", {})
    trainer["default_root_dir"] = str(stage_dir)
    logger = trainer.get("logger")
    if isinstance(logger, dict) and "init_args" in logger:
        logger["init_args"].update(save_dir=str(stage_dir), name=f"{setting_name}_{folder}")
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


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(tree, dict):
        return {prefix: tree}
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        flat.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def _finished_with_other_plan(stage_dir: Path, planned: dict[str, Any]) -> bool:
    """Whether ``stage_dir`` holds a finished run whose recorded settings differ from ``planned``.

    Runs from before the record existed count as the same plan.
    """
    record = stage_dir / STAGE_RECORD
    if not (stage_dir / FINAL).exists() or not record.exists():
        return False
    return _flatten(json.loads(record.read_text())) != _flatten(planned)


def _plan(
    stage: Stage,
    setting_name: str,
    out: Path,
    splits: dict[str, Path] | None,
    folders: dict[str, str],
    overrides: list[str],
) -> dict[str, Any]:
    """What a stage would run with: its config (in ``folders[stage.name]``) and its overrides."""
    config = stage_config(stage, setting_name, out, splits, folders)
    return {"config": config, "overrides": overrides}


def _plan_hash(planned: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(planned, sort_keys=True).encode()).hexdigest()[:8]


def stage_environment(last: bool) -> dict[str, str]:
    """The environment of a stage's process: a W&B sweep run is joined by the last stage only.

    A W&B sweep agent starts the pipeline with ``WANDB_RUN_ID``/``WANDB_SWEEP_ID`` set; if every
    stage inherited them, each would log into the one sweep run. Earlier stages get their own runs.
    """
    env = dict(os.environ)
    if not last:
        for key in SWEEP_ENV:
            env.pop(key, None)
    return env


class StageError(WsegError, RuntimeError):
    """A stage's fit failed (its own message is above it); rerunning the chain retries it."""


def run_stages(
    stages: Sequence[Stage],
    setting_name: str,
    out: Path,
    splits: dict[str, Path] | None = None,
    extra: Sequence[str] = (),
    dry_run: bool = False,
    overrides: Mapping[str, Sequence[str]] | None = None,
    sweep_stage: bool = True,
) -> dict[str, dict[str, Any]]:
    """Run every stage without a ``final.ckpt`` as ``python -m wseg fit``, in order.

    A stage runs in ``out/<name>``. If that folder holds a finished run of other settings (its
    config, checkpoint inputs included, or its overrides; the ``extra`` arguments are not
    compared), the stage runs in ``out/<name>-<hash8>`` instead: a changed YAML or a sweep's
    ``--STAGE.KEY`` value never reuses, nor overwrites, a finished run of other settings, and the
    stages after it follow into folders of their own because their inputs changed.

    Args:
        stages: The chain.
        setting_name: Name used in run names.
        out: The setting's folder.
        splits: The id lists the stages train on, by name (None: the stages name none).
        extra: Arguments appended to every stage's command (e.g. ``--trainer.devices 4``).
        dry_run: Print the commands instead of running them.
        overrides: Arguments for single stages, by stage name (`parse_stage_overrides`).
        sweep_stage: Under a W&B sweep agent, the last stage joins the sweep's run (False: no
            stage does; for every call but the last of a chain that calls this several times).

    Returns:
        For each finished stage (one with its ``final.ckpt``), ``metrics.json`` (the last logged
        metrics, ``global_step`` and ``wall_s``, the stage's wall time in seconds) where it was
        written, and ``stage_dir``, the folder it ran in.

    Raises:
        ValueError: If ``overrides`` names a stage that is not in the chain.
        RuntimeError: If a stage fails or ends without its final checkpoint.

    """
    overrides = dict(overrides or {})
    names = [stage.name for stage in stages]
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise ValueError(f"overrides for {unknown}, which are not stages of this chain: {names}")
    folders: dict[str, str] = {}
    results: dict[str, dict[str, Any]] = {}
    for stage in stages:
        own = list(overrides.get(stage.name, ()))
        folders[stage.name] = stage.name
        planned = _plan(stage, setting_name, out, splits, folders, own)
        if _finished_with_other_plan(out / stage.name, planned):
            folders[stage.name] = f"{stage.name}-{_plan_hash(planned)}"
            moved = folders[stage.name]
            print(f"[pipeline] {stage.name}: {out / stage.name} ran other settings; using {moved}")
            planned = _plan(stage, setting_name, out, splits, folders, own)
        folder = folders[stage.name]
        stage_dir = out / folder
        final = stage_dir / FINAL
        config = planned["config"]
        if final.exists():
            print(f"[pipeline] {stage.name}: done ({final}), skipped", flush=True)
        else:
            stage_dir.mkdir(parents=True, exist_ok=True)
            path = stage_dir / "config.yaml"
            path.write_text(yaml.safe_dump(config, sort_keys=False))
            (stage_dir / STAGE_RECORD).write_text(json.dumps(planned, indent=2))
            command = [sys.executable, "-m", "wseg", "fit", "--config", str(path), *extra, *own]
            print(f"[pipeline] {stage.name}: {' '.join(command)}", flush=True)
            if dry_run:
                continue
            start = time.perf_counter()
            env = stage_environment(last=sweep_stage and stage is stages[-1])
            code = subprocess.run(command, check=False, env=env).returncode
            if code != 0 or not final.exists():
                raise StageError(
                    f"stage {stage.name!r} failed (exit code {code}, {final} "
                    f"{'present' if final.exists() else 'missing'}); its config is {path}; "
                    "rerun the same command to retry from this stage"
                )
            _record_wall_time(stage_dir / METRICS, time.perf_counter() - start)
        if final.exists():
            metrics = stage_dir / METRICS
            recorded = json.loads(metrics.read_text()) if metrics.exists() else {}
            results[stage.name] = {**recorded, "stage_dir": str(stage_dir)}
    return results


def setting_named(settings: Mapping[str, Any], name: str, command: str) -> Any:
    """The setting ``name`` of a chain's table, or a ValueError listing the chain's settings."""
    if name not in settings:
        raise ValueError(f"{command}: no setting {name!r}; the settings are {sorted(settings)}")
    return settings[name]


def run_and_report(
    stages: Sequence[Stage],
    setting_name: str,
    out: Path,
    splits: dict[str, Path] | None = None,
    extra: Sequence[str] = (),
    dry_run: bool = False,
    overrides: Mapping[str, Sequence[str]] | None = None,
    metric: str = "val/miou",
) -> dict[str, dict[str, Any]]:
    """`run_stages`, then `report`: the last step every chain shares."""
    results = run_stages(stages, setting_name, out, splits, extra, dry_run, overrides)
    report(results, metric)
    return results


def report(results: dict[str, dict[str, Any]], metric: str = "val/miou") -> None:
    """Print one line per stage with its final ``metric``."""
    for name, metrics in results.items():
        value = metrics.get(metric)
        print(f"[pipeline] {name:>15}: {metric} {'n/a' if value is None else f'{value:.4f}'}")
