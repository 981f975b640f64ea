"""Framework overhead and data loading, measured in one run (issue 2's two speed goals).

1. The training step of ``Supervised`` under the Lightning Trainer against a plain PyTorch loop with
   the same network, batches, optimiser and poly schedule. Goal: at most 1.10x per step.
2. Images per second of the real training DataLoader (synthetic data, default worker count) against
   images per second of training. Goal: loading faster than training, i.e. not the bottleneck.

Batches for (1) are made once and reused by both loops, so data loading does not enter (1).
Run: ``python -m benchmarks.train_overhead [--steps 30] [--batch-size 8] [--crop 128]``.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from lightning.pytorch import Callback, Trainer

from wseg.data import WeakSegDataModule
from wseg.methods import Supervised


class StepTimer(Callback):
    """Wall time of the training batches after ``warmup`` (optimiser step included)."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.start: float | None = None
        self.end = 0.0
        self.steps = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # noqa: D102
        if batch_idx == self.warmup:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: D102
        if batch_idx >= self.warmup:
            self.end = time.perf_counter()
            self.steps += 1


def lightning_step_time(model: Supervised, batches: list[dict], warmup: int) -> float:
    """Seconds per training step of ``model`` fitted by the Lightning Trainer on ``batches``."""
    timer = StepTimer(warmup)
    trainer = Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=len(batches),
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=True,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        callbacks=[timer],
    )
    loader = torch.utils.data.DataLoader(batches, batch_size=None, shuffle=False)
    trainer.fit(model, train_dataloaders=loader)
    return (timer.end - timer.start) / timer.steps


def plain_step_time(model: Supervised, batches: list[dict], warmup: int) -> float:
    """Seconds per step of a hand-written loop: same net, loss, SGD groups and poly schedule."""
    net = model.net.train()
    groups = model.parameter_groups()
    hp = model.hparams
    optimizer = torch.optim.SGD(
        groups, lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay
    )
    total = len(batches)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: (1 - min(step, total - 1) / total) ** hp.poly_power
    )
    start = 0.0
    for index, batch in enumerate(batches):
        if index == warmup:
            start = time.perf_counter()
        loss = model.cross_entropy(net(batch["image"]), batch["mask"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    return (time.perf_counter() - start) / (total - warmup)


def loader_images_per_second(datamodule: WeakSegDataModule, batches: int) -> float:
    """Images per second delivered by the training DataLoader (first batch excluded)."""
    loader = datamodule.train_dataloader()
    iterator = iter(loader)
    next(iterator)
    start, images = time.perf_counter(), 0
    for _ in range(batches):
        try:
            batch = next(iterator)
        except StopIteration:
            iterator = iter(loader)
            batch = next(iterator)
        images += batch["image"].shape[0]
    return images / (time.perf_counter() - start)


def main() -> None:
    """Measure and print both ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30, help="timed steps per loop")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3, help="alternating repetitions")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--root", default="data/synthetic")
    args = parser.parse_args()

    datamodule = WeakSegDataModule(
        dataset="synthetic", root=args.root, crop_size=args.crop, batch_size=args.batch_size
    )
    datamodule.prepare_data()
    datamodule.setup("fit")
    source = iter(datamodule.train_dataloader())
    batches = [next(source) for _ in range(min(args.steps + args.warmup, 25))]
    batches = (batches * 4)[: args.steps + args.warmup]

    torch.manual_seed(0)
    reference = Supervised(num_classes=datamodule.num_classes, encoder="tu-tf_efficientnet_lite0")
    plain, framework = [], []
    for _ in range(args.repeats):  # alternate, so drifting machine load hits both alike
        plain.append(plain_step_time(copy.deepcopy(reference), batches, args.warmup))
        framework.append(lightning_step_time(copy.deepcopy(reference), batches, args.warmup))
    plain_s, framework_s = statistics.median(plain), statistics.median(framework)
    train_ips = args.batch_size / framework_s
    load_ips = loader_images_per_second(datamodule, batches=40)

    print(f"\nTraining step, DeepLabV3+ Lite0, batch {args.batch_size}, {args.crop}px crop, CPU,")
    print(f"{torch.get_num_threads()} threads, median of {args.repeats} alternating runs:")
    print("| loop | s/step |")
    print("|---|---|")
    print(f"| plain PyTorch | {plain_s:.3f} |")
    print(f"| wseg + Lightning Trainer | {framework_s:.3f} |")
    print(f"framework / plain = {framework_s / plain_s:.3f}x (goal <= 1.10x)")
    print(f"\nData loading with num_workers={datamodule.num_workers} (default):")
    print(
        f"loader {load_ips:.1f} images/s vs training {train_ips:.1f} images/s: "
        f"ratio {load_ips / train_ips:.2f} (goal > 1: loading is not the bottleneck)"
    )


if __name__ == "__main__":
    main()
