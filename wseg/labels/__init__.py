"""Pseudo-label makers (GrabCut, dense CRF, Potts) and the on-disk store they write to."""

from wseg.data.store import PseudoLabelStore, StoreError
from wseg.labels.generate import generate
from wseg.labels.generators import (
    GENERATORS,
    CRFGenerator,
    GrabCutGenerator,
    LabelGenerator,
    RectGenerator,
    build_generator,
)
from wseg.labels.grabcut import grabcut_labels
from wseg.labels.potts import potts_map
from wseg.labels.quality import evaluate_store

__all__ = [
    "GENERATORS",
    "CRFGenerator",
    "GrabCutGenerator",
    "LabelGenerator",
    "PseudoLabelStore",
    "RectGenerator",
    "StoreError",
    "build_generator",
    "evaluate_store",
    "generate",
    "grabcut_labels",
    "potts_map",
]
