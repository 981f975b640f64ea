"""Box2Tag (Ji & Veksler 2021): per-class networks -> pseudo ground truth -> final network.

    python -m wseg.pipeline box2tag --setting demo|tiny_coco|voc [--rule RULE] [-- <fit args>]

Everything lands in ``<out>/<setting>/``: ``boxes.json`` (kept boxes per class), one
``class_<name>/`` fit per class, the stores in ``pseudo/``, one folder per final fit.
"""

from __future__ import annotations

import inspect
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wseg.pipeline.settings import load_settings
from wseg.pipeline.stages import (
    FINAL,
    Stage,
    data_overrides,
    load_config,
    report,
    run_stages,
    setting_named,
)

COMMAND = "box2tag"
HELP = "Box2Tag (Ji & Veksler 2021): single-class networks -> pseudo-GT store -> final network"
RULE_CHOICES = ("overlap-small", "overlap-void", "overlap-back-void", "all")
CLASSES = "classes"  # the stage-argument group of every class network


@dataclass(frozen=True)
class Setting:
    """The experiment YAMLs of a Box2Tag chain.

    Args:
        single_class: The single-class network's fit (`BoxCropDataModule`); the pipeline sets
            its ``target_class``.
        final: The final network's cross-entropy fit (`Box2TagFinal`, the store as
            ``pseudo_labels``).
        final_crf: The overlap-back-void second fit: cross-entropy plus the dense-CRF loss,
            started from the cross-entropy fit.

    """

    single_class: Path
    final: Path
    final_crf: Path


SETTINGS: dict[str, Setting] = load_settings(COMMAND, Setting)


def data_args(config: Path, extra: Sequence[str]) -> dict[str, Any]:
    """A YAML's ``data.init_args`` with the ``--data.init_args.*`` overrides of ``extra``."""
    return {**load_config(config)["data"].get("init_args", {}), **data_overrides(extra)}


def count_boxes(setting: Setting, extra: Sequence[str], out: Path) -> dict[str, dict[str, int]]:
    """Count each class's boxes and kept boxes in the training split; save ``boxes.json``.

    Args:
        setting: The chain's YAMLs (the single-class one's data section is read).
        extra: Fit arguments (``--data.init_args.*`` ones apply).
        out: The setting's folder.

    Returns:
        Class name -> ``{"boxes": n, "kept": k}`` for every object class.

    """
    from wseg.data.box_crops import BoxCropDataModule, scan_crops
    from wseg.data.check import require_clean
    from wseg.data.datamodule import WeakSegDataModule

    path = out / "boxes.json"
    args = data_args(setting.single_class, extra)
    if path.exists():
        saved = json.loads(path.read_text())
        if saved.get("data") == args:
            return saved["classes"]
    shared = set(inspect.signature(WeakSegDataModule).parameters) & set(args)
    readers = WeakSegDataModule(**{key: args[key] for key in shared})
    readers.prepare_data()
    require_clean(readers)  # the first stage: every split readable before anything is trained
    names = readers.class_names
    default = inspect.signature(BoxCropDataModule).parameters["min_side_fraction"].default
    source = readers.make_source(readers.train_split)
    entries = scan_crops(source, args.get("min_side_fraction", default))
    boxes = Counter(names[e.label] for e in entries)
    kept = Counter(names[e.label] for e in entries if e.kept)
    classes = {name: {"boxes": boxes[name], "kept": kept[name]} for name in names[1:]}
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"data": args, "classes": classes}, indent=2) + "\n")
    return classes


def class_folder(name: str) -> str:
    """The stage (folder) name of a class's network: ``class_<name>``, spaces as underscores."""
    return "class_" + name.replace(" ", "_").replace("/", "_")


def class_stages(setting: Setting, classes: Sequence[str]) -> list[Stage]:
    """One single-class fit per class, each in its own ``class_<name>`` folder.

    Args:
        setting: The chain's YAMLs.
        classes: The classes to train.

    Returns:
        The stages.

    """
    return [
        Stage(
            class_folder(name), setting.single_class, split=None, data_args={"target_class": name}
        )
        for name in classes
    ]


def final_stages(setting: Setting, rule: str, store: Path) -> list[Stage]:
    """The final fit(s) of one overlap rule on its store.

    overlap-small and overlap-void: cross-entropy. overlap-back-void: cross-entropy, then
    cross-entropy plus the dense-CRF loss from that fit (the paper, after Tang et al. 2018).

    Args:
        setting: The chain's YAMLs.
        rule: The overlap rule.
        store: Its pseudo-label store.

    Returns:
        The stages.

    """
    tag = rule.replace("-", "_")
    pseudo = {"pseudo_labels": str(store)}
    if rule != "overlap-back-void":
        return [Stage(f"final_{tag}", setting.final, split=None, data_args=pseudo)]
    # The paper's schedule for this rule: 100 epochs of cross-entropy, then 100 with the CRF
    # loss; both fits run the final_crf YAML's schedule, the first without the CRF term.
    first = Stage(
        f"final_{tag}_ce",
        setting.final_crf,
        split=None,
        data_args=pseudo,
        model_args={"crf_loss_weight": 0.0, "init_checkpoint": None},
    )
    second = Stage(
        f"final_{tag}_crf",
        setting.final_crf,
        split=None,
        data_args=pseudo,
        inputs={"init_checkpoint": first.name},
    )
    return [first, second]


def make_pseudo_gt(
    setting: Setting,
    checkpoints: dict[str, Path],
    rules: Sequence[str],
    extra: Sequence[str],
    out: Path,
    device: str,
) -> dict[str, Path]:
    """Write (or resume) the stores of ``rules`` from the class networks; print their quality.

    Args:
        setting: The chain's YAMLs (the final one's data section names the training split).
        checkpoints: Class name -> its network's ``final.ckpt``.
        rules: The overlap rules.
        extra: Fit arguments (``--data.init_args.*`` ones apply).
        out: The setting's folder; stores go to ``out/pseudo``.
        device: Torch device of the class networks.

    Returns:
        Rule -> store directory.

    """
    from wseg.data.datamodule import WeakSegDataModule
    from wseg.labels.box2tag_pseudo_gt import generate_box2tag

    crops = data_args(setting.single_class, extra)
    final = {k: v for k, v in data_args(setting.final, extra).items() if k != "pseudo_labels"}
    datamodule = WeakSegDataModule(**final)
    datamodule.prepare_data()
    source = datamodule.make_source(datamodule.train_split)
    identity = {
        "name": datamodule.dataset,
        "root": str(Path(datamodule.root).resolve()),
        "split": datamodule.train_split,
        "reader": datamodule.source_options,
    }
    stores = generate_box2tag(
        source,
        checkpoints,
        out / "pseudo",
        identity,
        rules=rules,
        crop_size=int(crops.get("crop_size", 256)),
        border=int(crops.get("border", 3)),
        device=device,
    )
    print(f"[box2tag] {'rule':<18} {'mIoU':>6} {'void %':>7} {'F-beta':>7}  store")
    for rule, store in stores.items():
        quality = store.manifest.get("quality") or {}

        def pct(key: str, quality: dict = quality) -> str:
            value = quality.get(key)
            return "-" if value is None else f"{100 * value:.1f}"

        print(
            f"[box2tag] {rule:<18} {pct('miou'):>6} {pct('void_fraction'):>7} "
            f"{pct('fbeta'):>7}  {store.path}"
        )
    return {rule: store.path for rule, store in stores.items()}


def chosen_rules(rule: str) -> tuple[str, ...]:
    """The overlap rules ``rule`` stands for (``all``: all three)."""
    if rule not in RULE_CHOICES:
        raise ValueError(f"rule must be one of {list(RULE_CHOICES)}, got {rule!r}")
    return RULE_CHOICES[:3] if rule == "all" else (rule,)


def fit_stages(setting: str, rule: str = "overlap-void") -> list[Stage]:
    """The fits of ``setting`` and ``rule``: ``classes`` stands for every class network's fit.

    ``--classes.KEY=VALUE`` reaches every class network (a loss-term sweep), ``--<final
    stage>.KEY=VALUE`` one final fit; the class list itself needs the data, so it is not listed.
    """
    chosen = setting_named(SETTINGS, setting, COMMAND)
    store = Path("<store>")  # set when made
    finals = [stage for name in chosen_rules(rule) for stage in final_stages(chosen, name, store)]
    return [Stage(CLASSES, chosen.single_class, split=None), *finals]


def run_chain(
    setting: str,
    out: Path = Path("runs/box2tag"),
    overrides: Sequence[str] = (),
    *,
    rule: str = "overlap-void",
    classes: Sequence[str] | None = None,
    stop_after: str = "final",
    device: str = "cpu",
    dry_run: bool = False,
    stage_overrides: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, dict[str, float]]:
    """Run (or resume) the chain: class networks, pseudo ground truth, final network(s).

    Class networks are trained one after another, each its own ``python -m wseg fit`` (a class
    whose ``final.ckpt`` exists is skipped, so adding a class trains only that class; run
    disjoint ``--classes`` lists in parallel processes to use several devices). Classes with no
    box in the training split get no network (their boxes would be filled whole; none in VOC).

    Args:
        setting: A name of `SETTINGS`.
        out: Output root; the chain writes ``out/<setting>/``.
        overrides: Arguments for every stage's ``python -m wseg fit``.
        rule: Overlap rule of the pseudo ground truth, or ``all`` (`RULE_CHOICES`).
        classes: Train only these classes' networks and stop (None: every class with boxes).
        stop_after: Last step: ``classes``, ``pseudo`` or ``final``.
        device: Torch device of the pseudo-GT step.
        dry_run: Print the fit commands only.
        stage_overrides: Stage name (or ``classes``, for every class network) -> arguments.

    Returns:
        The final metrics of each finished fit.

    """
    rules = chosen_rules(rule)
    chain = setting_named(SETTINGS, setting, COMMAND)
    out = Path(out) / setting
    counts = count_boxes(chain, overrides, out)
    trainable = [name for name, count in counts.items() if count["boxes"] > 0]
    for name, count in counts.items():
        note = "" if count["kept"] else "  (none kept: trains on all its boxes)"
        print(f"[box2tag] {name:<14} boxes {count['boxes']:>6}  kept {count['kept']:>6}{note}")
    if classes:
        unknown = sorted(set(classes) - set(trainable))
        if unknown:
            raise ValueError(f"--classes {unknown}: not classes with boxes ({trainable})")
    chosen = list(classes or trainable)
    per_stage = dict(stage_overrides or {})
    per_class = per_stage.pop(CLASSES, [])
    class_fits = class_stages(chain, chosen)
    results = run_stages(
        class_fits,
        setting,
        out,
        extra=overrides,
        dry_run=dry_run,
        overrides={stage.name: per_class for stage in class_fits} if per_class else None,
        sweep_stage=False,
    )
    if classes or stop_after == "classes" or dry_run:
        report(results, "val/fbeta")
        return results
    checkpoints = {
        name: Path(results[class_folder(name)]["stage_dir"]) / FINAL for name in trainable
    }
    stores = make_pseudo_gt(chain, checkpoints, rules, overrides, out, device)
    if stop_after == "pseudo":
        return results
    finals = [stage for r in rules for stage in final_stages(chain, r, stores[r])]
    results.update(run_stages(finals, setting, out, extra=overrides, overrides=per_stage))
    report(results)
    return results
