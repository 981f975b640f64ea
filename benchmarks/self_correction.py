"""Self-correction (Ibrahim et al. 2020): ancillary, no / linear / conv SC at equal budget.

Runs ``python -m wseg.pipeline selfcorr --mode all`` on the synthetic data (``--data synthetic``:
the ``demo`` setting, F = 40 of 200 images, 128 px crops) or on real photographs (``--data
tiny_coco``: F = 20 of the 50 tiny_coco train2017 photos, 50 val2017 photos, 256 px crops), with
DeepLabV3+ on the offline ImageNet EfficientNet-Lite0 encoder and the same number of steps for
every stage. Prints each model's val mIoU next to the paper's ordering (ancillary highest, since it
sees the val boxes; conv and linear at or above no self-correction), then the quality of the
targets each primary model learnt from on W, against W's true masks (never used in training).

Run: ``python -m benchmarks.self_correction [--data tiny_coco] [--steps 200]`` (six stages, tens
of minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import Tensor
from tqdm import tqdm

from wseg.data.datamodule import WeakSegDataModule
from wseg.data.dataset import WeakSegDataset
from wseg.data.strong_split import load_split
from wseg.data.transforms import build_eval_transform, collate
from wseg.methods import Ancillary, SelfCorrection
from wseg.metrics import confusion_matrix, mean_iou
from wseg.pipeline.__main__ import main as pipeline
from wseg.pipeline.stages import FINAL, SPLIT_KEYS

SETTINGS = {"synthetic": "demo", "tiny_coco": "tiny_coco"}
ROWS = (
    ("ancillary", "Ancillary model (on F, with val boxes)"),
    ("none", "No self-correction"),
    ("linear", "Linear self-correction"),
    ("ancillary_half", "Ancillary model on half of F (conv)"),
    ("conv_pretrain", "Conv SC stage 2 (F only: primary on F)"),
    ("conv", "Conv self-correction"),
)
TARGETS = (
    ("ancillary", "no SC: argmax p_anc"),
    ("linear", "linear SC at the end (alpha 0.5)"),
    ("conv_pretrain", "conv SC at the start of stage 3: q_conv"),
    ("conv", "conv SC at the end: q_conv"),
)


def weak_dataset(out: Path, limit: int | None = None) -> WeakSegDataset:
    """The first ``limit`` (None: all) images of W at full size, with their true masks."""
    config = yaml.safe_load((out / "none" / "config.yaml").read_text())
    args = {k: v for k, v in config["data"]["init_args"].items() if k not in SPLIT_KEYS}
    datamodule = WeakSegDataModule(**args)
    source = datamodule.make_source(datamodule.train_split)
    strong = set(load_split(out / "splits" / "strong.txt"))
    weak = [index for index, image_id in enumerate(source.ids) if image_id not in strong][:limit]
    return WeakSegDataset(source, build_eval_transform(), datamodule.num_classes, indices=weak)


def w_targets(model: Ancillary | SelfCorrection, role: str, batch: dict[str, Any]) -> Tensor:
    """The class each model's W target puts first, per pixel (``B, H, W``)."""
    image, box_mask = batch["image"], batch["box_mask"]
    if isinstance(model, Ancillary):
        return model(image, box_mask).argmax(1)
    logits, ancillary = model(image), model.ancillary(image, box_mask)
    if role == "linear":
        alpha = model.hparams.alpha_end
        return ((logits + alpha * ancillary) / (alpha + 1)).argmax(1)
    assert model.head is not None
    return model.head(logits, ancillary).argmax(1)


@torch.no_grad()
def target_quality(out: Path, limit: int | None = None) -> dict[str, float]:
    """mIoU (%) on W, against the true masks, of the targets of the primary models.

    Args:
        out: The setting's folder of a finished ``--mode all`` chain.
        limit: Score the first ``limit`` images of W only (None: all).

    Returns:
        mIoU per `TARGETS` role.

    """
    dataset = weak_dataset(out, limit)
    models = {
        role: (Ancillary if role == "ancillary" else SelfCorrection)
        .load_from_checkpoint(out / role / FINAL, map_location="cpu")
        .eval()
        for role, _ in TARGETS
    }
    num_classes = dataset.num_classes
    totals = {role: torch.zeros(num_classes, num_classes, dtype=torch.long) for role in models}
    for index in tqdm(range(len(dataset)), desc="W targets", leave=False):
        batch = collate([dataset[index]])
        for role, model in models.items():
            totals[role] += confusion_matrix(
                w_targets(model, role, batch), batch["mask"], num_classes
            )
    return {role: 100 * mean_iou(total) for role, total in totals.items()}


def main() -> None:
    """Run the chain and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=sorted(SETTINGS), default="synthetic")
    parser.add_argument("--steps", type=int, default=200, help="optimiser steps of every stage")
    parser.add_argument("--batch-size", type=int, default=8, help="training images per step")
    parser.add_argument("--val-every", type=int, default=50, help="validate every n steps")
    parser.add_argument("--out", type=Path, help="default: runs/bench/selfcorr_<data>")
    parser.add_argument("--target-images", type=int, help="W images scored (default: all)")
    args = parser.parse_args()
    setting = SETTINGS[args.data]
    root = args.out or Path(f"runs/bench/selfcorr_{args.data}")
    start = time.perf_counter()
    extra = ["--trainer.max_steps", str(args.steps)]
    extra += ["--trainer.val_check_interval", str(min(args.val_every, args.steps))]
    extra += ["--data.init_args.batch_size", str(args.batch_size)]
    extra += ["--trainer.enable_progress_bar", "false"]
    command = ["selfcorr", "--setting", setting, "--mode", "all", "--out", str(root)]
    results = pipeline([*command, "--", *extra])
    quality = target_quality(root / setting, args.target_images)
    minutes = (time.perf_counter() - start) / 60
    miou = {name: 100 * results[name]["val/miou"] for name, _ in ROWS if name in results}
    budget = f"{args.steps} steps of {args.batch_size} images per stage"
    print(f"\nSelf-correction on {args.data}, {budget} ({minutes:.1f} min)")
    print(f"{'model':<42} {'val mIoU':>8}")
    for name, label in ROWS:
        print(f"{label:<42} {miou.get(name, float('nan')):8.2f}")
    scored = "all" if args.target_images is None else f"first {args.target_images}"
    print(f"\n{f'W targets vs true masks ({scored} of W)':<42} {'mIoU':>8}")
    for name, label in TARGETS:
        print(f"{label:<42} {quality[name]:8.2f}")
    best_primary = max(miou["none"], miou["linear"], miou["conv"])
    print("\nPaper's ordering:")
    print(f"  ancillary above every primary model: {miou['ancillary'] > best_primary}")
    print(f"  linear >= no self-correction:        {miou['linear'] >= miou['none']}")
    print(f"  conv >= no self-correction:          {miou['conv'] >= miou['none']}")


if __name__ == "__main__":
    main()
