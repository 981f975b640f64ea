"""The CPU recipe of the CamVid ladder: full supervision's val mIoU against training minutes.

Each variant is ``experiments/supervised_camvid.yaml`` with one lever changed (optimiser and
learning rate, scale range and crop, object-centred crops, batch size, epochs); the fit runs
through the real command line and every validation records the wall time since the start of
training, the val mIoU and the per-class IoU. Curves are appended to
``<out>/curves.jsonl`` (one line per variant, so finished variants are kept when a later one is
cut) and the table of all recorded variants is printed and written to ``<out>/recipe.md``.

Run: ``python -m benchmarks.camvid_recipe [--root ../shared/data/camvid] [--variants base adamw]
[-- <fit arguments>]`` (each variant is about 10 minutes on 2 idle CPU cores).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from lightning.pytorch import Callback, LightningModule, Trainer

from wseg.cli import main as cli_main
from wseg.constants import EXPERIMENTS

CONFIG = EXPERIMENTS / "supervised_camvid.yaml"
CLASSES = ("background", "pole", "traffic sign", "person", "car", "bicycle")
_SGD = ["--model.init_args.optimizer", "sgd", "--model.init_args.lr", "0.01"]
_ADAMW = ["--model.init_args.optimizer", "adamw", "--model.init_args.lr", "0.0005"]
_ADAMW += ["--model.init_args.weight_decay", "0.0001"]
_SCALE = "--data.init_args.scale_range"
_OBJECTS = "--data.init_args.object_crop_p"
VARIANTS: dict[str, list[str]] = {
    # The starting point: the demo recipe on CamVid (SGD 0.01, scale 0.5-1.0, 256 px).
    "base": [*_SGD, _SCALE, "[0.5, 1.0]", _OBJECTS, "0"],
    # One lever each, from base.
    "adamw": [*_ADAMW, _SCALE, "[0.5, 1.0]", _OBJECTS, "0"],
    "adamw_scale": [*_ADAMW, _SCALE, "[0.75, 1.25]", _OBJECTS, "0"],
    "adamw_objects": [*_ADAMW, _SCALE, "[0.5, 1.0]", _OBJECTS, "0.5"],
    # The YAML as committed (the chosen levers together).
    "recipe": [],
}


class ValidationCurve(Callback):
    """Per validation: minutes since training started, epoch, step, val mIoU, per-class IoU."""

    def __init__(self) -> None:
        self.start = 0.0
        self.points: list[dict[str, float]] = []

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:  # noqa: D102
        self.start = time.perf_counter()

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:  # noqa: D102
        if trainer.sanity_checking:
            return
        metrics = trainer.callback_metrics
        point = {
            "minutes": round((time.perf_counter() - self.start) / 60, 2),
            "epoch": trainer.current_epoch + 1,
            "step": trainer.global_step,
            "miou": round(100 * float(metrics["val/miou"]), 1),
        }
        for name in CLASSES:
            key = f"val/iou/{name}"
            if key in metrics:
                point[name] = round(100 * float(metrics[key]), 1)
        self.points.append(point)
        print(f"[recipe] {point}", flush=True)


def run_variant(name: str, root: str | None, out: Path, extra: list[str] = ()) -> dict:
    """Fit one variant (``extra``: more fit arguments, after the variant's); its curve."""
    args = ["--config", str(CONFIG), *VARIANTS[name], *extra]
    args += ["--trainer.logger.init_args.save_dir", str(out / name)]
    args += ["--trainer.logger.init_args.name", f"camvid_recipe_{name}"]
    args += ["--trainer.default_root_dir", str(out / name)]
    if root:
        args += ["--data.init_args.root", root]
    cli = cli_main(args, run=False)
    curve = ValidationCurve()
    cli.trainer.callbacks.append(curve)
    cli.trainer.fit(cli.model, cli.datamodule)
    cli.trainer.logger.experiment.finish()
    return {"variant": name, "args": VARIANTS[name], "points": curve.points}


def format_table(curves: list[dict]) -> str:
    """Markdown: one row per validation of every variant."""
    lines = [
        "| variant | epoch | step | minutes | val mIoU | " + " | ".join(CLASSES) + " |",
        "|---" * (5 + len(CLASSES)) + "|",
    ]
    for curve in curves:
        for p in curve["points"]:
            ious = " | ".join(str(p.get(name, "-")) for name in CLASSES)
            lines.append(
                f"| {curve['variant']} | {p['epoch']} | {p['step']} | {p['minutes']} "
                f"| {p['miou']} | {ious} |"
            )
    return "\n".join(lines)


def main() -> None:
    """Command line: run the named variants, then print every recorded curve."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", help="CamVid root (default: the YAML's ../shared/data/camvid)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--out", type=Path, default=Path("runs/camvid_recipe"))
    parser.add_argument("extra", nargs="*", help="after --: fit arguments for every variant")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / "curves.jsonl"
    for name in args.variants:
        curve = run_variant(name, args.root, args.out, args.extra)
        with open(log, "a") as handle:
            handle.write(json.dumps(curve) + "\n")
    curves = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    table = format_table(curves)
    (args.out / "recipe.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
