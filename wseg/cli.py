"""Command line: ``python -m wseg fit|validate|test|predict --config experiments/<name>.yaml``.

One LightningCLI in subclass mode: ``model`` is any `WeakSegMethod` and ``data`` any
LightningDataModule exposing ``num_classes`` and ``class_names`` (normally `WeakSegDataModule`);
both are linked from data to model. Short class names work in YAML (``class_path: Supervised``).
"""

from __future__ import annotations

import os
from typing import Any

import yaml
from jsonargparse import set_loader
from jsonargparse._loaders_dumpers import yaml_load
from jsonargparse._util import config_load_stack
from lightning.pytorch import LightningDataModule
from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI

import wseg.data  # noqa: F401  (registers the datamodule for short class names)
import wseg.methods  # noqa: F401  (registers every method for short class names)
from wseg.callbacks import NonFiniteGuard, PredictionWriter, RunConfigCallback
from wseg.methods import WeakSegMethod


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

    def before_instantiate_classes(self) -> None:
        """Check the method's numeric options before the datamodule (or any data) is made."""
        from wseg.methods.base import check_method_options

        config = self.config.get(self.subcommand, self.config) if self.subcommand else self.config
        init_args = config.get("model", {}).get("init_args") or {}
        check_method_options(dict(vars(init_args)) if hasattr(init_args, "__dict__") else {})

    def before_fit(self) -> None:
        """Check the data before training (and any W&B run) starts; see `wseg.data.check`.

        Skipped for the built-in synthetic dataset (it is written, not read, on first use), for
        datamodules without ``make_source`` and on the worker ranks that DDP launches (rank 0
        checks before it launches them).
        """
        datamodule = self.datamodule
        if not self.config[self.subcommand].get("check_data", True):
            return
        if getattr(datamodule, "dataset", None) == "synthetic" or not hasattr(
            datamodule, "make_source"
        ):
            return
        if os.environ.get("LOCAL_RANK", "0") != "0" or os.environ.get("NODE_RANK", "0") != "0":
            return
        from wseg.data.check import require_clean

        require_clean(datamodule)

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
        args: Command-line arguments (None: ``sys.argv``); tests pass a list.
        **kwargs: Extra `LightningCLI` arguments (e.g. ``run=False``).

    Returns:
        The CLI object (its ``model``, ``datamodule`` and ``trainer``).
    """
    return WSegCLI(
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
