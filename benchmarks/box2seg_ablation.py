"""Box2Seg's ablation (Table 3) on the synthetic data or tiny_coco, every row at one step budget.

Makes the GrabCut store of the training images (and prints its mIoU against the true masks, with
Bbox-Rect's), pretrains the embeddings (stage 1) for the rows with L_A, then trains each row for
the same number of SGD steps: Box, GrabCut, Affinity, AW-box, AW-fr, Box2Seg. The paper expects
GrabCut above Box and every added term at or above the previous row; the table says where not.
Each row also prints its final training loss terms and the mean attention inside the boxes.

Run: ``python -m benchmarks.box2seg_ablation [--data synthetic|tiny_coco] [--steps 120]
[--rows ...]``;
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
from wseg.losses.box2seg_losses import one_hot_labels
from wseg.methods import Box2Seg
from wseg.methods.box2seg import resize_labels

OFF = {"lambda_gc": 0.0, "lambda_aw": 0.0, "lambda_alpha": 0.0, "lambda_affinity": 0.0}
AW = {"lambda_aw": 10.0, "lambda_alpha": 1.0}
# row -> (Box2Seg options, starts from the pretrained embeddings); paper mIoU in the docstring order
ROWS: dict[str, tuple[dict[str, Any], bool]] = {
    "box": ({**OFF, "lambda_box": 1.0}, False),
    "grabcut": ({**OFF, "lambda_gc": 1.0}, False),
    "affinity": ({**OFF, "lambda_gc": 1.0, "lambda_affinity": 1.0}, True),
    "aw_box": ({**OFF, "lambda_gc": 1.0, **AW, "attention_reg": "bbox"}, False),
    "aw_fr": ({**OFF, "lambda_gc": 1.0, **AW, "attention_reg": "fill_rate"}, False),
    "box2seg": ({"attention_reg": "fill_rate"}, True),
}
# One learning rate for every row. At 0.01 (head 10x) the rows with 10 L_AW overshoot in their first
# step (every pixel background, then every pixel foreground); at 0.001 they do not. The paper: 1e-4.
LR = 0.001
HEAD_LR_MULT = 10.0
PAPER = {"box": 59.3, "grabcut": 72.7, "affinity": 73.9, "aw_box": 74.1, "aw_fr": 74.6,
         "box2seg": 74.9}  # fmt: skip


def fit(options: dict[str, Any], steps: int, datamodule: WeakSegDataModule, args, out: Path):
    """Train one Box2Seg configuration; return the model and the seconds taken."""
    seed_everything(0, workers=True)
    model = Box2Seg(
        num_classes=datamodule.num_classes,
        class_names=list(datamodule.class_names),
        arch="upernet",
        encoder="tu-tf_efficientnet_lite0",
        encoder_weights="offline-lite0",
        lr=args.lr,
        head_lr_mult=args.head_lr_mult,
        weight_decay=5e-4,
        log_images_every_n_epochs=0,
        **options,
    )
    return model, fit_timed(model, datamodule, steps, out)


def attention_in_boxes(model: Box2Seg, datamodule: WeakSegDataModule, batches: int = 4) -> float:
    """Mean alpha over the foreground box pixels of a few training batches (nan: no alpha)."""
    if model.net.attention is None:
        return float("nan")
    model.eval()
    total, count = 0.0, 0.0
    with torch.no_grad():
        for index, batch in enumerate(datamodule.train_dataloader()):
            if index == batches:
                break
            attention = model.net.branches(batch["image"]).attention
            box = one_hot_labels(
                resize_labels(batch["box_label"], tuple(attention.shape[-2:])),
                model.hparams.num_classes,
            )[:, 1:]
            total += float((attention * box).sum())
            count += float(box.sum())
    return total / max(count, 1.0)


def main() -> None:
    """Measure and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=("synthetic", "tiny_coco"), default="synthetic")
    parser.add_argument("--root", default=str(TINY_COCO), help="tiny_coco's folder")
    parser.add_argument("--rows", nargs="+", choices=list(ROWS), default=list(ROWS))
    parser.add_argument("--train-images", type=int, default=64, help="synthetic only")
    parser.add_argument("--val-images", type=int, default=24, help="synthetic only")
    parser.add_argument("--size", type=int, default=128, help="crop (and synthetic image) side")
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--pretrain-steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=LR)
    parser.add_argument("--head-lr-mult", type=float, default=HEAD_LR_MULT)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--out", help="keep data, stores and runs here (default: a temp dir)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        root = dataset_root(args, out)
        options = {**segmentation_data(args, root), "batch_size": args.batch_size,
                   "num_workers": args.workers}  # fmt: skip
        source = WeakSegDataModule(**options).make_source(options.get("train_split", "train"))
        identity = {"name": options["dataset"], "root": str(root.resolve()),
                    "split": options.get("train_split", "train")}  # fmt: skip
        quality, stores = {}, {}
        for generator in ("rect", "grabcut"):
            summary = generate(source, build_generator(generator), out / "stores", identity,
                               workers=max(1, args.workers))  # fmt: skip
            stores[generator] = summary.store.path
            quality[generator] = 100 * evaluate_store(summary.store, source, progress=False)["miou"]
        datamodule = WeakSegDataModule(**options, pseudo_labels=str(stores["grabcut"]))
        checkpoint = out / "pretrain.ckpt"
        if any(ROWS[row][1] for row in args.rows):
            model, seconds = fit({"stage": "pretrain"}, args.pretrain_steps, datamodule, args, out)
            model.trainer.save_checkpoint(checkpoint)
            print(f"pretrain: {args.pretrain_steps} steps ({seconds:.0f} s)", flush=True)
        results = []
        for row in args.rows:
            options, pretrained = ROWS[row]
            init = {"init_checkpoint": str(checkpoint)} if pretrained else {}
            model, seconds = fit({**options, **init}, args.steps, datamodule, args, out / row)
            terms = {key.removeprefix("train/loss_"): float(value)
                     for key, value in model.trainer.callback_metrics.items()
                     if key.startswith("train/loss_")}  # fmt: skip
            alpha = attention_in_boxes(model, datamodule)
            results.append((row, val_miou(model, datamodule), seconds, alpha))
            listed = ", ".join(f"{name} {value:.3f}" for name, value in terms.items())
            print(f"{row}: val mIoU {results[-1][1]:.1f} ({seconds:.0f} s); mean alpha in boxes "
                  f"{alpha:.3f}; last loss terms: {listed}", flush=True)  # fmt: skip
    print(f"\n{describe_data(args, len(source))}")
    print(
        f"{args.steps} steps of {args.batch_size} (pretrain {args.pretrain_steps}), lr {args.lr}, "
        f"head x{args.head_lr_mult}"
    )
    print(
        f"Labels vs true masks (mIoU %): Bbox-Rect {quality['rect']:.1f}, "
        f"GrabCut {quality['grabcut']:.1f}"
    )
    print(f"{'row':<10} {'val mIoU':>8} {'paper':>6} {'alpha':>6} {'fit s':>6}  ordering")
    previous = None
    for row, miou, seconds, alpha in results:
        order = "" if previous is None else ("holds" if miou >= previous else "DOES NOT HOLD")
        print(f"{row:<10} {miou:>8.1f} {PAPER[row]:>6.1f} {alpha:>6.3f} {seconds:>6.0f}  {order}")
        previous = miou


if __name__ == "__main__":
    main()
