"""Per-box diagnosis of the box segmenters: F-beta and fallbacks by box size, for several settings.

Runs each named setting (a generator and its options) on every image of tiny_coco (train2017 and
val2017) and the synthetic set, scores every box (object-vs-background F-beta inside the box,
beta^2 = 0.3, as Box2Tag's Table 1) and prints, per setting: mIoU, mean F-beta, the outcome of
every box (GrabCut segmented it or fell back, and why) and F-beta by box size (``sqrt`` of the
box area in pixels), with the generator time per box relative to the first setting of the same
generator. This is how the defaults of `wseg.labels` were chosen:

    python -m benchmarks.box_diagnosis [--workers 2] [--settings settings.json]

A settings file is a JSON object ``{"name": ["grabcut", {options}], ...}``; the default set
compares the old defaults with each change on its own and with the new defaults.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import TINY_COCO
from wseg.data.datasets import make_source
from wseg.data.records import IGNORE_INDEX
from wseg.data.synthetic import generate_synthetic
from wseg.data.weak import box_pixel_bounds
from wseg.labels.generators import GrabCutGenerator, build_generator
from wseg.labels.grabcut import grabcut_boxes
from wseg.labels.quality import box_fbeta
from wseg.parallel import pool_imap_unordered

SIZE_BINS = (0, 16, 32, 64, 128, 10**9)
"""Box size bins: ``sqrt(area)`` in pixels."""

OLD = {"iterations": 5, "context": 1.0, "min_size": 5, "upsample_to": 0, "core": 0.0}
"""GrabCut's defaults before the diagnosis (plain GrabCut from the box)."""

DEFAULT_SETTINGS: dict[str, tuple[str, dict[str, Any]]] = {
    "rect": ("rect", {}),
    "grabcut-old": ("grabcut", OLD),
    "grabcut-whole": ("grabcut", {**OLD, "context": None}),
    "grabcut-iter10": ("grabcut", {**OLD, "iterations": 10}),
    "grabcut-up128": ("grabcut", {**OLD, "upsample_to": 128}),
    "grabcut-core20": ("grabcut", {**OLD, "core": 0.2}),
    "grabcut-core20-up128": ("grabcut", {**OLD, "core": 0.2, "upsample_to": 128}),
    "grabcut": ("grabcut", {}),
    "crf-old": ("crf", {"alpha": 0.2, "box_prior": 0.6, "crf": {}}),
    "crf": ("crf", {}),
}

_JOB: dict[str, Any] = {}


def _init(sources: dict[str, Any], settings: dict[str, tuple[str, dict]]) -> None:
    import cv2
    import torch

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    _JOB.update(sources=sources, settings=settings)


def _score(job: tuple[str, int]) -> tuple[str, dict[str, Any]]:
    """Run every setting on one image; return its confusion, per-box records and times."""
    source_name, index = job
    source = _JOB["sources"][source_name]
    sample = source[index]
    num_classes = source.num_classes
    sizes = []
    for box in sample.boxes:
        r0, r1, c0, c1 = box_pixel_bounds(box, sample.size)
        sizes.append(float(np.sqrt((r1 - r0) * (c1 - c0))))
    result: dict[str, Any] = {}
    for name, (method, options) in _JOB["settings"].items():
        generator = build_generator(method, **options)
        start = time.perf_counter()
        label, _ = generator(sample, num_classes)
        seconds = time.perf_counter() - start
        outcomes = ["-"] * len(sample.boxes)
        if isinstance(generator, GrabCutGenerator):
            # A second, untimed pass for the per-box outcomes (the merged label drops them).
            per_box = grabcut_boxes(
                sample.image,
                sample.boxes,
                sample.labels,
                **{k: v for k, v in generator.options().items()},
            )
            outcomes = [outcome for _, outcome in per_box]
        valid = sample.mask != IGNORE_INDEX
        confusion = np.bincount(
            sample.mask[valid].astype(np.int64) * num_classes + label[valid],
            minlength=num_classes**2,
        ).reshape(num_classes, num_classes)
        scores = dict(_box_scores(label, sample))
        boxes = [(sizes[k], scores.get(k), outcomes[k]) for k in range(len(sample.boxes))]
        result[name] = {"confusion": confusion, "boxes": boxes, "seconds": seconds}
    return source_name, result


def _box_scores(label: np.ndarray, sample) -> list[tuple[int, float]]:
    """``(box index, F-beta)`` of every box with object pixels (as `box_fbeta`, with indices)."""
    scored = []
    for k in range(len(sample.boxes)):
        one = type(sample)(
            id=sample.id,
            image=sample.image,
            mask=sample.mask,
            boxes=sample.boxes[k : k + 1],
            labels=sample.labels[k : k + 1],
            instance_masks=None
            if sample.instance_masks is None
            else sample.instance_masks[k : k + 1],
        )
        scores = box_fbeta(label, one)
        if scores:
            scored.append((k, scores[0][1]))
    return scored


def _miou(confusion: np.ndarray) -> float:
    inter = np.diag(confusion).astype(float)
    union = confusion.sum(0) + confusion.sum(1) - inter
    present = union > 0
    return float(np.mean(inter[present] / union[present]))


def report(name: str, results: list[dict[str, Any]], settings: dict) -> str:
    """The table of one dataset: a row per setting."""
    lines = [f"\n== {name}: {len(results)} images"]
    bins = [
        f"<{b}" if a == 0 else (f">={a}" if b > 10**8 else f"{a}-{b}")
        for a, b in zip(SIZE_BINS, SIZE_BINS[1:])
    ]
    header = f"{'setting':<22} {'mIoU':>5} {'F-beta':>6} {'s/box':>6} {'x':>5}  " + " ".join(
        f"{b:>7}" for b in bins
    )
    lines.append(header)
    first_time: dict[str, float] = {}
    outcome_lines = []
    for setting, (method, _) in settings.items():
        confusion = sum(r[setting]["confusion"] for r in results)
        boxes = [b for r in results for b in r[setting]["boxes"]]
        seconds = sum(r[setting]["seconds"] for r in results)
        per_box = seconds / max(len(boxes), 1)
        ratio = per_box / first_time.setdefault(method, per_box) if per_box else 0.0
        scored = [s for _, s, _ in boxes if s is not None]
        by_bin = defaultdict(list)
        for size, score, _ in boxes:
            if score is not None:
                by_bin[np.searchsorted(SIZE_BINS, size, side="right") - 1].append(score)
        cells = " ".join(
            f"{100 * np.mean(by_bin[i]):>7.1f}" if by_bin[i] else f"{'-':>7}"
            for i in range(len(bins))
        )
        lines.append(
            f"{setting:<22} {100 * _miou(confusion):>5.1f} {100 * np.mean(scored):>6.1f} "
            f"{per_box:>6.3f} {ratio:>5.2f}  {cells}"
        )
        outcomes = Counter(o for _, _, o in boxes if o != "-")
        if outcomes:
            large = Counter(o for size, _, o in boxes if size > 32 and o != "-")
            large_total = sum(large.values())
            fell = large_total - large["grabcut"]
            outcome_lines.append(
                f"{setting:<22} "
                + ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items()))
                + f"; boxes > 32 px falling back: {fell}/{large_total}"
            )
    first = next(iter(settings))
    counts = Counter(
        np.searchsorted(SIZE_BINS, size, side="right") - 1
        for r in results
        for size, _, _ in r[first]["boxes"]
    )
    lines.append(f"{'boxes per bin':<44} " + " ".join(f"{counts[i]:>7}" for i in range(len(bins))))
    lines += ["outcomes:"] + outcome_lines
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--coco-root", default=str(TINY_COCO))
    parser.add_argument("--synthetic-images", type=int, default=60)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--settings", help="JSON file {name: [generator, options]}")
    parser.add_argument("--only", nargs="+", help="run only these settings (names)")
    parser.add_argument("--datasets", nargs="+", default=["tiny_coco", "synthetic"])
    args = parser.parse_args()
    settings = DEFAULT_SETTINGS
    if args.settings:
        settings = {k: tuple(v) for k, v in json.loads(Path(args.settings).read_text()).items()}
    if args.only:
        settings = {k: settings[k] for k in args.only}
    with tempfile.TemporaryDirectory() as tmp:
        sources: dict[str, Any] = {}
        if "tiny_coco" in args.datasets:
            for split in ("train2017", "val2017"):
                sources[f"tiny_coco/{split}"] = make_source("coco", Path(args.coco_root), split)
        if "synthetic" in args.datasets:
            root = generate_synthetic(
                Path(tmp) / "synthetic", num_train=args.synthetic_images, num_val=1, layouts=["voc"]
            )
            sources["synthetic"] = make_source("synthetic", root, "train")
        jobs = [(name, i) for name, source in sources.items() for i in range(len(source.ids))]
        collected: dict[str, list] = defaultdict(list)
        with pool_imap_unordered(_score, jobs, args.workers, _init, (sources, settings)) as results:
            for i, (name, result) in enumerate(results, 1):
                collected[name].append(result)
                print(f"\r{i}/{len(jobs)} images", end="", flush=True)
    print()
    coco = [r for n, rs in collected.items() if n.startswith("tiny_coco") for r in rs]
    groups = {"tiny_coco": coco}
    groups.update(collected)
    for name, results in groups.items():
        if results:
            print(report(name, results, settings))


if __name__ == "__main__":
    main()
