"""The EM family (Papandreou et al. 2015) side by side on synthetic data or tiny_coco, one budget.

Prints the mIoU of the Bbox-Rect and Bbox-Seg (CRF from boxes) pseudo labels against the true
training masks, then the val mIoU of DeepLabV3+ (offline ImageNet EfficientNet-Lite0) trained by
each method for the same number of SGD steps: Bbox-Rect, Bbox-Seg, Bbox-EM-Fixed (with the
Bbox-Rect warm-up, and without it as in the paper), EM-Adapt and EM-Fixed from tags, the
semi-supervised Bbox-Seg, Bbox-EM-Fixed and EM-Fixed with a small strong set F, and the strong-only
baseline on F. The paper expects Bbox-Seg > Bbox-Rect and semi > strong-only.

Run: ``python -m benchmarks.em_family [--data synthetic|tiny_coco] [--steps 150] [--methods ...]``;
tiny_coco (50 train2017 / 50 val2017 real photos, COCO -> VOC classes) is read in place.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import seed_everything

from benchmarks import (
    TINY_COCO,
    dataset_root,
    describe_data,
    fit_timed,
    segmentation_data,
    val_miou,
)
from wseg.data.datamodule import WeakSegDataModule
from wseg.labels.generate import generate
from wseg.labels.generators import build_generator
from wseg.labels.quality import evaluate_store
from wseg.methods import BboxRect, BboxSeg, EMAdapt, EMFixed, Supervised

# name -> (method class, method options, datamodule options; "store" marks a Bbox-Seg run,
# "warmup" a Bbox-EM-Fixed run that takes --warmup-steps)
RUNS: dict[str, tuple[type, dict[str, Any], dict[str, Any]]] = {
    "bbox_rect": (BboxRect, {}, {}),
    "bbox_seg": (BboxSeg, {}, {"store": True}),
    "bbox_em_fixed": (EMFixed, {"weak_label": "boxes"}, {"warmup": True}),
    "bbox_em_fixed_nowarm": (EMFixed, {"weak_label": "boxes"}, {}),
    "em_adapt": (EMAdapt, {}, {}),
    "em_fixed": (EMFixed, {}, {}),
    "bbox_seg_semi": (BboxSeg, {"semi": True}, {"store": True, "semi": True}),
    "bbox_em_fixed_semi": (
        EMFixed,
        {"weak_label": "boxes", "semi": True},
        {"semi": True, "warmup": True},
    ),
    "em_fixed_semi": (EMFixed, {"semi": True}, {"semi": True}),
    "strong_only": (Supervised, {}, {"strong_only": True}),
    "full": (Supervised, {}, {}),
}
DEFAULT_METHODS = {
    "synthetic": list(RUNS),
    "tiny_coco": ["bbox_rect", "bbox_seg", "bbox_em_fixed", "bbox_seg_semi", "strong_only"],
}


def fit_and_validate(
    name: str, root: Path, store: Path, args: argparse.Namespace, out: Path
) -> tuple[float, float]:
    """Train one method for ``args.steps`` steps; return its val mIoU (%) and the seconds taken."""
    cls, options, data = RUNS[name]
    seed_everything(0, workers=True)
    split: dict[str, Any] = {}
    if data.get("semi") or data.get("strong_only"):
        split = {"num_strong": args.num_strong}
        if data.get("semi"):
            split["strong_per_batch"] = args.strong_per_batch
        else:
            split["strong_only"] = True
    if data.get("warmup"):
        options = {**options, "warmup_steps": args.warmup_steps}
    datamodule = WeakSegDataModule(
        **segmentation_data(args, root),
        batch_size=args.batch_size,
        num_workers=args.workers,
        pseudo_labels=str(store) if data.get("store") else None,
        **split,
    )
    model = cls(
        num_classes=datamodule.num_classes,
        class_names=list(datamodule.class_names),
        encoder="tu-tf_efficientnet_lite0",
        encoder_weights="offline-lite0",
        lr=args.lr,
        log_images_every_n_epochs=0,
        **options,
    )
    seconds = fit_timed(model, datamodule, args.steps, out / name)
    return val_miou(model, datamodule), seconds


def main() -> None:
    """Measure and print the two tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=sorted(DEFAULT_METHODS), default="synthetic")
    parser.add_argument("--root", default=str(TINY_COCO), help="tiny_coco's folder")
    parser.add_argument("--methods", nargs="+", choices=sorted(RUNS), help="default: per --data")
    parser.add_argument("--train-images", type=int, default=120, help="synthetic only")
    parser.add_argument("--val-images", type=int, default=40, help="synthetic only")
    parser.add_argument("--size", type=int, default=128, help="crop (and synthetic image) side")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument(
        "--warmup-steps", type=int, default=50, help="Bbox-EM-Fixed's steps on Bbox-Rect labels"
    )
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--num-strong", type=int, default=12, help="|F| of the semi runs")
    parser.add_argument("--strong-per-batch", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1, help="DataLoader and CRF workers")
    parser.add_argument("--out", help="keep data, stores and runs here (default: a temp dir)")
    args = parser.parse_args()
    methods = args.methods or DEFAULT_METHODS[args.data]
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        root = dataset_root(args, out)
        datamodule = WeakSegDataModule(**segmentation_data(args, root))
        source = datamodule.make_source(datamodule.train_split)
        identity = {
            "name": datamodule.dataset,
            "root": str(root.resolve()),
            "split": datamodule.train_split,
            "options": datamodule.source_options,
        }
        quality = {}
        stores = {}
        for generator in ("rect", "crf"):
            summary = generate(
                source,
                build_generator(generator),
                out / "stores",
                identity,
                workers=max(1, args.workers),
            )
            stores[generator] = summary.store.path
            quality[generator] = 100 * evaluate_store(summary.store, source, progress=False)["miou"]
        rows = []
        for name in methods:
            miou, seconds = fit_and_validate(name, root, stores["crf"], args, out / "runs")
            rows.append((name, miou, seconds))
            print(f"{name}: val mIoU {miou:.1f} ({seconds:.0f} s)", flush=True)
    print(f"\n{describe_data(args, len(source))}")
    print("Pseudo labels vs the true training masks (mIoU %)")
    print(f"  Bbox-Rect {quality['rect']:.1f}   Bbox-Seg (CRF from boxes) {quality['crf']:.1f}")
    print(
        f"\nval mIoU (%) after {args.steps} steps of {args.batch_size} images "
        f"(semi / strong-only: |F| = {args.num_strong}, {args.strong_per_batch} strong per batch; "
        f"Bbox-EM-Fixed warm-up: {args.warmup_steps} steps)"
    )
    print(f"{'method':<16} {'val mIoU':>8} {'fit s':>7}")
    for name, miou, seconds in rows:
        print(f"{name:<16} {miou:>8.1f} {seconds:>7.0f}")


if __name__ == "__main__":
    main()
