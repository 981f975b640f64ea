"""Local-PAM quality from scribbles: pixel features and regularisers, on synthetic and real images.

A random forest per image (50 trees) on curated synthesised scribbles, its argmax (PFA) against the
true masks, alone and Potts / dense-CRF regularised, with the EfficientNet-Lite0 stem features
(the default) and with colour + position only; seconds per image on one core. No training:

    python -m benchmarks.scribbles [--images 30] [--coco-root ../shared/data/tiny_coco]
        [--workers 2] [--potts-max-iter 300]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from benchmarks import TINY_COCO
from wseg.data.datasets import make_source
from wseg.data.scribbles import curated_scribble_ids
from wseg.data.subset import SubsetSource
from wseg.data.synthetic import generate_synthetic
from wseg.labels.generate import generate
from wseg.labels.pam_generators import LocalPAMGenerator, PFAGenerator
from wseg.labels.quality import evaluate_store


def local_rows(
    name: str, source, identity: dict, out: Path, workers: int, potts_max_iter: int
) -> list[str]:
    """Local PFAs of one dataset for each feature extractor and regulariser, one row each."""
    rows = []
    for features in ("lite0_stem", "colour_position"):
        local = LocalPAMGenerator(features=features, curated=True)
        summary = generate(source, local, out, identity, workers=workers, progress=False)
        runs = summary.store.manifest["runs"]
        seconds = sum(r["generator_seconds"] for r in runs) / max(
            sum(r["generated"] for r in runs), 1
        )
        for regulariser in ("none", "potts", "crf"):
            pfa = PFAGenerator(
                local_store=str(summary.store.path),
                regulariser=regulariser,
                potts_max_iter=potts_max_iter,
            )
            store = generate(source, pfa, out, identity, workers=workers, progress=False).store
            miou = evaluate_store(store, source, progress=False)["miou"]
            rows.append(
                f"| {name} | {len(source)} | {features} | {regulariser} | {100 * miou:.1f} | "
                f"{seconds:.2f} |"
            )
    return rows


def main() -> None:
    """Measure and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=30, help="curated images per dataset")
    parser.add_argument("--coco-root", type=Path, default=TINY_COCO)
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--potts-max-iter", type=int, default=300)
    parser.add_argument("--out", type=Path, help="store folder (default: a temporary one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        out = args.out or Path(scratch)
        root = generate_synthetic(out / "synthetic", num_train=args.images, num_val=1)
        datasets = [("synthetic", make_source("synthetic", root, "train"), str(root))]
        if args.coco_root.is_dir():
            coco = make_source("coco", args.coco_root, "train2017")
            datasets.append(("tiny_coco train2017", coco, str(args.coco_root)))
        lines = [
            "| dataset | images | features | regulariser | local PFA mIoU | s/image (forest) |",
            "|---|---|---|---|---|---|",
        ]
        for name, source, where in datasets:
            kept = curated_scribble_ids(source, "synthesize", progress=False)[: args.images]
            subset = SubsetSource(source, kept)
            identity = {"name": name, "root": where, "ids": kept}
            lines += local_rows(name, subset, identity, out, args.workers, args.potts_max_iter)
        print("\n".join(lines))


if __name__ == "__main__":
    main()
