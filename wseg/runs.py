"""Where a run's own files go: the folder that holds its ``checkpoints/``.

``trainer.log_dir`` is that folder for the CSV and TensorBoard loggers, but with a W&B logger it is
the logger's ``save_dir``, shared by every run saved there: one run's config, overlays, predictions
and split list would silently replace another's. `run_dir` gives each W&B run its own folder,
``<save_dir>/<project>/<run id>/``, the one Lightning puts its checkpoints in.

A fit without a logger (``--trainer.logger false``, or ``fast_dev_run``, which turns the logger
off) has no such folder; Lightning would use ``default_root_dir``, by default the working
directory, where the next run's files would meet this one's. Such a run gets a new folder of its
own, ``<default_root_dir>/runs/run_<n>/`` (the first free ``n``), chosen once per trainer;
`use_run_dir_for_checkpoints` puts its checkpoints there too.

The records of `resume_record_path` let the command line find the run of a command again: a fit
killed mid-way is continued in its own folder (and W&B run) when the same command is rerun.
"""

from __future__ import annotations

import datetime
import json
import os
import zipfile
from pathlib import Path
from typing import Any

from lightning.pytorch import Trainer
from lightning.pytorch.loggers import WandbLogger

UNLOGGED_RUNS = "runs"
"""Folder under ``default_root_dir`` of the runs without a logger."""


def _unlogged_run_dir(trainer: Trainer) -> Path:
    """A new ``run_<n>`` folder under ``<default_root_dir>/runs``, created (claimed) once."""
    chosen = getattr(trainer, "_wseg_run_dir", None)
    if chosen is not None:
        return chosen
    parent = Path(trainer.default_root_dir) / UNLOGGED_RUNS
    parent.mkdir(parents=True, exist_ok=True)
    index = 0
    while True:
        folder = parent / f"run_{index}"
        try:
            folder.mkdir()
            break
        except FileExistsError:
            index += 1
    trainer._wseg_run_dir = folder  # type: ignore[attr-defined]
    return folder


def local_run_dir(trainer: Trainer) -> Path:
    """This run's folder, computed in this process only (use on rank 0; see `run_dir`)."""
    logger = trainer.logger
    if isinstance(logger, WandbLogger):
        root = Path(logger.save_dir or trainer.default_root_dir)
        return root / str(logger.name) / str(logger.version)
    if logger is not None and getattr(logger, "log_dir", None):
        return Path(logger.log_dir)
    return _unlogged_run_dir(trainer)


def run_dir(trainer: Trainer) -> Path:
    """This run's folder, the same on every process: a collective, call it on every DDP rank."""
    path = str(local_run_dir(trainer)) if trainer.is_global_zero else None
    return Path(trainer.strategy.broadcast(path, src=0))


def use_run_dir_for_checkpoints(trainer: Trainer) -> None:
    """Without a logger, save checkpoints in the run's folder (not ``default_root_dir``).

    Call it on every rank before the checkpoint callbacks' ``setup`` (Lightning runs those last);
    a ``ModelCheckpoint`` given its own ``dirpath`` keeps it.
    """
    logger = trainer.logger
    if isinstance(logger, WandbLogger) or (logger is not None and getattr(logger, "log_dir", None)):
        return
    folder = run_dir(trainer) / "checkpoints"
    for callback in trainer.checkpoint_callbacks:
        if getattr(callback, "dirpath", "") is None:
            callback.dirpath = str(folder)


RESUME_FOLDER = ".wseg_resume"
"""Folder, beside the runs of a logger's ``save_dir``, of the records `resume_record` reads."""


def resume_record_path(runs_root: Path, key: str) -> Path:
    """Where the record of the fits of one command (one config, ``key``) lives under a runs root."""
    return Path(runs_root) / RESUME_FOLDER / f"{key}.json"


def read_resume_record(path: Path) -> dict[str, Any] | None:
    """The record at ``path``: ``status`` (``running``/``finished``), ``run_dir``, ``run_id``."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) and "status" in record else None


def write_resume_record(path: Path, **fields: Any) -> None:
    """Write (atomically) the record of a fit: its status, run folder and W&B run id."""
    path.parent.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    record = {**(read_resume_record(path) or {}), **fields, "updated": stamp}
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(temporary, path)


def last_checkpoint(folder: Path) -> Path | None:
    """The checkpoint a crashed run resumes from: ``checkpoints/last.ckpt``, else the newest.

    A file cut short by the kill (torch writes a zip archive; a truncated one has no directory)
    is passed over for the next newest.
    """
    checkpoints = Path(folder) / "checkpoints"
    saved = sorted(
        checkpoints.glob("*.ckpt"), key=lambda p: (p.name == "last.ckpt", p.stat().st_mtime)
    )
    return next((path for path in reversed(saved) if zipfile.is_zipfile(path)), None)
