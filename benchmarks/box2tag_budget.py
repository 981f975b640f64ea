"""Box2Tag's single-class network by training budget: one candidate fix at a time (issue 28).

Trains the network of one class (the class with the most kept boxes unless ``--class-name``)
for each budget and each variant, a fresh run per budget, and scores its labels (``x >= 0.5``,
made as `wseg.labels.box2tag_pseudo_gt.BoxSegmenter` makes them) on every box of the class:
mean per-box F-beta (beta^2 = 0.3), the predicted and true object fraction of the boxes and the
share of boxes labelled under 5% object; beside GrabCut and the filled box on the same boxes:

    python -m benchmarks.box2tag_budget [--dataset synthetic|tiny_coco] [--steps 25 100 300]
        [--variants paper hard binary group constant chosen]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks import TINY_COCO
from benchmarks.box2tag_pseudo_gt import VARIANTS as TABLE1_VARIANTS
from benchmarks.box2tag_pseudo_gt import train_class
from wseg.data.box_crops import scan_crops
from wseg.data.datasets import make_source
from wseg.data.synthetic import generate_synthetic
from wseg.data.weak import box_pixel_bounds
from wseg.labels.box2tag_pseudo_gt import BoxSegmenter, _box_truth
from wseg.labels.grabcut import grabcut_labels
from wseg.labels.quality import fbeta

PAPER = {"size_estimate": "soft", "lambda_binary": 0.0, "decoder_norm": "batch", "poly_power": 0.9}
"""The paper's form: Eq. 2 on soft outputs, batch-mode BN in training, the poly schedule."""
VARIANTS: dict[str, dict[str, Any]] = {
    "paper": {},
    "hard": {"size_estimate": "hard"},
    "binary": {"lambda_binary": 1.0},
    "group": {"decoder_norm": "group"},
    "constant": {"poly_power": 0.0},
    "hard+constant": {"size_estimate": "hard", "poly_power": 0.0},
    "chosen": {"size_estimate": "hard", "decoder_norm": "group", "poly_power": 0.0},
    "chosen+binary": {
        "size_estimate": "hard",
        "decoder_norm": "group",
        "poly_power": 0.0,
        "lambda_binary": 1.0,
    },
}


def score_boxes(masks: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> dict[str, float]:
    """F-beta, predicted / true object fraction and the share of near-empty labels of boxes."""
    scores = [fbeta(pred & known, truth) for pred, truth, known in masks]
    predicted = [float((pred & known).sum()) / max(known.sum(), 1) for pred, _, known in masks]
    true = [float(truth.sum()) / max(known.sum(), 1) for _, truth, known in masks]
    return {
        "fbeta": 100 * float(np.mean(scores)),
        "fg": float(np.mean(predicted)),
        "true_fg": float(np.mean(true)),
        "empty": 100 * float(np.mean([p < 0.05 for p in predicted])),
    }


def class_boxes(source, label: int) -> list[tuple[int, int]]:
    """``(image index, box index)`` of every box of ``label`` with true object pixels."""
    found = []
    for index in range(len(source)):
        sample = source[index]
        for k, cls in enumerate(sample.labels):
            truth = _box_truth(sample, k) if int(cls) == label else None
            if truth is not None and truth[0].any():
                found.append((index, k))
    return found


def network_masks(source, boxes, label: int, checkpoint: Path, crop_size: int) -> list[tuple]:
    """The labels of the class network of ``label`` on ``boxes``, with the boxes' truth."""
    segmenter = BoxSegmenter({label: checkpoint}, crop_size, 3)
    out = []
    for index in sorted({i for i, _ in boxes}):
        sample = source[index]
        masks = segmenter(sample)
        for k in (k for i, k in boxes if i == index):
            truth, known = _box_truth(sample, k)
            out.append((masks[k], truth, known))
    return out


def baseline_masks(source, boxes, method: str) -> list[tuple]:
    """GrabCut's (the wseg defaults) or the filled box's labels on ``boxes``."""
    out = []
    for index in sorted({i for i, _ in boxes}):
        sample = source[index]
        if method == "grabcut":
            label, _ = grabcut_labels(sample.image, sample.boxes, sample.labels, core=0.2)
        for k in (k for i, k in boxes if i == index):
            r0, r1, c0, c1 = box_pixel_bounds(sample.boxes[k], sample.size)
            truth, known = _box_truth(sample, k)
            if method == "grabcut":
                pred = label[r0:r1, c0:c1] == sample.labels[k]
            else:
                pred = np.ones(truth.shape, bool)
            out.append((pred, truth, known))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=("synthetic", "tiny_coco"), default="synthetic")
    parser.add_argument("--coco-root", default=str(TINY_COCO), help="tiny_coco's folder")
    parser.add_argument("--train-images", type=int, default=120, help="synthetic images")
    parser.add_argument("--size", type=int, nargs=2, default=(128, 160), help="synthetic H W")
    parser.add_argument("--class-name", help="default: the class with the most kept boxes")
    parser.add_argument("--crop-size", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, nargs="+", default=[25, 100, 300])
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    args.workers = 0
    args.lambda_crf = 100.0 * args.crop_size / 256
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as temporary:
        out = Path(temporary)
        if args.dataset == "synthetic":
            root = generate_synthetic(
                out / "synthetic", num_train=args.train_images, num_val=1, size=tuple(args.size)
            )
            data = {
                "dataset": "synthetic",
                "root": str(root),
                "synthetic_num_train": args.train_images,
                "synthetic_num_val": 1,
                "synthetic_size": tuple(args.size),
            }
            source = make_source("synthetic", root, "train")
        else:
            root = Path(args.coco_root).resolve()
            data = {"dataset": "coco", "root": str(root), "train_split": "train2017"}
            source = make_source("coco", root, "train2017")
        entries = scan_crops(source, progress=False)
        if args.class_name is None:
            kept = [e.label for e in entries if e.kept]
            label = max(set(kept), key=kept.count)
        else:
            label = list(source.classes).index(args.class_name)
        name = source.classes[label]
        boxes = class_boxes(source, label)
        kept = sum(e.kept for e in entries if e.label == label)
        print(f"{args.dataset}: class {name!r}, {kept} kept boxes train, {len(boxes)} scored; "
              f"{args.crop_size}-px crops, batch {args.batch_size}, AdamW lr {args.lr}, "
              f"lambda_crf {args.lambda_crf:g}, T+N", flush=True)  # fmt: skip
        rows = [(m, "-", score_boxes(baseline_masks(source, boxes, m))) for m in ("grabcut", "box")]
        for variant in args.variants:
            options = {**TABLE1_VARIANTS["tight+neg"], **PAPER, **VARIANTS[variant]}
            for steps in args.steps:
                path = out / variant / f"{steps}.ckpt"
                path.parent.mkdir(parents=True, exist_ok=True)
                run = argparse.Namespace(**{**vars(args), "steps": steps})
                seconds = train_class(data, name, options, run, path)
                row = score_boxes(network_masks(source, boxes, label, path, args.crop_size))
                rows.append((variant, steps, row))
                print(f"{variant} {steps}: F-beta {row['fbeta']:.1f}, fg {row['fg']:.2f} "
                      f"(true {row['true_fg']:.2f}), <5% fg {row['empty']:.0f}% "
                      f"({seconds:.0f} s)", flush=True)  # fmt: skip
    print("\n| labels | steps | F-beta | predicted fg in box | true fg | boxes < 5% fg |")
    print("|---|---|---|---|---|---|")
    for variant, steps, row in rows:
        print(f"| {variant} | {steps} | {row['fbeta']:.1f} | {row['fg']:.2f} | "
              f"{row['true_fg']:.2f} | {row['empty']:.0f}% |")  # fmt: skip
    print(f"({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
