"""Where a run's own files go: the folder that holds its ``checkpoints/``.

``trainer.log_dir`` is that folder for the CSV and TensorBoard loggers, but with a W&B logger it is
the logger's ``save_dir``, shared by every run saved there: one run's config, overlays, predictions
and split list would silently replace another's. `run_dir` gives each W&B run its own folder,
``<save_dir>/<project>/<run id>/``, the one Lightning puts its checkpoints in.
"""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch import Trainer
from lightning.pytorch.loggers import WandbLogger


def local_run_dir(trainer: Trainer) -> Path:
    """This run's folder, computed in this process only (use on rank 0; see `run_dir`)."""
    logger = trainer.logger
    if isinstance(logger, WandbLogger):
        root = Path(logger.save_dir or trainer.default_root_dir)
        return root / str(logger.name) / str(logger.version)
    if logger is not None and getattr(logger, "log_dir", None):
        return Path(logger.log_dir)
    return Path(trainer.default_root_dir)


def run_dir(trainer: Trainer) -> Path:
    """This run's folder, the same on every process: a collective, call it on every DDP rank."""
    path = str(local_run_dir(trainer)) if trainer.is_global_zero else None
    return Path(trainer.strategy.broadcast(path, src=0))
