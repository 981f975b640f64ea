"""Scribbles as the papers simulate them: synthesised from full masks, curated, read per sample."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Literal

import cv2
import numpy as np
from skimage.graph import MCP_Geometric
from skimage.morphology import skeletonize
from tqdm.auto import tqdm

from wseg.data.records import IGNORE_INDEX, Sample, SegmentationSource


def seed_from_id(image_id: str, seed: int = 0) -> int:
    """Derive a stable 32-bit seed from an image id and a global seed (same in every process).

    Args:
        image_id: The image id.
        seed: Global seed mixed into the hash.

    Returns:
        An integer in ``[0, 2**32)``.

    """
    digest = hashlib.sha256(f"{seed}:{image_id}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def _regions(mask: np.ndarray, instance_masks: np.ndarray | None) -> list[tuple[int, np.ndarray]]:
    """List the regions to scribble: each instance, then each connected piece of a class."""
    regions: list[tuple[int, np.ndarray]] = []
    covered = np.zeros(mask.shape, dtype=bool)
    if instance_masks is not None:
        for instance in np.asarray(instance_masks, dtype=bool):
            values = mask[instance & (mask != IGNORE_INDEX)]
            if values.size == 0:
                continue
            label = int(np.bincount(values).argmax())
            region = instance & (mask == label)
            regions.append((label, region))
            covered |= region
    for label in np.unique(mask):
        if label == IGNORE_INDEX:
            continue
        rest = ((mask == label) & ~covered).astype(np.uint8)
        count, components = cv2.connectedComponents(rest, connectivity=8)
        regions.extend((int(label), components == index) for index in range(1, count))
    return regions


def _stroke_path(region: np.ndarray, rng: np.random.Generator) -> list[tuple[int, int]]:
    """Trace the longest geodesic path on the skeleton (double sweep from a random pixel)."""
    skeleton = skeletonize(region)
    points = np.argwhere(skeleton)
    if len(points) == 0:
        points = np.argwhere(region)
        skeleton = region
    costs = np.where(skeleton, 1.0, np.inf)
    start = tuple(points[rng.integers(len(points))])
    first_end, _ = _farthest(costs, start)
    second_end, mcp = _farthest(costs, first_end)
    return [tuple(p) for p in mcp.traceback(second_end)]


def _farthest(costs: np.ndarray, start: tuple[int, int]) -> tuple[tuple[int, int], MCP_Geometric]:
    """Find the pixel geodesically farthest from ``start`` ; return it and the solved MCP."""
    mcp = MCP_Geometric(costs)
    distances, _ = mcp.find_costs([start])
    reachable = np.where(np.isfinite(distances), distances, -1.0)
    end = np.unravel_index(int(reachable.argmax()), reachable.shape)
    return (int(end[0]), int(end[1])), mcp


def synthesize_scribbles(
    mask: np.ndarray,
    instance_masks: np.ndarray | None = None,
    width: int = 3,
    seed: int = 0,
    min_area: int = 16,
    length_fraction: tuple[float, float] = (0.6, 1.0),
) -> np.ndarray:
    """Scribbles simulated from a full mask, one stroke per object and per background region.

    Each region (an instance when instance masks are given, else a connected component of one class,
    background included) gets one stroke along its medial axis: the longest geodesic path on the
    region's skeleton, cut to a random contiguous part of ``length_fraction`` of its length, drawn
    ``width`` pixels wide and clipped to the region, so every scribbled pixel has its true class.
    ScribbleSup annotators draw one stroke through each object and stuff region; this mimics that.
    Regions smaller than ``min_area`` pixels and ignore pixels are never scribbled.

    Args:
        mask: ``uint8`` ``H, W`` full label map (255 = ignore).
        instance_masks: Optional ``bool`` ``K, H, W`` instance masks; each gets its own stroke.
        width: Stroke width in pixels (>= 1).
        seed: Seed of the random start point and stroke length; use `seed_from_id` per image.
        min_area: Smallest region (pixels) that gets a stroke.
        length_fraction: Range of the fraction of the medial path that the stroke covers.

    Returns:
        ``uint8`` ``H, W``: the class on scribbled pixels, 255 elsewhere.

    """
    if width < 1:
        raise ValueError(f"scribble width must be >= 1, got {width}")
    low, high = length_fraction
    if not 0.0 < low <= high <= 1.0:
        raise ValueError(f"length_fraction must satisfy 0 < low <= high <= 1: {length_fraction}")
    mask = np.asarray(mask)
    if instance_masks is not None and tuple(instance_masks.shape[1:]) != mask.shape:
        raise ValueError(
            f"instance masks of shape {instance_masks.shape[1:]} do not match mask {mask.shape}"
        )
    rng = np.random.default_rng(seed)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (width, width))
    out = np.full(mask.shape, IGNORE_INDEX, dtype=np.uint8)
    for label, region in _regions(mask, instance_masks):
        if region.sum() < min_area:
            continue
        path = _stroke_path(region, rng)
        keep = max(1, round(len(path) * rng.uniform(low, high)))
        first = int(rng.integers(len(path) - keep + 1))
        stroke = np.zeros(mask.shape, dtype=np.uint8)
        rows, cols = np.asarray(path[first : first + keep]).T
        stroke[rows, cols] = 1
        stroke = cv2.dilate(stroke, kernel).astype(bool) & region
        out[stroke] = label
    return out


def curate_scribbles(scribble: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Curated scribbles (the PAM paper, sec. 2.2): scribble positions kept, true classes assigned.

    Every scribbled pixel takes its class in the full mask, which removes the annotators' wrong
    classes and strokes across two classes. A scribbled pixel on a void (255) pixel of the mask has
    no true class and becomes unlabelled (the paper does not say; VOC's void band is thin).

    Args:
        scribble: ``uint8`` ``H, W`` scribble labels, 255 = unlabelled.
        mask: ``uint8`` ``H, W`` full label map, 255 = void.

    Returns:
        ``uint8`` ``H, W`` curated scribble labels, 255 = unlabelled.

    """
    scribble, mask = np.asarray(scribble), np.asarray(mask)
    if scribble.shape != mask.shape:
        raise ValueError(f"scribble of shape {scribble.shape} does not match mask {mask.shape}")
    return np.where(scribble != IGNORE_INDEX, mask, IGNORE_INDEX).astype(np.uint8)


def scribbles_cover_classes(scribble: np.ndarray, mask: np.ndarray) -> bool:
    """Whether every class of the full mask (void aside) has at least one scribbled pixel.

    The PAM paper keeps an image in its curated training set only when the annotator scribbled
    every class present in the ground truth. The test reads the scribble's classes as given, so
    call it on curated scribbles to ask whether the scribble *positions* reach every class.

    Args:
        scribble: ``uint8`` ``H, W`` scribble labels, 255 = unlabelled.
        mask: ``uint8`` ``H, W`` full label map, 255 = void.

    Returns:
        True when the scribbled classes include every class of the mask.

    """
    present = set(np.unique(mask).tolist()) - {IGNORE_INDEX}
    scribbled = set(np.unique(scribble).tolist()) - {IGNORE_INDEX}
    return present <= scribbled


def sample_scribble(
    sample: Sample,
    mode: Literal["dataset", "synthesize"],
    width: int = 3,
    seed: int = 0,
    curated: bool = False,
) -> np.ndarray:
    """The scribble of one sample: read from its dataset or synthesised from its mask, curated.

    The one place that decides an image's scribble, shared by the datamodule and the scribble
    annotators (`wseg.labels.pam`), so that both see the same strokes.

    Args:
        sample: The sample (with ``scribble`` for ``dataset``, ``mask`` for ``synthesize``).
        mode: ``dataset`` (the reader's scribbles) or ``synthesize`` (`synthesize_scribbles`).
        width: Stroke width of synthesised scribbles.
        seed: Global seed of synthesised scribbles (mixed with the image id).
        curated: Apply `curate_scribbles` (needs the full mask).

    Returns:
        ``uint8`` ``H, W`` scribble labels, 255 = unlabelled.

    Raises:
        ValueError: When the sample lacks what the mode (or curation) needs, naming the image.

    """
    where = f"image {sample.id!r} ({sample.source or 'no file'})"
    if mode == "dataset":
        if sample.scribble is None:
            raise ValueError(f"{where} has no scribble; use scribbles='synthesize'")
        scribble = sample.scribble
    elif mode == "synthesize":
        if sample.mask is None:
            raise ValueError(f"{where} has no full mask to synthesise scribbles from")
        scribble = synthesize_scribbles(
            sample.mask, sample.instance_masks, width=width, seed=seed_from_id(sample.id, seed)
        )
    else:
        raise ValueError(f"scribble mode must be 'dataset' or 'synthesize', got {mode!r}")
    if curated:
        if sample.mask is None:
            raise ValueError(f"{where} has no full mask; curated scribbles need one")
        scribble = curate_scribbles(scribble, sample.mask)
    return scribble


def curated_scribble_ids(
    source: SegmentationSource,
    mode: Literal["dataset", "synthesize"],
    width: int = 3,
    seed: int = 0,
    positions: Sequence[int] | None = None,
    progress: bool = True,
) -> list[str]:
    """Ids of the images whose curated scribbles reach every class of their mask (PAM sec. 2.2).

    Args:
        source: The split.
        mode: ``dataset`` or ``synthesize`` (see `sample_scribble`).
        width: Stroke width of synthesised scribbles.
        seed: Global seed of synthesised scribbles.
        positions: Positions in ``source`` to check; None checks all.
        progress: Show a tqdm progress bar.

    Returns:
        The ids kept, in source order.

    """
    positions = range(len(source)) if positions is None else positions
    kept = []
    for index in tqdm(positions, desc="curating scribbles", unit="img", disable=not progress):
        sample = source[index]
        scribble = sample_scribble(sample, mode, width, seed, curated=True)
        if scribbles_cover_classes(scribble, sample.mask):
            kept.append(sample.id)
    return kept
