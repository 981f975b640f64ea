"""Pseudo-label quality from boxes: Bbox-Rect vs GrabCut vs CRF-from-boxes (Bbox-Seg).

Prints mIoU, mean per-box F-beta (beta^2 = 0.3) and generator seconds per image (one core) on the
synthetic dataset and on tiny_coco (real photographs, COCO -> VOC classes; each split and both
together), all measured in one run:

    python -m benchmarks.pseudo_label_quality [--coco-root ../shared/data/tiny_coco] [--workers 2]
        [--datasets tiny_coco] [--methods rect grabcut] [--grabcut-options '{"upsample_to": 128}']
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import torch

from benchmarks import TINY_COCO
from wseg.data.datasets import make_source
from wseg.data.synthetic import generate_synthetic
from wseg.labels.generate import GENERATORS, build_generator, generate
from wseg.labels.quality import evaluate_store
from wseg.metrics import mean_iou


def format_row(name: str, method: str, reports: list[dict], seconds: float, timed: int) -> str:
    """One table row from the quality reports of one or more stores."""
    miou = mean_iou(sum(torch.tensor(r["confusion"]) for r in reports))
    boxes = sum(r["boxes"] for r in reports)
    images = sum(r["images"] for r in reports)
    fbeta = sum(r["fbeta_boxes"] * r["boxes"] for r in reports) / max(boxes, 1)
    return (
        f"{name:<20} {method:<8} {int(images):>6} {boxes:>6} {100 * miou:>6.1f} "
        f"{100 * fbeta:>7.1f} {seconds / max(timed, 1):>8.3f}"
    )


def run_dataset(
    name: str,
    sources: list,
    identities: list,
    out: Path,
    workers: int,
    methods: list[str],
    options: dict[str, dict],
) -> list[str]:
    """Generate and evaluate every method on every source; a row per source and one for all."""
    rows = []
    for method in methods:
        reports, seconds, timed = [], [], []
        for source, identity in zip(sources, identities):
            generator = build_generator(method, **options.get(method, {}))
            summary = generate(source, generator, out, identity, workers=workers)
            runs = summary.store.manifest["runs"]
            seconds.append(sum(r["generator_seconds"] for r in runs))
            timed.append(sum(r["generated"] for r in runs))
            reports.append(evaluate_store(summary.store, source, progress=False))
        if len(sources) > 1:
            for identity, report, sec, num in zip(identities, reports, seconds, timed):
                rows.append(format_row(f"{name}/{identity['split']}", method, [report], sec, num))
        rows.append(format_row(name, method, reports, sum(seconds), sum(timed)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--coco-root", default=str(TINY_COCO), help="tiny_coco's folder")
    parser.add_argument("--synthetic-images", type=int, default=60)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", help="keep the stores here (default: a temporary directory)")
    parser.add_argument(
        "--datasets",
        nargs="+",
        choices=("synthetic", "tiny_coco"),
        default=["synthetic", "tiny_coco"],
    )
    parser.add_argument(
        "--methods", nargs="+", choices=sorted(GENERATORS), default=list(GENERATORS)
    )
    parser.add_argument(
        "--grabcut-options", type=json.loads, default={}, help="GrabCutGenerator fields as JSON"
    )
    args = parser.parse_args()
    options = {"grabcut": args.grabcut_options}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        if "synthetic" in args.datasets:
            synthetic = generate_synthetic(
                out / "synthetic", num_train=args.synthetic_images, num_val=1, layouts=["voc"]
            )
            rows += run_dataset(
                "synthetic",
                [make_source("synthetic", synthetic, "train")],
                [{"name": "synthetic", "root": str(synthetic.resolve()), "split": "train"}],
                out / "stores",
                args.workers,
                args.methods,
                options,
            )
        coco = Path(args.coco_root)
        if "tiny_coco" in args.datasets and coco.is_dir():
            splits = ("train2017", "val2017")
            rows += run_dataset(
                "tiny_coco",
                [make_source("coco", coco, split) for split in splits],
                [{"name": "coco", "root": str(coco.resolve()), "split": s} for s in splits],
                out / "stores",
                args.workers,
                args.methods,
                options,
            )
        elif "tiny_coco" in args.datasets:
            print(f"tiny_coco not found at {coco}; skipped")
    print("\nPseudo labels from boxes vs the true masks (training images, as the papers report)")
    print("F-beta: mean over boxes of object-vs-background inside the box, beta^2 = 0.3")
    print(
        f"s/img: time inside the generator per image, one core; grabcut: {args.grabcut_options}\n"
    )
    header = ("dataset", "method", "images", "boxes", "mIoU", "F-beta", "s/img")
    print("{:<20} {:<8} {:>6} {:>6} {:>6} {:>7} {:>8}".format(*header))
    print("\n".join(rows))


if __name__ == "__main__":
    main()
