"""Train one row of the comparison for one seed, validate it, cache the numbers."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from wseg.compare.rows import Row
from wseg.constants import EXPERIMENTS
from wseg.data.datamodule import WeakSegDataModule
from wseg.data.store import PseudoLabelStore
from wseg.labels.generate import generate
from wseg.labels.generators import build_generator
from wseg.labels.quality import evaluate_store
from wseg.pipeline import commands
from wseg.pipeline.stages import FINAL, METRICS, Stage, data_overrides, run_stages

RESULT = "result.json"
TTA_SCALES = (0.75, 1.0, 1.25)
SHARED_STORE_FOLDERS = ("stores", "pseudo")
"""Where the chains keep label stores that no seed changes (CRF from boxes, GrabCut)."""


@dataclass
class RowResult:
    """The measured numbers of one row and seed (percentages; times in minutes).

    ``miou_tta`` and ``miou_tta_crf`` are None when the refined validation was not run.
    """

    name: str
    title: str
    label_miou: float | None
    miou: float
    miou_tta: float | None
    miou_tta_crf: float | None
    stage_minutes: dict[str, float] = field(default_factory=dict)
    seed: int = 0


def data_args(root: str | None) -> list[str]:
    """The ``--data.init_args.root`` override for every stage (none without ``root``)."""
    return [] if root is None else ["--data.init_args.root", root]


def seed_args(row: Row, seed: int) -> list[str]:
    """Arguments of one seed: the global seed, and the F draw for rows with an F/W split."""
    args = ["--seed_everything", str(seed)]
    if row.uses_split:
        args += ["--data.init_args.split_seed", str(seed)]
    return args


def train_row(row: Row, data: str, out: Path, extra: Sequence[str]) -> Path:
    """Train a row on ``data`` in ``out`` (resuming finished stages); its final stage's folder."""
    if data not in row.setups:
        raise ValueError(f"row {row.name!r} has no setup for {data!r}; it has {sorted(row.setups)}")
    setup = row.setups[data]
    extra = [*row.args, *extra]
    if row.pipeline is None:
        stage = Stage(row.name, EXPERIMENTS / setup, split=None)
        results = run_stages([stage], row.name, out, extra=extra)
    else:
        available = commands()
        if row.pipeline not in available:
            raise ValueError(f"row {row.name!r}: no pipeline command {row.pipeline!r}")
        run_chain = available[row.pipeline].run_chain
        results = run_chain(setup, out, extra, **row.pipeline_options)
    if not results:
        raise RuntimeError(f"row {row.name!r}: its chain finished no stage")
    return Path(list(results.values())[-1]["stage_dir"])


def share_stores(first: Path, other: Path) -> list[Path]:
    """Link the label stores of ``first``'s chain into ``other`` (another seed's folder).

    Only folders named in `SHARED_STORE_FOLDERS` are linked: stores whose generator no seed
    changes, so every seed trains on the same labels and GrabCut runs once. Each store checks
    its generator config and dataset when it is opened, as always.

    Returns:
        The links made.
    """
    links = []
    for folder in sorted(p for name in SHARED_STORE_FOLDERS for p in first.glob(f"*/{name}")):
        link = other / folder.relative_to(first)
        if not link.exists():
            link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(folder.resolve(), link, target_is_directory=True)
            links.append(link)
    return links


def stage_minutes(out: Path, stages: Sequence[str] | None = None) -> dict[str, float]:
    """Wall time of every stage under ``out`` (or of the named ones), in minutes, in run order."""
    minutes = {}
    for path in sorted(out.glob(f"**/{METRICS}"), key=lambda path: path.stat().st_mtime):
        metrics = json.loads(path.read_text())
        if "wall_s" in metrics and (stages is None or path.parent.name in stages):
            minutes[path.parent.name] = metrics["wall_s"] / 60
    return minutes


def _datamodule(stage_dir: Path, extra: Sequence[str]) -> WeakSegDataModule:
    config = yaml.safe_load((stage_dir / "config.yaml").read_text())
    datamodule = WeakSegDataModule(**{**config["data"]["init_args"], **data_overrides(extra)})
    datamodule.prepare_data()
    return datamodule


def label_miou(row: Row, stage_dir: Path, out: Path, extra: Sequence[str]) -> float | None:
    """The mIoU (%) of the row's training labels against the true masks of the training split."""
    if row.labels is None:
        return None
    datamodule = _datamodule(stage_dir, extra)
    source = datamodule.make_source(datamodule.train_split)
    if row.labels == "rect":
        identity = {"name": datamodule.dataset, "root": str(datamodule.root)}
        identity["split"] = datamodule.train_split
        store = generate(source, build_generator("rect"), out / "labels", identity).store
    else:
        path = datamodule.pseudo_labels
        if path is None:
            raise RuntimeError(f"row {row.name!r}: its final stage trains on no pseudo labels")
        store = PseudoLabelStore(path)
    return 100 * evaluate_store(store, source)["miou"]


def validate(stage_dir: Path, extra: Sequence[str], tta_and_crf: bool) -> dict[str, float]:
    """Validate a stage's ``final.ckpt`` with its own config; the metrics as percentages."""
    from wseg.cli import main as cli_main

    args = ["validate", "--config", str(stage_dir / "config.yaml"), *extra]
    args += ["--ckpt_path", str(stage_dir / FINAL), "--trainer.logger", "false"]
    args += ["--trainer.default_root_dir", str(stage_dir / "bench_eval")]
    if tta_and_crf:
        args += ["--model.init_args.tta_flip", "true", "--model.init_args.crf_postprocess", "true"]
        args += ["--model.init_args.tta_scales", json.dumps(list(TTA_SCALES))]
    cli = cli_main(args)
    return {key: 100 * float(value) for key, value in cli.trainer.callback_metrics.items()}


def run_row(
    row: Row,
    data: str,
    out: Path,
    extra: Sequence[str],
    seed: int = 0,
    refine: bool = True,
    first_seed_dir: Path | None = None,
) -> RowResult:
    """Train, measure and cache one row for one seed (a cached result is read back).

    Args:
        row: The row.
        data: Which of its setups.
        out: The comparison's folder: the row goes to ``<out>/<chain or row>/seed<k>/``.
        extra: Arguments for every stage and validation (dataset root, tiny sizes, ...).
        seed: Global seed; rows with an F/W split also draw F with it.
        refine: Also validate with flip + multi-scale averaging and the dense CRF.
        first_seed_dir: The folder of this row's first seed, whose shared stores are linked.

    Returns:
        The row's numbers.
    """
    row_dir = out / row.name / f"seed{seed}"
    cached = row_dir / RESULT
    if cached.exists():
        print(f"[bench] {row.name} seed {seed}: done ({cached}), read back", flush=True)
        return RowResult(**json.loads(cached.read_text()))
    chain_dir = out / (row.chain or row.name) / f"seed{seed}"
    if first_seed_dir is not None and first_seed_dir != chain_dir:
        share_stores(first_seed_dir, chain_dir)
    extra = [*extra, *seed_args(row, seed)]
    stage_dir = train_row(row, data, chain_dir, extra)
    plain = validate(stage_dir, extra, tta_and_crf=False)
    refined = validate(stage_dir, extra, tta_and_crf=True) if refine else {}
    stages = None if row.chain is None else _chain_stages(row, data)
    result = RowResult(
        name=row.name,
        title=row.title,
        label_miou=label_miou(row, stage_dir, row_dir, extra),
        miou=plain["val/miou"],
        miou_tta=refined.get("val/miou"),
        miou_tta_crf=refined.get("val/miou_crf"),
        stage_minutes=stage_minutes(chain_dir, stages),
        seed=seed,
    )
    row_dir.mkdir(parents=True, exist_ok=True)
    cached.write_text(json.dumps(result.__dict__, indent=2))
    return result


def _chain_stages(row: Row, data: str) -> list[str]:
    """The stage names of a shared-chain row (its own stages, not its neighbours')."""
    module = commands()[row.pipeline]
    return [stage.name for stage in module.fit_stages(row.setups[data], **row.pipeline_options)]
