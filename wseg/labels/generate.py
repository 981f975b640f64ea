"""The parallel, resumable run of a pseudo-label generator over a dataset split, into its store.

The generators themselves are in `wseg.labels.generators`.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import torch
from tqdm.auto import tqdm

from wseg.data.records import SegmentationSource
from wseg.data.store import PseudoLabelStore, ids_digest
from wseg.labels.generators import LabelGenerator
from wseg.parallel import pool_imap_unordered

__all__ = ["GenerationSummary", "generate", "shard"]


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


def _init_worker(
    source: SegmentationSource, generator: LabelGenerator, store_path: str, run_id: str
) -> None:
    """Pool initializer: one thread per worker process; keep the job's objects in the worker."""
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    store = PseudoLabelStore(store_path)
    _WORKER.update(source=source, generator=generator, store=store, run_id=run_id)


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
    # Logged first: a label on disk always has its line (a line without a label is ignored).
    store.record_stats(sample.id, _WORKER["run_id"], counts, seconds)
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
    without a label are generated, so an interrupted run resumes where it stopped; the statistics
    of the labels a killed run wrote (kept in the store's log as each label is written) become a
    run record marked ``interrupted`` in the manifest. Samples run in a
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
    run_id = uuid.uuid4().hex
    if world_size > 1:  # one run id for every rank's log lines
        shared = [run_id]
        torch.distributed.broadcast_object_list(shared, src=0)
        run_id = shared[0]
    if rank == 0:
        root = dataset.get("root", getattr(source, "root", None))
        data = {
            "root": None if root is None else str(Path(root).resolve()),
            "split": dataset.get("split", getattr(source, "split", None)),
            "num_images": len(ids),
            "ids_sha256": ids_digest(ids),
        }
        runs = [*store.manifest.get("runs", []), *_interrupted_runs(store)]
        store.update_manifest(data=data, runs=runs)
    if world_size > 1:
        torch.distributed.barrier()
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
            _WORKER.update(source=source, generator=generator, store=store, run_id=run_id)
            results = map(_run_one, todo)
        else:
            args = (source, generator, str(store.path), run_id)
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
        "run_id": run_id,
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


def _interrupted_runs(store: PseudoLabelStore) -> list[dict[str, Any]]:
    """Run records for the labels in the store's log whose run never recorded itself (killed)."""
    recorded = {run.get("run_id") for run in store.manifest.get("runs", [])}
    lost: dict[str, dict[str, Any]] = {}
    for image_id, (run_id, stats, seconds) in store.logged_stats().items():
        if run_id in recorded or not store.has(image_id):
            continue
        run = lost.setdefault(
            run_id,
            {
                "run_id": run_id,
                "interrupted": True,
                "started": None,
                "generated": 0,
                "skipped": 0,
                "seconds": None,
                "generator_seconds": 0.0,
                "stats": Counter(),
            },
        )
        run["generated"] += 1
        run["generator_seconds"] += seconds
        run["stats"].update(stats)
    for run in lost.values():
        run["stats"] = dict(run["stats"])
        run["generator_seconds"] = round(run["generator_seconds"], 3)
    return list(lost.values())


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
