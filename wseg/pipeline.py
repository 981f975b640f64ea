"""Chain the stages of a multi-stage method, each its own ``python -m wseg fit`` run, restartable.

    python -m wseg.pipeline selfcorr --setting voc_f1464 --mode conv [-- <args for every stage>]

A stage whose ``final.ckpt`` exists is skipped, so an interrupted chain resumes at its first
unfinished stage. Everything lands in ``<out>/<setting>/``: the F/W split files, and per stage
the config it ran with, its logs, ``final.ckpt`` and ``metrics.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from lightning.pytorch import Callback, LightningModule, Trainer

from wseg.data.weak import load_split, make_strong_split, save_split

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
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
        split: Which id list is its F: ``strong`` (all of F) or ``ancillary_half``.
        strong_only: Train on F only.
        model_args: Fixed ``model.init_args`` values.
        inputs: ``model.init_args`` names set to the ``final.ckpt`` of the named earlier stage.

    """

    name: str
    config: Path
    split: str = "strong"
    strong_only: bool = False
    model_args: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Setting:
    """A dataset, its F size and the experiment YAML of each self-correction role.

    Args:
        num_strong: Size of F (W is the rest of the training split).
        configs: YAML of ``ancillary``, ``none``, ``linear`` and ``conv``.

    """

    num_strong: int
    configs: dict[str, Path]


def _configs(prefix: str, conv: Path | None = None) -> dict[str, Path]:
    configs = {
        role: EXPERIMENTS / f"{prefix}{role}.yaml" for role in ("ancillary", "none", "linear")
    }
    configs["conv"] = conv or EXPERIMENTS / f"{prefix}conv.yaml"
    return configs


_VOC = _configs("selfcorr/voc_", EXPERIMENTS / "selfcorr_conv.yaml")
_CITYSCAPES = _configs("selfcorr/cityscapes_")
SETTINGS: dict[str, Setting] = {
    "demo": Setting(40, _configs("demo/selfcorr_")),
    **{f"voc_f{n}": Setting(n, _VOC) for n in (200, 400, 800, 1464)},
    **{f"cityscapes_f{n}": Setting(n, _CITYSCAPES) for n in (200, 450, 914)},
}
MODES = {
    "none": ["ancillary", "none"],
    "linear": ["ancillary", "linear"],
    "conv": ["ancillary_half", "conv_pretrain", "conv"],
    "all": ["ancillary", "none", "linear", "ancillary_half", "conv_pretrain", "conv"],
}


def selfcorr_stages(setting: Setting, mode: str) -> list[Stage]:
    """The stages of self-correction (Ibrahim et al. 2020) for a mode, in order.

    ``none``/``linear``: the ancillary model on F, then the primary model on F and W. ``conv``
    (sec. 3.4): the ancillary model on half of F, primary + head on F, then on F and W.

    Args:
        setting: Dataset configs and F size.
        mode: ``none``, ``linear``, ``conv`` or ``all`` (every stage of the three).

    Returns:
        The stages.

    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {sorted(MODES)}, got {mode!r}")
    configs = setting.configs
    stages = {
        "ancillary": Stage("ancillary", configs["ancillary"], strong_only=True),
        "none": Stage("none", configs["none"], inputs={"ancillary_checkpoint": "ancillary"}),
        "linear": Stage("linear", configs["linear"], inputs={"ancillary_checkpoint": "ancillary"}),
        "ancillary_half": Stage(
            "ancillary_half", configs["ancillary"], split="ancillary_half", strong_only=True
        ),
        "conv_pretrain": Stage(
            "conv_pretrain",
            configs["conv"],
            strong_only=True,
            model_args={"stage": "pretrain", "init_checkpoint": None},
            inputs={"ancillary_checkpoint": "ancillary_half"},
        ),
        "conv": Stage(
            "conv",
            configs["conv"],
            model_args={"stage": "main"},
            inputs={"ancillary_checkpoint": "ancillary_half", "init_checkpoint": "conv_pretrain"},
        ),
    }
    return [stages[name] for name in MODES[mode]]


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


def make_splits(config: Path, num_strong: int, extra: Sequence[str], out: Path) -> dict[str, Path]:
    """Draw (or read back) F, and halve it for the conv ancillary model; save the lists.

    F is drawn as the datamodule draws it (`make_strong_split` with the data's ``split_seed``);
    ``ancillary_half`` trains the conv stages' ancillary model and ``head_half`` is the rest of F,
    on which the self-correction head learns to combine the two models.

    Args:
        config: An experiment YAML of the setting (its data section is used).
        num_strong: Size of F.
        extra: Extra command-line arguments (``--data.init_args.*`` ones are applied).
        out: The setting's folder; lists go to ``out/splits/``.

    Returns:
        Paths of the ``strong``, ``ancillary_half`` and ``head_half`` lists.

    """
    from wseg.data.datamodule import WeakSegDataModule

    paths = {
        name: out / "splits" / f"{name}.txt" for name in ("strong", "ancillary_half", "head_half")
    }
    args = {**load_config(config)["data"].get("init_args", {}), **data_overrides(extra)}
    seed = int(args.get("split_seed", 0))
    if paths["strong"].exists():
        strong = set(load_split(paths["strong"]))
        if len(strong) != num_strong:
            raise ValueError(f"{paths['strong']} holds {len(strong)} ids, the setting {num_strong}")
    else:
        datamodule = WeakSegDataModule(**{k: v for k, v in args.items() if k not in SPLIT_KEYS})
        datamodule.prepare_data()
        ids = datamodule.make_source(datamodule.train_split).ids
        strong = make_strong_split(ids, num_strong=num_strong, seed=seed)
    if len(strong) < 2:
        raise ValueError(f"F has {len(strong)} images; halving it needs at least 2")
    half = make_strong_split(strong, num_strong=len(strong) // 2, seed=seed)
    save_split(strong, paths["strong"])
    save_split(half, paths["ancillary_half"])
    save_split(strong - half, paths["head_half"])
    return paths


def stage_config(stage: Stage, setting_name: str, out: Path, splits: dict[str, Path]) -> dict:
    """The stage's experiment config with its split, inputs, output folder and final checkpoint."""
    config = load_config(stage.config)
    stage_dir = out / stage.name
    data = config["data"].setdefault("init_args", {})
    split_file = splits[stage.split]
    for key in SPLIT_KEYS:
        data.pop(key, None)
    data.update(
        strong_split_file=str(split_file),
        num_strong=len(load_split(split_file)),
        strong_only=stage.strong_only,
    )
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
            "class_path": "wseg.pipeline.StageCheckpoint",
            "init_args": {"path": str(stage_dir / FINAL)},
        }
    )
    trainer["callbacks"] = callbacks
    return config


def run_stages(
    stages: Sequence[Stage],
    setting_name: str,
    out: Path,
    splits: dict[str, Path],
    extra: Sequence[str] = (),
    dry_run: bool = False,
) -> dict[str, dict[str, float]]:
    """Run every stage without a ``final.ckpt`` as ``python -m wseg fit``, in order.

    Args:
        stages: The chain.
        setting_name: Name used in run names.
        out: The setting's folder.
        splits: The id lists the stages train on.
        extra: Arguments appended to every stage's command (e.g. ``--trainer.devices 4``).
        dry_run: Print the commands instead of running them.

    Returns:
        The final metrics of each finished stage.

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
            code = subprocess.run(command, check=False).returncode
            if code != 0 or not final.exists():
                raise RuntimeError(
                    f"stage {stage.name!r} failed (exit code {code}, {final} "
                    f"{'present' if final.exists() else 'missing'}); its config is {path}; "
                    "rerun the same command to retry from this stage"
                )
        metrics = stage_dir / METRICS
        if metrics.exists():
            results[stage.name] = json.loads(metrics.read_text())
    return results


def main(argv: Sequence[str] | None = None) -> dict[str, dict[str, float]]:
    """Command line; arguments after ``--`` go to every stage's ``python -m wseg fit``.

    Args:
        argv: Arguments (None: ``sys.argv[1:]``).

    Returns:
        The final metrics of each stage.

    """
    argv = list(sys.argv[1:] if argv is None else argv)
    split_at = argv.index("--") if "--" in argv else len(argv)
    own, extra = argv[:split_at], argv[split_at + 1 :]
    parser = argparse.ArgumentParser(prog="python -m wseg.pipeline", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    selfcorr = commands.add_parser(
        "selfcorr", help="self-correction (Ibrahim et al. 2020): ancillary -> (pretrain) -> primary"
    )
    selfcorr.add_argument("--setting", required=True, choices=sorted(SETTINGS))
    selfcorr.add_argument("--mode", default="conv", choices=sorted(MODES))
    selfcorr.add_argument("--out", type=Path, default=Path("runs/selfcorr"), help="output root")
    selfcorr.add_argument("--num-strong", type=int, help="size of F (default: the setting's)")
    selfcorr.add_argument("--dry-run", action="store_true", help="print the commands only")
    args = parser.parse_args(own)
    setting = SETTINGS[args.setting]
    out = args.out / args.setting
    num_strong = setting.num_strong if args.num_strong is None else args.num_strong
    splits = make_splits(setting.configs["ancillary"], num_strong, extra, out)
    results = run_stages(
        selfcorr_stages(setting, args.mode), args.setting, out, splits, extra, args.dry_run
    )
    for name, metrics in results.items():
        miou = metrics.get("val/miou")
        print(f"[pipeline] {name:>15}: val/miou {'n/a' if miou is None else f'{miou:.4f}'}")
    return results


if __name__ == "__main__":
    main()
