"""Pseudo-label quality from boxes: Bbox-Rect vs GrabCut vs CRF-from-boxes (Bbox-Seg).

Prints mIoU, mean per-box F-beta (beta^2 = 0.3) and generator seconds per image (one core) on the
synthetic dataset and on tiny_coco (real photographs, COCO -> VOC classes), all measured in one run:

    python -m benchmarks.pseudo_label_quality [--coco-root ../shared/data/tiny_coco] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import torch

from wseg.data.datasets import make_source
from wseg.data.synthetic import generate_synthetic
from wseg.labels.generate import build_generator, generate
from wseg.labels.quality import evaluate_store
from wseg.metrics import mean_iou

GENERATORS = ("rect", "grabcut", "crf")


def run_dataset(name: str, sources: list, identities: list, out: Path, workers: int) -> list[str]:
    rows = []
    for generator_name in GENERATORS:
        seconds = timed = 0.0
        reports = []
        for source, identity in zip(sources, identities):
            generator = build_generator(generator_name)
            summary = generate(source, generator, out, identity, workers=workers)
            runs = summary.store.manifest["runs"]
            seconds += sum(r["generator_seconds"] for r in runs)
            timed += sum(r["generated"] for r in runs)
            reports.append(evaluate_store(summary.store, source, progress=False))
        miou = mean_iou(sum(torch.tensor(r["confusion"]) for r in reports))
        boxes = sum(r["boxes"] for r in reports)
        images = sum(r["images"] for r in reports)
        fbeta = sum(r["fbeta_boxes"] * r["boxes"] for r in reports) / boxes
        rows.append(
            f"{name:<12} {generator_name:<8} {int(images):>6} {boxes:>6} {100 * miou:>6.1f} "
            f"{100 * fbeta:>7.1f} {seconds / max(timed, 1):>8.3f}"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--coco-root", default="../shared/data/tiny_coco")
    parser.add_argument("--synthetic-images", type=int, default=60)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", help="keep the stores here (default: a temporary directory)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        synthetic = generate_synthetic(
            out / "synthetic", num_train=args.synthetic_images, num_val=1, layouts=["voc"]
        )
        rows = run_dataset(
            "synthetic",
            [make_source("synthetic", synthetic, "train")],
            [{"name": "synthetic", "root": str(synthetic.resolve()), "split": "train"}],
            out / "stores",
            args.workers,
        )
        coco = Path(args.coco_root)
        if coco.is_dir():
            splits = ("train2017", "val2017")
            rows += run_dataset(
                "tiny_coco",
                [make_source("coco", coco, split) for split in splits],
                [{"name": "coco", "root": str(coco.resolve()), "split": s} for s in splits],
                out / "stores",
                args.workers,
            )
        else:
            print(f"tiny_coco not found at {coco}; synthetic only")
    print("\nPseudo labels from boxes vs the true masks (training images, as the papers report)")
    print("F-beta: mean over boxes of object-vs-background inside the box, beta^2 = 0.3")
    print("s/img: time inside the generator per image, one core\n")
    header = ("dataset", "method", "images", "boxes", "mIoU", "F-beta", "s/img")
    print("{:<12} {:<8} {:>6} {:>6} {:>6} {:>7} {:>8}".format(*header))
    print("\n".join(rows))


if __name__ == "__main__":
    main()
