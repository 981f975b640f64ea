"""Self-correction (Ibrahim et al. 2020) on the synthetic data: ancillary, no / linear / conv SC.

Runs ``python -m wseg.pipeline selfcorr --setting demo --mode all`` (F = 40 of 200 synthetic
images; DeepLabV3+ with the offline ImageNet EfficientNet-Lite0 encoder, 128 px crops) with the same
number of steps for every stage, and prints each model's val mIoU next to the paper's ordering
(ancillary highest, since it sees the val boxes; conv and linear at or above no self-correction).
Conv SC also has its pretraining stage (F only), as in the paper.

Run: ``python -m benchmarks.self_correction [--steps 200]`` (six stages, tens of minutes
on 2 cores).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from wseg.pipeline import main as pipeline

ROWS = (
    ("ancillary", "Ancillary model (on F, with val boxes)"),
    ("none", "No self-correction"),
    ("linear", "Linear self-correction"),
    ("ancillary_half", "Ancillary model on half of F (conv)"),
    ("conv_pretrain", "Conv SC stage 2 (F only)"),
    ("conv", "Conv self-correction"),
)


def main() -> None:
    """Run the demo chain and print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=200, help="optimiser steps of every stage")
    parser.add_argument("--batch-size", type=int, default=8, help="training images per step")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/selfcorr"))
    args = parser.parse_args()
    start = time.perf_counter()
    extra = ["--trainer.max_steps", str(args.steps), "--trainer.val_check_interval", "50"]
    extra += ["--data.init_args.batch_size", str(args.batch_size)]
    extra += ["--trainer.enable_progress_bar", "false"]
    results = pipeline(
        ["selfcorr", "--setting", "demo", "--mode", "all", "--out", str(args.out), "--", *extra]
    )
    minutes = (time.perf_counter() - start) / 60
    miou = {name: 100 * results[name]["val/miou"] for name, _ in ROWS if name in results}
    budget = f"{args.steps} steps of {args.batch_size} images per stage"
    print(f"\nSelf-correction on synthetic data, {budget} ({minutes:.1f} min)")
    print(f"{'model':<42} {'val mIoU':>8}")
    for name, label in ROWS:
        print(f"{label:<42} {miou.get(name, float('nan')):8.2f}")
    best_primary = max(miou["none"], miou["linear"], miou["conv"])
    print("\nPaper's ordering:")
    print(f"  ancillary above every primary model: {miou['ancillary'] > best_primary}")
    print(f"  linear >= no self-correction:        {miou['linear'] >= miou['none']}")
    print(f"  conv >= no self-correction:          {miou['conv'] >= miou['none']}")


if __name__ == "__main__":
    main()
