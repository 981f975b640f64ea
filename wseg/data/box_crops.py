"""Box2Tag's single-class datasets (Ji & Veksler 2021, sec. 4.1): each class's boxes cut out.

The crop datasets, their positive/negative sampler and the datamodule of one class; the crops
themselves are cut by `wseg.data.box_crop_geometry`. Crops of the other classes are the negatives.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from wseg.data.box_crop_geometry import CropEntry, crop_box, normalise, scan_crops
from wseg.data.datasets import DataWarning
from wseg.data.loader import default_num_workers, default_pin_memory, make_loader
from wseg.data.records import SegmentationSource

__all__ = [
    "BoxCropDataModule",
    "BoxCropDataset",
    "PositiveNegativeSampler",
    "scan_crops",
]


class BoxCropDataset(Dataset):
    """Crops of a list of boxes as training or evaluation items.

    Each item: ``image`` float ``3, S, S`` (normalised as the other datasets); ``border`` long
    ``S, S`` (0 on frame pixels that are background examples, 255 elsewhere); ``valid`` bool
    ``S, S`` (pixels that come from the image); ``mask`` long ``S, S`` (true object 1 /
    background 0 inside the box, 255 elsewhere or unknown); ``positive`` bool (a crop of the
    target class; False for a negative crop of another class); ``id`` (``<image id>#<box>``).

    Args:
        source: The split the entries index.
        entries: The boxes.
        target_class: The class whose crops are positives.
        size: Side of the square crops.
        border: Width of their frame.
        flip: Flip crops horizontally at random (training).

    """

    def __init__(
        self,
        source: SegmentationSource,
        entries: Sequence[CropEntry],
        target_class: int,
        size: int = 256,
        border: int = 3,
        flip: bool = False,
    ) -> None:
        self.source = source
        self.entries = list(entries)
        self.target_class = target_class
        self.size = size
        self.border = border
        self.flip = flip

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> dict[str, Any]:
        entry = self.entries[index]
        sample = self.source[entry.image_index]
        crop = crop_box(sample, entry.box_index, self.size, self.border)
        if self.flip and torch.rand(()) < 0.5:
            crop = {key: np.ascontiguousarray(value[:, ::-1]) for key, value in crop.items()}
        return {
            "image": normalise(crop["image"]),
            "border": torch.from_numpy(crop["border"].astype(np.int64)),
            "valid": torch.from_numpy(crop["valid"]),
            "mask": torch.from_numpy(crop["mask"].astype(np.int64)),
            "positive": torch.tensor(entry.label == self.target_class),
            "id": f"{sample.id}#{entry.box_index}",
        }


class PositiveNegativeSampler(Sampler[int]):
    """Every positive crop once per epoch, plus a fresh random draw of negative crops, shuffled.

    The dataset holds the positives first (``0..num_positive-1``) and the negatives after them.
    The paper trains with the other classes' crops as negatives but does not say how many per
    epoch; with 20 classes using all of them would make 95% of every batch negative, so each
    epoch draws ``round(negative_ratio * num_positive)`` of them (at most all).

    Args:
        num_positive: Number of positive crops.
        num_negative: Number of negative crops.
        negative_ratio: Negatives drawn per positive and epoch.
        seed: Seed of the draws (mixed with the epoch).

    """

    def __init__(
        self, num_positive: int, num_negative: int, negative_ratio: float = 1.0, seed: int = 0
    ) -> None:
        if negative_ratio < 0:
            raise ValueError(f"negative_ratio must be >= 0, got {negative_ratio}")
        self.num_positive = num_positive
        self.num_negative = num_negative
        self.draw = min(num_negative, round(negative_ratio * num_positive))
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return self.num_positive + self.draw

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        negatives = self.num_positive + rng.permutation(self.num_negative)[: self.draw]
        order = np.concatenate([np.arange(self.num_positive), negatives])
        yield from rng.permutation(order).tolist()


class BoxCropDataModule(L.LightningDataModule):
    """The single-class dataset of one class (Box2Tag sec. 4.1), with the other classes' negatives.

    Training: the kept boxes of ``target_class`` (`kept_boxes`) as positives and, each epoch,
    ``negative_ratio`` times as many kept boxes of the other classes as negatives. Validation: the
    kept boxes of ``target_class`` in ``val_split`` (default: the training split, as the paper's
    Table 1, which scores the single-class datasets' boxes of VOC train) against their true masks,
    as object/background, so ``val/miou`` is the binary mIoU of the box segmentations.

    The dataset options (layout, root, reader options, synthetic generation) are those of
    `wseg.data.datamodule.WeakSegDataModule`, which builds the readers.

    Args:
        target_class: Name of the class to segment (not background).
        dataset: Dataset layout: ``voc``, ``cityscapes``, ``coco`` or ``synthetic``.
        root: Dataset root.
        train_split: Split whose boxes make the training crops.
        val_split: Split whose boxes of the class are scored; None: ``train_split``.
        crop_size: Side of the square crops (paper: 256).
        border: Width of the frame outside the box, in crop pixels (paper: 3).
        min_side_fraction: Keep boxes whose longer side exceeds this fraction of the image's
            (paper: 50 px on VOC's 500-px images, 0.1).
        negative_ratio: Negative crops per positive crop and epoch (0: no negatives).
        flip: Random horizontal flips of the training crops.
        batch_size: Training batch size.
        val_batch_size: Validation batch size.
        num_workers: DataLoader workers; None: min(4, CPU count).
        pin_memory: Pin batches for host-to-GPU copies; None: with CUDA.
        box_source: VOC: boxes from ``auto``, ``instances`` or ``xml``.
        require_masks: VOC: fail on an image without a class mask.
        voc_mask_dir: VOC: ``auto``, ``SegmentationClass`` or ``SegmentationClassAug``.
        cityscapes_protocol: Cityscapes: ``objects11`` or ``19``.
        cityscapes_min_component_pixels: Cityscapes: smallest pole / traffic light / sign
            component that becomes a box.
        coco_class_map: COCO: ``voc`` or ``coco``.
        synthetic_num_train: Synthetic: number of training images generated.
        synthetic_num_val: Synthetic: number of validation images generated.
        synthetic_size: Synthetic: ``(height, width)`` of the generated images.
        synthetic_seed: Synthetic: seed of the generator.
        progress: Show a progress bar while scanning the boxes of a split.

    """

    def __init__(
        self,
        target_class: str,
        dataset: Literal["voc", "cityscapes", "coco", "synthetic"] = "synthetic",
        root: str = "data/synthetic",
        train_split: str = "train",
        val_split: str | None = None,
        crop_size: int = 256,
        border: int = 3,
        min_side_fraction: float = 0.1,
        negative_ratio: float = 1.0,
        flip: bool = True,
        batch_size: int = 16,
        val_batch_size: int = 16,
        num_workers: int | None = None,
        pin_memory: bool | None = None,
        box_source: Literal["auto", "instances", "xml"] = "auto",
        require_masks: bool = True,
        voc_mask_dir: Literal["auto", "SegmentationClass", "SegmentationClassAug"] = "auto",
        cityscapes_protocol: Literal["objects11", "19"] = "objects11",
        cityscapes_min_component_pixels: int = 1,
        coco_class_map: Literal["voc", "coco"] = "voc",
        synthetic_num_train: int = 200,
        synthetic_num_val: int = 50,
        synthetic_size: tuple[int, int] = (128, 160),
        synthetic_seed: int = 0,
        progress: bool = True,
    ) -> None:
        super().__init__()
        from wseg.data.datamodule import WeakSegDataModule

        self.save_hyperparameters()
        if border < 0 or crop_size - 2 * border < 8:
            raise ValueError(
                f"crop_size={crop_size} with border={border} leaves an interior under 8 pixels"
            )
        if not 0.0 <= min_side_fraction < 1.0:
            raise ValueError(f"min_side_fraction must lie in [0, 1), got {min_side_fraction}")
        if negative_ratio < 0:
            raise ValueError(f"negative_ratio must be >= 0, got {negative_ratio}")
        self.readers = WeakSegDataModule(
            dataset=dataset,
            root=root,
            train_split=train_split,
            val_split=val_split or train_split,
            voc_mask_dir=voc_mask_dir,
            box_source=box_source,
            require_masks=require_masks,
            cityscapes_protocol=cityscapes_protocol,
            cityscapes_min_component_pixels=cityscapes_min_component_pixels,
            coco_class_map=coco_class_map,
            synthetic_num_train=synthetic_num_train,
            synthetic_num_val=synthetic_num_val,
            synthetic_size=synthetic_size,
            synthetic_seed=synthetic_seed,
        )
        names = self.readers.class_names
        if target_class not in names[1:]:
            raise ValueError(
                f"target_class={target_class!r} is not an object class of {dataset}: {names[1:]}"
            )
        self.target_class = target_class
        self.target_index = names.index(target_class)
        self.train_split = train_split
        self.val_split = val_split or train_split
        self.num_workers = default_num_workers(num_workers)
        self.pin_memory = default_pin_memory(pin_memory)
        self.train_dataset: BoxCropDataset | None = None
        self.val_dataset: BoxCropDataset | None = None
        self.num_negative = 0
        self._scans: dict[str, tuple[SegmentationSource, list[CropEntry]]] = {}

    @property
    def class_names(self) -> tuple[str, str]:
        """``("background", target_class)``: the single-class network's two outputs."""
        return ("background", self.target_class)

    @property
    def num_classes(self) -> int:
        """Two: background and the target class."""
        return 2

    def prepare_data(self) -> None:
        """Generate the synthetic dataset when it is the one asked for and is missing."""
        self.readers.prepare_data()

    def _crops(self, split: str) -> tuple[SegmentationSource, list[CropEntry], list[CropEntry]]:
        """The split's source, its positive crops and the other classes' kept crops."""
        hp = self.hparams
        if split not in self._scans:  # one pass per split (train and val are often the same)
            source = self.readers.make_source(split)
            self._scans[split] = (source, scan_crops(source, hp.min_side_fraction, hp.progress))
        source, entries = self._scans[split]
        mine = [e for e in entries if e.label == self.target_index]
        if not mine:
            raise ValueError(
                f"{hp.dataset} {split!r} at {hp.root} has no box of {self.target_class!r}: "
                "nothing to train or validate on"
            )
        positives = [e for e in mine if e.kept]
        if not positives:
            warnings.warn(
                f"{hp.dataset} {split!r}: none of the {len(mine)} boxes of "
                f"{self.target_class!r} is longer than {hp.min_side_fraction} of its image and "
                "free of other classes' boxes; using all of them",
                DataWarning,
                stacklevel=2,
            )
            positives = mine
        negatives = [e for e in entries if e.kept and e.label != self.target_index]
        return source, positives, negatives

    def setup(self, stage: str) -> None:
        """Scan the splits' boxes and build the crop datasets.

        The positives are the kept boxes of the class (`kept_boxes`); a split where no box of
        the class is kept uses every box of the class instead, with a warning (tiny datasets).

        Args:
            stage: ``fit``, ``validate``, ``test`` or ``predict``.

        Raises:
            ValueError: If the split holds no box of the target class.

        """
        hp = self.hparams
        if stage == "fit" and self.train_dataset is None:
            source, positives, negatives = self._crops(self.train_split)
            self.num_negative = len(negatives) if hp.negative_ratio > 0 else 0
            self.train_dataset = BoxCropDataset(
                source,
                positives + negatives[: self.num_negative],
                self.target_index,
                hp.crop_size,
                hp.border,
                flip=hp.flip,
            )
        if self.val_dataset is None:
            source, positives, _ = self._crops(self.val_split)
            self.val_dataset = BoxCropDataset(
                source, positives, self.target_index, hp.crop_size, hp.border
            )

    def _loader(self, dataset: Dataset, batch_size: int, **kwargs: Any) -> DataLoader:
        return make_loader(dataset, batch_size, self.num_workers, self.pin_memory, **kwargs)

    def train_dataloader(self) -> DataLoader:
        """Positives and a fresh draw of negatives each epoch, shuffled."""
        if self.train_dataset is None:
            raise RuntimeError("call setup('fit') before asking for the training dataloader")
        num_positive = len(self.train_dataset) - self.num_negative
        sampler = PositiveNegativeSampler(
            num_positive, self.num_negative, self.hparams.negative_ratio
        )
        drop_last = len(sampler) > self.hparams.batch_size
        return self._loader(
            self.train_dataset, self.hparams.batch_size, sampler=sampler, drop_last=drop_last
        )

    def val_dataloader(self) -> DataLoader:
        """The target class's kept boxes of the validation split."""
        if self.val_dataset is None:
            raise RuntimeError("call setup('validate') before asking for its dataloader")
        return self._loader(self.val_dataset, self.hparams.val_batch_size)

    def test_dataloader(self) -> DataLoader:
        """Same crops as validation."""
        return self.val_dataloader()

    def predict_dataloader(self) -> DataLoader:
        """Same crops as validation."""
        return self.val_dataloader()
