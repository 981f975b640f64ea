"""Table 1 of the PAM gap study: the gap table, its Markdown, CSV and plot (Fig. 2), W&B.

Full gap = val(HFA) - val(WA); remaining gap = val(HFA) - val(row); gap reduction =
(full gap - remaining gap) / full gap (`wseg.metrics.gap_reduction`).
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from wseg.metrics import gap_reduction

__all__ = [
    "COLUMNS",
    "HEADERS",
    "format_markdown",
    "gap_table",
    "key_findings",
    "log_wandb",
    "plot_table",
    "write_csv",
]


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


def plot_table(
    table: list[dict[str, Any]], path: Path, title: str, markers: Mapping[str, str] | None = None
) -> None:
    """The paper's Fig. 2: val mIoU after training against PFA mIoU, HFA and WA as lines.

    Args:
        table: The rows of `gap_table`.
        path: The PNG to write.
        title: The plot's title.
        markers: Matplotlib marker by row label (default ``o``).

    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    markers = markers or {}
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
