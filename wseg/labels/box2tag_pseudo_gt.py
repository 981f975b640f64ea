"""Box2Tag pseudo ground truth (Ji & Veksler 2021, sec. 4.3): single-class networks applied back.

Each class's network segments every box of its class; the object masks are pasted into the image
and conflicts resolved by one of three rules. Each rule's labels go to their own store.
"""

from __future__ import annotations

import datetime
import os
import time
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from wseg.data.box_crop_geometry import crop_box, normalise, paste_box
from wseg.data.records import IGNORE_INDEX, Sample, SegmentationSource
from wseg.data.store import PseudoLabelStore
from wseg.data.weak import box_pixel_bounds, paint_order
from wseg.labels.quality import evaluate_store, fbeta
from wseg.nets.checkpoint import file_digest, load_network
from wseg.nets.predict import forward_any_size

__all__ = [
    "RULES",
    "BoxSegmenter",
    "Rule",
    "assemble_pseudo_gt",
    "generate_box2tag",
]

Rule = Literal["overlap-small", "overlap-void", "overlap-back-void"]
RULES: tuple[str, ...] = ("overlap-small", "overlap-void", "overlap-back-void")


def assemble_pseudo_gt(
    size: tuple[int, int],
    boxes: np.ndarray,
    labels: np.ndarray,
    objects: Sequence[np.ndarray],
    rule: Rule = "overlap-void",
) -> np.ndarray:
    """Merge per-box object masks into one label map (sec. 4.3, Fig. 2).

    Pixels outside every box are background. A pixel segmented as object in one box, or in
    several boxes of one class, takes that class. Pixels that are object in boxes of two or more
    classes (overlap pixels) take, with ``overlap-small``, the class of the smallest of those
    boxes (the paper: "the smaller object"; we measure an object by its box, the rule of prior
    work that the paper cites and of `wseg.data.weak.paint_order`), and become void (255) with
    ``overlap-void`` and ``overlap-back-void``. ``overlap-back-void`` also voids the pixels
    inside boxes that end up background, i.e. that no box segments as object. (The paper's
    "pixels that are labeled as background in any box" could also be read as voiding a pixel that
    is object in one box and background in another; we read it as background inside boxes, the
    false negatives its motivation names.)

    Args:
        size: ``(height, width)``.
        boxes: ``K, 4`` boxes ``x1, y1, x2, y2``.
        labels: ``K`` classes (1..C, at most 254).
        objects: ``K`` bool masks of the boxes' rasterised pixels (`box_pixel_bounds`), True
            where the box's network segments object.
        rule: ``overlap-small``, ``overlap-void`` or ``overlap-back-void``.

    Returns:
        ``uint8`` ``H, W`` labels, 255 = void.

    """
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    labels = np.asarray(labels, np.int64).reshape(-1)
    if len(boxes) != len(labels) or len(objects) != len(labels):
        raise ValueError(f"{len(boxes)} boxes, {len(labels)} labels, {len(objects)} masks")
    inside = np.zeros(size, bool)
    claims: dict[int, np.ndarray] = {}
    smallest = np.zeros(size, np.uint8)
    for k in paint_order(boxes, size):
        r0, r1, c0, c1 = box_pixel_bounds(boxes[k], size)
        obj = np.asarray(objects[k], bool)
        if obj.shape != (r1 - r0, c1 - c0):
            raise ValueError(f"box {k}: object mask {obj.shape}, box {(r1 - r0, c1 - c0)}")
        inside[r0:r1, c0:c1] = True
        claim = claims.setdefault(int(labels[k]), np.zeros(size, bool))
        claim[r0:r1, c0:c1] |= obj
        smallest[r0:r1, c0:c1][obj] = labels[k]
    out = np.zeros(size, np.uint8)
    count = np.zeros(size, np.int64)
    for label, claim in claims.items():
        out[claim] = label
        count += claim
    overlap = count > 1
    out[overlap] = smallest[overlap] if rule == "overlap-small" else IGNORE_INDEX
    if rule == "overlap-back-void":
        out[inside & (count == 0)] = IGNORE_INDEX
    return out


class BoxSegmenter:
    """Segments each box of a sample with its class's single-class network (sec. 4.3).

    Every box is cut out as in training (`wseg.data.box_crops.crop_box`: ``crop_size`` square, a
    frame of ``border`` pixels), the network's object probability of its interior is resampled
    to the box's pixels (`paste_box`), and pixels at or above ``threshold`` are object. All boxes
    of a class go through the network in batches, whether or not they overlap other boxes.

    Args:
        checkpoints: Class index -> checkpoint of its `Box2TagSingleClass`.
        crop_size: Side of the crops (as in training; paper: 256).
        border: Width of their frame (as in training; paper: 3).
        threshold: Object probability from which a pixel is object (0.5: the argmax).
        device: Torch device of the networks.
        batch_size: Crops per forward pass.

    """

    def __init__(
        self,
        checkpoints: Mapping[int, str | os.PathLike],
        crop_size: int = 256,
        border: int = 3,
        threshold: float = 0.5,
        device: str = "cpu",
        batch_size: int = 32,
    ) -> None:
        self.crop_size = crop_size
        self.border = border
        self.threshold = threshold
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.nets: dict[int, nn.Module] = {}
        for label, path in checkpoints.items():
            if not Path(path).is_file():
                raise FileNotFoundError(f"single-class network of class {label}: {path} is missing")
            loaded = load_network(path, self.device)
            trained_border = loaded.hparams.get("border")
            if trained_border != border:
                raise ValueError(
                    f"{path} was trained with a {trained_border}-pixel border, not {border}"
                )
            self.nets[int(label)] = loaded.net

    @torch.no_grad()
    def __call__(self, sample: Sample) -> list[np.ndarray | None]:
        """Object masks of every box of ``sample``.

        Args:
            sample: The image with its boxes.

        Returns:
            Per box: bool mask of its rasterised pixels, or None when the box has no pixels or
            its class has no network.

        """
        masks: list[np.ndarray | None] = [None] * len(sample.boxes)
        by_class: dict[int, list[int]] = defaultdict(list)
        for k, label in enumerate(sample.labels):
            r0, r1, c0, c1 = box_pixel_bounds(sample.boxes[k], sample.size)
            if r1 > r0 and c1 > c0 and int(label) in self.nets:
                by_class[int(label)].append(k)
        for label, indices in by_class.items():
            net = self.nets[label]
            for first in range(0, len(indices), self.batch_size):
                chunk = indices[first : first + self.batch_size]
                images = torch.stack(
                    [
                        normalise(crop_box(sample, k, self.crop_size, self.border)["image"])
                        for k in chunk
                    ]
                ).to(self.device)
                logits = forward_any_size(net, images)
                probs = torch.softmax(logits, dim=1)[:, 1].float().cpu().numpy()
                for k, prob in zip(chunk, probs):
                    bound = box_pixel_bounds(sample.boxes[k], sample.size)
                    masks[k] = paste_box(prob, bound, self.crop_size, self.border) >= self.threshold
        return masks


def _box_truth(sample: Sample, k: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The true object and known pixels of box ``k``, or None when the sample has no truth."""
    r0, r1, c0, c1 = box_pixel_bounds(sample.boxes[k], sample.size)
    if sample.instance_masks is not None:
        truth = sample.instance_masks[k, r0:r1, c0:c1].astype(bool)
    elif sample.mask is not None:
        truth = sample.mask[r0:r1, c0:c1] == sample.labels[k]
    else:
        return None
    known = (
        sample.mask[r0:r1, c0:c1] != IGNORE_INDEX
        if sample.mask is not None
        else np.ones(truth.shape, bool)
    )
    return truth & known, known


def generate_box2tag(
    source: SegmentationSource,
    checkpoints: Mapping[str, str | os.PathLike],
    out: str | os.PathLike,
    dataset: Mapping[str, Any],
    rules: Sequence[str] = RULES,
    crop_size: int = 256,
    border: int = 3,
    threshold: float = 0.5,
    device: str = "cpu",
    batch_size: int = 32,
    progress: bool = True,
) -> dict[str, PseudoLabelStore]:
    """Write the Box2Tag pseudo ground truth of a split, one store per overlap rule.

    Each image's boxes are segmented once (`BoxSegmenter`) and assembled with every rule
    (`assemble_pseudo_gt`). The store of a rule is ``<out>/box2tag-<rule>-<hash8>``; its
    configuration holds the rule, the crop geometry, the threshold, the dataset identity and each
    network's path and SHA-256, so a retrained or added class makes new stores. Images already in
    every store are skipped (an interrupted run resumes). Boxes of a class without a network
    (a class with no box to train on) are filled whole, as Bbox-Rect does (``fallback_no_network``).

    Each store's manifest gets the run (with ``box_fbeta``: the mean per-box F-beta, beta^2 = 0.3,
    of the raw box segmentations of this run's images, Table 1's metric) and, when the split has
    true masks, the quality report of `wseg.labels.quality.evaluate_store` (mIoU and void fraction
    as in Table 2; F-beta of the merged labels inside each box).

    Args:
        source: The training split.
        checkpoints: Class name -> checkpoint of its `Box2TagSingleClass`.
        out: Parent directory of the stores.
        dataset: Identity of the split (name, root, split, reader options), JSON-serialisable.
        rules: The overlap rules to write.
        crop_size: Side of the crops, as the networks were trained.
        border: Width of the crops' frame, as the networks were trained.
        threshold: Object probability from which a pixel is object.
        device: Torch device of the networks.
        batch_size: Crops per forward pass.
        progress: Show tqdm progress bars.

    Returns:
        Rule -> its store.

    """
    unknown = sorted(set(rules) - set(RULES))
    if unknown or not rules:
        raise ValueError(f"rules must be a non-empty subset of {RULES}, got {list(rules)}")
    classes = list(source.classes)
    bad = sorted(set(checkpoints) - set(classes[1:]))
    if bad:
        raise ValueError(f"checkpoints name unknown classes {bad}; the classes are {classes[1:]}")
    networks = {
        name: {"path": str(Path(path).resolve()), "sha256": file_digest(path)}
        for name, path in sorted(checkpoints.items())
    }
    options = {"crop_size": crop_size, "border": border, "threshold": threshold}
    ids = list(source.ids)
    stores = {
        rule: PseudoLabelStore.create_or_resume(
            out,
            {
                "generator": f"box2tag-{rule}",
                "options": {**options, "rule": rule, "networks": networks},
                "dataset": dict(dataset),
            },
            classes=classes,
            num_images=len(ids),
        )
        for rule in rules
    }
    segmenter = BoxSegmenter(
        {classes.index(name): path for name, path in checkpoints.items()},
        crop_size,
        border,
        threshold,
        device,
        batch_size,
    )
    todo = [
        i for i, image_id in enumerate(ids) if not all(s.has(image_id) for s in stores.values())
    ]
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    start = time.perf_counter()
    stats: Counter = Counter()
    scores: list[float] = []
    for index in tqdm(todo, desc="box2tag labels", unit="img", disable=not progress):
        sample = source[index]
        masks = segmenter(sample)
        objects = []
        for k, mask in enumerate(masks):
            r0, r1, c0, c1 = box_pixel_bounds(sample.boxes[k], sample.size)
            if mask is None:
                mask = np.ones((r1 - r0, c1 - c0), bool)
                stats["fallback_no_network" if r1 > r0 and c1 > c0 else "empty_boxes"] += 1
            else:
                truth = _box_truth(sample, k)
                if truth is not None and truth[0].any():
                    scores.append(fbeta(mask & truth[1], truth[0]))
            objects.append(mask)
        stats["boxes"] += len(masks)
        for rule, store in stores.items():
            store.write(
                sample.id,
                assemble_pseudo_gt(sample.size, sample.boxes, sample.labels, objects, rule),
            )
    run = {
        "started": started,
        "generated": len(todo),
        "skipped": len(ids) - len(todo),
        "seconds": round(time.perf_counter() - start, 3),
        "device": device,
        "stats": dict(stats),
        "box_fbeta": float(np.mean(scores)) if scores else None,
        "box_fbeta_boxes": len(scores),
    }
    for store in stores.values():
        fields: dict[str, Any] = {"runs": [*store.manifest.get("runs", []), run]}
        if todo:
            fields["quality"] = evaluate_store(store, source, progress=progress)
        store.update_manifest(**fields)
    return {rule: PseudoLabelStore(store.path) for rule, store in stores.items()}
