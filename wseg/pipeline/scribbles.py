"""The PAM gap study on scribbles (the paper's Table 1), end to end.

HFA and WA fits, local and global PAMs, averaged and regularised PFAs, one fit per PFA, the table.

    python -m wseg.pipeline scribbles --setting demo|voc|voc_original [-- <args for every fit>]

Everything lands in ``<out>/<setting>/``: one folder per fit, ``pseudo/`` (the local-PAM soft store
and one PFA store per row), ``curated_ids.txt``, ``table.md``, ``table.csv`` and ``table.png``.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from wseg.constants import EXPERIMENTS
from wseg.data.check import require_clean
from wseg.data.records import IGNORE_INDEX, SegmentationSource
from wseg.data.scribbles import curated_scribble_ids, sample_scribble
from wseg.data.strong_split import load_split, save_split
from wseg.data.subset import SubsetSource
from wseg.labels.generate import generate
from wseg.labels.pam_generators import LocalPAMGenerator, PFAGenerator
from wseg.labels.quality import evaluate_store
from wseg.metrics import confusion_matrix, gap_reduction, mean_iou
from wseg.nets.checkpoint import load_network
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


_VOC = (
    EXPERIMENTS / "scribbles" / "voc_full.yaml",
    EXPERIMENTS / "scribbles" / "voc_weak.yaml",
    EXPERIMENTS / "scribbles" / "voc_pfa.yaml",
)
SETTINGS: dict[str, Setting] = {
    "demo": Setting(
        EXPERIMENTS / "demo" / "scribble_full.yaml",
        EXPERIMENTS / "demo" / "scribble_weak.yaml",
        EXPERIMENTS / "demo" / "scribble_pfa.yaml",
        potts_max_iter=200,
    ),
    "voc": Setting(*_VOC),
    "voc_original": Setting(*_VOC, curated=False, rows=("combined_potts", "combined_crf")),
}


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


def scribble_miou(
    source: SegmentationSource, options: dict[str, Any], progress: bool = True
) -> float:
    """The mIoU of the scribbles against the true masks, on the scribbled pixels (Table 1's WA PFA).

    Args:
        source: The training images.
        options: `scribble_args` of the WA config.
        progress: Show a progress bar.

    Returns:
        mIoU in ``[0, 1]`` (1 for curated scribbles).

    """
    num_classes = source.num_classes
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    for index in tqdm(range(len(source)), desc="scribble mIoU", unit="img", disable=not progress):
        sample = source[index]
        scribble = sample_scribble(
            sample,
            options["scribbles"],
            options["scribble_width"],
            options["scribble_seed"],
            options["curated"],
        )
        target = np.where(scribble == IGNORE_INDEX, IGNORE_INDEX, sample.mask)
        confusion += confusion_matrix(
            torch.from_numpy(scribble), torch.from_numpy(target), num_classes
        )
    return mean_iou(confusion)


def network_miou(checkpoint: Path, source: SegmentationSource, progress: bool = True) -> float:
    """The mIoU of a fitted network on a split (full images, no test-time augmentation).

    Args:
        checkpoint: The fit's ``final.ckpt``.
        source: The images, with masks.
        progress: Show a progress bar.

    Returns:
        mIoU in ``[0, 1]``.

    """
    from wseg.data.transforms import build_eval_transform, transform_sample
    from wseg.nets.predict import predict_probs

    device = "cuda" if torch.cuda.is_available() else "cpu"
    net = load_network(checkpoint, device).net
    transform = build_eval_transform()
    num_classes = source.num_classes
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    name = checkpoint.parent.name
    for index in tqdm(range(len(source)), desc=f"mIoU {name}", unit="img", disable=not progress):
        item = transform_sample(transform, source[index], num_classes)
        with torch.no_grad():
            pred = predict_probs(net, item["image"][None].to(device))[0].argmax(0).cpu()
        confusion += confusion_matrix(pred, item["mask"], num_classes)
    return mean_iou(confusion)


def evaluate_fit(
    stage_dir: Path, train: SegmentationSource, val: SegmentationSource, progress: bool = True
) -> dict[str, float]:
    """Train and val mIoU of a finished fit, cached in ``eval.json`` beside its checkpoint."""
    path = stage_dir / EVAL
    if path.exists():
        return json.loads(path.read_text())
    result = {
        "train": network_miou(stage_dir / FINAL, train, progress),
        "val": network_miou(stage_dir / FINAL, val, progress),
    }
    path.write_text(json.dumps(result, indent=2))
    return result


def gap_table(
    full: dict[str, float], weak: dict[str, float], rows: dict[str, dict[str, float]]
) -> list[dict[str, Any]]:
    """Table 1: PFA, train and val mIoU; full and remaining gap; gap reduction.

    Full gap = val(HFA) - val(WA); remaining gap = val(HFA) - val(row); gap reduction =
    (full gap - remaining gap) / full gap (`wseg.metrics.gap_reduction`). All in percent.

    Args:
        full: ``pfa``, ``train``, ``val`` mIoU (fractions) of the HFA fit.
        weak: The same for the WA fit (``pfa``: the scribbles' own mIoU).
        rows: The same for every PFA row, by row label.

    Returns:
        One dict per row with ``row``, ``pfa``, ``train``, ``val``, ``full_gap``,
        ``remaining_gap`` and ``reduction`` (None where not applicable).

    """
    table = [
        {"row": "HFA", **{k: 100 * full[k] for k in ("pfa", "train", "val")}},
        {"row": "WA", **{k: 100 * weak[k] for k in ("pfa", "train", "val")}},
    ]
    for entry in table:
        entry.update(full_gap=None, remaining_gap=None, reduction=None)
    full_gap = 100 * (full["val"] - weak["val"])
    for label, values in rows.items():
        reduction = None
        if full["val"] != weak["val"]:
            reduction = 100 * gap_reduction(values["val"], weak["val"], full["val"])
        table.append(
            {
                "row": label,
                **{k: 100 * values[k] for k in ("pfa", "train", "val")},
                "full_gap": full_gap,
                "remaining_gap": 100 * (full["val"] - values["val"]),
                "reduction": reduction,
            }
        )
    return table


COLUMNS = ("row", "pfa", "train", "val", "full_gap", "remaining_gap", "reduction")
HEADERS = (
    "row",
    "PFA mIoU (train)",
    "network mIoU (train)",
    "network mIoU (val)",
    "full gap",
    "remaining gap",
    "gap reduction (%)",
)


def format_markdown(table: list[dict[str, Any]]) -> str:
    """Render `gap_table` as a Markdown table (one decimal, ``n/a`` where not applicable)."""

    def cell(value: Any) -> str:
        if value is None:
            return "n/a"
        return value if isinstance(value, str) else f"{value:.1f}"

    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(cell(entry[c]) for c in COLUMNS) + " |" for entry in table]
    return "\n".join(lines) + "\n"


def _verdict(combined: float, alone: float) -> str:
    return "holds" if combined > alone else "does not hold"


def key_findings(table: list[dict[str, Any]]) -> list[str]:
    """Check the paper's key finding: combined PAMs beat the global PAM alone, in PFA and val mIoU.

    Each regulariser is compared with its own (the unregularised global PFA is the WA row's train
    column: the WA network's argmax on the training images).

    Args:
        table: The rows of `gap_table`.

    Returns:
        One line per comparison whose rows are in the table: the two PFA and val mIoUs and whether
        the finding holds for each.

    """
    by_row = {entry["row"]: entry for entry in table}
    pairs = [
        ("combined", "WA", "train"),
        ("combined + Potts", "global + Potts", "pfa"),
        ("combined + CRF", "global + CRF", "pfa"),
    ]
    lines = []
    for combined, alone, column in pairs:
        if combined not in by_row or alone not in by_row:
            continue
        a, b = by_row[combined], by_row[alone]
        name = "global (WA network)" if alone == "WA" else alone
        lines.append(
            f"{combined} vs {name}: PFA {a['pfa']:.1f} vs {b[column]:.1f} "
            f"({_verdict(a['pfa'], b[column])}), val {a['val']:.1f} vs {b['val']:.1f} "
            f"({_verdict(a['val'], b['val'])})"
        )
    return lines


def write_csv(table: list[dict[str, Any]], path: Path) -> None:
    """Write `gap_table` as CSV (empty cells where not applicable)."""
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        for entry in table:
            writer.writerow(
                {
                    k: "" if entry[k] is None else round(entry[k], 2) if k != "row" else entry[k]
                    for k in COLUMNS
                }
            )


def plot_table(table: list[dict[str, Any]], path: Path, title: str) -> None:
    """The paper's Fig. 2: val mIoU after training against PFA mIoU, HFA and WA as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    markers = {row.label: row.marker for row in ROWS.values()}
    figure, axes = plt.subplots(figsize=(6, 4.5))
    for entry in table:
        if entry["row"] in ("HFA", "WA"):
            style = "-" if entry["row"] == "HFA" else "--"
            axes.axhline(entry["val"], color="grey", linestyle=style, label=f"{entry['row']} (val)")
            continue
        axes.scatter(entry["pfa"], entry["val"], marker=markers.get(entry["row"], "o"), s=60)
        axes.annotate(
            entry["row"],
            (entry["pfa"], entry["val"]),
            fontsize=8,
            xytext=(4, 4),
            textcoords="offset points",
        )
    axes.set_xlabel("PFA mIoU on the training images (%)")
    axes.set_ylabel("network mIoU on val (%)")
    axes.set_title(title)
    axes.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def log_wandb(
    table: list[dict[str, Any]], plot: Path, project: str, name: str, folder: Path
) -> None:
    """Log the table and the plot to an offline W&B run in ``folder``."""
    import wandb

    run = wandb.init(project=project, name=name, dir=str(folder), mode="offline", reinit=True)
    try:
        rows = [[entry[c] for c in COLUMNS] for entry in table]
        run.log(
            {
                "gap_table": wandb.Table(columns=list(HEADERS), data=rows),
                "gap_plot": wandb.Image(str(plot)),
            }
        )
        for entry in table:
            if entry["reduction"] is not None:
                run.summary[f"gap_reduction/{entry['row']}"] = entry["reduction"]
    finally:
        run.finish()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``scribbles`` command's arguments."""
    parser.add_argument("--setting", required=True, choices=sorted(SETTINGS))
    parser.add_argument(
        "--rows",
        help=f"comma-separated PFA rows (default: the setting's); any of {','.join(ROWS)}",
    )
    parser.add_argument("--out", type=Path, default=Path("runs/scribbles"), help="output root")
    parser.add_argument("--workers", type=int, default=1, help="processes for the PAM stores")
    parser.add_argument(
        "--potts-max-iter", type=int, help="primal-dual iterations of Potts (default: setting's)"
    )
    parser.add_argument(
        "--potts-lambda",
        type=float,
        help="Potts weight of every Potts row (default: the paper's 10 with a local PAM, 50 alone)",
    )
    parser.add_argument("--no-wandb", action="store_true", help="do not log the table to W&B")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--dry-run", action="store_true", help="print the fit commands only")


def _rows(setting: str, rows: Sequence[str] | None) -> tuple[str, ...]:
    rows = SETTINGS[setting].rows if rows is None else tuple(rows)
    unknown = sorted(set(rows) - set(ROWS))
    if unknown:
        raise ValueError(f"unknown rows {unknown}; expected any of {list(ROWS)}")
    return rows


def _arg_rows(args: argparse.Namespace) -> list[str] | None:
    return None if args.rows is None else [r for r in args.rows.split(",") if r]


def study_stages(setting: str, rows: Sequence[str] | None = None) -> list[Stage]:
    """The fits of the study: HFA, WA, then one per PFA row (its store is set when made)."""
    chosen = setting_named(SETTINGS, setting, COMMAND)
    curation = {"curated_scribbles": chosen.curated}
    return [
        Stage("hfa", chosen.full, split=None),
        Stage("wa", chosen.weak, split=None, data_args=curation),
        *(Stage(name, chosen.pfa, split=None, data_args=curation) for name in _rows(setting, rows)),
    ]


def stages(args: argparse.Namespace) -> list[Stage]:
    """The fits the parsed ``scribbles`` arguments ask for (`study_stages`)."""
    return study_stages(args.setting, _arg_rows(args))


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
    name, out, extra = setting, Path(out) / setting, overrides
    curation = {"curated_scribbles": chosen.curated}
    overrides_of = dict(stage_overrides or {})
    planned = study_stages(setting, rows)
    baselines = planned[:2]
    done = run_stages(
        baselines,
        name,
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
    done = run_stages(fits, name, out, extra=extra, overrides=fit_overrides)
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
    markdown = format_markdown(table) + "".join(f"\n- {line}" for line in key_findings(table))
    (out / "table.md").write_text(markdown + "\n")
    write_csv(table, out / "table.csv")
    plot_table(table, out / "table.png", f"scribble gap study ({name})")
    print(markdown + "\n", flush=True)
    if wandb:
        project = (
            weak_config.get("trainer", {})
            .get("logger", {})
            .get("init_args", {})
            .get("project", "wseg")
        )
        log_wandb(table, out / "table.png", project, f"scribbles_{name}_table", out)
    return table


def run(args: argparse.Namespace, extra: Sequence[str]) -> list[dict[str, Any]]:
    """`run_chain` from the parsed ``scribbles`` arguments (``extra``: for every fit)."""
    return run_chain(
        args.setting,
        args.out,
        extra,
        rows=_arg_rows(args),
        workers=args.workers,
        potts_max_iter=args.potts_max_iter,
        potts_lambda=args.potts_lambda,
        wandb=not args.no_wandb,
        progress=not args.no_progress,
        dry_run=args.dry_run,
        stage_overrides=getattr(args, "stage_overrides", None),
    )
