"""The one LightningDataModule every wseg method trains on.

A dataset reader, weak labels derived from full ones, the F/W split, joint augmentation, the batch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import lightning as L
from torch.utils.data import DataLoader, Dataset

from wseg.data.datamodule_checks import check_datamodule_options
from wseg.data.dataset import WeakSegDataset
from wseg.data.datasets import dataset_classes, make_source
from wseg.data.datasets.folder import ImageFolderSource
from wseg.data.loader import default_num_workers, default_pin_memory, make_loader
from wseg.data.records import SegmentationSource
from wseg.data.run_files import CLASS_NAMES_FILE, STRONG_SPLIT_NAME, save_class_names
from wseg.data.sampler import StrongWeakSampler
from wseg.data.source_options import source_options
from wseg.data.strong_split import save_split
from wseg.data.training_set import (
    curated_positions,
    open_pseudo_store,
    pseudo_positions,
    strong_split,
)
from wseg.data.transforms import build_eval_transform, build_train_transform, collate
from wseg.runs import run_dir


class WeakSegDataModule(L.LightningDataModule):
    """The datamodule of every wseg method: full labels, weak labels derived from them, F/W split.

    Batches are `wseg.data.batch.Batch` dicts: ``image``, ``mask`` (255 where unknown; trusted only
    where ``strong``), ``strong``, ``boxes``, ``box_mask``, ``box_label``, ``tags``, ``id``, plus
    ``scribble`` and ``pseudo`` in training batches when configured. Training crops and augments;
    validation, test and prediction use the full image, padded (with ignore) to the largest image
    of the batch.

    The strong/weak split is drawn once from the training ids (``num_strong`` or
    ``strong_fraction`` with ``split_seed``), or read from ``strong_split_file`` when that file
    exists (and written there when it does not). It is saved as ``strong_split.txt`` in the run's
    folder (`wseg.runs.run_dir`, beside ``checkpoints/``); an existing, different list there is an
    error, never overwritten. Without a split (``strong_ids`` is None) every training image with a
    mask is strong.

    Args:
        dataset: Dataset layout: ``voc``, ``cityscapes``, ``coco`` or ``synthetic``.
        root: Dataset root (for ``synthetic``, where the generated data lives or is written).
        train_split: Split used for training.
        val_split: Split used for validation (full images).
        test_split: Split used for testing; None uses ``val_split``.
        predict_split: Split used for prediction; None uses ``val_split``.
        predict_images: A folder of images without labels to predict instead of a split
            (``python -m wseg predict ... --data.init_args.predict_images DIR``).
        voc_mask_dir: VOC: ``auto``, ``SegmentationClass`` or ``SegmentationClassAug``.
        box_source: VOC: boxes from ``auto``, ``instances`` (SegmentationObject) or ``xml``.
        require_masks: VOC: fail on an image without a class mask (False: detection-only images).
        cityscapes_protocol: Cityscapes: ``objects11`` (self-correction paper) or ``19`` classes.
        cityscapes_min_component_pixels: Cityscapes: smallest connected component of pole,
            traffic light or sign pixels that becomes a box (1: every fragment; CamVid: 20).
        coco_class_map: COCO: ``voc`` (20 VOC classes) or ``coco`` (80 classes).
        class_names: Your own classes (VOC XMLs, COCO JSON): a list of names (``background`` is
            class 0, added if missing), or ``from_data``: VOC, the sorted object names of the
            splits' XMLs; COCO, the training JSON's categories in id order. Saved beside the
            run's checkpoints as ``class_names.txt`` and in the checkpoint. None: the dataset's.
        coco_category_map: COCO: JSON category name -> class name (``background`` drops it).
        coco_skip_bad_annotations: COCO: drop annotations with an unknown ``image_id``, a
            malformed ``bbox`` or no ``category_id`` (counted warning) instead of failing.
        scribbles: ``none``, ``dataset`` (the dataset's scribble files) or ``synthesize``.
        scribble_dir: VOC: folder of ScribbleSup XMLs under root (synthetic: ``Scribbles``).
        scribble_width: Stroke width in pixels of read or synthesised scribbles.
        scribble_seed: Seed of synthesised scribbles (mixed with each image id).
        curated_scribbles: The PAM paper's curated scribbles: every scribbled pixel takes its class
            in the full mask, and training images whose scribbles miss a class of their mask are
            dropped (a counted warning). Needs ``scribbles`` and full masks.
        num_strong: Size of the fully labelled subset F (exclusive with strong_fraction).
        strong_fraction: Fraction of the training images in F.
        split_seed: Seed of the F/W draw.
        strong_split_file: Text file of F's ids: read when it exists, else written.
        strong_only: Train only on F (the fully supervised baseline on the subset).
        strong_per_batch: Fixed number of F images in every training batch (None: random mix).
        pseudo_labels: Directory of a pseudo-label store read into the ``pseudo`` key.
        skip_missing_pseudo: Drop training images the store lacks (counted warning) instead of
            failing.
        pseudo_labels_same_data: Accept a store generated from another root or split name (a
            copy of this data); without it such a store is refused, naming both.
        crop_size: Side of the square training crop.
        scale_range: Range of the random training scale (DeepLab's 0.5-2.0 by default).
        flip: Random horizontal flips in training.
        color_jitter: Colour jitter strength in training (0: none, as in the papers).
        object_crop_p: Share of training crops centred on an object, drawn class-balanced from
            the image's boxes (foreground oversampling of small, rare classes; 0: uniform crops,
            as in the papers).
        batch_size: Training batch size (per device).
        val_batch_size: Validation/test/predict batch size (per device).
        num_workers: DataLoader worker processes; None uses min(4, CPU count).
        pin_memory: Pin batches in page-locked memory for host-to-GPU copies; None: with CUDA.
        persistent_workers: Keep workers alive between epochs (when num_workers > 0).
        synthetic_num_train: Synthetic: number of training images generated.
        synthetic_num_val: Synthetic: number of validation images generated.
        synthetic_size: Synthetic: ``(height, width)`` of the generated images.
        synthetic_seed: Synthetic: seed of the generator.

    """

    def __init__(
        self,
        dataset: Literal["voc", "cityscapes", "coco", "synthetic"] = "synthetic",
        root: str = "data/synthetic",
        train_split: str = "train",
        val_split: str = "val",
        test_split: str | None = None,
        predict_split: str | None = None,
        predict_images: str | None = None,
        voc_mask_dir: Literal["auto", "SegmentationClass", "SegmentationClassAug"] = "auto",
        box_source: Literal["auto", "instances", "xml"] = "auto",
        require_masks: bool = True,
        cityscapes_protocol: Literal["objects11", "19"] = "objects11",
        cityscapes_min_component_pixels: int = 1,
        coco_class_map: Literal["voc", "coco"] = "voc",
        class_names: list[str] | Literal["from_data"] | None = None,
        coco_category_map: dict[str, str] | None = None,
        coco_skip_bad_annotations: bool = False,
        scribbles: Literal["none", "dataset", "synthesize"] = "none",
        scribble_dir: str | None = None,
        scribble_width: int = 3,
        scribble_seed: int = 0,
        curated_scribbles: bool = False,
        num_strong: int | None = None,
        strong_fraction: float | None = None,
        split_seed: int = 0,
        strong_split_file: str | None = None,
        strong_only: bool = False,
        strong_per_batch: int | None = None,
        pseudo_labels: str | None = None,
        skip_missing_pseudo: bool = False,
        pseudo_labels_same_data: bool = False,
        crop_size: int = 321,
        scale_range: tuple[float, float] = (0.5, 2.0),
        flip: bool = True,
        color_jitter: float = 0.0,
        object_crop_p: float = 0.0,
        batch_size: int = 8,
        val_batch_size: int = 1,
        num_workers: int | None = None,
        pin_memory: bool | None = None,
        persistent_workers: bool = False,
        synthetic_num_train: int = 200,
        synthetic_num_val: int = 50,
        synthetic_size: tuple[int, int] = (128, 160),
        synthetic_seed: int = 0,
    ) -> None:
        super().__init__()
        # ``class_names`` as given ("from_data") is not the resolved list the model saves under
        # the same name, and Lightning refuses to log two different values for one key.
        self.save_hyperparameters(ignore=["class_names"])
        check_datamodule_options(
            dataset=dataset,
            num_strong=num_strong,
            strong_fraction=strong_fraction,
            strong_split_file=strong_split_file,
            strong_only=strong_only,
            strong_per_batch=strong_per_batch,
            crop_size=crop_size,
            scale_range=scale_range,
            object_crop_p=object_crop_p,
            batch_size=batch_size,
            val_batch_size=val_batch_size,
            num_workers=num_workers,
            scribbles=scribbles,
            scribble_dir=scribble_dir,
            scribble_width=scribble_width,
            curated_scribbles=curated_scribbles,
        )
        self.dataset = dataset
        self.root = root
        self.train_split = train_split
        self.val_split = val_split
        self.test_split = test_split or val_split
        self.predict_split = predict_split or val_split
        self.predict_images = predict_images
        self.scribbles = scribbles
        self.scribble_width = scribble_width
        self.scribble_seed = scribble_seed
        self.curated_scribbles = curated_scribbles
        self.num_strong = num_strong
        self.strong_fraction = strong_fraction
        self.split_seed = split_seed
        self.strong_split_file = strong_split_file
        self.strong_only = strong_only
        self.strong_per_batch = strong_per_batch
        self.pseudo_labels = pseudo_labels
        self.skip_missing_pseudo = skip_missing_pseudo
        self.pseudo_labels_same_data = pseudo_labels_same_data
        self.crop_size = crop_size
        low, high = scale_range
        self.scale_range = (float(low), float(high))
        self.flip = flip
        self.color_jitter = color_jitter
        self.object_crop_p = object_crop_p
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size
        self.num_workers = default_num_workers(num_workers)
        self.pin_memory = default_pin_memory(pin_memory)
        self.persistent_workers = persistent_workers
        self.synthetic_options = {
            "num_train": synthetic_num_train,
            "num_val": synthetic_num_val,
            "size": tuple(synthetic_size),
            "seed": synthetic_seed,
        }
        self.source_options = source_options(
            dataset=dataset,
            root=root,
            splits=[train_split, val_split, self.test_split, self.predict_split],
            class_names=class_names,
            voc_mask_dir=voc_mask_dir,
            box_source=box_source,
            require_masks=require_masks,
            cityscapes_protocol=cityscapes_protocol,
            cityscapes_min_component_pixels=cityscapes_min_component_pixels,
            coco_class_map=coco_class_map,
            coco_category_map=coco_category_map,
            coco_skip_bad_annotations=coco_skip_bad_annotations,
            scribbles=scribbles,
            scribble_dir=scribble_dir,
            scribble_width=scribble_width,
        )
        self._class_names = dataset_classes(dataset, **self.source_options)
        self.strong_ids: set[str] | None = None
        self.train_dataset: WeakSegDataset | None = None
        self.val_dataset: WeakSegDataset | None = None
        self.test_dataset: WeakSegDataset | None = None
        self.predict_dataset: WeakSegDataset | None = None

    @property
    def class_names(self) -> tuple[str, ...]:
        """Class names, background first (known without reading any file)."""
        return self._class_names

    @property
    def num_classes(self) -> int:
        """Number of classes, background included."""
        return len(self._class_names)

    def make_source(self, split: str, evaluation: bool = False) -> SegmentationSource:
        """Build the reader of one split with this datamodule's dataset options.

        Args:
            split: The split name.
            evaluation: The reader of a validation, test or prediction split: VOC images
                without boxes are read (they need only their masks) instead of failing.

        Returns:
            The reader.

        """
        options = dict(self.source_options)
        if evaluation and self.dataset in ("voc", "synthetic"):
            options["require_boxes"] = False
        return make_source(self.dataset, self.root, split, **options)

    def prepare_data(self) -> None:
        """Generate the synthetic dataset at ``root`` if it is not there (rank 0 of each node)."""
        if self.dataset == "synthetic":
            from wseg.data.synthetic import generate_synthetic

            generate_synthetic(self.root, **self.synthetic_options)

    def setup(self, stage: str) -> None:
        """Read the split lists, draw or load the F/W split, open the pseudo-label store.

        Args:
            stage: ``fit``, ``validate``, ``test`` or ``predict``.

        """
        if stage == "fit" and self.train_dataset is None:
            self.train_dataset = self._train_dataset()
        if stage in ("fit", "validate") and self.val_dataset is None:
            self.val_dataset = self._eval_dataset(self.val_split)
        if stage == "test" and self.test_dataset is None:
            self.test_dataset = self._eval_dataset(self.test_split)
        if stage == "predict" and self.predict_dataset is None:
            if self.predict_images is not None:
                source = ImageFolderSource(self.predict_images, self.class_names)
                self.predict_dataset = WeakSegDataset(
                    source, build_eval_transform(), self.num_classes, with_size=True
                )
            else:
                self.predict_dataset = self._eval_dataset(self.predict_split)
        if stage == "fit":
            self._save_to_run_dir()

    def _eval_dataset(self, split: str) -> WeakSegDataset:
        return WeakSegDataset(
            self.make_source(split, evaluation=True),
            build_eval_transform(),
            self.num_classes,
            with_size=True,
        )

    def _train_dataset(self) -> WeakSegDataset:
        source = self.make_source(self.train_split)
        self._check_classes(source)
        ids = list(source.ids)
        split_file = Path(self.strong_split_file) if self.strong_split_file else None
        self.strong_ids = strong_split(
            ids,
            split_file,
            self.num_strong,
            self.strong_fraction,
            self.split_seed,
            self.train_split,
        )
        positions = list(range(len(ids)))
        if self.strong_only and self.strong_ids is not None:
            positions = [i for i in positions if ids[i] in self.strong_ids]
        if self.curated_scribbles:
            positions = curated_positions(
                source,
                positions,
                self.scribbles,
                self.scribble_width,
                self.scribble_seed,
                self.train_split,
            )
        store = None
        if self.pseudo_labels is not None:
            store = open_pseudo_store(
                self.pseudo_labels,
                self.class_names,
                self.root,
                self.train_split,
                self.pseudo_labels_same_data,
            )
            positions = pseudo_positions(store, ids, positions, self.skip_missing_pseudo)
        transform = build_train_transform(
            self.crop_size, self.scale_range, self.flip, self.color_jitter, self.object_crop_p
        )
        return WeakSegDataset(
            source,
            transform,
            self.num_classes,
            strong_ids=self.strong_ids,
            indices=list(positions),
            scribbles=self.scribbles,
            scribble_width=self.scribble_width,
            scribble_seed=self.scribble_seed,
            pseudo_store=store,
            curated_scribbles=self.curated_scribbles,
        )

    def _check_classes(self, source: SegmentationSource) -> None:
        if tuple(source.classes) != self.class_names:
            raise ValueError(
                f"the {self.dataset} reader reports classes {tuple(source.classes)}, but "
                f"the datamodule announced {self.class_names}"
            )

    def _save_to_run_dir(self) -> None:
        """Write the class names (and the F/W split, when there is one) beside the checkpoints."""
        trainer = self.trainer
        if trainer is None:
            return
        # `run_dir` is a broadcast from rank 0: every rank must ask, only rank 0 writes.
        folder = run_dir(trainer)
        if not trainer.is_global_zero:
            return
        save_class_names(self.class_names, folder / CLASS_NAMES_FILE)
        configured = self.num_strong is not None or self.strong_fraction is not None
        if (configured or self.strong_split_file) and self.strong_ids is not None:
            save_split(self.strong_ids, folder / STRONG_SPLIT_NAME)

    def _loader(self, dataset: Dataset, batch_size: int, **kwargs: Any) -> DataLoader:
        return make_loader(
            dataset,
            batch_size,
            self.num_workers,
            self.pin_memory,
            self.persistent_workers,
            collate_fn=collate,
            **kwargs,
        )

    def _require(self, dataset: WeakSegDataset | None, stage: str) -> WeakSegDataset:
        if dataset is None:
            raise RuntimeError(f"call setup({stage!r}) before asking for its dataloader")
        return dataset

    def train_dataloader(self) -> DataLoader:
        """Shuffled, augmented training batches (fixed F share per batch with strong_per_batch)."""
        dataset = self._require(self.train_dataset, "fit")
        if self.strong_per_batch is None:
            drop_last = len(dataset) > self.batch_size
            return self._loader(dataset, self.batch_size, shuffle=True, drop_last=drop_last)
        assert self.strong_ids is not None  # __init__ requires a split with strong_per_batch
        ids = dataset.source.ids
        strong = [k for k, i in enumerate(dataset.indices) if ids[i] in self.strong_ids]
        weak = [k for k, i in enumerate(dataset.indices) if ids[i] not in self.strong_ids]
        trainer = self.trainer
        sampler = StrongWeakSampler(
            strong,
            weak,
            self.batch_size,
            self.strong_per_batch,
            num_replicas=trainer.world_size if trainer is not None else 1,
            rank=trainer.global_rank if trainer is not None else 0,
            seed=self.split_seed,
        )
        return self._loader(dataset, self.batch_size, sampler=sampler, drop_last=True)

    def val_dataloader(self) -> DataLoader:
        """Full-image validation batches."""
        return self._loader(self._require(self.val_dataset, "validate"), self.val_batch_size)

    def test_dataloader(self) -> DataLoader:
        """Full-image test batches."""
        return self._loader(self._require(self.test_dataset, "test"), self.val_batch_size)

    def predict_dataloader(self) -> DataLoader:
        """Full-image prediction batches."""
        return self._loader(self._require(self.predict_dataset, "predict"), self.val_batch_size)
