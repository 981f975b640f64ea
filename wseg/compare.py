"""One-command method comparison: every family at one backbone and budget, on one dataset.

    python -m wseg.compare [--data synthetic|tiny_coco|voc] [--root DIR] [--rows ...] [-- <args>]

Each row trains through the real command line (a single ``python -m wseg fit`` stage, or the
family's `wseg.pipeline` chain), then its final network is validated three ways: plain, with
flip and multi-scale averaging, and with both plus the dense CRF. Where a method trains on pseudo
labels their mIoU against the true training masks is measured too. Rows resume: a finished row's
``result.json`` is read back, and unfinished chains skip their finished stages. ``--data`` picks
each row's setup: the CPU demo experiments on the built-in synthetic data, the tiny_coco ones
(real photographs, every fit 20 epochs of 8 at 192 px), or the papers' VOC experiments (GPU
budgets; self-correction with F = 1464); ``--root`` points at another copy of that dataset. The
table goes to ``<out>/results.md`` and ``.csv``, a bar chart to ``results.png``, and all three to
a W&B run. The rows are the box-supervised families; scribbles have their own study
(``python -m wseg.pipeline scribbles``), whose baseline is different.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from wseg.constants import EXPERIMENTS
from wseg.data.datamodule import WeakSegDataModule
from wseg.data.store import PseudoLabelStore
from wseg.labels.generate import generate
from wseg.labels.generators import build_generator
from wseg.labels.quality import evaluate_store
from wseg.pipeline import commands
from wseg.pipeline.stages import FINAL, METRICS, Stage, data_overrides, run_stages

RESULT = "result.json"
TTA_SCALES = (0.75, 1.0, 1.25)


@dataclass(frozen=True)
class Row:
    """One method of the comparison.

    Args:
        name: Row id (its folder under the output).
        title: What the table calls it.
        setups: For each dataset, the experiment YAML of a single-stage row (relative to
            ``experiments/``) or the ``--setting`` of a chain row's pipeline command.
        pipeline: `wseg.pipeline` command of a multi-stage row (None: one ``fit`` stage).
        pipeline_options: Keyword arguments of that pipeline's ``run_chain`` beyond the
            setting, output root and fit arguments (e.g. ``{"mode": "conv"}``).
        labels: ``rect`` to measure Bbox-Rect labels; ``store`` for the pseudo-label store the
            final stage trains on; None when the method makes no labels.

    """

    name: str
    title: str
    setups: dict[str, str]
    pipeline: str | None = None
    pipeline_options: Mapping[str, Any] = field(default_factory=dict)
    labels: str | None = None


DATASETS = ("synthetic", "tiny_coco", "voc")
"""Every row has a setup for each: the CPU demo experiments on the built-in synthetic data, the
tiny_coco experiments (50 + 50 real COCO photographs; every fit 192 px, 20 epochs of 8), and the
papers' PASCAL VOC 2012 experiments (GPU budgets; ``--root`` is the VOC2012 folder with SBD)."""


def _setups(synthetic: str, tiny_coco: str, voc: str) -> dict[str, str]:
    return dict(zip(DATASETS, (synthetic, tiny_coco, voc), strict=True))


ROWS: dict[str, Row] = {
    row.name: row
    for row in (
        Row(
            "full",
            "Full masks (Supervised)",
            _setups("demo/supervised.yaml", "supervised_tiny_coco.yaml", "supervised_voc.yaml"),
        ),
        Row(
            "bbox_rect",
            "Bbox-Rect (weak baseline)",
            _setups("demo/bbox_rect.yaml", "bbox_rect_tiny_coco.yaml", "bbox_rect_voc.yaml"),
            labels="rect",
        ),
        Row(
            "bbox_seg",
            "Bbox-Seg (Papandreou 2015)",
            _setups("demo", "tiny_coco", "voc"),
            pipeline="bbox-seg",
            labels="store",
        ),
        Row(
            "selfcorr_conv",
            "Self-correction, conv (Ibrahim 2020)",
            _setups("demo", "tiny_coco", "voc_f1464"),
            pipeline="selfcorr",
            pipeline_options={"mode": "conv"},
        ),
        Row(
            "box2seg",
            "Box2Seg (Kulharia 2020)",
            _setups("demo", "tiny_coco", "voc"),
            pipeline="box2seg",
            labels="store",
        ),
        Row(
            "box2tag",
            "Box2Tag, overlap-void (Ji & Veksler 2021)",
            _setups("demo", "tiny_coco", "voc"),
            pipeline="box2tag",
            pipeline_options={"rule": "overlap-void"},
            labels="store",
        ),
    )
}
FULL, WEAK = "full", "bbox_rect"


@dataclass
class RowResult:
    """The measured numbers of one row (percentages; times in minutes)."""

    name: str
    title: str
    label_miou: float | None
    miou: float
    miou_tta: float
    miou_tta_crf: float
    stage_minutes: dict[str, float] = field(default_factory=dict)
    gap_reduction: float | None = None


def data_args(root: str | None) -> list[str]:
    """The ``--data.init_args.root`` override for every stage (none without ``root``)."""
    return [] if root is None else ["--data.init_args.root", root]


def train_row(row: Row, data: str, out: Path, extra: Sequence[str]) -> Path:
    """Train a row on ``data`` (resuming finished stages); return its final stage's folder."""
    if data not in row.setups:
        raise ValueError(f"row {row.name!r} has no setup for {data!r}; it has {sorted(row.setups)}")
    setup = row.setups[data]
    if row.pipeline is None:
        stage = Stage(row.name, EXPERIMENTS / setup, split=None)
        results = run_stages([stage], row.name, out, extra=extra)
    else:
        available = commands()
        if row.pipeline not in available:
            raise ValueError(f"row {row.name!r}: no pipeline command {row.pipeline!r}")
        run_chain = available[row.pipeline].run_chain
        results = run_chain(setup, out, extra, **row.pipeline_options)
    if not results:
        raise RuntimeError(f"row {row.name!r}: its chain finished no stage")
    return Path(list(results.values())[-1]["stage_dir"])


def stage_minutes(out: Path) -> dict[str, float]:
    """Wall time of every stage under ``out`` that recorded one, in minutes, in the order run."""
    minutes = {}
    for path in sorted(out.glob(f"**/{METRICS}"), key=lambda path: path.stat().st_mtime):
        metrics = json.loads(path.read_text())
        if "wall_s" in metrics:
            minutes[path.parent.name] = metrics["wall_s"] / 60
    return minutes


def _datamodule(stage_dir: Path, extra: Sequence[str]) -> WeakSegDataModule:
    config = yaml.safe_load((stage_dir / "config.yaml").read_text())
    datamodule = WeakSegDataModule(**{**config["data"]["init_args"], **data_overrides(extra)})
    datamodule.prepare_data()
    return datamodule


def label_miou(row: Row, stage_dir: Path, out: Path, extra: Sequence[str]) -> float | None:
    """The mIoU (%) of the row's training labels against the true masks of the training split."""
    if row.labels is None:
        return None
    datamodule = _datamodule(stage_dir, extra)
    source = datamodule.make_source(datamodule.train_split)
    if row.labels == "rect":
        identity = {"name": datamodule.dataset, "root": str(datamodule.root)}
        identity["split"] = datamodule.train_split
        store = generate(source, build_generator("rect"), out / "labels", identity).store
    else:
        path = datamodule.pseudo_labels
        if path is None:
            raise RuntimeError(f"row {row.name!r}: its final stage trains on no pseudo labels")
        store = PseudoLabelStore(path)
    return 100 * evaluate_store(store, source)["miou"]


def validate(stage_dir: Path, extra: Sequence[str], tta_and_crf: bool) -> dict[str, float]:
    """Validate a stage's ``final.ckpt`` with its own config; the metrics as percentages."""
    from wseg.cli import main as cli_main

    args = ["validate", "--config", str(stage_dir / "config.yaml"), *extra]
    args += ["--ckpt_path", str(stage_dir / FINAL), "--trainer.logger", "false"]
    args += ["--trainer.default_root_dir", str(stage_dir / "bench_eval")]
    if tta_and_crf:
        args += ["--model.init_args.tta_flip", "true", "--model.init_args.crf_postprocess", "true"]
        args += ["--model.init_args.tta_scales", json.dumps(list(TTA_SCALES))]
    cli = cli_main(args)
    return {key: 100 * float(value) for key, value in cli.trainer.callback_metrics.items()}


def run_row(row: Row, data: str, out: Path, extra: Sequence[str]) -> RowResult:
    """Train, measure and cache one row (a cached row is read back)."""
    row_dir = out / row.name
    cached = row_dir / RESULT
    if cached.exists():
        print(f"[bench] {row.name}: done ({cached}), read back", flush=True)
        return RowResult(**json.loads(cached.read_text()))
    stage_dir = train_row(row, data, row_dir, extra)
    plain = validate(stage_dir, extra, tta_and_crf=False)
    refined = validate(stage_dir, extra, tta_and_crf=True)
    result = RowResult(
        name=row.name,
        title=row.title,
        label_miou=label_miou(row, stage_dir, row_dir, extra),
        miou=plain["val/miou"],
        miou_tta=refined["val/miou"],
        miou_tta_crf=refined["val/miou_crf"],
        stage_minutes=stage_minutes(row_dir),
    )
    cached.write_text(json.dumps(result.__dict__, indent=2))
    return result


def add_gap_reduction(results: list[RowResult]) -> None:
    """Gap reduction = (mIoU - weak baseline) / (full masks - weak baseline), plain mIoU."""
    by_name = {result.name: result for result in results}
    if FULL not in by_name or WEAK not in by_name:
        return
    gap = by_name[FULL].miou - by_name[WEAK].miou
    for result in results:
        result.gap_reduction = (result.miou - by_name[WEAK].miou) / gap if gap else None


def _number(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_minutes(minutes: dict[str, float]) -> str:
    """Stage wall times for the table: Box2Tag's per-class stages (``class_*``) as one entry.

    ``{"class_cat": 0.7, "class_dog": 1.1, "final": 2.9}`` -> ``"2 classes 0.7-1.1 (1.8 in all),
    final 2.9"``; the CSV keeps every stage.
    """
    classes = [value for name, value in minutes.items() if name.startswith("class_")]
    parts = []
    if len(classes) > 1:
        low, high = min(classes), max(classes)
        spread = f"{low:.1f}" if f"{low:.1f}" == f"{high:.1f}" else f"{low:.1f}-{high:.1f}"
        parts.append(f"{len(classes)} classes {spread} ({sum(classes):.1f} in all)")
    for name, value in minutes.items():
        if len(classes) <= 1 or not name.startswith("class_"):
            parts.append(f"{name} {value:.1f}")
    return ", ".join(parts)


def format_table(results: list[RowResult]) -> str:
    """The comparison as a Markdown table."""
    lines = [
        "| method | labels mIoU (train) | val mIoU | + flip/scales | + CRF | gap reduction "
        "| wall time per stage (min) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        times = format_minutes(r.stage_minutes)
        lines.append(
            f"| {r.title} | {_number(r.label_miou)} | {_number(r.miou)} | {_number(r.miou_tta)} "
            f"| {_number(r.miou_tta_crf)} | {_number(r.gap_reduction, 2)} | {times} |"
        )
    return "\n".join(lines)


def plot(results: list[RowResult], path: Path) -> Path:
    """A grouped bar chart of the three val mIoU columns."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    x = np.arange(len(results))
    figure, axes = plt.subplots(figsize=(max(6.0, 1.6 * len(results)), 4.0))
    columns = (("miou", "plain"), ("miou_tta", "flip + scales"), ("miou_tta_crf", "+ CRF"))
    for offset, (key, label) in zip((-0.27, 0.0, 0.27), columns):
        axes.bar(x + offset, [getattr(r, key) for r in results], width=0.27, label=label)
    axes.set_xticks(x, [r.title for r in results], rotation=20, ha="right", fontsize=8)
    axes.set_ylabel("val mIoU (%)")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def write_outputs(results: list[RowResult], out: Path, header: str) -> dict[str, Path]:
    """Write the Markdown table (with ``header``), the CSV and the chart."""
    paths = {"md": out / "results.md", "csv": out / "results.csv", "png": out / "results.png"}
    paths["md"].write_text(f"{header}\n\n{format_table(results)}\n")
    with open(paths["csv"], "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["row", "label_miou", "miou", "miou_tta", "miou_tta_crf", "gap_reduction", "minutes"]
        )
        for r in results:
            values = (r.label_miou, r.miou, r.miou_tta, r.miou_tta_crf, r.gap_reduction)
            minutes = sum(r.stage_minutes.values())
            writer.writerow([r.name, *(_number(v, 3) for v in values), f"{minutes:.2f}"])
    plot(results, paths["png"])
    return paths


def log_to_wandb(results: list[RowResult], paths: dict[str, Path], out: Path, name: str) -> Path:
    """One W&B run holding the table, the chart and the Markdown (offline unless ``WANDB_MODE``)."""
    import wandb

    mode = os.environ.get("WANDB_MODE", "offline")  # as the experiment YAMLs: offline by default
    run = wandb.init(project="wseg-bench", name=name, dir=str(out), job_type="bench", mode=mode)
    columns = ["row", "label_miou", "miou", "miou_tta", "miou_tta_crf", "gap_reduction"]
    table = wandb.Table(columns=columns)
    for r in results:
        table.add_data(r.name, r.label_miou, r.miou, r.miou_tta, r.miou_tta_crf, r.gap_reduction)
    run.log({"comparison": table, "chart": wandb.Image(str(paths["png"]))})
    run.save(str(paths["md"]), base_path=str(out), policy="now")
    folder = Path(run.dir).parent
    run.finish()
    return folder


def hardware() -> str:
    """One line describing where the table was measured."""
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    cpu = platform.processor() or platform.machine()
    return f"{cpu}, {torch.get_num_threads()} torch threads, {device}"


def main(argv: Sequence[str] | None = None) -> list[RowResult]:
    """Command line; arguments after ``--`` go to every training stage and validation.

    Args:
        argv: Arguments (None: ``sys.argv[1:]``).

    Returns:
        The rows, in the order asked for.

    """
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    split_at = argv.index("--") if "--" in argv else len(argv)
    own, fit_args = argv[:split_at], argv[split_at + 1 :]
    parser = argparse.ArgumentParser(
        prog="python -m wseg.compare", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--data", default="synthetic", choices=DATASETS)
    parser.add_argument("--root", help="dataset root (default: the data config's)")
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--out", type=Path, help="output folder (default: runs/bench/<data>)")
    parser.add_argument("--no-wandb", action="store_true", help="skip the W&B report run")
    args = parser.parse_args(own)
    out = args.out or Path("runs/bench") / args.data
    out.mkdir(parents=True, exist_ok=True)
    extra = [*data_args(args.root), *fit_args]
    start = time.perf_counter()
    results = [run_row(ROWS[name], args.data, out, extra) for name in args.rows]
    add_gap_reduction(results)
    header = (
        f"Dataset {args.data}; rows {', '.join(args.rows)}; extra arguments: "
        f"{' '.join(fit_args) or 'none'}. Measured on {hardware()}; this invocation took "
        f"{(time.perf_counter() - start) / 60:.1f} min (cached rows are not retrained)."
    )
    paths = write_outputs(results, out, header)
    print(f"\n{header}\n\n{format_table(results)}\n")
    print(f"Table: {paths['md']} (and .csv); chart: {paths['png']}")
    if not args.no_wandb:
        print(f"W&B run: {log_to_wandb(results, paths, out, f'bench_{args.data}')}")
    return results


if __name__ == "__main__":
    main()
