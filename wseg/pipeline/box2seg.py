"""Box2Seg (Kulharia et al. 2020): GrabCut store -> embedding pretraining -> end-to-end training.

    python -m wseg.pipeline box2seg --setting demo|tiny_coco|voc [-- <args for every stage>]

Everything lands in ``<out>/<setting>/``: the GrabCut store under ``pseudo/`` (hash-named,
resumable) and one folder per stage; a rerun skips what is done.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from wseg.data.store import PseudoLabelStore
from wseg.pipeline.settings import load_settings
from wseg.pipeline.stages import (
    SPLIT_KEYS,
    Stage,
    data_overrides,
    load_config,
    run_and_report,
    setting_named,
)

COMMAND = "box2seg"
HELP = "Box2Seg (Kulharia et al. 2020): GrabCut store -> embedding pretraining -> main fit"


@dataclass(frozen=True)
class Setting:
    """The experiment YAMLs of Box2Seg's two training stages on one dataset.

    Args:
        pretrain: YAML of the embedding pretraining (``stage: pretrain``).
        main: YAML of the end-to-end stage (``stage: main``).

    """

    pretrain: Path
    main: Path


SETTINGS: dict[str, Setting] = load_settings(COMMAND, Setting)


def grabcut_store(
    config: Path, extra: Sequence[str], out: Path, workers: int = 1, progress: bool = True
) -> Path:
    """Make (or finish) the GrabCut store of the training split an experiment trains on.

    The dataset is the YAML's data section with the ``--data.init_args.*`` overrides of
    ``extra`` applied, read with the datamodule's own reader options; those options, the
    resolved root and the split are the store's dataset identity (part of its hash), so a
    changed dataset makes a new store and an interrupted generation resumes.

    Args:
        config: An experiment YAML of the setting (its data section is used).
        extra: Extra command-line arguments of the stages.
        out: Parent directory of stores (the store is ``out/grabcut-<hash8>``).
        workers: GrabCut worker processes.
        progress: Show a progress bar.

    Returns:
        The store's directory.

    """
    from wseg.data.check import require_clean
    from wseg.data.datamodule import WeakSegDataModule
    from wseg.labels.generate import generate
    from wseg.labels.generators import build_generator

    args = {**load_config(config)["data"].get("init_args", {}), **data_overrides(extra)}
    ignored = {"pseudo_labels", *SPLIT_KEYS}
    datamodule = WeakSegDataModule(**{k: v for k, v in args.items() if k not in ignored})
    datamodule.prepare_data()
    require_clean(datamodule, progress)  # every split readable before the first label is written
    split = datamodule.train_split
    identity = {
        "name": datamodule.dataset,
        "root": str(Path(datamodule.root).resolve()),
        "split": split,
        "options": datamodule.source_options,
    }
    summary = generate(
        datamodule.make_source(split),
        build_generator("grabcut"),
        out,
        identity,
        workers=workers,
        progress=progress,
    )
    print(
        f"[pipeline] grabcut: {summary.store.path} (generated {len(summary.generated)}, "
        f"already there {summary.skipped}, of {summary.total})",
        flush=True,
    )
    return summary.store.path


def box2seg_stages(setting: Setting, store: Path) -> list[Stage]:
    """The two training stages, both reading the GrabCut store.

    ``pretrain`` trains the embeddings with L_A on M (sec. 4.1); ``main`` starts from its
    ``final.ckpt`` (``init_checkpoint``) and minimises Eq. 11. Neither touches the configs'
    strong/weak split settings.

    Args:
        setting: The experiment YAMLs.
        store: The GrabCut store.

    Returns:
        The stages, in order.

    """
    data = {"pseudo_labels": str(store)}
    return [
        Stage("pretrain", setting.pretrain, split=None, data_args=data),
        Stage(
            "main", setting.main, split=None, data_args=data, inputs={"init_checkpoint": "pretrain"}
        ),
    ]


def fit_stages(setting: str) -> list[Stage]:
    """The fit stages of ``setting`` (the store is set when made)."""
    return box2seg_stages(setting_named(SETTINGS, setting, COMMAND), Path("<grabcut store>"))


def run_chain(
    setting: str,
    out: Path = Path("runs/box2seg"),
    overrides: Sequence[str] = (),
    *,
    store: Path | None = None,
    workers: int = 1,
    dry_run: bool = False,
    stage_overrides: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, dict[str, float]]:
    """Run (or resume) GrabCut, pretraining and the main stage for ``setting``.

    Args:
        setting: A name of `SETTINGS`.
        out: Output root; the chain writes ``out/<setting>/``.
        overrides: Arguments for every stage's ``python -m wseg fit``.
        store: An existing GrabCut store to use (None: make one).
        workers: GrabCut worker processes.
        dry_run: Print the commands only.
        stage_overrides: Stage name -> arguments for that stage only.

    Returns:
        The final metrics of each finished stage.

    Raises:
        StoreError: If ``--store`` is not a pseudo-label store.
        ValueError: If ``--store`` holds labels of another generator than GrabCut.

    """
    chosen = setting_named(SETTINGS, setting, COMMAND)
    folder = Path(out) / setting
    if store is not None:
        generator = PseudoLabelStore(store).manifest["config"].get("generator")
        if generator != "grabcut":
            raise ValueError(f"--store {store} holds {generator!r} labels, not grabcut")
    elif dry_run:
        store = folder / "pseudo" / "grabcut-<hash>"
        print(f"[pipeline] grabcut: would make or finish a store under {store.parent}", flush=True)
    else:
        store = grabcut_store(chosen.pretrain, overrides, folder / "pseudo", workers)
    planned = box2seg_stages(chosen, store)
    return run_and_report(planned, setting, folder, None, overrides, dry_run, stage_overrides)
