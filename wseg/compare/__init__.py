"""One-command method comparison: every family at one backbone and budget, on one dataset.

    python -m wseg.compare [--data synthetic|tiny_coco|voc|camvid] [--root DIR] [--rows ...]
                           [--seeds 0 1] [--no-refine] [-- <args>]

Each row trains through the real command line (a single ``python -m wseg fit`` stage, or the
family's `wseg.pipeline` chain) once per seed, then its final network is validated plainly and,
unless ``--no-refine``, with flip and multi-scale averaging and with both plus the dense CRF.
Where a method trains on pseudo labels their mIoU against the true training masks is measured
too. Rows resume: a finished row's ``result.json`` is read back, and unfinished chains skip their
finished stages. The table (mean ± std over seeds) goes to ``<out>/results.md`` with the papers'
orderings checked against the spread (`wseg.compare.orderings`), per-seed numbers to ``.csv``, a
bar chart to ``results.png``, and all three to a W&B run. Scribbles have their own study
(``python -m wseg.pipeline scribbles``), whose baseline is different.

Modules: `rows` (what runs on which dataset), `runner` (one row and seed), `report` (the table),
`orderings` (the papers' claims), `command` (the command line).
"""

from wseg.compare.command import main
from wseg.compare.orderings import ORDERINGS, Ordering, check, check_all
from wseg.compare.report import (
    RowSummary,
    Spread,
    add_gap_reduction,
    format_minutes,
    format_table,
    log_to_wandb,
    summarise,
    write_outputs,
)
from wseg.compare.rows import DATASETS, FULL, ROWS, WEAK, Row, rows_for
from wseg.compare.runner import RESULT, RowResult, data_args, run_row, train_row, validate

__all__ = [
    "DATASETS",
    "FULL",
    "ORDERINGS",
    "RESULT",
    "ROWS",
    "WEAK",
    "Ordering",
    "Row",
    "RowResult",
    "RowSummary",
    "Spread",
    "add_gap_reduction",
    "check",
    "check_all",
    "data_args",
    "format_minutes",
    "format_table",
    "log_to_wandb",
    "main",
    "rows_for",
    "run_row",
    "summarise",
    "train_row",
    "validate",
    "write_outputs",
]
