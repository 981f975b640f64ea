"""Plain ``nn.Module`` networks (no Lightning): the smp segmenter factory and encoder weights."""

from wseg.nets.ancillary import AncillarySegmenter, BoxAttention
from wseg.nets.box2seg_net import Box2SegNet, Box2SegOutputs
from wseg.nets.pretrained import OFFLINE_LITE0, offline_lite0_classifier, offline_lite0_state_dict
from wseg.nets.segmenter import Arch, build_segmenter
from wseg.nets.self_correction import ConvSelfCorrection

__all__ = [
    "OFFLINE_LITE0",
    "AncillarySegmenter",
    "Arch",
    "Box2SegNet",
    "Box2SegOutputs",
    "BoxAttention",
    "ConvSelfCorrection",
    "build_segmenter",
    "offline_lite0_classifier",
    "offline_lite0_state_dict",
]
