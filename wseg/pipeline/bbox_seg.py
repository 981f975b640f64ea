"""Bbox-Seg (Papandreou et al. 2015): the CRF-from-boxes store of the training split, then the fit.

    python -m wseg.pipeline bbox-seg --setting demo|demo_semi|tiny_coco|voc|voc_semi [-- <fit args>]

The store goes to ``<out>/<setting>/stores/crf-<hash>`` (resumable, named by the hash of the
generator options and the split) and the fit to ``<out>/<setting>/fit``; a rerun resumes both.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from wseg.data.store import PseudoLabelStore
from wseg.labels.generators import CRFGenerator, build_generator
from wseg.pipeline.settings import load_settings
from wseg.pipeline.stages import (
    SPLIT_KEYS,
    Stage,
    data_overrides,
    load_config,
    run_and_report,
    setting_named,
)

COMMAND = "bbox-seg"
HELP = "Bbox-Seg (Papandreou et al. 2015): CRF-from-boxes store -> fit on it"

SETTINGS: dict[str, Path] = load_settings(COMMAND)
"""Each setting's experiment YAML (its data section says which split the store labels)."""


def crf_options(tuned: Path | None, options: dict[str, Any]) -> dict[str, Any]:
    """The ``crf`` generator's options: a ``wseg.labels.tune`` choice, then explicit ones.

    Args:
        tuned: YAML written by ``python -m wseg.labels.tune --out`` (its ``options`` are used),
            or None for the generator's defaults (``alpha`` 0.3; the paper's is 0.2).
        options: Explicit options, applied last (e.g. ``{"alpha": 0.2}``).

    Returns:
        Keyword arguments of `wseg.labels.generators.CRFGenerator`.

    """
    chosen: dict[str, Any] = {}
    if tuned is not None:
        if not tuned.is_file():
            raise FileNotFoundError(f"--tuned {tuned}: no such file (wseg.labels.tune writes it)")
        content = yaml.safe_load(tuned.read_text())
        if not isinstance(content, dict) or content.get("generator") != "crf":
            raise ValueError(f"--tuned {tuned}: not a crf choice written by wseg.labels.tune")
        chosen = dict(content.get("options") or {})
    return {**chosen, **options}


def store_plan(config: Path, extra: Sequence[str], generator: CRFGenerator, out: Path) -> dict:
    """Where the store of a setting goes and what it labels, without reading any image.

    Args:
        config: The setting's experiment YAML.
        extra: The fit's extra arguments (``--data.init_args.*`` ones apply, e.g. ``root``).
        generator: The ``crf`` generator.
        out: Parent directory of the setting's stores.

    Returns:
        ``data`` (the datamodule arguments, split and store keys removed), ``dataset`` (the
        split's identity, part of the store's hash) and ``path`` (the store directory).

    """
    from wseg.data.datamodule import WeakSegDataModule

    data = {**load_config(config)["data"].get("init_args", {}), **data_overrides(extra)}
    data = {k: v for k, v in data.items() if k not in (*SPLIT_KEYS, "pseudo_labels")}
    datamodule = WeakSegDataModule(**data)
    dataset = {
        "name": datamodule.dataset,
        "root": str(Path(datamodule.root).resolve()),
        "split": datamodule.train_split,
        "options": datamodule.source_options,
    }
    store_config = {"generator": generator.name, "options": generator.options(), "dataset": dataset}
    store_config = json.loads(json.dumps(store_config, sort_keys=True))
    return {
        "data": data,
        "dataset": dataset,
        "path": PseudoLabelStore.directory_for(out, store_config),
    }


def make_store(
    config: Path, extra: Sequence[str], generator: CRFGenerator, out: Path, workers: int = 1
) -> Path:
    """Generate (or finish) the CRF-from-boxes store of a setting's training split.

    Args:
        config: The setting's experiment YAML.
        extra: The fit's extra arguments (``--data.init_args.*`` ones apply).
        generator: The ``crf`` generator.
        out: Parent directory of the setting's stores.
        workers: CRF worker processes.

    Returns:
        The store directory (equal to ``store_plan(...)["path"]``).

    """
    from wseg.data.check import require_clean
    from wseg.data.datamodule import WeakSegDataModule
    from wseg.labels.generate import generate

    plan = store_plan(config, extra, generator, out)
    datamodule = WeakSegDataModule(**plan["data"])
    datamodule.prepare_data()  # the synthetic data is generated on first use
    require_clean(datamodule)  # every split readable before the first label is written
    source = datamodule.make_source(datamodule.train_split)
    summary = generate(source, generator, out, plan["dataset"], workers=workers)
    print(
        f"[pipeline] store: {summary.store.path}: generated {len(summary.generated)}, already "
        f"there {summary.skipped}, of {summary.total}",
        flush=True,
    )
    return summary.store.path


def fit_stages(setting: str) -> list[Stage]:
    """The one fit stage of ``setting`` (its store is set when made)."""
    return [Stage("fit", setting_named(SETTINGS, setting, COMMAND), split=None)]


def run_chain(
    setting: str,
    out: Path = Path("runs/bbox_seg"),
    overrides: Sequence[str] = (),
    *,
    tuned: Path | None = None,
    crf: Mapping[str, Any] | None = None,
    workers: int = 1,
    dry_run: bool = False,
    stage_overrides: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, dict[str, float]]:
    """Make (or resume) the CRF store of ``setting``, then run (or skip) its fit.

    Args:
        setting: A name of `SETTINGS`.
        out: Output root; the chain writes ``out/<setting>/``.
        overrides: Arguments for the fit's ``python -m wseg fit``.
        tuned: Output of ``python -m wseg.labels.tune`` (its alpha and CRF), or None.
        crf: CRF generator options (after ``tuned``), e.g. ``{"alpha": 0.3}``.
        workers: CRF processes.
        dry_run: Print the store path and fit command only.
        stage_overrides: ``{"fit": [...]}``: arguments for the fit only.

    Returns:
        The final metrics of the fit once it has finished.

    Raises:
        SystemExit: If the CRF options are bad.

    """
    config = setting_named(SETTINGS, setting, COMMAND)
    folder = Path(out) / setting
    try:
        generator = build_generator("crf", **crf_options(tuned, dict(crf or {})))
    except (TypeError, ValueError, FileNotFoundError) as error:
        raise SystemExit(f"bad crf generator options: {error}") from error
    if dry_run:
        store = store_plan(config, overrides, generator, folder / "stores")["path"]
        print(f"[pipeline] store: {store} ({generator.options()})", flush=True)
    else:
        store = make_store(config, overrides, generator, folder / "stores", workers)
    stage = Stage("fit", config, split=None, data_args={"pseudo_labels": str(store)})
    return run_and_report([stage], setting, folder, None, overrides, dry_run, stage_overrides)
