"""Helpers shared by the dataset readers: file loading with clear errors, box clean-up, warnings."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from wseg.data.records import IGNORE_INDEX


def with_background(names: Sequence[str]) -> tuple[str, ...]:
    """Class names with ``background`` first: kept if it is there, else put in front.

    Raises:
        ValueError: A name is empty or repeated, or ``background`` is not first.

    """
    names = tuple(str(name) for name in names)
    if names[:1] != ("background",):
        names = ("background", *names)
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated or not all(name.strip() for name in names):
        raise ValueError(f"class names must be distinct and non-empty, got {list(names)}")
    if len(names) < 2:
        raise ValueError("need at least one class besides background")
    return names


class DataWarning(UserWarning):
    """A problem in a dataset that the reader repaired or skipped, as documented."""


@dataclass
class _Problem:
    count: int = 0
    files: set[str] = field(default_factory=set)
    first: str = ""


class ProblemCounter:
    """Counts repaired or skipped problems of a dataset and warns about them without spamming.

    Each kind of problem (``"boxes clipped to the image"``, ...) warns when it is first seen and
    again whenever its count reaches a power of ten, with a summary such as
    ``"12 boxes clipped to the image in 7 files (first: JPEGImages/x.jpg)"``. The counts are
    per process: data-loader workers each keep their own.

    Args:
        dataset: Name of the dataset, the first word of every warning.

    """

    def __init__(self, dataset: str) -> None:
        self.dataset = dataset
        self._problems: dict[str, _Problem] = {}

    def add(self, kind: str, path: str | Path, count: int = 1) -> None:
        """Record ``count`` occurrences of ``kind`` in the file ``path``.

        Args:
            kind: What happened, as a plural noun phrase ("boxes clipped to the image").
            path: The file the problem is in.
            count: How many occurrences the file has.

        """
        if count <= 0:
            return
        problem = self._problems.setdefault(kind, _Problem(first=str(path)))
        before = problem.count
        problem.count += count
        problem.files.add(str(path))
        if before == 0 or _next_power_of_ten(before) <= problem.count:
            warnings.warn(f"{self.dataset}: {self.describe(kind)}", DataWarning, stacklevel=3)

    def count(self, kind: str) -> int:
        """Return the number of occurrences of ``kind`` so far."""
        return self._problems[kind].count if kind in self._problems else 0

    def num_files(self, kind: str) -> int:
        """Return the number of distinct files in which ``kind`` occurred."""
        return len(self._problems[kind].files) if kind in self._problems else 0

    def describe(self, kind: str) -> str:
        """One line: count, kind, number of files and the first file."""
        problem = self._problems[kind]
        return (
            f"{problem.count} {kind} in {len(problem.files)} "
            f"file{'s' if len(problem.files) != 1 else ''} (first: {problem.first})"
        )

    def summary(self) -> list[str]:
        """One `describe` line per kind of problem seen so far."""
        return [self.describe(kind) for kind in self._problems]


def _next_power_of_ten(value: int) -> int:
    power = 1
    while power <= value:
        power *= 10
    return power


def read_image(path: Path) -> np.ndarray:
    """Read an image file as RGB ``uint8`` ``H, W, 3``.

    Args:
        path: The image file.

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: The file cannot be decoded (corrupt or truncated).

    """
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise ValueError(f"cannot decode image {path}: corrupt or truncated ({error})") from error


def read_label_map(path: Path, what: str = "label map") -> np.ndarray:
    """Read a single-channel label PNG (palette indices or grey levels, 8 or 16 bit) as stored.

    Args:
        path: The PNG file.
        what: What the file is, for error messages ("class mask", "instance mask").

    Returns:
        The label values, ``H, W``: ``uint8`` for 8-bit files, ``int32`` for 16/32-bit files.

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: The file cannot be decoded or has colour channels.

    """
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        with Image.open(path) as image:
            mode = image.mode
            values = np.asarray(image)
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise ValueError(f"cannot decode {what} {path}: corrupt or truncated ({error})") from error
    if values.ndim != 2:
        raise ValueError(
            f"{what} {path} has mode {mode} with colour channels; expected a palette or grey-level "
            "PNG whose values are class indices"
        )
    if values.dtype == np.uint8:
        return values
    return values.astype(np.int32)


def check_same_size(
    image: np.ndarray, image_path: Path, label: np.ndarray, label_path: Path
) -> None:
    """Raise a `ValueError` naming both files when a label map and its image differ in size.

    Args:
        image: The image, ``H, W, 3``.
        image_path: Its file.
        label: The label map, ``H, W``.
        label_path: Its file.

    """
    if image.shape[:2] != label.shape[:2]:
        raise ValueError(
            f"size mismatch: image {image_path} is {image.shape[0]}x{image.shape[1]} (HxW) but "
            f"{label_path} is {label.shape[0]}x{label.shape[1]}"
        )


def tight_boxes(instance_masks: np.ndarray) -> np.ndarray:
    """Tight pixel-edge boxes ``x1, y1, x2, y2`` of non-empty boolean masks ``K, H, W``."""
    boxes = np.zeros((len(instance_masks), 4), np.float32)
    for k, mask in enumerate(instance_masks):
        rows = np.flatnonzero(mask.any(axis=1))
        cols = np.flatnonzero(mask.any(axis=0))
        boxes[k] = (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
    return boxes


def clean_boxes(
    boxes: np.ndarray,
    size: tuple[int, int],
    path: Path,
    problems: ProblemCounter,
) -> np.ndarray:
    """Clip boxes to the image and find those left without area, counting both as problems.

    Args:
        boxes: ``float32`` ``K, 4`` boxes ``x1, y1, x2, y2``.
        size: ``(height, width)`` of the image.
        path: The annotation file, for the warnings.
        problems: Where the clipped and dropped boxes are counted.

    Returns:
        Boolean ``K`` vector of the boxes to keep; ``boxes`` is clipped in place.

    """
    height, width = size
    clipped = np.empty_like(boxes)
    clipped[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
    clipped[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
    problems.add("boxes clipped to the image", path, int((clipped != boxes).any(axis=1).sum()))
    boxes[:] = clipped
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    problems.add("boxes without area dropped", path, int((~keep).sum()))
    return keep


def class_index(classes: Sequence[str], name: str, path: Path) -> int:
    """Index of the class ``name`` in ``classes``, or a `ValueError` naming the file and the name.

    Args:
        classes: Class names, background first.
        name: The name found in the annotation file.
        path: The annotation file.

    """
    try:
        return list(classes).index(name, 1)
    except ValueError:
        raise ValueError(
            f"unknown class name {name!r} in {path}; known classes: {', '.join(classes[1:])}"
        ) from None


def majority_label(labels: np.ndarray) -> int:
    """Most frequent value of ``labels`` other than background and ignore, or 0 when none."""
    values = labels[(labels != 0) & (labels != IGNORE_INDEX)]
    if values.size == 0:
        return 0
    return int(np.bincount(values).argmax())
