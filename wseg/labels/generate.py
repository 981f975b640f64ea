"""Pseudo labels from boxes for a dataset split: the generators and their parallel, resumable run.

Generators: ``rect`` (Bbox-Rect), ``grabcut`` (GrabCut per box), ``crf`` (Papandreou's Bbox-Seg).
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import datetime
import os
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import cv2
import numpy as np
import torch
from tqdm.auto import tqdm

from wseg.data.records import IGNORE_INDEX, Sample, SegmentationSource
from wseg.data.store import PseudoLabelStore
from wseg.data.weak import box_pixel_bounds, rect_labels
from wseg.labels.grabcut import grabcut_labels
from wseg.parallel import pool_imap_unordered

__all__ = [
    "GENERATORS",
    "CRFGenerator",
    "GenerationSummary",
    "GrabCutGenerator",
    "LabelGenerator",
    "RectGenerator",
    "box_unaries",
    "build_generator",
    "generate",
    "shard",
]


class LabelGenerator(abc.ABC):
    """A pseudo-label maker: a dataclass whose fields are its full configuration.

    Subclasses set `name` and implement ``__call__(sample, num_classes) -> (label, counter)``; the
    counter holds per-image statistics (e.g. GrabCut's fallbacks) that generation sums up.
    """

    name: ClassVar[str]
    kind: ClassVar[Literal["hard", "soft"]] = "hard"

    def options(self) -> dict[str, Any]:
        """Return the generator's full configuration (every field, defaults included)."""
        return dataclasses.asdict(self)

    @abc.abstractmethod
    def __call__(self, sample: Sample, num_classes: int) -> tuple[np.ndarray, Counter]:
        """Make the pseudo label of one sample.

        Args:
            sample: The image with its boxes.
            num_classes: Number of classes of the dataset, background included.

        Returns:
            ``(label, counter)``: ``uint8`` ``H, W`` labels (or ``float`` ``L, H, W`` for a soft
            generator) and per-image statistics.

        """


@dataclass
class RectGenerator(LabelGenerator):
    """Bbox-Rect (Papandreou et al. 2015): each box filled with its class, smallest box wins."""

    name: ClassVar[str] = "rect"

    def __call__(self, sample: Sample, num_classes: int) -> tuple[np.ndarray, Counter]:
        """Paint each box with its class, largest first (see `LabelGenerator`)."""
        return rect_labels(sample.boxes, sample.labels, sample.size), Counter(
            boxes=len(sample.boxes)
        )


@dataclass
class GrabCutGenerator(LabelGenerator):
    """GrabCut per box, merged smallest-box-wins (see `wseg.labels.grabcut.grabcut_labels`).

    Args:
        iterations: GrabCut iterations per box.
        context: Crop margin around each box in box sizes; None runs GrabCut on the whole image.
        min_size: Boxes narrower or shorter than this (pixels) keep their rectangle.
        upsample_to: Boxes with ``sqrt(area)`` below this (pixels) are upsampled to it; 0: never.
        core: Fraction of each box's area (its centre) fixed to foreground (20%, as Bbox-Seg's
            alpha; 0: textbook GrabCut, which loses to the rectangle on real photographs).

    """

    name: ClassVar[str] = "grabcut"
    iterations: int = 5
    context: float | None = 1.0
    min_size: int = 5
    upsample_to: int = 0
    core: float = 0.2

    def __call__(self, sample: Sample, num_classes: int) -> tuple[np.ndarray, Counter]:
        """Run GrabCut on every box of the sample (see `LabelGenerator`)."""
        name = f"{sample.id} ({sample.source})" if sample.source else sample.id
        return grabcut_labels(
            sample.image,
            sample.boxes,
            sample.labels,
            iterations=self.iterations,
            context=self.context,
            min_size=self.min_size,
            upsample_to=self.upsample_to,
            core=self.core,
            name=name,
        )


def box_unaries(
    boxes: np.ndarray,
    labels: np.ndarray,
    size: tuple[int, int],
    alpha: float = 0.2,
    box_prior: float = 0.6,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unaries and clamps of Papandreou et al.'s Bbox-Seg CRF over the classes present.

    The labels are ``0`` (background) and the distinct box classes, in increasing order. A pixel in
    the boxes of class set ``S`` gets ``P(background) = 1 - box_prior`` and ``box_prior / |S|`` for
    each class of ``S``. The paper leaves these unaries unspecified (it cross-validates its CRF);
    the default 0.6 leans slightly towards the box class, which is what the clamped background
    outside the box needs against it: on tiny_coco val2017 with DeepLab's CRF parameters, mIoU was
    58.3 / 67.0 / 65.9 for 0.5 / 0.6 / 0.7 (Bbox-Rect: 60.9). The centre of every box,
    the box shrunk about its centre by ``sqrt(alpha)`` per side so that it covers ``alpha`` of the
    box area (paper: alpha = 20%), is clamped to the box class (smallest box wins where centres
    overlap); pixels outside every box are clamped to background.

    Args:
        boxes: ``K, 4`` boxes ``x1, y1, x2, y2``.
        labels: ``K`` box classes (1..C).
        size: ``(height, width)``.
        alpha: Fraction of each box's area clamped to its class.
        box_prior: Total probability of the box classes inside boxes, outside the centres.

    Returns:
        ``(classes, probs, clamp)``: ``int64`` ``L`` class indices (0 first); ``float32``
        ``L, H, W`` probabilities; ``int64`` ``H, W`` clamp (index into ``classes``; 255 = free).

    """
    if not 0.0 <= alpha <= 1.0 or not 0.0 < box_prior < 1.0:
        raise ValueError(f"need 0 <= alpha <= 1 and 0 < box_prior < 1, got {alpha}, {box_prior}")
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    labels = np.asarray(labels, np.int64).reshape(-1)
    classes = np.concatenate([[0], np.unique(labels)]).astype(np.int64)
    index = {int(c): i for i, c in enumerate(classes)}
    height, width = size
    cover = np.zeros((len(classes), height, width), bool)
    bounds = [box_pixel_bounds(box, size) for box in boxes]
    for (r0, r1, c0, c1), label in zip(bounds, labels):
        cover[index[int(label)], r0:r1, c0:c1] = True
    inside = cover[1:].any(axis=0)
    probs = np.zeros((len(classes), height, width), np.float32)
    counts = cover[1:].sum(axis=0)
    probs[1:] = np.where(inside, box_prior / np.maximum(counts, 1), 0.0) * cover[1:]
    probs[0] = np.where(inside, 1.0 - box_prior, 1.0)
    clamp = np.full(size, IGNORE_INDEX, np.int64)
    clamp[~inside] = 0
    shrink = np.sqrt(alpha)
    areas = [(r1 - r0) * (c1 - c0) for r0, r1, c0, c1 in bounds]
    for k in sorted(range(len(boxes)), key=lambda i: -areas[i]):
        if areas[k] == 0 or alpha == 0:
            continue
        x1, y1, x2, y2 = boxes[k]
        cx, cy, half_w, half_h = (
            (x1 + x2) / 2,
            (y1 + y2) / 2,
            shrink * (x2 - x1) / 2,
            shrink * (y2 - y1) / 2,
        )
        r0, r1, c0, c1 = box_pixel_bounds(
            (cx - half_w, cy - half_h, cx + half_w, cy + half_h), size
        )
        clamp[r0:r1, c0:c1] = index[int(labels[k])]
    return classes, probs, clamp


CRF_FROM_BOXES: dict[str, Any] = {"bilateral_compat": 8.0}
"""Where `CRFGenerator`'s CRF departs from DeepLab's (`wseg.labels.crf.DenseCRFParams`); a
generator's ``crf`` options are applied on top of these."""


@dataclass
class CRFGenerator(LabelGenerator):
    """CRF from boxes: Papandreou et al.'s Bbox-Seg (centre clamped, outside clamped, CRF decides).

    Args:
        alpha: Fraction of each box's area (its centre) clamped to the box class (paper: 20%;
            default 30%, see below).
        box_prior: Probability of the box classes inside a box outside its centre (`box_unaries`).
        backend: Dense CRF backend, ``pydensecrf`` (reference) or ``torch``.
        crf: Keyword arguments of ``wseg.labels.crf.DenseCRFParams`` (defaults filled in; here
            ``bilateral_compat=8``, see below).

    Defaults, chosen on tiny_coco train2017 and the synthetic set, with val2017 held out
    (``python -m benchmarks.box_diagnosis --settings``): ``alpha=0.3`` (the paper's 20% centre is
    too small for COCO's objects, which fill less of their boxes than VOC's), ``box_prior=0.6``
    and DeepLab's CRF with the bilateral weight doubled (``bilateral_compat=8``). Box F-beta,
    rectangle / paper's alpha 0.2 with DeepLab's CRF / these defaults: train2017 61.3 / 65.0 /
    67.9, val2017 65.0 / 70.5 / 72.6 (mIoU 60.9 / 67.0 / 68.5), synthetic 76.5 / 95.7 / 94.8.
    ``box_prior`` 0.5 to 0.8, ``srgb`` 13 and ``sxy`` 100 moved nothing by more than 0.3; a
    larger centre (0.4, 0.5) helps small boxes and hurts large ones. The CRF stays below GrabCut
    with its centre fixed (val2017 74.4, see `GrabCutGenerator`): its colour kernel alone cannot
    separate an object from a background of similar colour inside the box. ``alpha=0.2,
    crf={"bilateral_compat": 4}`` is the paper's Bbox-Seg at DeepLab's parameters.

    """

    name: ClassVar[str] = "crf"
    alpha: float = 0.3
    box_prior: float = 0.6
    backend: Literal["pydensecrf", "torch"] = "pydensecrf"
    crf: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from wseg.labels.crf import DenseCRFParams

        self.crf = dataclasses.asdict(DenseCRFParams(**{**CRF_FROM_BOXES, **self.crf}))

    def __call__(self, sample: Sample, num_classes: int) -> tuple[np.ndarray, Counter]:
        """Refine the box unaries with the dense CRF and take the argmax (see `LabelGenerator`)."""
        from wseg.labels.crf import DenseCRFParams, dense_crf

        classes, probs, clamp = box_unaries(
            sample.boxes, sample.labels, sample.size, self.alpha, self.box_prior
        )
        if len(classes) == 1:  # no box: all background, nothing for the CRF to decide
            return np.zeros(sample.size, np.uint8), Counter(boxes=0)
        image = torch.from_numpy(np.ascontiguousarray(sample.image.transpose(2, 0, 1)))[None]
        refined = dense_crf(
            image,
            torch.from_numpy(probs)[None],
            DenseCRFParams(**self.crf),
            backend=self.backend,
            clamp=torch.from_numpy(clamp)[None],
        )
        label = classes[refined[0].argmax(dim=0).numpy()].astype(np.uint8)
        return label, Counter(boxes=len(sample.boxes))


GENERATORS: dict[str, type[LabelGenerator]] = {
    cls.name: cls for cls in (RectGenerator, GrabCutGenerator, CRFGenerator)
}


def build_generator(name: str, **options: Any) -> LabelGenerator:
    """Instantiate a registered generator.

    Args:
        name: ``rect``, ``grabcut`` or ``crf``.
        **options: The generator's fields.

    Returns:
        The generator.

    Raises:
        ValueError: For an unknown generator or option (the message lists the valid ones).

    """
    if name not in GENERATORS:
        raise ValueError(f"unknown generator {name!r}; expected one of {sorted(GENERATORS)}")
    cls = GENERATORS[name]
    valid = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(f"generator {name!r} has no option(s) {unknown}; valid: {valid}")
    return cls(**options)


def shard(items: list, rank: int, world_size: int) -> list:
    """Return the shard ``items[rank::world_size]`` of one DDP rank.

    Args:
        items: The full list.
        rank: This rank.
        world_size: Number of ranks.

    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside 0..{world_size - 1}")
    return items[rank::world_size]


@dataclass
class GenerationSummary:
    """What one `generate` call did.

    Attributes:
        store: The store written to.
        total: Images in the split (all ranks).
        generated: Ids this call (this rank) generated.
        skipped: Images of this rank's shard that the store already had.
        seconds: Wall time of this call.
        generator_seconds: Summed time spent inside the generator (per-image cost x images).
        stats: Generator statistics summed over the generated images (all ranks).

    """

    store: PseudoLabelStore
    total: int
    generated: list[str]
    skipped: int
    seconds: float
    generator_seconds: float
    stats: dict[str, int]


_WORKER: dict[str, Any] = {}


def _init_worker(source: SegmentationSource, generator: LabelGenerator, store_path: str) -> None:
    """Pool initializer: one thread per worker process; keep the job's objects in the worker."""
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    _WORKER.update(source=source, generator=generator, store=PseudoLabelStore(store_path))


def _run_one(index: int) -> tuple[str, dict[str, int], float]:
    """Generate and write the label of sample ``index``; return its id, statistics and time."""
    source, generator, store = _WORKER["source"], _WORKER["generator"], _WORKER["store"]
    sample = source[index]
    start = time.perf_counter()
    try:
        label, counts = generator(sample, source.num_classes)
    except Exception as error:
        where = f"{sample.id} ({sample.source})" if sample.source else sample.id
        raise RuntimeError(
            f"generator {generator.name!r} failed on image {where}: {error}"
        ) from error
    seconds = time.perf_counter() - start
    if generator.kind == "hard" and tuple(label.shape) != sample.size:
        raise ValueError(
            f"{sample.id}: generator {generator.name} returned {label.shape}, not {sample.size}"
        )
    store.write(sample.id, label)
    return sample.id, dict(counts), seconds


def _distributed() -> tuple[int, int]:
    """Return ``(rank, world_size)`` of an initialised torch.distributed group, else ``(0, 1)``."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def generate(
    source: SegmentationSource,
    generator: LabelGenerator,
    out: str | os.PathLike,
    dataset: Mapping[str, Any],
    workers: int = 1,
    progress: bool = True,
) -> GenerationSummary:
    """Generate the missing pseudo labels of a split into the generator's store under ``out``.

    The store is ``<out>/<generator>-<hash8>``, the hash covering the generator's options and
    ``dataset`` (name, root, split, reader options): a changed config makes a new store. Only ids
    without a label are generated, so an interrupted run resumes where it stopped. Samples run in a
    process pool of ``workers`` processes (one thread each); under an initialised torch.distributed
    group each rank takes ``ids[rank::world_size]`` and rank 0 records the run in the manifest.

    Args:
        source: The dataset split.
        generator: The pseudo-label generator.
        out: Parent directory of stores.
        dataset: Identity of the split, e.g. ``{"name": "voc", "root": ..., "split": "train"}``;
            JSON-serialisable, part of the config hash.
        workers: Worker processes (1: in this process). Workers are spawned (see
            `wseg.parallel`): a script calling this needs the `if __name__ == "__main__":` guard.
        progress: Show a tqdm progress bar (rank 0 only).

    Returns:
        A `GenerationSummary`.

    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    rank, world_size = _distributed()
    ids = list(source.ids)
    config = {"generator": generator.name, "options": generator.options(), "dataset": dict(dataset)}
    store = PseudoLabelStore.create_or_resume(
        out, config, kind=generator.kind, classes=list(source.classes), num_images=len(ids)
    )
    mine = shard(list(range(len(ids))), rank, world_size)
    todo = [index for index in mine if not store.has(ids[index])]
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    start = time.perf_counter()
    generated: list[str] = []
    stats: Counter = Counter()
    generator_seconds = 0.0
    bar = tqdm(
        total=len(todo),
        desc=f"{generator.name} labels",
        unit="img",
        disable=not progress or rank != 0,
    )
    with contextlib.ExitStack() as stack:
        if workers == 1 or len(todo) <= 1:
            _WORKER.update(source=source, generator=generator, store=store)
            results = map(_run_one, todo)
        else:
            args = (source, generator, str(store.path))
            results = stack.enter_context(
                pool_imap_unordered(_run_one, todo, workers, _init_worker, args)
            )
        try:
            for image_id, counts, seconds in results:
                generated.append(image_id)
                stats.update(counts)
                generator_seconds += seconds
                bar.update()
        finally:
            bar.close()
            _WORKER.clear()
    seconds = time.perf_counter() - start
    run = {
        "started": started,
        "generated": len(generated),
        "skipped": len(mine) - len(todo),
        "seconds": round(seconds, 3),
        "generator_seconds": round(generator_seconds, 3),
        "workers": workers,
        "world_size": world_size,
        "stats": dict(stats),
    }
    if world_size > 1:
        gathered: list[dict[str, Any] | None] = [None] * world_size
        torch.distributed.all_gather_object(gathered, run)
        run = _merge_runs([r for r in gathered if r is not None])
    if rank == 0:
        store.update_manifest(runs=[*store.manifest.get("runs", []), run])
    if world_size > 1:
        torch.distributed.barrier()
    return GenerationSummary(
        store=PseudoLabelStore(store.path),
        total=len(ids),
        generated=generated,
        skipped=len(mine) - len(todo),
        seconds=seconds,
        generator_seconds=generator_seconds,
        stats=dict(run["stats"]),
    )


def _merge_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Sum the per-rank run records of one distributed generation."""
    stats: Counter = Counter()
    for run in runs:
        stats.update(run["stats"])
    return {
        **runs[0],
        "generated": sum(r["generated"] for r in runs),
        "skipped": sum(r["skipped"] for r in runs),
        "seconds": max(r["seconds"] for r in runs),
        "generator_seconds": round(sum(r["generator_seconds"] for r in runs), 3),
        "stats": dict(stats),
    }
