"""The PAM gap study on scribbles (the paper's Table 1), end to end.

HFA and WA fits, local and global PAMs, averaged and regularised PFAs, one fit per PFA, the table.

    python -m wseg.pipeline scribbles --setting demo|voc|voc_original [-- <args for every fit>]

Everything lands in ``<out>/<setting>/``: one folder per fit, ``pseudo/`` (the local-PAM soft store
and one PFA store per row), ``curated_ids.txt``, ``table.md``, ``table.csv`` and ``table.png``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wseg.data.check import require_clean
from wseg.data.records import SegmentationSource
from wseg.data.scribbles import curated_scribble_ids
from wseg.data.strong_split import load_split, save_split
from wseg.data.subset import SubsetSource
from wseg.labels.generate import generate
from wseg.labels.pam_generators import LocalPAMGenerator, PFAGenerator
from wseg.labels.quality import evaluate_store, scribble_miou
from wseg.pipeline.evaluation import validate_on_source
from wseg.pipeline.scribble_table import (
    format_markdown,
    gap_table,
    key_findings,
    log_wandb,
    plot_table,
    write_csv,
)
from wseg.pipeline.settings import load_settings
from wseg.pipeline.stages import (
    FINAL,
    SPLIT_KEYS,
    Stage,
    data_overrides,
    load_config,
    run_stages,
    setting_named,
)

COMMAND = "scribbles"
HELP = "PAM gap study on scribbles: local + global PAMs, averaged and regularised (Table 1)"

EVAL = "eval.json"


@dataclass(frozen=True)
class Row:
    """One PFA row of Table 1: which PAMs are averaged and how they are regularised.

    Args:
        label: The row's name in the table.
        local: Uses the local PAM (random forests).
        global_: Uses the global PAM (the WA network).
        regulariser: ``none``, ``potts`` or ``crf``.
        marker: Matplotlib marker of the row in the plot.

    """

    label: str
    local: bool
    global_: bool
    regulariser: str
    marker: str


ROWS: dict[str, Row] = {
    "local": Row("local", True, False, "none", "o"),
    "local_potts": Row("local + Potts", True, False, "potts", "s"),
    "global_potts": Row("global + Potts", False, True, "potts", "s"),
    "global_crf": Row("global + CRF", False, True, "crf", "^"),
    "combined": Row("combined", True, True, "none", "o"),
    "combined_potts": Row("combined + Potts", True, True, "potts", "s"),
    "combined_crf": Row("combined + CRF", True, True, "crf", "^"),
}


@dataclass(frozen=True)
class Setting:
    """The experiment YAMLs of one dataset, its scribbles, and the PFA rows it runs by default.

    Args:
        full: HFA fit (`Supervised` on the full masks, every training image).
        weak: WA fit, the global PAM (`ScribblePAM`, ``target: scribble``); its data section
            (scribble source, width, seed) also defines the local PAMs' scribbles.
        pfa: Fit on a PFA store (`ScribblePAM`, ``target: pseudo``); the store is set per row.
        curated: Curated scribbles (``curated_scribbles`` is set for the WA and PFA fits and the
            PAMs): the paper's Table 1 studies every row on them.
        rows: Default PFA rows.
        potts_max_iter: Default primal-dual iterations of the Potts solver (1000: converged; the
            CPU demo uses 200, which changes under 1% of the labels and is 5x faster).

    """

    full: Path
    weak: Path
    pfa: Path
    curated: bool = True
    rows: tuple[str, ...] = tuple(ROWS)
    potts_max_iter: int = 1000


SETTINGS: dict[str, Setting] = load_settings(COMMAND, Setting)


def scribble_args(data: dict[str, Any]) -> dict[str, Any]:
    """The scribble options of a datamodule config (with the datamodule's defaults)."""
    mode = data.get("scribbles", "none")
    if mode not in ("dataset", "synthesize"):
        raise ValueError(
            f"the WA config must read scribbles ('dataset' or 'synthesize'), not {mode!r}"
        )
    return {
        "scribbles": mode,
        "scribble_width": int(data.get("scribble_width", 3)),
        "scribble_seed": int(data.get("scribble_seed", 0)),
        "curated": bool(data.get("curated_scribbles", False)),
    }


def training_source(
    data: dict[str, Any], out: Path, progress: bool = True
) -> tuple[SegmentationSource, SegmentationSource]:
    """The training images (the curated subset when curated) and the val split of a data config.

    The curated ids are computed once and saved as ``out/curated_ids.txt`` (read back after).

    Args:
        data: The WA config's ``data.init_args`` (command-line overrides applied).
        out: The setting's folder.
        progress: Show progress bars.

    Returns:
        ``(train source, val source)``.

    """
    from wseg.data.datamodule import WeakSegDataModule

    args = {k: v for k, v in data.items() if k not in (*SPLIT_KEYS, "pseudo_labels")}
    datamodule = WeakSegDataModule(**args)
    datamodule.prepare_data()
    require_clean(datamodule)  # every split readable before the chain starts
    source = datamodule.make_source(datamodule.train_split)
    val = datamodule.make_source(datamodule.val_split)
    options = scribble_args(data)
    if options["curated"]:
        path = out / "curated_ids.txt"
        if path.exists():
            ids = load_split(path)
        else:
            ids = curated_scribble_ids(
                source,
                options["scribbles"],
                options["scribble_width"],
                options["scribble_seed"],
                progress=progress,
            )
            save_split(ids, path)
        print(f"[scribbles] curated training set: {len(ids)} of {len(source)} images", flush=True)
        source = SubsetSource(source, ids)
    return source, val


def evaluate_fit(
    stage_dir: Path, train: SegmentationSource, val: SegmentationSource, progress: bool = True
) -> dict[str, float]:
    """Train and val mIoU of a finished fit, cached in ``eval.json`` beside its checkpoint.

    Both come from the method's own ``validate`` (`wseg.pipeline.evaluation.validate_on_source`)
    on full images, without test-time augmentation unless the fit's config asks for it.
    """
    path = stage_dir / EVAL
    if path.exists():
        return json.loads(path.read_text())
    result = {
        "train": validate_on_source(stage_dir, train, progress)["val/miou"],
        "val": validate_on_source(stage_dir, val, progress)["val/miou"],
    }
    path.write_text(json.dumps(result, indent=2))
    return result


def _rows(setting: str, rows: Sequence[str] | None) -> tuple[str, ...]:
    rows = SETTINGS[setting].rows if rows is None else tuple(rows)
    unknown = sorted(set(rows) - set(ROWS))
    if unknown:
        raise ValueError(f"unknown rows {unknown}; expected any of {list(ROWS)}")
    return rows


def fit_stages(setting: str, rows: Sequence[str] | None = None) -> list[Stage]:
    """The fits of the study: HFA, WA, then one per PFA row (its store is set when made)."""
    chosen = setting_named(SETTINGS, setting, COMMAND)
    curation = {"curated_scribbles": chosen.curated}
    return [
        Stage("hfa", chosen.full, split=None),
        Stage("wa", chosen.weak, split=None, data_args=curation),
        *(Stage(name, chosen.pfa, split=None, data_args=curation) for name in _rows(setting, rows)),
    ]


def run_chain(
    setting: str,
    out: Path = Path("runs/scribbles"),
    overrides: Sequence[str] = (),
    *,
    rows: Sequence[str] | None = None,
    workers: int = 1,
    potts_max_iter: int | None = None,
    potts_lambda: float | None = None,
    wandb: bool = True,
    progress: bool = True,
    dry_run: bool = False,
    stage_overrides: Mapping[str, Sequence[str]] | None = None,
) -> list[dict[str, Any]]:
    """Run (or resume) the gap study of ``setting`` and write its table.

    Args:
        setting: A name of `SETTINGS`.
        out: Output root; the study writes ``out/<setting>/``.
        overrides: Arguments for every ``python -m wseg fit``.
        rows: PFA rows (`ROWS` names; None: the setting's).
        workers: Processes for the PAM stores.
        potts_max_iter: Primal-dual iterations of Potts (None: the setting's).
        potts_lambda: Potts weight of every Potts row (None: the paper's 10 with a local PAM,
            50 alone).
        wandb: Log the table to W&B.
        progress: Show progress bars.
        dry_run: Print the fit commands only.
        stage_overrides: Stage name -> arguments for that fit only.

    Returns:
        The table (`gap_table`); empty for a dry run.

    """
    chosen = setting_named(SETTINGS, setting, COMMAND)
    rows = _rows(setting, rows)
    out, extra = Path(out) / setting, overrides
    curation = {"curated_scribbles": chosen.curated}
    overrides_of = dict(stage_overrides or {})
    planned = fit_stages(setting, rows)
    baselines = planned[:2]
    done = run_stages(
        baselines,
        setting,
        out,
        extra=extra,
        dry_run=dry_run,
        overrides={k: v for k, v in overrides_of.items() if k in ("hfa", "wa")},
        sweep_stage=False,
    )
    if dry_run:
        return []
    folder = {name: Path(result["stage_dir"]) for name, result in done.items()}
    weak_config = load_config(chosen.weak)
    data = {**weak_config["data"].get("init_args", {}), **curation, **data_overrides(extra)}
    train, val = training_source(data, out, progress)
    options = scribble_args(data)
    identity = {
        "name": data.get("dataset", "synthetic"),
        "root": str(data.get("root")),
        "split": data.get("train_split", "train"),
        "scribbles": options,
    }
    pseudo = out / "pseudo"
    local_store = None
    if any(ROWS[r].local for r in rows):
        generator = LocalPAMGenerator(**options)
        local_store = generate(train, generator, pseudo, identity, workers, progress).store
        print(f"[scribbles] local PAM: {local_store.path}", flush=True)
    stores: dict[str, Path] = {}
    quality: dict[str, float] = {}
    for name in rows:
        row = ROWS[name]
        generator = PFAGenerator(
            local_store=str(local_store.path) if row.local else None,
            global_checkpoint=str(folder["wa"] / FINAL) if row.global_ else None,
            regulariser=row.regulariser,
            potts_max_iter=potts_max_iter or chosen.potts_max_iter,
            potts_lambda=potts_lambda,
        )
        store = generate(train, generator, pseudo, identity, workers, progress).store
        if store.manifest.get("quality") is None:
            store.update_manifest(quality=evaluate_store(store, train, progress))
        stores[name] = store.path
        quality[name] = store.manifest["quality"]["miou"]
        print(
            f"[scribbles] {row.label}: PFA mIoU {100 * quality[name]:.1f} ({store.path})",
            flush=True,
        )
    fits = [
        dataclasses.replace(
            stage, data_args={**stage.data_args, "pseudo_labels": str(stores[stage.name])}
        )
        for stage in planned[2:]
    ]
    fit_overrides = {k: v for k, v in overrides_of.items() if k not in ("hfa", "wa")}
    done = run_stages(fits, setting, out, extra=extra, overrides=fit_overrides)
    folder.update({name: Path(result["stage_dir"]) for name, result in done.items()})
    full = {"pfa": 1.0, **evaluate_fit(folder["hfa"], train, val, progress)}
    weak = {
        "pfa": scribble_miou(train, options, progress),
        **evaluate_fit(folder["wa"], train, val, progress),
    }
    results = {
        ROWS[name].label: {
            "pfa": quality[name],
            **evaluate_fit(folder[name], train, val, progress),
        }
        for name in rows
    }
    table = gap_table(full, weak, results)
    write_table(table, out, setting)
    if wandb:  # offline, into the project of the WA fit's logger
        logger = weak_config.get("trainer", {}).get("logger", {})
        project = logger.get("init_args", {}).get("project", "wseg")
        log_wandb(table, out / "table.png", project, f"scribbles_{setting}_table", out)
    return table


def write_table(table: list[dict[str, Any]], out: Path, setting: str) -> None:
    """Write ``table.md`` (with the key findings), ``table.csv`` and ``table.png``; print the first.

    Args:
        table: The rows of `gap_table`.
        out: The setting's folder.
        setting: The setting's name (the plot's title).

    """
    markdown = format_markdown(table) + "".join(f"\n- {line}" for line in key_findings(table))
    (out / "table.md").write_text(markdown + "\n")
    write_csv(table, out / "table.csv")
    markers = {row.label: row.marker for row in ROWS.values()}
    plot_table(table, out / "table.png", f"scribble gap study ({setting})", markers)
    print(markdown + "\n", flush=True)
