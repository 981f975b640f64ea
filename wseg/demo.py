"""The README's main job: synthetic data, Supervised and Bbox-Rect trained on CPU, a result table.

``python -m wseg.demo`` (or ``make demo``) trains ``experiments/demo/supervised.yaml`` and
``bbox_rect.yaml`` through the real command line (W&B offline; the first fit generates the
synthetic dataset), measures how good naive Bbox-Rect labels are against its true masks, then
prints and writes a table of validation mIoU and overlay panels (image | truth | each method).
"""

from __future__ import annotations

import argparse
import csv
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from wseg.cli import WSegCLI
from wseg.cli import main as cli_main
from wseg.constants import EXPERIMENTS
from wseg.data.synthetic import bbox_rect_miou
from wseg.visualize import panel, to_uint8_image

DEMO_EXPERIMENTS = ("supervised", "bbox_rect")


@dataclass
class DemoRow:
    """One trained method of the demo table."""

    name: str
    method: str
    val_miou: float
    minutes: float
    cli: WSegCLI


def train(name: str, out: Path, overrides: Sequence[str] = ()) -> DemoRow:
    """Fit ``experiments/demo/<name>.yaml`` through the command line and read its val mIoU.

    Args:
        name: Demo experiment name.
        out: Run directory of the demo; this experiment's logs go to ``out/<name>``.
        overrides: Extra command-line arguments for the fit (e.g. ``--trainer.max_epochs 2``).

    Returns:
        The table row, with the CLI object for predictions.

    """
    config = EXPERIMENTS / "demo" / f"{name}.yaml"
    if not config.is_file():
        raise FileNotFoundError(f"{config} not found: this wseg install lacks its experiments")
    args = ["fit", "--config", str(config), "--trainer.default_root_dir", str(out / name)]
    args += ["--trainer.logger.init_args.save_dir", str(out), *overrides]
    start = time.perf_counter()
    cli = cli_main(args)
    minutes = (time.perf_counter() - start) / 60
    miou = float(cli.trainer.callback_metrics["val/miou"]) * 100
    # Close this W&B run: in the same process the next WandbLogger would otherwise reuse it (and
    # its folder, so the next method's checkpoints and config would land in this one's).
    cli.trainer.logger.experiment.finish()
    return DemoRow(name, type(cli.model).__name__, miou, minutes, cli)


@torch.no_grad()
def write_overlays(rows: list[DemoRow], out: Path, count: int) -> list[Path]:
    """Write ``image | truth | prediction of each method`` panels for the first validation images.

    Args:
        rows: Trained methods (they share one datamodule configuration).
        out: Folder of the PNG files.
        count: Number of validation images.

    Returns:
        The written files.

    """
    out.mkdir(parents=True, exist_ok=True)
    datamodule = rows[0].cli.datamodule
    written: list[Path] = []
    for batch in datamodule.val_dataloader():
        predictions = []
        for row in rows:
            model = row.cli.model.eval()
            predictions.append(model.predict_probs(batch["image"].to(model.device)).argmax(1).cpu())
        for index, image_id in enumerate(batch["id"]):
            if len(written) == count:
                return written
            mask = batch["mask"][index].numpy()
            valid = mask != 255
            rows_used, cols_used = np.where(valid.any(1))[0], np.where(valid.any(0))[0]
            crop = (slice(0, rows_used.max() + 1), slice(0, cols_used.max() + 1))
            image = to_uint8_image(batch["image"][index])[crop]
            labels = [mask[crop]] + [p[index].numpy().astype(np.uint8)[crop] for p in predictions]
            path = out / f"{image_id.replace('/', '_')}.png"
            Image.fromarray(panel(image, *labels)).save(path)
            written.append(path)
    return written


def format_table(rect_miou: float, rows: list[DemoRow]) -> str:
    """Markdown table of the demo's results."""
    lines = [
        "| row | val mIoU (%) | train time (min) |",
        "|---|---|---|",
        f"| Bbox-Rect labels vs true masks (train) | {rect_miou:.1f} | - |",
    ]
    lines += [f"| {r.method} ({r.name}) | {r.val_miou:.1f} | {r.minutes:.1f} |" for r in rows]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> list[DemoRow]:
    """Run the demo; see the module docstring.

    Args:
        argv: Command-line arguments (None: ``sys.argv``).

    Returns:
        The table rows.

    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="data/synthetic", help="synthetic dataset folder")
    parser.add_argument("--out", default="runs/demo", help="folder for logs, table and overlays")
    parser.add_argument("--epochs", type=int, default=None, help="override the YAMLs' max_epochs")
    parser.add_argument("--experiments", nargs="+", default=list(DEMO_EXPERIMENTS))
    parser.add_argument("--num-overlays", type=int, default=8, help="overlay panels to write")
    parser.add_argument(
        "fit_args", nargs="*", help="after --: extra arguments for every fit, e.g. -- --seed 1"
    )
    args = parser.parse_args(argv)
    out = Path(args.out)

    # The first fit's datamodule generates the data (its YAML holds the generator's settings).
    overrides = ["--data.init_args.root", args.root, *args.fit_args]
    if args.epochs is not None:
        overrides += ["--trainer.max_epochs", str(args.epochs)]
    rows = [train(name, out, overrides) for name in args.experiments]
    rect_miou = bbox_rect_miou(rows[0].cli.datamodule.root, "train")
    table = format_table(rect_miou, rows)
    overlays = write_overlays(rows, out / "overlays", args.num_overlays)

    (out / "results.md").write_text(table + "\n")
    with open(out / "results.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["row", "val_miou", "train_minutes"])
        writer.writerow(["bbox_rect_labels_train", f"{rect_miou:.2f}", ""])
        writer.writerows([r.name, f"{r.val_miou:.2f}", f"{r.minutes:.2f}"] for r in rows)
    print("\n" + table)
    print(
        f"\nTable: {out / 'results.md'} (and .csv); overlays (image | truth | "
        f"{' | '.join(r.method for r in rows)}): {overlays[0].parent} ({len(overlays)} files)"
    )
    print(f"W&B offline runs: {out / 'wandb'} (upload with `wandb sync`)")
    return rows


if __name__ == "__main__":
    main()
