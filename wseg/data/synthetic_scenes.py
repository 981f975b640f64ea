"""Drawing the synthetic scenes: textured objects on cluttered VOC-like and street backgrounds.

Objects are non-rectangular shapes told apart by colour and texture statistics, overlapping and on
cluttered backgrounds, so that naive box labels are as imperfect as on real data. Writing them in
the dataset layouts is `wseg.data.synthetic`'s job.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from wseg.data.datasets import SYNTHETIC_CLASSES
from wseg.data.datasets.cityscapes import LABEL_IDS, OBJECT_CLASSES
from wseg.data.records import IGNORE_INDEX

TEXTURES = ("smooth", "stripes", "checker", "spots", "noise", "waves")


@dataclass(frozen=True)
class Style:
    """How objects of one class look: two colours mixed by a texture pattern.

    Attributes:
        colour: Mean RGB of the first colour.
        colour2: Mean RGB of the second colour.
        texture: One of `TEXTURES`.
        period: Range of the texture period in pixels.

    """

    colour: tuple[int, int, int]
    colour2: tuple[int, int, int]
    texture: str
    period: tuple[float, float] = (4.0, 9.0)


# Classes share colours or textures pairwise (aeroplane/boat: stripes; bicycle/bus: checker;
# bird/bus and bottle/vegetation: colours), so no single cue separates them.
VOC_STYLES: dict[int, Style] = {
    1: Style((195, 195, 205), (135, 150, 185), "stripes"),
    2: Style((190, 45, 45), (95, 30, 25), "checker"),
    3: Style((165, 115, 55), (215, 185, 115), "spots"),
    4: Style((45, 85, 175), (200, 205, 215), "stripes", (6.0, 12.0)),
    5: Style((70, 145, 75), (35, 95, 45), "noise"),
    6: Style((210, 180, 50), (185, 70, 45), "checker", (6.0, 12.0)),
}
CITYSCAPES_STYLES: dict[str, Style] = {
    "pole": Style((120, 120, 125), (95, 95, 100), "smooth"),
    "traffic light": Style((40, 40, 40), (210, 170, 40), "spots"),
    "traffic sign": Style((220, 210, 60), (200, 60, 50), "smooth"),
    "person": Style((200, 30, 70), (60, 40, 90), "noise"),
    "rider": Style((230, 60, 40), (60, 40, 90), "waves"),
    "car": Style((30, 50, 150), (130, 140, 170), "smooth"),
    "truck": Style((40, 70, 110), (180, 180, 170), "stripes"),
    "bus": Style((50, 110, 120), (210, 200, 80), "checker"),
    "train": Style((60, 100, 110), (160, 160, 160), "stripes", (6.0, 12.0)),
    "motorcycle": Style((20, 20, 200), (200, 200, 210), "spots"),
    "bicycle": Style((130, 20, 40), (230, 230, 230), "waves"),
}
# Colours of background clutter: greys, browns, greens, sky, plus muted class colours.
BACKGROUND_COLOURS = np.array(
    [
        (120, 120, 115),
        (150, 140, 120),
        (95, 80, 60),
        (80, 120, 70),
        (140, 170, 200),
        (60, 60, 65),
        (170, 160, 150),
        (110, 130, 90),
        (160, 120, 100),
        (100, 110, 150),
    ],
    np.float32,
)
# Cityscapes stuff classes drawn behind the objects (labelIds): sky, building, vegetation,
# sidewalk, road; the bottom rows are sometimes "ego vehicle" (void).
STUFF_COLOURS = {
    23: (150, 185, 215),
    11: (120, 110, 105),
    21: (80, 125, 60),
    8: (170, 160, 165),
    7: (110, 105, 110),
    1: (30, 30, 30),
}


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cell: int) -> np.ndarray:
    """Return zero-mean, unit-scale smooth noise: a coarse random grid upsampled bicubically."""
    grid = rng.standard_normal((max(2, shape[0] // cell + 2), max(2, shape[1] // cell + 2)))
    return cv2.resize(grid.astype(np.float32), shape[::-1], interpolation=cv2.INTER_CUBIC)


def _texture(
    rng: np.random.Generator, name: str, shape: tuple[int, int], period: float
) -> np.ndarray:
    """Return a texture pattern in ``[0, 1]`` of the given shape."""
    rows, cols = np.mgrid[: shape[0], : shape[1]].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    along = cols * np.cos(angle) + rows * np.sin(angle)
    across = -cols * np.sin(angle) + rows * np.cos(angle)
    if name == "smooth":
        field = 0.5 + 0.15 * _smooth_noise(rng, shape, 16)
    elif name == "stripes":
        field = 0.5 + 0.5 * np.sin(2 * np.pi * along / period)
    elif name == "checker":
        field = (np.sin(np.pi * along / period) * np.sin(np.pi * across / period) > 0) * 1.0
    elif name == "spots":
        field = (_smooth_noise(rng, shape, max(2, int(period / 2))) > 0.4) * 1.0
    elif name == "noise":
        field = 0.5 + 0.3 * rng.standard_normal(shape)
    elif name == "waves":
        field = 0.5 + 0.5 * np.sin(2 * np.pi * (along + 3 * np.sin(across / period)) / period)
    else:
        raise ValueError(f"unknown texture {name!r}; expected one of {TEXTURES}")
    return np.clip(field, 0, 1).astype(np.float32)


def _paint(
    rng: np.random.Generator,
    image: np.ndarray,
    region: np.ndarray,
    style: Style,
    colour_jitter: float = 28.0,
) -> None:
    """Paint ``style`` into ``image`` (float ``H, W, 3``) where the boolean ``region`` is set."""
    rows = np.flatnonzero(region.any(axis=1))
    cols = np.flatnonzero(region.any(axis=0))
    window = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    shape = (int(rows[-1] + 1 - rows[0]), int(cols[-1] + 1 - cols[0]))
    colour1 = np.array(style.colour, np.float32) + rng.normal(0, colour_jitter, 3)
    colour2 = np.array(style.colour2, np.float32) + rng.normal(0, colour_jitter, 3)
    mix = _texture(rng, style.texture, shape, rng.uniform(*style.period))[..., None]
    shading = 1 + 0.12 * _smooth_noise(rng, shape, 24)[..., None]
    patch = (colour1 * (1 - mix) + colour2 * mix) * shading
    inside = region[window]
    image[window][inside] = patch[inside]


def _shape_polygon(rng: np.random.Generator, box: tuple[int, int, int, int]) -> np.ndarray:
    """Return the vertices of a random ellipse, star, blob or polygon filling ``box``."""
    kind = rng.choice(("ellipse", "star", "blob", "polygon"))
    theta = np.linspace(0, 2 * np.pi, 96, endpoint=False)
    if kind == "ellipse":
        radius = np.ones_like(theta)
    elif kind == "star":
        spikes = rng.integers(4, 8)
        inner = rng.uniform(0.55, 0.8)
        radius = inner + (1 - inner) * (np.cos(spikes * theta) > 0)
    elif kind == "blob":
        radius = np.ones_like(theta)
        for order in (2, 3, 4):
            radius += rng.uniform(0, 0.22) * np.cos(order * theta + rng.uniform(0, 2 * np.pi))
    else:
        theta = np.sort(rng.uniform(0, 2 * np.pi, rng.integers(6, 10)))
        radius = rng.uniform(0.75, 1.0, len(theta))
    angle = rng.uniform(0, np.pi)
    x = radius * np.cos(theta + angle)
    y = radius * np.sin(theta + angle)
    x1, y1, x2, y2 = box
    x = x1 + (x - x.min()) / (x.max() - x.min()) * (x2 - x1 - 1)
    y = y1 + (y - y.min()) / (y.max() - y.min()) * (y2 - y1 - 1)
    return np.round(np.stack([x, y], axis=1)).astype(np.int32)


def _background(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """Draw a cluttered background: colour field, stripes and distractor blobs (float RGB)."""
    height, width = size
    picks = BACKGROUND_COLOURS[rng.choice(len(BACKGROUND_COLOURS), 3, replace=False)]
    weights = np.stack([_smooth_noise(rng, size, 40) for _ in range(3)], axis=-1)
    weights = np.exp(2 * weights)
    image = (weights / weights.sum(-1, keepdims=True)) @ picks
    if rng.random() < 0.6:
        stripes = _texture(rng, "stripes", size, rng.uniform(5, 20))
        image += (stripes[..., None] - 0.5) * rng.uniform(20, 50)
    for _ in range(rng.integers(2, 6)):
        w = int(rng.integers(width // 10, width // 3))
        h = int(rng.integers(height // 10, height // 3))
        x1 = int(rng.integers(0, width - w))
        y1 = int(rng.integers(0, height - h))
        region = np.zeros(size, np.uint8)
        cv2.fillPoly(region, [_shape_polygon(rng, (x1, y1, x1 + w, y1 + h))], 1)
        colour = tuple(int(c) for c in BACKGROUND_COLOURS[rng.integers(len(BACKGROUND_COLOURS))])
        other = tuple(int(c) for c in BACKGROUND_COLOURS[rng.integers(len(BACKGROUND_COLOURS))])
        _paint(rng, image, region > 0, Style(colour, other, str(rng.choice(TEXTURES))), 15.0)
    image += rng.normal(0, 6, image.shape)
    return image


def _random_box(
    rng: np.random.Generator,
    size: tuple[int, int],
    near: tuple[int, int, int, int] | None,
    scale: tuple[float, float] = (0.2, 0.55),
) -> tuple[int, int, int, int]:
    height, width = size
    w = max(6, int(rng.uniform(*scale) * width))
    h = max(6, int(rng.uniform(*scale) * height))
    if near is None:
        cx, cy = rng.uniform(w / 2, width - w / 2), rng.uniform(h / 2, height - h / 2)
    else:
        # Centre on a corner region of an earlier object so that the two overlap.
        cx = rng.choice((near[0], near[2])) + rng.uniform(-0.2, 0.2) * w
        cy = rng.choice((near[1], near[3])) + rng.uniform(-0.2, 0.2) * h
    x1 = int(np.clip(cx - w / 2, 0, width - w))
    y1 = int(np.clip(cy - h / 2, 0, height - h))
    return x1, y1, x1 + w, y1 + h


def _draw_objects(
    rng: np.random.Generator,
    image: np.ndarray,
    styles: Sequence[Style],
    boxes: Sequence[tuple[int, int, int, int]],
) -> tuple[np.ndarray, list[int]]:
    """Paint objects back to front; return the instance map and the objects left visible.

    The instance map holds k where the k-th object is in front, 0 elsewhere; objects with fewer
    than 12 visible pixels are not in the list of visible ones.
    """
    instances = np.zeros(image.shape[:2], np.int32)
    for k, (style, box) in enumerate(zip(styles, boxes), start=1):
        region = np.zeros(image.shape[:2], np.uint8)
        cv2.fillPoly(region, [_shape_polygon(rng, box)], 1)
        _paint(rng, image, region > 0, style)
        instances[region > 0] = k
    visible = [k for k in range(1, len(styles) + 1) if (instances == k).sum() >= 12]
    return instances, visible


def _boundary(labels: np.ndarray) -> np.ndarray:
    """Pixels whose 3x3 neighbourhood holds another value: the VOC-style void band."""
    kernel = np.ones((3, 3), np.uint8)
    values = labels.astype(np.float32)
    return cv2.dilate(values, kernel) != cv2.erode(values, kernel)


def _stroke(rng: np.random.Generator, region: np.ndarray, steps: int) -> list[tuple[float, float]]:
    """Return a random-walk polyline whose every segment lies inside the boolean ``region``."""
    ys, xs = np.nonzero(region)
    if len(xs) == 0:
        return []
    start = rng.integers(len(xs))
    points = [(float(xs[start]), float(ys[start]))]
    heading = rng.uniform(0, 2 * np.pi)
    for _ in range(steps):
        for _attempt in range(12):
            direction = heading + rng.normal(0, 0.9)
            length = rng.uniform(4, 12)
            x0, y0 = points[-1]
            x1, y1 = x0 + length * np.cos(direction), y0 + length * np.sin(direction)
            t = np.linspace(0, 1, int(2 * length) + 2)
            cols = np.round(x0 + t * (x1 - x0)).astype(int)
            rows = np.round(y0 + t * (y1 - y0)).astype(int)
            inside = (cols >= 0) & (cols < region.shape[1]) & (rows >= 0) & (rows < region.shape[0])
            if inside.all() and region[rows, cols].all():
                points.append((float(cols[-1]), float(rows[-1])))
                heading = direction
                break
    return points


def _scribbles(
    rng: np.random.Generator, regions: Sequence[tuple[str, np.ndarray]]
) -> list[tuple[str, list[tuple[float, float]]]]:
    """One stroke per object region and a few in the background, away from every boundary."""
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))
    strokes = []
    for tag, region in regions:
        eroded = cv2.erode(region.astype(np.uint8), kernel) > 0
        for _ in range(3 if tag == "background" else 1):
            points = _stroke(rng, eroded, int(rng.integers(3, 8)))
            if len(points) > 1:
                strokes.append((tag, points))
    return strokes


def voc_scene(
    rng: np.random.Generator, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[int], list]:
    """Draw one VOC-layout sample: image, class mask, instance mask, instance classes, scribbles."""
    image = _background(rng, size)
    count = int(rng.choice((1, 2, 3, 4), p=(0.25, 0.35, 0.25, 0.15)))
    classes: list[int] = []
    boxes: list[tuple[int, int, int, int]] = []
    for _ in range(count):
        near = boxes[-1] if boxes and rng.random() < 0.5 else None
        choices = [c for c in VOC_STYLES if not classes or c != classes[-1] or near is None]
        classes.append(int(rng.choice(choices)))
        boxes.append(_random_box(rng, size, near))
    instances, _ = _draw_objects(rng, image, [VOC_STYLES[c] for c in classes], boxes)
    # VOC marks a band along every object outline as void; objects with too little left inside
    # the band (slivers behind other objects) become void entirely, as VOC does with tiny ones.
    void = _boundary(instances)
    visible = [k for k in range(1, count + 1) if ((instances == k) & ~void).sum() >= 12]
    for k in set(range(1, count + 1)) - set(visible):
        void |= instances == k
    instance_map = np.zeros(size, np.uint8)
    class_map = np.zeros(size, np.uint8)
    for new, k in enumerate(visible, start=1):
        instance_map[instances == k] = new
        class_map[instances == k] = classes[k - 1]
    class_map[void] = IGNORE_INDEX
    instance_map[void] = IGNORE_INDEX
    regions = [("background", class_map == 0)]
    regions += [
        (SYNTHETIC_CLASSES[classes[k - 1]], instance_map == n) for n, k in enumerate(visible, 1)
    ]
    strokes = _scribbles(rng, regions)
    labels = [classes[k - 1] for k in visible]
    return np.clip(image, 0, 255).astype(np.uint8), class_map, instance_map, labels, strokes


def _street(rng: np.random.Generator, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Draw Cityscapes-like stuff: sky, buildings, vegetation, sidewalk, road (image, labelIds)."""
    height, width = size
    label_ids = np.full(size, LABEL_IDS["road"], np.uint8)
    rows = np.repeat(np.arange(height)[:, None], width, axis=1)
    horizon = int(height * rng.uniform(0.35, 0.5))
    skyline = horizon - (np.abs(_smooth_noise(rng, (1, width), 12)) * height * 0.2).astype(int)
    label_ids[rows < skyline] = LABEL_IDS["sky"]
    label_ids[(rows >= skyline) & (rows < horizon)] = LABEL_IDS["building"]
    greenery = _smooth_noise(rng, size, 20) > 0.6
    label_ids[greenery & (rows < horizon) & (rows >= skyline // 2)] = LABEL_IDS["vegetation"]
    kerb = horizon + int(height * rng.uniform(0.05, 0.12))
    label_ids[(rows >= horizon) & (rows < kerb)] = LABEL_IDS["sidewalk"]
    if rng.random() < 0.5:
        label_ids[rows >= height - max(2, height // 16)] = LABEL_IDS["ego vehicle"]
    image = np.zeros((*size, 3), np.float32)
    for label_id, colour in STUFF_COLOURS.items():
        region = label_ids == label_id
        if region.any():
            texture = "noise" if label_id in (7, 8) else str(rng.choice(TEXTURES))
            _paint(
                rng,
                image,
                region,
                Style(colour, tuple(int(c * 0.8) for c in colour), texture),
                12.0,
            )
    image += rng.normal(0, 5, image.shape)
    return image, label_ids


def cityscapes_scene(
    rng: np.random.Generator, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw one Cityscapes-layout sample: image, labelIds, instanceIds."""
    image, label_ids = _street(rng, size)
    count = int(rng.integers(2, 7))
    names = [str(rng.choice(OBJECT_CLASSES)) for _ in range(count)]
    boxes: list[tuple[int, int, int, int]] = []
    for name in names:
        if name == "pole":
            height, width = size
            w = max(2, width // 40)
            x1 = int(rng.integers(0, width - w))
            y1 = int(rng.integers(0, height // 3))
            boxes.append((x1, y1, x1 + w, int(height * rng.uniform(0.6, 0.9))))
        elif name in ("traffic light", "traffic sign"):
            boxes.append(_random_box(rng, size, None, (0.05, 0.12)))
        else:
            near = boxes[-1] if boxes and rng.random() < 0.4 else None
            boxes.append(_random_box(rng, size, near, (0.15, 0.45)))
    instances, visible = _draw_objects(rng, image, [CITYSCAPES_STYLES[n] for n in names], boxes)
    instance_ids = label_ids.astype(np.int32)
    per_class: dict[str, int] = {}
    for k in visible:
        name = names[k - 1]
        region = instances == k
        label_id = LABEL_IDS[name]
        label_ids[region] = label_id
        if name in ("pole", "traffic light", "traffic sign"):
            instance_ids[region] = label_id
        else:
            instance_ids[region] = label_id * 1000 + per_class.get(name, 0)
            per_class[name] = per_class.get(name, 0) + 1
    for k in set(range(1, count + 1)) - set(visible):
        label_ids[instances == k] = LABEL_IDS["dynamic"]
        instance_ids[instances == k] = LABEL_IDS["dynamic"]
    return np.clip(image, 0, 255).astype(np.uint8), label_ids, instance_ids
