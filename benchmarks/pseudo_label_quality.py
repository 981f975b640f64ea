"""Pseudo-label quality from boxes: Bbox-Rect vs GrabCut vs CRF-from-boxes vs Box2Tag.

Prints, on the synthetic dataset and on tiny_coco (real photographs, COCO -> VOC classes; each
split and both together), all measured in one run: mIoU, mean F-beta (beta^2 = 0.3, mean over
classes of the per-box F-beta, Box2Tag's Table 1 metric) and over boxes, GrabCut's fallbacks (all,
and of the boxes above COCO's small-object area, 32 x 32 px), the generator's time per box on one
core, and each refiner's time relative to its previous defaults (``grabcut (old)``: textbook
GrabCut; ``crf (old)``: the paper's alpha = 20% with DeepLab's CRF; both also printed), beside the
published figures for the same algorithm on VOC:

    python -m benchmarks.pseudo_label_quality [--coco-root ../shared/data/tiny_coco] [--workers 2]
        [--datasets tiny_coco] [--methods rect grabcut] [--grabcut-options '{"core": 0}']
        [--box2tag-steps 100]  # several (25 100 400): a row per budget; 0: no Box2Tag row
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks import TINY_COCO
from wseg.data.datasets import make_source
from wseg.data.synthetic import generate_synthetic
from wseg.labels.generate import generate
from wseg.labels.generators import GENERATORS, build_generator
from wseg.labels.grabcut import FALLBACK_REASONS
from wseg.labels.quality import evaluate_store
from wseg.metrics import mean_iou

OLD_DEFAULTS: dict[str, dict[str, Any]] = {
    "grabcut": {"iterations": 5, "context": 1.0, "min_size": 5, "upsample_to": 0, "core": 0.0},
    "crf": {"alpha": 0.2, "box_prior": 0.6, "crf": {"bilateral_compat": 4.0}},
}
"""The generators' defaults before the box-segmenter diagnosis (issue 15), for the speed ratio."""

PUBLISHED = {
    "grabcut": "F 76.7 [1]; 71.6 mIoU val [2]",
    "crf": "F 81.0 [1]",
    "box2tag": "F 89.5 [1] (T+N)",
}
REFERENCES = (
    "[1] Ji & Veksler 2021, Table 1: mean F-beta on VOC 2012 train boxes "
    "(MCG 68.8, denseCRF 81.0, GrabCut 76.7, ours T+N 89.5)\n"
    "[2] Kulharia et al. 2020, GrabCut-NoTrain-GT: GrabCut on VOC 2012 val boxes, 71.6 mIoU"
)
HEADER = (
    f"{'dataset':<20} {'labels':<13} {'images':>6} {'boxes':>6} {'mIoU':>6} {'F-beta':>7} "
    f"{'box F':>6} {'fallbk':>6} {'>32px':>9} {'ms/box':>7} {'x old':>6}  published"
)


def format_row(
    name: str, label: str, reports: list[dict], stats: dict[str, int], ms: float, ratio: str
) -> str:
    """One table row from the quality reports (and summed generator stats) of some stores."""
    miou = mean_iou(sum(torch.tensor(r["confusion"]) for r in reports))
    boxes = sum(r["boxes"] for r in reports)
    images = sum(r["images"] for r in reports)
    per_box = sum(r["fbeta_boxes"] * r["boxes"] for r in reports) / max(boxes, 1)
    scores: dict[str, list[float]] = {}
    for report in reports:  # class mean over the union of the splits' boxes
        for cls, value in report["per_class_fbeta"].items():
            if value is not None:
                scores.setdefault(cls, []).append(value)
    fbeta = sum(sum(v) / len(v) for v in scores.values()) / max(len(scores), 1)
    fallbacks = sum(stats.get(reason, 0) for reason in FALLBACK_REASONS)
    large = stats.get("boxes_over_32px", 0)
    large_text = f"{stats.get('fallback_over_32px', 0)}/{large}" if large else "-"
    method = label.split(" ")[0]
    return (
        f"{name:<20} {label:<13} {int(images):>6} {boxes:>6} {100 * miou:>6.1f} "
        f"{100 * fbeta:>7.1f} {100 * per_box:>6.1f} "
        f"{fallbacks if 'grabcut' in label else '-':>6} {large_text:>9} {ms:>7.2f} {ratio:>6}  "
        f"{PUBLISHED.get(method, '-') if '(old)' not in label else ''}"
    )


def run_generator(
    method: str, options: dict, sources: list, identities: list, out: Path, workers: int
) -> tuple[list[dict], list[dict[str, int]], list[float]]:
    """Generate and score one generator's stores; return reports, stats and ms per box."""
    reports, stats, times = [], [], []
    for source, identity in zip(sources, identities):
        summary = generate(source, build_generator(method, **options), out, identity, workers)
        runs = summary.store.manifest["runs"]
        seconds = sum(r["generator_seconds"] for r in runs)
        boxes = sum(r["stats"].get("boxes", 0) for r in runs)
        summed: dict[str, int] = {}
        for run in runs:
            for key, value in run["stats"].items():
                summed[key] = summed.get(key, 0) + value
        reports.append(evaluate_store(summary.store, source, progress=False))
        stats.append(summed)
        times.append(1000 * seconds / max(boxes, 1))
    return reports, stats, times


def box2tag_reports(
    sources: list, identities: list, out: Path, steps: int, crop_size: int
) -> list[dict]:
    """Train Box2Tag's class networks (T+N) on each source and score its overlap-small store."""
    from benchmarks.box2tag_pseudo_gt import VARIANTS, train_class
    from wseg.data.box_crops import scan_crops
    from wseg.labels.box2tag_pseudo_gt import generate_box2tag

    reports = []
    for source, identity in zip(sources, identities):
        args = argparse.Namespace(
            crop_size=crop_size,
            batch_size=8,
            workers=0,
            lr=1e-3,
            steps=steps,
            lambda_crf=100.0 * crop_size / 256,
        )
        data = {"dataset": identity["name"], "root": identity["root"]}
        if identity["name"] == "coco":
            data["train_split"] = identity["split"]
        else:  # the datamodule finds the dataset written by `main` (its manifest must match)
            data.update(synthetic_num_train=len(source), synthetic_num_val=1)
        folder = out / f"box2tag-{identity['name']}-{identity['split']}-{steps}steps"
        checkpoints = {}
        for label in sorted({e.label for e in scan_crops(source, progress=False)}):
            name = source.classes[label]
            path = folder / f"{name.replace(' ', '_')}.ckpt"
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.is_file():
                train_class(data, name, VARIANTS["tight+neg"], args, path)
            checkpoints[name] = path
        stores = generate_box2tag(
            source, checkpoints, folder / "pseudo", identity, crop_size=crop_size, progress=False
        )
        reports.append(stores["overlap-small"].manifest["quality"])
    return reports


def run_dataset(
    name: str,
    sources: list,
    identities: list,
    out: Path,
    args: argparse.Namespace,
    box2tag_splits: list[int],
) -> list[str]:
    """Every method on every source: a row per source (several sources: also one for all)."""
    rows: list[str] = []

    def add(label: str, reports: list, stats: list, times: list, ratios: list) -> None:
        parts = list(zip(identities, reports, stats, times, ratios))
        if len(parts) > 1:
            for identity, report, stat, ms, ratio in parts:
                rows.append(
                    format_row(f"{name}/{identity['split']}", label, [report], stat, ms, ratio)
                )
        summed: dict[str, int] = {}
        for stat in stats:
            for key, value in stat.items():
                summed[key] = summed.get(key, 0) + value
        boxes = [s.get("boxes", 0) for s in stats]
        mean_ms = sum(t * b for t, b in zip(times, boxes)) / max(sum(boxes), 1)
        total_ratio = "-"
        if all(r != "-" for r in ratios) and label in args.old_times:
            old = args.old_times[label]
            total_ratio = f"{mean_ms / old:.2f}" if old else "-"
        rows.append(format_row(name, label, reports, summed, mean_ms, total_ratio))

    for method in args.methods:
        options = args.options.get(method, {})
        reports, stats, times = run_generator(
            method, options, sources, identities, out, args.workers
        )
        ratios = ["-"] * len(sources)
        if method in OLD_DEFAULTS and not args.no_old:
            old_reports, old_stats, old_times = run_generator(
                method, OLD_DEFAULTS[method], sources, identities, out, args.workers
            )
            ratios = [f"{t / o:.2f}" if o else "-" for t, o in zip(times, old_times)]
            boxes = [s.get("boxes", 0) for s in old_stats]
            args.old_times[method] = sum(t * b for t, b in zip(old_times, boxes)) / max(
                sum(boxes), 1
            )
            add(f"{method} (old)", old_reports, old_stats, old_times, ["-"] * len(sources))
        add(method, reports, stats, times, ratios)
    budgets = [steps for steps in args.box2tag_steps if steps > 0] if box2tag_splits else []
    chosen = [sources[i] for i in box2tag_splits]
    chosen_ids = [identities[i] for i in box2tag_splits]
    for steps in budgets:
        reports = box2tag_reports(chosen, chosen_ids, out, steps, args.crop_size)
        method = "box2tag" if len(budgets) == 1 else f"box2tag {steps}"
        for identity, report in zip(chosen_ids, reports):
            label = f"{name}/{identity['split']}" if len(sources) > 1 else name
            rows.append(format_row(label, method, [report], {}, float("nan"), "-"))
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
    parser.add_argument("--grabcut-options", type=json.loads, default={}, help="JSON fields")
    parser.add_argument("--crf-options", type=json.loads, default={}, help="JSON fields")
    parser.add_argument("--no-old", action="store_true", help="skip the old-defaults rows")
    parser.add_argument(
        "--box2tag-steps",
        type=int,
        nargs="+",
        default=[100],
        help="training steps of each Box2Tag class network (tiny_coco: train2017 only); several: "
        "a row per budget ('box2tag 400'); 0: skip",
    )
    parser.add_argument("--crop-size", type=int, default=64, help="Box2Tag crop size")
    args = parser.parse_args()
    args.options = {"grabcut": args.grabcut_options, "crf": args.crf_options}
    args.old_times = {}
    rows = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        if "synthetic" in args.datasets:
            synthetic = generate_synthetic(
                out / "synthetic", num_train=args.synthetic_images, num_val=1
            )
            identity = {"name": "synthetic", "root": str(synthetic.resolve()), "split": "train"}
            rows += run_dataset(
                "synthetic",
                [make_source("synthetic", synthetic, "train")],
                [identity],
                out / "stores",
                args,
                [0],
            )
        coco = Path(args.coco_root)
        if "tiny_coco" in args.datasets and coco.is_dir():
            splits = ("train2017", "val2017")
            rows += run_dataset(
                "tiny_coco",
                [make_source("coco", coco, split) for split in splits],
                [{"name": "coco", "root": str(coco.resolve()), "split": s} for s in splits],
                out / "stores",
                args,
                [0],
            )
        elif "tiny_coco" in args.datasets:
            print(f"tiny_coco not found at {coco}; skipped")
    print("\nPseudo labels from boxes vs the true masks (training images, as the papers report)")
    print(
        "F-beta: per-box object-vs-background F-beta inside the box (beta^2 = 0.3), mean over "
        "classes ('box F': over boxes)"
    )
    print(
        "fallbk: GrabCut boxes kept as the rectangle; >32px: of those above 32 x 32 px; "
        "ms/box: generator time per box, one core; x old: that time over the old defaults'"
    )
    print(
        f"options: grabcut {args.grabcut_options}, crf {args.crf_options}; box2tag: "
        f"{', '.join(map(str, args.box2tag_steps))} steps per class network at "
        f"{args.crop_size} px (T+N)\n"
    )
    print(HEADER)
    print("\n".join(rows))
    print(f"\n{REFERENCES}\n({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
