"""The box segmenters at their defaults on real photographs: GrabCut and the CRF beat the box.

Eight tiny_coco val2017 photographs (COCO -> VOC classes, instance masks), scored with Box2Tag's
per-box F-beta. Textbook GrabCut (``core=0``) does not beat the rectangle here (it returns no
foreground for many boxes, which fall back), and the CRF at the paper's alpha with DeepLab's
parameters gains too little, so this fails if the defaults regress to either.
"""

import numpy as np
import pytest
from tiny_data import TINY_COCO

from wseg.data.datasets import make_source
from wseg.labels.generators import build_generator
from wseg.labels.quality import box_fbeta

NUM_IMAGES = 8
GRABCUT_MARGIN = 0.05
"""How much higher (F-beta / 100) GrabCut must score than the rectangle (measured: 77.3 vs 66.2)."""
CRF_MARGIN = 0.04
"""How much higher the CRF must score than the rectangle (measured: 72.4 vs 66.2; the paper's
alpha = 0.2 with DeepLab's CRF parameters: 68.7, which fails)."""

pytestmark = pytest.mark.skipif(
    not TINY_COCO.is_dir(), reason=f"{TINY_COCO} (the shared real photographs) is not here"
)


@pytest.fixture(scope="module")
def photos() -> tuple:
    source = make_source("coco", TINY_COCO, "val2017")
    samples = [source[i] for i in range(NUM_IMAGES)]
    assert sum(len(s.boxes) for s in samples) >= 20
    return source, samples


def mean_fbeta(method: str, photos: tuple, **options) -> float:
    source, samples = photos
    generator = build_generator(method, **options)
    scores = []
    for sample in samples:
        label, _ = generator(sample, source.num_classes)
        scores += [score for _, score in box_fbeta(label, sample)]
    return float(np.mean(scores))


@pytest.mark.xdist_group("tiny_coco_photos")
def test_grabcut_and_crf_beat_the_rectangle_on_real_photos(photos) -> None:
    rect = mean_fbeta("rect", photos)
    grabcut = mean_fbeta("grabcut", photos)
    crf = mean_fbeta("crf", photos)
    assert grabcut > rect + GRABCUT_MARGIN, (grabcut, rect)
    assert crf > rect + CRF_MARGIN, (crf, rect)


@pytest.mark.xdist_group("tiny_coco_photos")
def test_textbook_grabcut_does_not_beat_the_rectangle_on_these_photos(photos) -> None:
    # Why the default fixes the box centre: without it, many boxes come back empty.
    assert mean_fbeta("grabcut", photos, core=0.0) < mean_fbeta("rect", photos) + GRABCUT_MARGIN
