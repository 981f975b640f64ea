"""``python -m wseg.compare``: run the rows of one dataset for every seed, print the table."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from wseg.compare.orderings import check_all
from wseg.compare.report import format_table, hardware, log_to_wandb, summarise, write_outputs
from wseg.compare.rows import DATASETS, ROWS, rows_for
from wseg.compare.runner import RowResult, data_args, run_row

DEFAULT_SEEDS = {"synthetic": (0,), "tiny_coco": (0,), "voc": (0,), "camvid": (0, 1)}
"""Seeds per dataset by default: the CamVid ladder reports mean and spread over two."""


def main(argv: Sequence[str] | None = None) -> list[RowResult]:
    """Command line; arguments after ``--`` go to every training stage and validation.

    Args:
        argv: Arguments (None: ``sys.argv[1:]``).

    Returns:
        Every row's result for every seed, in the order run.

    """
    argv = list(sys.argv[1:] if argv is None else argv)
    split_at = argv.index("--") if "--" in argv else len(argv)
    own, fit_args = argv[:split_at], argv[split_at + 1 :]
    parser = argparse.ArgumentParser(
        prog="python -m wseg.compare", description="One-command method comparison."
    )
    parser.add_argument("--data", default="synthetic", choices=DATASETS)
    parser.add_argument("--root", help="dataset root (default: the data config's)")
    parser.add_argument("--rows", nargs="+", choices=list(ROWS), help="default: the data's rows")
    parser.add_argument("--seeds", nargs="+", type=int, help="default: 0 1 on camvid, else 0")
    parser.add_argument("--out", type=Path, help="output folder (default: runs/bench/<data>)")
    parser.add_argument(
        "--no-refine", action="store_true", help="skip the flip/multi-scale and CRF validation"
    )
    parser.add_argument("--no-wandb", action="store_true", help="skip the W&B report run")
    args = parser.parse_args(own)
    names = args.rows or rows_for(args.data)
    missing = [name for name in names if args.data not in ROWS[name].setups]
    if missing:
        parser.error(f"rows {missing} have no {args.data!r} setup; its rows: {rows_for(args.data)}")
    seeds = args.seeds or list(DEFAULT_SEEDS[args.data])
    out = args.out or Path("runs/bench") / args.data
    out.mkdir(parents=True, exist_ok=True)
    extra = [*data_args(args.root), *fit_args]
    start = time.perf_counter()
    results = []
    for name in names:  # seeds inside rows: a cut ladder has whole rows, not half a table
        row = ROWS[name]
        first = out / (row.chain or row.name) / f"seed{seeds[0]}"
        for seed in seeds:
            result = run_row(row, args.data, out, extra, seed, not args.no_refine, first)
            results.append(result)
    summaries = summarise(results)
    orderings = check_all(summaries)
    header = (
        f"Dataset {args.data}; rows {', '.join(names)}; seeds {' '.join(map(str, seeds))}; "
        f"extra arguments: {' '.join(fit_args) or 'none'}. Measured on {hardware()}; this "
        f"invocation took {(time.perf_counter() - start) / 60:.1f} min (cached rows are read back)."
    )
    text = format_table(summaries)
    if orderings:
        text += "\n\nThe papers' orderings (mean val mIoU; spread: the larger std over seeds):\n\n"
        text += "\n".join(f"- {line}" for line in orderings)
    paths = write_outputs(summaries, results, out, header, orderings)
    print(f"\n{header}\n\n{text}\n")
    print(f"Table: {paths['md']} (and .csv); chart: {paths['png']}")
    if not args.no_wandb:
        print(f"W&B run: {log_to_wandb(summaries, paths, out, f'bench_{args.data}')}")
    return results
