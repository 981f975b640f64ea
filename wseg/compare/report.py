"""The comparison's table: seeds summarised as mean and spread, gap reduction, chart, W&B run."""

from __future__ import annotations

import csv
import os
import platform
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from wseg.compare.rows import FULL, WEAK
from wseg.compare.runner import RowResult


@dataclass(frozen=True)
class Spread:
    """Mean and sample standard deviation of one number over seeds (std 0 for one seed)."""

    mean: float
    std: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float | None]) -> Spread | None:
        """The spread of the known values; None when no seed measured it."""
        known = [float(v) for v in values if v is not None]
        if not known:
            return None
        std = statistics.stdev(known) if len(known) > 1 else 0.0
        return cls(statistics.fmean(known), std, len(known))

    def format(self, digits: int = 1) -> str:
        """``61.2`` for one seed, ``61.2 ± 0.8`` for several."""
        text = f"{self.mean:.{digits}f}"
        return text if self.n == 1 else f"{text} ± {self.std:.{digits}f}"


@dataclass
class RowSummary:
    """One row over its seeds."""

    name: str
    title: str
    seeds: list[int]
    label_miou: Spread | None
    miou: Spread
    miou_tta: Spread | None
    miou_tta_crf: Spread | None
    stage_minutes: dict[str, float] = field(default_factory=dict)
    gap_reduction: float | None = None


def summarise(results: Sequence[RowResult]) -> list[RowSummary]:
    """Group per-seed results by row (first-seen order); stage minutes are the seeds' mean."""
    by_row: dict[str, list[RowResult]] = {}
    for result in results:
        by_row.setdefault(result.name, []).append(result)
    summaries = []
    for name, runs in by_row.items():
        stages = {stage for run in runs for stage in run.stage_minutes}
        ordered = [s for s in runs[0].stage_minutes] + sorted(stages - set(runs[0].stage_minutes))
        minutes = {
            s: statistics.fmean(r.stage_minutes[s] for r in runs if s in r.stage_minutes)
            for s in ordered
        }
        miou = Spread.of([r.miou for r in runs])
        assert miou is not None  # every run has its plain mIoU
        summaries.append(
            RowSummary(
                name=name,
                title=runs[0].title,
                seeds=[r.seed for r in runs],
                label_miou=Spread.of([r.label_miou for r in runs]),
                miou=miou,
                miou_tta=Spread.of([r.miou_tta for r in runs]),
                miou_tta_crf=Spread.of([r.miou_tta_crf for r in runs]),
                stage_minutes=minutes,
            )
        )
    add_gap_reduction(summaries)
    return summaries


def add_gap_reduction(summaries: list[RowSummary]) -> None:
    """Gap reduction = (mIoU - weak baseline) / (full masks - weak baseline), mean plain mIoU."""
    by_name = {summary.name: summary for summary in summaries}
    if FULL not in by_name or WEAK not in by_name:
        return
    gap = by_name[FULL].miou.mean - by_name[WEAK].miou.mean
    for summary in summaries:
        summary.gap_reduction = (summary.miou.mean - by_name[WEAK].miou.mean) / gap if gap else None


def _number(value: Spread | float | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    return value.format(digits) if isinstance(value, Spread) else f"{value:.{digits}f}"


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


def format_table(summaries: Sequence[RowSummary]) -> str:
    """The comparison as a Markdown table (mean ± std over the seeds)."""
    lines = [
        "| method | seeds | labels mIoU (train) | val mIoU | + flip/scales | + CRF "
        "| gap reduction | wall time per stage (min) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        lines.append(
            f"| {s.title} | {len(s.seeds)} | {_number(s.label_miou)} | {_number(s.miou)} "
            f"| {_number(s.miou_tta)} | {_number(s.miou_tta_crf)} "
            f"| {_number(s.gap_reduction, 2)} | {format_minutes(s.stage_minutes)} |"
        )
    return "\n".join(lines)


def plot(summaries: Sequence[RowSummary], path: Path) -> Path:
    """A grouped bar chart of the three val mIoU columns (error bars: std over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    x = np.arange(len(summaries))
    figure, axes = plt.subplots(figsize=(max(6.0, 1.2 * len(summaries)), 4.0))
    columns = (("miou", "plain"), ("miou_tta", "flip + scales"), ("miou_tta_crf", "+ CRF"))
    for offset, (key, label) in zip((-0.27, 0.0, 0.27), columns):
        spreads = [getattr(s, key) for s in summaries]
        means = [sp.mean if sp else 0.0 for sp in spreads]
        errors = [sp.std if sp else 0.0 for sp in spreads]
        axes.bar(x + offset, means, width=0.27, yerr=errors, label=label)
    axes.set_xticks(x, [s.title for s in summaries], rotation=25, ha="right", fontsize=7)
    axes.set_ylabel("val mIoU (%)")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def write_outputs(
    summaries: Sequence[RowSummary],
    results: Sequence[RowResult],
    out: Path,
    header: str,
    orderings: Sequence[str] = (),
) -> dict[str, Path]:
    """Write the Markdown table (with ``header`` and the checked orderings), CSV and chart."""
    paths = {"md": out / "results.md", "csv": out / "results.csv", "png": out / "results.png"}
    text = f"{header}\n\n{format_table(summaries)}\n"
    if orderings:
        text += "\nThe papers' orderings (mean val mIoU; spread: the larger std over seeds):\n\n"
        text += "".join(f"- {line}\n" for line in orderings)
    paths["md"].write_text(text)
    with open(paths["csv"], "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["row", "seed", "label_miou", "miou", "miou_tta", "miou_tta_crf", "minutes"]
        )
        for r in results:
            values = (r.label_miou, r.miou, r.miou_tta, r.miou_tta_crf)
            minutes = sum(r.stage_minutes.values())
            writer.writerow([r.name, r.seed, *(_number(v, 3) for v in values), f"{minutes:.2f}"])
    plot(summaries, paths["png"])
    return paths


def log_to_wandb(
    summaries: Sequence[RowSummary], paths: dict[str, Path], out: Path, name: str
) -> Path:
    """One W&B run holding the table, the chart and the Markdown (offline unless ``WANDB_MODE``)."""
    import wandb

    mode = os.environ.get("WANDB_MODE", "offline")  # as the experiment YAMLs: offline by default
    run = wandb.init(project="wseg-bench", name=name, dir=str(out), job_type="bench", mode=mode)
    columns = ["row", "seeds", "label_miou", "miou", "miou_std", "miou_tta", "miou_tta_crf"]
    table = wandb.Table(columns=[*columns, "gap_reduction"])
    for s in summaries:
        mean = [x.mean if x else None for x in (s.label_miou, s.miou)]
        refined = [x.mean if x else None for x in (s.miou_tta, s.miou_tta_crf)]
        table.add_data(s.name, len(s.seeds), *mean, s.miou.std, *refined, s.gap_reduction)
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
