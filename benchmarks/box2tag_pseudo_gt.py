"""Box2Tag's box segmentations and pseudo GT against GrabCut and CRF boxes (Tables 1 and 2).

Trains one single-class network per class (in this process, one after another), writes the
pseudo-GT stores of the three overlap rules and the GrabCut and CRF-from-boxes stores, and prints
per-box F-beta (beta^2 = 0.3, mean over classes as in Table 1) and mIoU / void fraction of the
training split (Table 2), all from one run:

    python -m benchmarks.box2tag_pseudo_gt [--dataset synthetic|tiny_coco] [--steps 150]
        [--variants tight+neg tight central]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import seed_everything

from benchmarks import TINY_COCO, fit_timed
from wseg.data.box_crops import BoxCropDataModule, scan_crops
from wseg.data.datasets import make_source
from wseg.data.synthetic import generate_synthetic
from wseg.labels.box2tag_pseudo_gt import RULES, generate_box2tag
from wseg.labels.generate import generate
from wseg.labels.generators import build_generator
from wseg.labels.quality import evaluate_store
from wseg.methods.box2tag import Box2TagSingleClass

# Table 1's rows: ours(T+N), ours(T), ours (Veksler's central prior, no negatives).
VARIANTS: dict[str, dict[str, Any]] = {
    "tight+neg": {"positional": "tight", "lambda_neg": 1.0},
    "tight": {"positional": "tight", "lambda_neg": 0.0},
    "central": {"positional": "central", "lambda_neg": 0.0},
}
PAPER_FBETA = {"tight+neg": 89.50, "tight": 89.20, "central": 86.79, "grabcut": 76.68, "crf": 81.00}
PAPER_TABLE2 = {
    "overlap-small": (77.3, 0.0),
    "overlap-void": (79.9, 3.1),
    "overlap-back-void": (90.2, 23.5),
}


def train_class(
    data: dict[str, Any], name: str, variant: dict[str, Any], args: argparse.Namespace, path: Path
) -> float:
    """Train the single-class network of ``name``; save its checkpoint; return the seconds."""
    seed_everything(0, verbose=False)
    datamodule = BoxCropDataModule(
        name,
        crop_size=args.crop_size,
        batch_size=args.batch_size,
        num_workers=args.workers,
        progress=False,
        **data,
    )
    model = Box2TagSingleClass(
        num_classes=2,
        class_names=["background", name],
        arch="unet",
        encoder="tu-tf_efficientnet_lite0",
        encoder_weights="offline-lite0",
        optimizer="adamw",
        lr=args.lr,
        weight_decay=0.0,
        head_lr_mult=1.0,
        log_images_every_n_epochs=0,
        lambda_crf=args.lambda_crf,
        **variant,
    )
    seconds = fit_timed(model, datamodule, args.steps, path.parent, accelerator="auto")
    model.trainer.save_checkpoint(path)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", choices=("synthetic", "tiny_coco"), default="synthetic")
    parser.add_argument("--coco-root", default=str(TINY_COCO), help="tiny_coco's folder")
    parser.add_argument("--coco-split", default="train2017")
    parser.add_argument("--train-images", type=int, default=120, help="synthetic images")
    parser.add_argument("--size", type=int, nargs=2, default=(128, 160), help="synthetic H W")
    parser.add_argument("--crop-size", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=150, help="training steps per class")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument(
        "--lambda-crf",
        type=float,
        help="sparse CRF weight (default: the paper's 100 scaled to the crop, 100 x crop / 256)",
    )
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=["tight+neg"])
    parser.add_argument("--out", help="keep networks and stores here (default: a temporary dir)")
    args = parser.parse_args()
    if args.lambda_crf is None:
        args.lambda_crf = 100.0 * args.crop_size / 256
    print(f"lambda_crf {args.lambda_crf:g} at {args.crop_size}-px crops")

    with tempfile.TemporaryDirectory() as temporary:
        out = Path(args.out or temporary)
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
            identity = {"name": "synthetic", "root": str(root), "split": "train"}
        else:
            root = Path(args.coco_root).resolve()
            data = {"dataset": "coco", "root": str(root), "train_split": args.coco_split}
            source = make_source("coco", root, args.coco_split)
            identity = {"name": "coco", "root": str(root), "split": args.coco_split}
        entries = scan_crops(source, progress=False)
        names = source.classes
        present = sorted({e.label for e in entries})
        print(f"{args.dataset}: {len(source)} images, {len(entries)} boxes, "
              f"{sum(e.kept for e in entries)} kept, {len(present)} classes")  # fmt: skip

        rows: list[tuple[str, float, float, float, float | None]] = []
        table2: dict[str, dict[str, Any]] = {}
        for variant in args.variants:
            checkpoints, seconds = {}, 0.0
            for label in present:
                name = names[label]
                path = out / variant / f"{name.replace(' ', '_')}.ckpt"
                path.parent.mkdir(parents=True, exist_ok=True)
                seconds += train_class(data, name, VARIANTS[variant], args, path)
                checkpoints[name] = path
            device = "cuda" if torch.cuda.is_available() else "cpu"
            stores = generate_box2tag(
                source,
                checkpoints,
                out / variant / "pseudo",
                identity,
                crop_size=args.crop_size,
                device=device,
                progress=False,
            )
            raw = stores["overlap-small"].manifest["runs"][-1]["box_fbeta"]
            quality = stores["overlap-small"].manifest["quality"]
            rows.append((f"Box2Tag {variant}", quality["fbeta"], quality["miou"], seconds, raw))
            if variant == args.variants[0]:
                table2 = {rule: stores[rule].manifest["quality"] for rule in RULES}
        for method in ("grabcut", "crf"):
            start = time.perf_counter()
            generator = build_generator(method)
            summary = generate(source, generator, out / "baselines", identity, progress=False)
            quality = evaluate_store(summary.store, source, progress=False)
            seconds = time.perf_counter() - start
            rows.append((method, quality["fbeta"], quality["miou"], seconds, None))

    print("\nTable 1 (per-box F-beta, beta^2 = 0.3, mean over classes; merged smallest-box-wins)")
    print(f"{'method':<20} {'F-beta':>7} {'raw':>7} {'mIoU':>6} {'train s':>8} {'paper F':>8}")
    for name, fbeta, miou, seconds, raw in rows:
        key = name.removeprefix("Box2Tag ")
        raw_text = "-" if raw is None else f"{100 * raw:.1f}"
        paper = PAPER_FBETA.get(key)
        print(f"{name:<20} {100 * fbeta:>7.1f} {raw_text:>7} {100 * miou:>6.1f} {seconds:>8.1f} "
              f"{'-' if paper is None else paper:>8}")  # fmt: skip
    print(f"\nTable 2 (pseudo GT of Box2Tag {args.variants[0]} vs true masks, training split)")
    print(f"{'rule':<20} {'mIoU':>6} {'void %':>7} {'paper':>14}")
    for rule, quality in table2.items():
        paper = PAPER_TABLE2[rule]
        print(f"{rule:<20} {100 * quality['miou']:>6.1f} {100 * quality['void_fraction']:>7.1f} "
              f"{paper[0]:>6} / {paper[1]:>5}")  # fmt: skip
    order = sorted(table2, key=lambda rule: table2[rule]["miou"])
    print(f"mIoU order (low to high): {' < '.join(order)}; paper: overlap-small < overlap-void < "
          "overlap-back-void")  # fmt: skip


if __name__ == "__main__":
    main()
