"""Command line: ``generate`` makes a store, ``report`` scores one, ``show`` draws its panels.

Examples::

    python -m wseg.labels generate --dataset voc --root VOC2012 --split train --generator grabcut \
        --out pseudo/ --workers 8 -o iterations=5
    python -m wseg.labels generate --config my_run.yaml --generator grabcut --out pseudo/
    python -m wseg.labels report pseudo/grabcut-1a2b3c4d
    python -m wseg.labels show pseudo/grabcut-1a2b3c4d --num 8   # -> pseudo/grabcut-1a2b3c4d-show/
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from wseg.data.check import check_source, format_checks
from wseg.data.datasets import DATASET_NAMES
from wseg.data.store import PseudoLabelStore
from wseg.labels.generate import generate
from wseg.labels.generators import GENERATORS, build_generator
from wseg.labels.quality import evaluate_store, format_quality
from wseg.options import parse_key_values


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m wseg.labels", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    gen = commands.add_parser("generate", help="generate (or resume) a pseudo-label store")
    gen.add_argument(
        "--config", help="experiment YAML: read its data section's training split (or --split)"
    )
    gen.add_argument("--dataset", choices=DATASET_NAMES, help="without --config")
    gen.add_argument("--root", help="dataset root (without --config)")
    gen.add_argument("--split", help="default: the config's training split, else train")
    gen.add_argument("--generator", choices=sorted(GENERATORS), required=True)
    gen.add_argument("--out", required=True, help="parent directory of stores")
    gen.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    gen.add_argument(
        "-o",
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="generator option, e.g. iterations=5 or crf='{\"iterations\": 10}' (JSON values)",
    )
    gen.add_argument(
        "--dataset-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="dataset reader option, e.g. class_map=voc",
    )
    gen.add_argument("--no-report", action="store_true", help="skip the quality table")
    rep = commands.add_parser("report", help="print (and record) the quality of a store")
    rep.add_argument("store", help="store directory")
    show = commands.add_parser(
        "show", help="write panels (image | boxes | pseudo label | truth) of a store's images"
    )
    show.add_argument("store", help="store directory")
    show.add_argument("--num", type=int, default=8, help="images, spread over the split")
    show.add_argument("--ids", nargs="+", help="these image ids instead")
    show.add_argument("--out", help="panel folder (default: <store>-show beside the store)")
    for sub in (rep, show):
        sub.add_argument("--dataset", choices=DATASET_NAMES, help="default: the store's manifest")
        sub.add_argument("--root", help="default: the store's manifest")
        sub.add_argument("--split", help="default: the store's manifest")
        sub.add_argument("--dataset-option", action="append", default=[], metavar="KEY=VALUE")
    return parser


def _store_source(args: argparse.Namespace) -> tuple[PseudoLabelStore, str, str, str, dict]:
    """The store of ``args.store`` and its split: the flags, else what its manifest recorded."""
    store = PseudoLabelStore(args.store)
    dataset = store.manifest["config"].get("dataset", {})
    options = dict(dataset.get("options", {}))
    options.update(parse_key_values(args.dataset_option, "--dataset-option"))
    name = args.dataset or dataset.get("name")
    root = args.root or dataset.get("root")
    split = args.split or dataset.get("split")
    if not (name and root and split):
        raise SystemExit(f"{args.store}: give --dataset, --root and --split")
    return store, name, root, split, options


def _report(store: PseudoLabelStore, dataset: str, root: str, split: str, options: dict) -> None:
    from wseg.data.datasets import make_source

    source = make_source(dataset, root, split, **options)
    quality = evaluate_store(store, source)
    store.update_manifest(quality={"dataset": dataset, "root": root, "split": split, **quality})
    print(format_quality(quality, title=f"{store.path} on {dataset} {split}"))


def _generation_source(args: argparse.Namespace) -> tuple[str, str, str, dict, Any]:
    """``(dataset, root, split, reader options, reader)`` of ``generate``: a config or flags.

    Without a config, VOC-layout images need no class mask (``require_masks=false``): labels
    are made from boxes, and their quality is measured where masks exist.
    """
    from wseg.data.datasets import make_source

    reader_options = parse_key_values(args.dataset_option, "--dataset-option")
    if args.config:
        from wseg.data.config import datamodule_from_config

        if args.dataset or args.root:
            raise SystemExit("give --config or --dataset/--root, not both")
        try:
            datamodule = datamodule_from_config(args.config)
        except (OSError, ValueError) as error:
            raise SystemExit(f"error: {error}") from error
        split = args.split or datamodule.train_split
        options = {**datamodule.source_options, **reader_options}
        source = make_source(datamodule.dataset, datamodule.root, split, **options)
        return datamodule.dataset, datamodule.root, split, options, source
    if not (args.dataset and args.root):
        raise SystemExit("generate needs --config, or --dataset and --root")
    if args.dataset in ("voc", "synthetic"):
        reader_options.setdefault("require_masks", False)
    split = args.split or "train"
    return (
        args.dataset,
        args.root,
        split,
        reader_options,
        make_source(args.dataset, args.root, split, **reader_options),
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Run the command line.

    Args:
        argv: Arguments (default: ``sys.argv[1:]``).

    """
    args = _parser().parse_args(argv)
    if args.command == "generate":
        try:
            generator = build_generator(args.generator, **parse_key_values(args.option, "--option"))
        except (TypeError, ValueError) as error:
            raise SystemExit(f"bad generator options: {error}") from error
        dataset, root, split, reader_options, source = _generation_source(args)
        checked = check_source(source, "generate", split)
        if checked.errors:
            raise SystemExit(
                "nothing written: the data check found problems\n" + format_checks([checked])
            )
        identity = {
            "name": dataset,
            "root": str(Path(root).resolve()),
            "split": split,
            "options": reader_options,
        }
        summary = generate(source, generator, args.out, identity, workers=args.workers)
        print(
            f"{summary.store.path}: generated {len(summary.generated)}, already there "
            f"{summary.skipped}, of {summary.total}; {summary.seconds:.1f} s; stats {summary.stats}"
        )
        if not args.no_report:
            _report(summary.store, dataset, root, split, reader_options)
    elif args.command == "report":
        _report(*_store_source(args))
    else:
        from wseg.data.datasets import make_source
        from wseg.labels.show import show_store

        store, name, root, split, options = _store_source(args)
        out = Path(args.out) if args.out else store.path.with_name(store.path.name + "-show")
        try:
            written = show_store(
                store, make_source(name, root, split, **options), out, args.num, args.ids
            )
        except ValueError as error:
            raise SystemExit(str(error)) from error
        print(f"{len(written)} panels (image | boxes | pseudo label | truth) in {out}")


if __name__ == "__main__":
    from wseg.errors import run_command

    run_command("python -m wseg.labels", main)
