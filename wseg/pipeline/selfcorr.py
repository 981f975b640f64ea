"""Self-correction (Ibrahim et al. 2020): ancillary model -> (head pretraining) -> primary model.

    python -m wseg.pipeline selfcorr --setting voc_f1464 --mode conv [-- <args for every stage>]

Everything lands in ``<out>/<setting>/``: the F split and its two halves in ``splits/``, and one
folder per stage.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from wseg.data.strong_split import load_split, make_strong_split, save_split
from wseg.pipeline.settings import load_settings
from wseg.pipeline.stages import (
    SPLIT_KEYS,
    Stage,
    data_overrides,
    load_config,
    run_and_report,
    setting_named,
)

COMMAND = "selfcorr"
HELP = "self-correction (Ibrahim et al. 2020): ancillary -> (pretrain) -> primary"


@dataclass(frozen=True)
class Setting:
    """A dataset, its F size and the experiment YAML of each self-correction role.

    Args:
        num_strong: Size of F (W is the rest of the training split).
        configs: YAML of ``ancillary``, ``none``, ``linear`` and ``conv``.

    """

    num_strong: int
    configs: dict[str, Path]


SETTINGS: dict[str, Setting] = load_settings(COMMAND, Setting)
HEAD_SPLITS = ("strong", "head_half")
"""What the conv head's pretraining (stage 2) trains on: all of F (the paper's step 2, "the fully
supervised data (F) is used") or only the half of F the ancillary model did not see (the paper's
rationale: "the second half of F is held out to help the self-correcting network"). Measured on
the synthetic demo (F = 40, one seed): conv after a head pretrained on all of F 65.8 val mIoU,
on the held-out half 65.7 (the pretraining itself 67.7 vs 59.6), a tie, so the default stays the
paper's step 2, ``strong``."""
MODES = {
    "none": ["ancillary", "none"],
    "linear": ["ancillary", "linear"],
    "conv": ["ancillary_half", "conv_pretrain", "conv"],
    "all": ["ancillary", "none", "linear", "ancillary_half", "conv_pretrain", "conv"],
}


def selfcorr_stages(setting: Setting, mode: str, head_split: str = "strong") -> list[Stage]:
    """The stages of self-correction (Ibrahim et al. 2020) for a mode, in order.

    ``none``/``linear``: the ancillary model on F, then the primary model on F and W. ``conv``
    (sec. 3.4): the ancillary model on half of F, primary + head on F (``head_split="strong"``)
    or on the other half only (``"head_half"``, see `HEAD_SPLITS`), then on F and W.

    Args:
        setting: Dataset configs and F size.
        mode: ``none``, ``linear``, ``conv`` or ``all`` (every stage of the three).
        head_split: ``strong`` or ``head_half``: the data of the conv head's pretraining.

    Returns:
        The stages.

    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {sorted(MODES)}, got {mode!r}")
    if head_split not in HEAD_SPLITS:
        raise ValueError(f"head_split must be one of {HEAD_SPLITS}, got {head_split!r}")
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
            split=head_split,
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


def fit_stages(setting: str, mode: str = "conv", head_split: str = "strong") -> list[Stage]:
    """The chain of ``setting`` in ``mode`` (`selfcorr_stages`)."""
    return selfcorr_stages(setting_named(SETTINGS, setting, COMMAND), mode, head_split)


def run_chain(
    setting: str,
    out: Path = Path("runs/selfcorr"),
    overrides: Sequence[str] = (),
    *,
    mode: str = "conv",
    num_strong: int | None = None,
    head_split: str = "strong",
    dry_run: bool = False,
    stage_overrides: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, dict[str, float]]:
    """Run (or resume) the self-correction chain of ``mode`` for ``setting``.

    Args:
        setting: A name of `SETTINGS`.
        out: Output root; the chain writes ``out/<setting>/``.
        overrides: Arguments for every stage's ``python -m wseg fit``.
        mode: ``none``, ``linear``, ``conv`` or ``all`` (`MODES`).
        num_strong: Size of F (None: the setting's).
        head_split: ``strong`` or ``head_half``: the data of the conv head's pretraining
            (`HEAD_SPLITS`).
        dry_run: Print the fit commands only.
        stage_overrides: Stage name -> arguments for that stage only.

    Returns:
        The final metrics of each finished stage.

    """
    chosen = setting_named(SETTINGS, setting, COMMAND)
    folder = Path(out) / setting
    size = chosen.num_strong if num_strong is None else num_strong
    splits = make_splits(chosen.configs["ancillary"], size, overrides, folder)
    planned = selfcorr_stages(chosen, mode, head_split)
    return run_and_report(planned, setting, folder, splits, overrides, dry_run, stage_overrides)
