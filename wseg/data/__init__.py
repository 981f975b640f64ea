"""Data: dataset readers, weak labels derived from full ones, joint transforms, the datamodule."""

from wseg.data.datamodule import StrongWeakSampler, WeakSegDataModule, WeakSegDataset
from wseg.data.records import IGNORE_INDEX, VOC_CLASSES, Sample, SegmentationSource

__all__ = [
    "IGNORE_INDEX",
    "VOC_CLASSES",
    "Sample",
    "SegmentationSource",
    "StrongWeakSampler",
    "WeakSegDataModule",
    "WeakSegDataset",
]
