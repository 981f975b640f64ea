"""Check a dataset before anything uses it: read every image of every split once, count, report.

``python -m wseg.data check --config X.yaml`` prints, per split, the images, boxes, masks and
classes found and every problem with its file (the readers' messages say what was expected);
it exits non-zero when a file cannot be read. With ``pseudo_labels`` configured, the store is
checked too: that it labels this data (root, split, classes; see
`wseg.data.training_set.open_pseudo_store`), and that every training image has a label that
decodes, has the image's size and holds only class indices (or 255; soft labels: one channel per
class, probabilities). ``python -m wseg fit`` runs the same check before
training starts (and before a W&B run is opened), as does ``python -m wseg.labels generate`` before
it writes a label; ``--check_data false`` skips it in ``fit``.

What is not an error but changes what a run measures is a warning: a validation split without
masks (``val/miou`` is then NaN, not measured: only the loss and the overlays tell how training
goes), training images without boxes, or the readers' counted repairs (boxes clipped, ...).
"""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from wseg.data.records import SegmentationSource

MAX_LISTED = 10
"""Errors listed per split (all are counted)."""


@dataclass
class SplitCheck:
    """What one split holds and what is wrong with it.

    Attributes:
        role: ``train``, ``val``, ``test`` or ``predict`` (joined when splits coincide).
        split: The split name.
        images: Images listed.
        with_masks: Images whose class mask was read.
        with_boxes: Images with at least one box.
        boxes: Boxes in all.
        box_classes: Boxes per class name.
        errors: ``(image id, message)`` of every image that could not be read.
        warnings: Warnings (the readers' counted repairs and the checks' own).

    """

    role: str
    split: str
    images: int = 0
    with_masks: int = 0
    with_boxes: int = 0
    boxes: int = 0
    box_classes: Counter = field(default_factory=Counter)
    errors: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def pseudo_label_problem(store: Any, sample: Any, num_classes: int) -> str | None:
    """What is wrong with the store's label of ``sample`` (None: nothing).

    Args:
        store: A `wseg.data.store.PseudoLabelStore`.
        sample: The image's `wseg.data.records.Sample`.
        num_classes: Classes of the run, background included.

    """
    if not store.has(sample.id):
        return f"pseudo label missing from {store.path}"
    try:
        label = store.read(sample.id)
    except (OSError, ValueError) as error:
        return f"pseudo label: {error}"
    name = store.file_for(sample.id).name
    size = tuple(int(n) for n in label.shape[-2:])
    if size != tuple(sample.size):
        return (
            f"pseudo label {name} is {size[0]}x{size[1]} (HxW), the image "
            f"{sample.size[0]}x{sample.size[1]}"
        )
    if store.kind == "hard":
        values = np.unique(label)
        bad = values[(values >= num_classes) & (values != 255)]
        if bad.size:
            return (
                f"pseudo label {name} holds values {bad[:5].tolist()} outside the classes "
                f"0..{num_classes - 1} and 255 (void)"
            )
    elif label.shape[0] != num_classes:
        return f"soft pseudo label {name} has {label.shape[0]} channels, not {num_classes}"
    elif not np.isfinite(label).all() or label.min() < -1e-3 or label.max() > 1 + 1e-3:
        return f"soft pseudo label {name} holds values outside [0, 1] (or not finite)"
    return None


def check_source(
    source: SegmentationSource,
    role: str,
    split: str,
    progress: bool = True,
    store: Any = None,
    skip_missing_pseudo: bool = False,
) -> SplitCheck:
    """Read every sample of a split and collect counts, errors and warnings.

    Args:
        source: The split's reader.
        role: What the split is used for (see `SplitCheck`).
        split: Its name.
        progress: Show a progress bar.
        store: A pseudo-label store whose label of every sample is checked too (None: none).
        skip_missing_pseudo: A missing label is counted as a warning, not an error.

    Returns:
        The split's `SplitCheck`.

    """
    report = SplitCheck(role=role, split=split, images=len(source))
    missing = 0
    names = list(source.classes)
    with warnings.catch_warnings():
        # The reader's counted repairs are summarised below, once each, instead of as they occur.
        warnings.simplefilter("ignore")
        bar = tqdm(range(len(source)), desc=f"check {role} ({split})", disable=not progress)
        for index in bar:
            try:
                sample = source.load(index)
            except (OSError, ValueError) as error:
                report.errors.append((source.ids[index], str(error)))
                continue
            report.with_masks += int(sample.mask is not None)
            report.boxes += len(sample.boxes)
            report.with_boxes += int(len(sample.boxes) > 0)
            report.box_classes.update(names[int(k)] for k in sample.labels)
            problem = None if store is None else pseudo_label_problem(store, sample, len(names))
            if problem and skip_missing_pseudo and not store.has(sample.id):
                missing += 1
            elif problem:
                report.errors.append((source.ids[index], problem))
    if missing:
        report.warnings.append(
            f"{missing} training images have no pseudo label in {store.path} and are skipped "
            "(skip_missing_pseudo)"
        )
    problems = getattr(source, "problems", None)
    report.warnings += problems.summary() if problems is not None else []
    _role_warnings(report)
    return report


def _role_warnings(report: SplitCheck) -> None:
    read = report.images - len(report.errors)
    if "val" in report.role.split("+") and read and report.with_masks == 0:
        report.warnings.append(
            f"validation split {report.split!r} has no masks: val/miou is not measured (NaN); "
            "only the loss and the overlays show progress (do not monitor val/miou)"
        )
    elif "val" in report.role.split("+") and report.with_masks < read:
        report.warnings.append(
            f"validation split {report.split!r}: {read - report.with_masks} of {read} images "
            "have no mask; val/miou counts only the others"
        )
    if "train" in report.role.split("+") and read and report.with_boxes < read:
        report.warnings.append(
            f"training split {report.split!r}: {read - report.with_boxes} of {read} images have "
            "no box (all background for the box methods)"
        )


def check_datamodule(datamodule: Any, progress: bool = True) -> list[SplitCheck]:
    """Check every split a `wseg.data.WeakSegDataModule` reads, each split once.

    Args:
        datamodule: The datamodule (its ``make_source`` and split names are used).
        progress: Show progress bars.

    Returns:
        One `SplitCheck` per distinct split.

    """
    folder = getattr(datamodule, "predict_images", None)
    roles: dict[str, list[str]] = {}
    for role in ("train", "val", "test") if folder else ("train", "val", "test", "predict"):
        roles.setdefault(getattr(datamodule, f"{role}_split"), []).append(role)
    reports = []
    if folder:
        from wseg.data.datasets.folder import ImageFolderSource

        try:
            images = ImageFolderSource(folder, datamodule.class_names)
            reports.append(check_source(images, "predict", str(folder), progress))
        except (OSError, ValueError) as error:
            reports.append(
                SplitCheck(role="predict", split=str(folder), errors=[("(folder)", str(error))])
            )
    store, store_error = _pseudo_store(datamodule)
    for split, uses in roles.items():
        role = "+".join(uses)
        try:
            source = datamodule.make_source(split, evaluation="train" not in uses)
        except (OSError, ValueError) as error:
            reports.append(SplitCheck(role=role, split=split, errors=[("(split)", str(error))]))
            continue
        train = "train" in uses
        skip = bool(getattr(datamodule, "skip_missing_pseudo", False))
        report = check_source(source, role, split, progress, store if train else None, skip)
        if train and store_error is not None:
            report.errors.insert(0, ("(pseudo labels)", store_error))
        reports.append(report)
    return reports


def _pseudo_store(datamodule: Any) -> tuple[Any, str | None]:
    """The datamodule's pseudo-label store, checked for this data, or the reason it is refused."""
    if not getattr(datamodule, "pseudo_labels", None):
        return None, None
    from wseg.data.training_set import open_pseudo_store

    try:
        store = open_pseudo_store(
            datamodule.pseudo_labels,
            tuple(datamodule.class_names),
            datamodule.root,
            datamodule.train_split,
            bool(getattr(datamodule, "pseudo_labels_same_data", False)),
        )
    except (OSError, ValueError) as error:
        return None, str(error)
    return store, None


def format_checks(reports: list[SplitCheck], class_names: list[str] | None = None) -> str:
    """The printed report: a table of counts, then every warning and the first errors per split."""
    lines = []
    if class_names is not None:
        lines.append(f"classes ({len(class_names)}, background first): {', '.join(class_names)}")
    header = f"{'split':<30} {'images':>7} {'masks':>7} {'w/ boxes':>8} {'boxes':>7} {'errors':>7}"
    lines += [header, "-" * len(header)]
    for r in reports:
        name = f"{r.role} ({r.split})"
        lines.append(
            f"{name:<30} {r.images:>7} {r.with_masks:>7} {r.with_boxes:>8} {r.boxes:>7} "
            f"{len(r.errors):>7}"
        )
    for r in reports:
        if r.box_classes:
            counts = ", ".join(f"{name} {n}" for name, n in sorted(r.box_classes.items()))
            lines.append(f"{r.role} boxes per class: {counts}")
        lines += [f"warning: {r.role} ({r.split}): {w}" for w in r.warnings]
        for image_id, message in r.errors[:MAX_LISTED]:
            lines.append(f"error: {r.role} ({r.split}) {image_id}: {message}")
        if len(r.errors) > MAX_LISTED:
            lines.append(f"error: {r.role}: ... and {len(r.errors) - MAX_LISTED} more")
    total = sum(len(r.errors) for r in reports)
    lines.append(f"{total} error{'s' if total != 1 else ''}" if total else "no errors")
    return "\n".join(lines)


class DataCheckError(ValueError):
    """The data check found files that cannot be read (the message is the full report)."""


def require_clean(datamodule: Any, progress: bool = True) -> list[SplitCheck]:
    """Run `check_datamodule`; warn its warnings, raise `DataCheckError` on any error.

    Raises:
        DataCheckError: Some file cannot be read; the message lists them.

    """
    from wseg.data.datasets import DataWarning

    reports = check_datamodule(datamodule, progress)
    if any(r.errors for r in reports):
        raise DataCheckError(
            "the data check found problems (python -m wseg.data check --config ... prints this "
            "report; fix the files named):\n" + format_checks(reports, list(datamodule.class_names))
        )
    for report in reports:
        for message in report.warnings:
            warnings.warn(f"{report.role} ({report.split}): {message}", DataWarning, stacklevel=2)
    return reports
