"""One LightningModule per method, on the shared `WeakSegMethod` base.

`METHODS` lists every method class; the contract test suite runs over it.
"""

from wseg.methods.base import WeakSegMethod
from wseg.methods.box2seg import Box2Seg
from wseg.methods.em import BboxSeg, EMAdapt, EMFixed
from wseg.methods.scribble import ScribblePAM
from wseg.methods.self_correction import Ancillary, SelfCorrection
from wseg.methods.supervised import BboxRect, Supervised

METHODS: list[type[WeakSegMethod]] = [
    Supervised,
    BboxRect,
    Ancillary,
    SelfCorrection,
    EMFixed,
    EMAdapt,
    BboxSeg,
    Box2Seg,
    ScribblePAM,
]

__all__ = [
    "METHODS",
    "Ancillary",
    "BboxRect",
    "BboxSeg",
    "Box2Seg",
    "EMAdapt",
    "EMFixed",
    "ScribblePAM",
    "SelfCorrection",
    "Supervised",
    "WeakSegMethod",
]
