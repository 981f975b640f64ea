"""Command line: ``python -m wseg fit|validate|test|predict --config experiments/<name>.yaml``.

One LightningCLI in subclass mode: ``model`` is any `WeakSegMethod` and ``data`` any
LightningDataModule exposing ``num_classes`` and ``class_names`` (normally `WeakSegDataModule`);
both are linked from data to model. Short class names work in YAML (``class_path: Supervised``).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
import uuid
from pathlib import Path
from typing import Any

import yaml
from jsonargparse import set_loader
from jsonargparse._loaders_dumpers import yaml_load
from jsonargparse._util import config_load_stack
from lightning.pytorch import LightningDataModule, Trainer
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import WandbLogger

import wseg.data  # noqa: F401  (registers the datamodule for short class names)
import wseg.methods  # noqa: F401  (registers every method for short class names)
from wseg.callbacks import (
    NonFiniteGuard,
    PredictionWriter,
    RunConfigCallback,
    RunFolderCheckpoints,
)
from wseg.methods import WeakSegMethod
from wseg.runs import (
    UNLOGGED_RUNS,
    last_checkpoint,
    local_run_dir,
    read_resume_record,
    resume_record_path,
    write_resume_record,
)


def load_yaml_naming_the_file(stream: str, path: str | os.PathLike = "") -> Any:
    """The YAML loader of jsonargparse, whose syntax errors name the file instead of a string.

    The file is the innermost of jsonargparse's stack of files being loaded: the ``--config``
    file, or a fragment it names (``data: _shared/data_voc.yaml``).

    Args:
        stream: The YAML text.
        path: The file's base name, as jsonargparse passes it ("": a fragment or a value).

    Raises:
        yaml.YAMLError: Invalid YAML; the message says which file (and line) it is in.

    """
    try:
        return yaml_load(stream)
    except yaml.YAMLError as error:
        stack = config_load_stack.get()
        # jsonargparse passes the file's base name only; its stack holds the full path
        where = stack[-1][0] if stack else str(path)
        if not where:
            raise
        raise yaml.YAMLError(f"{where}: {str(error).replace('<unicode string>', where)}") from None


set_loader("yaml", load_yaml_naming_the_file, exceptions=(yaml.YAMLError,))


def _alive(record: dict[str, Any]) -> bool:
    """Whether the process a run record names is still running (on this host)."""
    pid = record.get("pid")
    if not isinstance(pid, int) or record.get("host") != socket.gethostname():
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _rank_zero() -> bool:
    """Whether this is the process DDP starts first (the others are launched with ranks set)."""
    return os.environ.get("LOCAL_RANK", "0") == "0" and os.environ.get("NODE_RANK", "0") == "0"


class WSegCLI(LightningCLI):
    """LightningCLI with the data-to-model links and the prediction writer of wseg."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """Link ``num_classes`` and ``class_names`` from the datamodule; add wseg's callbacks.

        Every config gets the PNG writer (``prediction_writer``) and the non-finite guard
        (``nonfinite``: ``--nonfinite.action stop|skip``), without a line in its YAML.
        """
        parser.link_arguments(
            "data.num_classes", "model.init_args.num_classes", apply_on="instantiate"
        )
        parser.link_arguments(
            "data.class_names", "model.init_args.class_names", apply_on="instantiate"
        )
        parser.add_lightning_class_args(PredictionWriter, "prediction_writer")
        parser.add_lightning_class_args(NonFiniteGuard, "nonfinite")
        parser.add_argument(
            "--check_data",
            type=bool,
            default=True,
            help="read every image of the datamodule's splits before fit starts (wseg.data.check)",
        )
        parser.add_argument(
            "--resume",
            type=bool | None,
            default=None,
            help="fit from the command line (W&B or no logger): null continues this command's "
            "interrupted run and refuses a finished one; true must continue one; false starts a "
            "new run",
        )

    def __init__(self, *args: Any, resume_runs: bool = False, **kwargs: Any) -> None:
        self.resume_runs = resume_runs
        self._record: Path | None = None
        self._resumed_dir: Path | None = None
        super().__init__(*args, **kwargs)

    def before_instantiate_classes(self) -> None:
        """Check the method's numeric options before the datamodule (or any data) is made.

        A fit from the command line then looks for an earlier run of the same command (see
        `_plan_resume`).
        """
        from wseg.methods.base import check_method_options

        config = self.config.get(self.subcommand, self.config) if self.subcommand else self.config
        init_args = config.get("model", {}).get("init_args") or {}
        check_method_options(dict(vars(init_args)) if hasattr(init_args, "__dict__") else {})
        if self.subcommand == "fit" and self.resume_runs:
            self._plan_resume(config)

    def _plan_resume(self, config: Any) -> None:
        """Continue the interrupted run of this command, refuse to retrain a finished one.

        The runs of a command are recorded under its logger's runs root (W&B: ``<save_dir>/
        <project>``; no logger: ``<default_root_dir>/runs``), keyed by a hash of the whole config
        (``--resume`` and ``--ckpt_path`` left out). A record still ``running`` is a run that was
        killed or crashed: the same W&B run id (and run folder) is used again and training
        continues from its last checkpoint. Skipped under a W&B sweep (it names the runs), with
        ``fast_dev_run``, and with other loggers.
        """
        where = self._runs_root(config)
        if where is None or os.environ.get("WANDB_RUN_ID"):
            return
        root, wandb = where
        plain = config.clone()
        for key in ("resume", "ckpt_path"):
            plain.pop(key, None)
        text = json.dumps(plain.as_dict(), sort_keys=True, default=str)
        self._record = resume_record_path(root, hashlib.sha256(text.encode()).hexdigest()[:16])
        record = read_resume_record(self._record)
        resume = config.get("resume")
        if resume is True and record is None:
            raise ValueError(f"--resume true: this config has no earlier run under {root}")
        if resume is False or record is None:
            if wandb and not config.trainer.logger.init_args.get("id"):
                config["trainer.logger.init_args.id"] = uuid.uuid4().hex[:8]
            return
        run_dir = Path(record["run_dir"])
        if record["status"] == "finished":
            raise ValueError(
                f"this config's run {record.get('run_id') or run_dir} finished "
                f"({record.get('updated')}); its folder is {run_dir}. Rerunning would train it "
                "again: pass --resume false to start a new run"
            )
        if _rank_zero() and _alive(record):
            raise ValueError(
                f"this config's run in {run_dir} is running now (process {record['pid']}); "
                "wait for it, or pass --resume false to start another run"
            )
        if wandb:
            config["trainer.logger.init_args.id"] = record["run_id"]
        checkpoint = last_checkpoint(run_dir)
        if checkpoint is not None and config.get("ckpt_path") is None:
            config["ckpt_path"] = str(checkpoint)
        self._resumed_dir = run_dir
        if _rank_zero():
            start = (
                f"its last checkpoint {checkpoint}" if checkpoint else "the start (no checkpoint)"
            )
            print(
                f"wseg: continuing the interrupted run in {run_dir} from {start}", file=sys.stderr
            )

    @staticmethod
    def _runs_root(config: Any) -> tuple[Path, bool] | None:
        """Where the configured logger's runs live, and whether it is W&B (None: no resuming)."""
        trainer = config.trainer
        if trainer.get("fast_dev_run"):
            return None
        logger = trainer.get("logger")
        default_root = Path(trainer.get("default_root_dir") or ".")
        if logger is False:
            return default_root / UNLOGGED_RUNS, False
        class_path = getattr(logger, "class_path", None) or ""
        if not class_path.endswith("WandbLogger"):
            return None
        init = logger.init_args
        save_dir = init.get("save_dir") or init.get("dir") or default_root
        project = init.get("project") or os.environ.get("WANDB_PROJECT", "lightning_logs")
        return Path(save_dir) / project, True

    def before_fit(self) -> None:
        """Check the data before training (and any W&B run) starts; record the run as running.

        The data check (`wseg.data.check`) is skipped for the built-in synthetic dataset (it is
        written, not read, on first use), for datamodules without ``make_source`` and on the
        worker ranks that DDP launches (rank 0 checks before it launches them). The record (see
        `_plan_resume`) is written by rank 0 only.
        """
        self._check_data()
        if self._record is not None and _rank_zero():
            if self._resumed_dir is not None and self.trainer.logger is None:
                self.trainer._wseg_run_dir = self._resumed_dir  # type: ignore[attr-defined]
            logger = self.trainer.logger
            run_id = logger.version if isinstance(logger, WandbLogger) else None
            folder = local_run_dir(self.trainer).resolve()
            write_resume_record(
                self._record,
                status="running",
                run_dir=str(folder),
                run_id=run_id,
                pid=os.getpid(),
                host=socket.gethostname(),
            )

    def after_fit(self) -> None:
        """Record the run as finished (a rerun of the command then refuses to train it again)."""
        if self._record is not None and _rank_zero() and not self.trainer.interrupted:
            write_resume_record(self._record, status="finished")

    def _check_data(self) -> None:
        datamodule = self.datamodule
        if not self.config[self.subcommand].get("check_data", True):
            return
        if getattr(datamodule, "dataset", None) == "synthetic" or not hasattr(
            datamodule, "make_source"
        ):
            return
        if not _rank_zero():
            return
        from wseg.data.check import require_clean

        require_clean(datamodule)

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """The trainer, with `RunFolderCheckpoints` (a fit without a logger keeps its files).

        Without a logger (``--trainer.logger false``, ``fast_dev_run``) the YAMLs' learning-rate
        monitor has nothing to log to, and Lightning would refuse to start: it is dropped.
        """
        trainer = super().instantiate_trainer(**kwargs)
        if trainer.logger is None:
            trainer.callbacks[:] = [
                c for c in trainer.callbacks if not isinstance(c, LearningRateMonitor)
            ]
        # first: its setup must run before the checkpoint callbacks' (Lightning puts them last)
        trainer.callbacks.insert(0, RunFolderCheckpoints())
        return trainer

    def _parse_ckpt_path(self) -> None:
        """Keep the config as given: ``--ckpt_path`` supplies weights, not hyperparameters.

        Lightning's CLI would replace the model's arguments with the hyperparameters saved in the
        checkpoint, silently undoing evaluation options given on the command line (for example
        ``validate --ckpt_path C --model.init_args.crf_postprocess true`` would score without the
        CRF). In wseg the YAML and the command line build the model; the checkpoint's weights
        are then loaded into it (a mismatched architecture fails loudly in ``load_state_dict``).
        """


def main(args: ArgsType = None, **kwargs: Any) -> WSegCLI:
    """Run the wseg command line.

    Args:
        args: Command-line arguments (None: ``sys.argv``, and a fit continues the interrupted
            run of the same command; see `WSegCLI._plan_resume`); tests pass a list.
        **kwargs: Extra `LightningCLI` arguments (e.g. ``run=False``).

    Returns:
        The CLI object (its ``model``, ``datamodule`` and ``trainer``).
    """
    return WSegCLI(
        resume_runs=args is None,
        model_class=WeakSegMethod,
        datamodule_class=LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        seed_everything_default=0,
        save_config_callback=RunConfigCallback,
        save_config_kwargs={"overwrite": True},
        args=args,
        **kwargs,
    )
