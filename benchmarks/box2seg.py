"""Box2Seg's ablation (Table 3) on the synthetic data, every row at one step budget.

Makes the GrabCut store of the training images (and prints its mIoU against the true masks, with
Bbox-Rect's), pretrains the embeddings (stage 1) for the rows with L_A, then trains each row for
the same number of SGD steps: Box, GrabCut, Affinity, AW-box, AW-fr, Box2Seg. The paper expects
GrabCut above Box and every added term at or above the previous row; the table says where not.

Run: ``python -m benchmarks.box2seg [--steps 120] [--rows box grabcut ...]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Trainer, seed_everything

from wseg.data.datamodule import WeakSegDataModule
from wseg.data.synthetic import generate_synthetic
from wseg.labels.generate import build_generator, generate
from wseg.labels.quality import evaluate_store
from wseg.methods import Box2Seg

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
        weight_decay=5e-4,
        log_images_every_n_epochs=0,
        **options,
    )
    trainer = Trainer(max_steps=steps, max_epochs=-1, accelerator="cpu", logger=False,
                      enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0,
                      default_root_dir=out)  # fmt: skip
    start = time.perf_counter()
    trainer.fit(model, datamodule)
    return model, time.perf_counter() - start


def main() -> None:
    """Measure and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", nargs="+", choices=list(ROWS), default=list(ROWS))
    parser.add_argument("--train-images", type=int, default=64)
    parser.add_argument("--val-images", type=int, default=24)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--pretrain-steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--out", help="keep data, stores and runs here (default: a temp dir)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        root = generate_synthetic(out / "synthetic", num_train=args.train_images,
                                  num_val=args.val_images, size=(args.size, args.size))  # fmt: skip
        source = WeakSegDataModule(dataset="synthetic", root=str(root)).make_source("train")
        identity = {"name": "synthetic", "root": str(root.resolve()), "split": "train"}
        quality, stores = {}, {}
        for generator in ("rect", "grabcut"):
            summary = generate(source, build_generator(generator), out / "stores", identity,
                               workers=max(1, args.workers))  # fmt: skip
            stores[generator] = summary.store.path
            quality[generator] = 100 * evaluate_store(summary.store, source, progress=False)["miou"]
        datamodule = WeakSegDataModule(
            dataset="synthetic", root=str(root), synthetic_num_train=args.train_images,
            synthetic_num_val=args.val_images, synthetic_size=(args.size, args.size),
            crop_size=args.size, scale_range=(0.75, 1.5), batch_size=args.batch_size,
            val_batch_size=8, num_workers=args.workers, pseudo_labels=str(stores["grabcut"]),
        )  # fmt: skip
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
            trainer = Trainer(accelerator="cpu", logger=False, enable_progress_bar=False)
            (metrics,) = trainer.validate(model, datamodule, verbose=False)
            results.append((row, 100 * float(metrics["val/miou"]), seconds))
            print(f"{row}: val mIoU {results[-1][1]:.1f} ({seconds:.0f} s)", flush=True)
    print(
        f"\nSynthetic: {args.train_images} train / {args.val_images} val, {args.size} px; "
        f"{args.steps} steps of {args.batch_size} (pretrain {args.pretrain_steps}), lr {args.lr}"
    )
    print(
        f"Labels vs true masks (mIoU %): Bbox-Rect {quality['rect']:.1f}, "
        f"GrabCut {quality['grabcut']:.1f}"
    )
    print(f"{'row':<10} {'val mIoU':>8} {'paper':>6} {'fit s':>6}  ordering")
    previous = None
    for row, miou, seconds in results:
        order = "" if previous is None else ("holds" if miou >= previous else "DOES NOT HOLD")
        print(f"{row:<10} {miou:>8.1f} {PAPER[row]:>6.1f} {seconds:>6.0f}  {order}")
        previous = miou


if __name__ == "__main__":
    main()
