"""Real photographs: Bbox-Rect label quality and Supervised vs BboxRect fits on tiny_coco.

tiny_coco (../shared/data/tiny_coco, read in place) holds 50 train2017 and 50 val2017 COCO photos;
COCO -> the 20 VOC classes. Prints the mIoU of Bbox-Rect labels against the true train masks, then
fits ``experiments/{supervised,bbox_rect}_tiny_coco.yaml`` (DeepLabV3+ with the offline ImageNet
EfficientNet-Lite0 encoder) through the real command line and prints their val mIoU.

Run: ``python -m benchmarks.tiny_coco_fit [--epochs 20]`` (about 10 minutes per method on 2 cores).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from wseg.cli import main as cli_main
from wseg.data.datasets import make_source
from wseg.data.weak import rect_labels
from wseg.metrics import confusion_matrix, mean_iou

REPO = Path(__file__).resolve().parents[1]
TINY_COCO = REPO.parent / "shared" / "data" / "tiny_coco"


def rect_label_miou(root: Path, split: str) -> tuple[float, int]:
    """mIoU (%) of Bbox-Rect labels against the true masks, and the number of classes present."""
    source = make_source("coco", root, split, class_map="voc")
    total = torch.zeros(source.num_classes, source.num_classes, dtype=torch.long)
    for sample in source:
        labels = rect_labels(sample.boxes, sample.labels, sample.size)
        total += confusion_matrix(
            torch.from_numpy(labels.astype(np.int64)),
            torch.from_numpy(sample.mask.astype(np.int64)),
            source.num_classes,
        )
    return mean_iou(total) * 100, int((total.sum(1) > 0).sum())


def main() -> None:
    """Measure and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=str(TINY_COCO))
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--out", default="runs/bench_tiny_coco")
    parser.add_argument("--methods", nargs="+", default=["supervised", "bbox_rect"])
    args = parser.parse_args()
    root = Path(args.root)

    rect, classes = rect_label_miou(root, "train2017")
    rows = []
    for name in args.methods:
        config = REPO / "experiments" / f"{name}_tiny_coco.yaml"
        start = time.perf_counter()
        cli = cli_main(
            ["fit", "--config", str(config), "--data.init_args.root", str(root)]
            + ["--trainer.max_epochs", str(args.epochs), "--trainer.enable_progress_bar", "false"]
            + ["--trainer.default_root_dir", args.out]
            + ["--trainer.logger.init_args.save_dir", args.out]
        )
        minutes = (time.perf_counter() - start) / 60
        rows.append((type(cli.model).__name__, float(cli.trainer.callback_metrics["val/miou"])))
        cli.trainer.logger.experiment.finish()
        print(f"{name}: {rows[-1][1] * 100:.1f} val mIoU, {minutes:.1f} min")

    print(f"\ntiny_coco (COCO -> VOC classes), {args.epochs} epochs, DeepLabV3+ Lite0 (ImageNet):")
    print("| row | mIoU (%) |")
    print("|---|---|")
    print(f"| Bbox-Rect labels vs true masks, train2017 ({classes} classes present) | {rect:.1f} |")
    for method, miou in rows:
        print(f"| {method}, val2017 | {miou * 100:.1f} |")


if __name__ == "__main__":
    main()
