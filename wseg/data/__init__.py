"""Data: dataset readers, weak labels derived from full ones, joint transforms, the datamodule."""

from wseg.data.batch import Batch
from wseg.data.datamodule import WeakSegDataModule
from wseg.data.dataset import WeakSegDataset
from wseg.data.records import IGNORE_INDEX, VOC_CLASSES, Sample, SegmentationSource
from wseg.data.sampler import StrongWeakSampler

__all__ = [
    "Batch",
    "IGNORE_INDEX",
    "VOC_CLASSES",
    "Sample",
    "SegmentationSource",
    "StrongWeakSampler",
    "WeakSegDataModule",
    "WeakSegDataset",
]
