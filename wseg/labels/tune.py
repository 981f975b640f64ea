"""Cross-validate Bbox-Seg's alpha and CRF parameters on held-out full masks (Papandreou 2015).

Every combination of the given values labels a seeded subset of a split with the ``crf`` generator;
the combination with the best pseudo-label mIoU is written to a YAML config for the generator::

    python -m wseg.labels.tune --dataset voc --root VOC2012 --split val --num-images 100 \
        --alphas 0.2 0.4 0.6 0.8 --bilateral-srgb 3 5 10 --out chosen.yaml
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import torch
import yaml
from tqdm.auto import tqdm

from wseg.data.datasets import DATASET_NAMES
from wseg.data.records import SegmentationSource
from wseg.labels.crf import DenseCRFParams
from wseg.labels.generators import CRFGenerator
from wseg.metrics import confusion_matrix, mean_iou
from wseg.options import parse_key_values
from wseg.parallel import pool_imap_unordered

__all__ = ["TuneResult", "candidate_generators", "held_out_indices", "main", "tune_crf"]

CRF_FIELDS = (
    "gaussian_sxy",
    "gaussian_compat",
    "bilateral_sxy",
    "bilateral_srgb",
    "bilateral_compat",
    "iterations",
)
"""The `DenseCRFParams` fields the command can vary."""


@dataclass
class TuneResult:
    """Scores of every candidate on the held-out images.

    Attributes:
        candidates: The options of each ``crf`` generator tried (``alpha``, ``box_prior``, ``crf``).
        mious: Pseudo-label mIoU of each candidate, in [0, 1].
        ids: The held-out image ids.

    """

    candidates: list[dict[str, Any]]
    mious: list[float]
    ids: list[str]

    @property
    def best(self) -> int:
        """Index of the best candidate (the first of equals, i.e. the earliest in the grid)."""
        return int(np.argmax(self.mious))


def held_out_indices(source: SegmentationSource, num_images: int, seed: int = 0) -> list[int]:
    """Seeded choice of ``num_images`` images with a full mask (all of them if fewer).

    Args:
        source: The split, e.g. VOC val (the paper used 100 val images).
        num_images: How many images to score the candidates on.
        seed: Seed of the choice; it depends only on the sorted ids and the seed.

    Returns:
        Positions in ``source``, sorted.

    """
    if num_images < 1:
        raise ValueError(f"num_images must be >= 1, got {num_images}")
    order = sorted(range(len(source)), key=lambda i: source.ids[i])
    chosen = np.random.default_rng(seed).permutation(len(order))[:num_images]
    return sorted(order[i] for i in chosen)


def candidate_generators(
    alphas: Sequence[float],
    box_priors: Sequence[float] = (0.6,),
    crf_grid: dict[str, Sequence[float]] | None = None,
    backend: Literal["pydensecrf", "torch"] = "pydensecrf",
) -> list[CRFGenerator]:
    """The ``crf`` generators of every combination of the values (alpha varying fastest last).

    Args:
        alphas: Fractions of each box clamped to its class (paper: 0.2 to 0.8).
        box_priors: Box-class probabilities inside boxes (see `wseg.labels.generators.box_unaries`).
        crf_grid: `DenseCRFParams` field -> values; fields left out keep their defaults.
        backend: Dense CRF backend of the generators.

    Returns:
        One generator per combination.

    """
    crf_grid = dict(crf_grid or {})
    unknown = sorted(set(crf_grid) - set(CRF_FIELDS))
    if unknown:
        raise ValueError(f"unknown CRF parameter(s) {unknown}; valid: {list(CRF_FIELDS)}")
    names = list(crf_grid)
    generators = []
    for values in itertools.product(*(crf_grid[n] for n in names), box_priors, alphas):
        crf = dict(zip(names, values[: len(names)]))
        if "iterations" in crf:
            crf["iterations"] = int(crf["iterations"])
        box_prior, alpha = values[len(names) :]
        generators.append(CRFGenerator(alpha=alpha, box_prior=box_prior, backend=backend, crf=crf))
    return generators


_WORKER: dict[str, Any] = {}


def _init_worker(source: SegmentationSource, generators: list[CRFGenerator]) -> None:
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    _WORKER.update(source=source, generators=generators)


def _score_image(index: int) -> np.ndarray:
    """Confusion matrices (candidates x C x C) of every candidate on image ``index``."""
    source, generators = _WORKER["source"], _WORKER["generators"]
    sample = source[index]
    if sample.mask is None:
        raise ValueError(f"image {sample.id} ({sample.source}) has no full mask to score against")
    target = torch.from_numpy(sample.mask.astype(np.int64))
    out = np.zeros((len(generators), source.num_classes, source.num_classes), np.int64)
    for k, generator in enumerate(generators):
        try:
            label, _ = generator(sample, source.num_classes)
        except Exception as error:
            where = f"{sample.id} ({sample.source})"
            raise RuntimeError(f"crf generator failed on image {where}: {error}") from error
        pred = torch.from_numpy(label.astype(np.int64))
        out[k] = confusion_matrix(pred, target, source.num_classes).numpy()
    return out


def tune_crf(
    source: SegmentationSource,
    generators: list[CRFGenerator],
    num_images: int = 100,
    seed: int = 0,
    workers: int = 1,
    progress: bool = True,
) -> TuneResult:
    """Score every candidate generator by pseudo-label mIoU on held-out fully labelled images.

    Args:
        source: A split with full masks (the paper: 100 VOC val images).
        generators: The candidates (`candidate_generators`).
        num_images: Held-out images (`held_out_indices`).
        seed: Seed of the held-out choice.
        workers: Processes, one image each at a time (1: in this process).
        progress: Show a tqdm progress bar.

    Returns:
        A `TuneResult`.

    """
    if not generators:
        raise ValueError("no candidate to score")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    indices = held_out_indices(source, num_images, seed)
    total = np.zeros((len(generators), source.num_classes, source.num_classes), np.int64)
    bar = tqdm(
        total=len(indices), desc=f"{len(generators)} candidates", unit="img", disable=not progress
    )
    with contextlib.ExitStack() as stack:
        if workers == 1 or len(indices) == 1:
            _WORKER.update(source=source, generators=generators)
            results = map(_score_image, indices)
        else:
            args = (source, generators)
            results = stack.enter_context(
                pool_imap_unordered(_score_image, indices, workers, _init_worker, args)
            )
        try:
            for confusion in results:
                total += confusion
                bar.update()
        finally:
            bar.close()
            _WORKER.clear()
    mious = [mean_iou(torch.from_numpy(c)) for c in total]
    candidates = [g.options() for g in generators]
    return TuneResult(candidates, mious, [source.ids[i] for i in indices])


def generate_command(options: dict[str, Any]) -> str:
    """The ``python -m wseg.labels generate`` options that reproduce a chosen candidate."""
    flags = [
        f"-o {key}={shlex.quote(value if isinstance(value, str) else json.dumps(value))}"
        for key, value in options.items()
    ]
    return "python -m wseg.labels generate --generator crf " + " ".join(flags)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m wseg.labels.tune", description=__doc__)
    parser.add_argument("--dataset", choices=DATASET_NAMES, required=True)
    parser.add_argument("--root", required=True, help="dataset root")
    parser.add_argument("--split", default="val", help="fully labelled split to hold out from")
    parser.add_argument("--num-images", type=int, default=100, help="paper: 100")
    parser.add_argument("--seed", type=int, default=0, help="seed of the held-out choice")
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.2, 0.4, 0.6, 0.8])
    parser.add_argument("--box-priors", type=float, nargs="+", default=[0.6])
    defaults = DenseCRFParams()
    for name in CRF_FIELDS:
        parser.add_argument(
            "--" + name.replace("_", "-"),
            type=float,
            nargs="+",
            default=[getattr(defaults, name)],
            help=f"values of DenseCRFParams.{name} (default: {getattr(defaults, name)})",
        )
    parser.add_argument("--backend", choices=("pydensecrf", "torch"), default="pydensecrf")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--dataset-option", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", required=True, help="YAML file for the chosen configuration")
    return parser


def main(argv: Sequence[str] | None = None) -> TuneResult:
    """Run the command line; print the table and write the chosen configuration.

    Args:
        argv: Arguments (default: ``sys.argv[1:]``).

    Returns:
        The scores of every candidate.

    """
    from wseg.data.datasets import make_source

    args = _parser().parse_args(argv)
    out = Path(args.out)
    if out.exists():
        raise SystemExit(f"{out} exists; choose another --out (a chosen config is never replaced)")
    grid = {name: getattr(args, name) for name in CRF_FIELDS}
    try:
        generators = candidate_generators(args.alphas, args.box_priors, grid, args.backend)
    except ValueError as error:
        raise SystemExit(f"bad candidate values: {error}") from error
    options = parse_key_values(args.dataset_option, "--dataset-option")
    source = make_source(args.dataset, args.root, args.split, **options)
    result = tune_crf(source, generators, args.num_images, args.seed, args.workers)
    for candidate, miou in zip(result.candidates, result.mious):
        crf = {k: candidate["crf"][k] for k in grid if len(grid[k]) > 1}
        print(
            f"alpha {candidate['alpha']:.2f}  box_prior {candidate['box_prior']:.2f}  "
            f"{crf or ''}  mIoU {100 * miou:.1f}"
        )
    best = result.candidates[result.best]
    chosen = {
        "generator": "crf",
        "options": best,
        "miou": round(result.mious[result.best], 4),
        "held_out": {
            "dataset": args.dataset,
            "root": str(Path(args.root).resolve()),
            "split": args.split,
            "options": options,
            "num_images": len(result.ids),
            "seed": args.seed,
        },
        "generate": generate_command(best),
        "candidates": [{**c, "miou": round(m, 4)} for c, m in zip(result.candidates, result.mious)],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(chosen, sort_keys=False))
    print(f"chosen: {best} (mIoU {100 * result.mious[result.best]:.1f}) -> {out}")
    print(chosen["generate"])
    return result


if __name__ == "__main__":
    main()
