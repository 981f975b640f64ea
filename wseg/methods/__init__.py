"""One LightningModule per method, on the shared `WeakSegMethod` base.

`METHODS` lists every method class on the shared batch contract; the contract test suite runs
over it. `Box2TagSingleClass` (object/background networks on box crops) is not on that contract.
"""

from wseg.methods.base import WeakSegMethod
from wseg.methods.box2seg import Box2Seg
from wseg.methods.box2tag import Box2TagFinal, Box2TagSingleClass
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
    Box2TagFinal,
    ScribblePAM,
]

__all__ = [
    "METHODS",
    "Ancillary",
    "BboxRect",
    "BboxSeg",
    "Box2Seg",
    "Box2TagFinal",
    "Box2TagSingleClass",
    "EMAdapt",
    "EMFixed",
    "ScribblePAM",
    "SelfCorrection",
    "Supervised",
    "WeakSegMethod",
]
