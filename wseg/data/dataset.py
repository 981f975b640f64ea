"""The dataset of the datamodule: one split of a reader as transformed per-image dicts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch.utils.data import Dataset

from wseg.data.records import SegmentationSource
from wseg.data.scribbles import sample_scribble
from wseg.data.transforms import transform_sample


class WeakSegDataset(Dataset):
    """One split of a `SegmentationSource` as transformed per-image dicts (see `transform_sample`).

    Args:
        source: The reader of the split.
        transform: The albumentations pipeline applied to every sample.
        num_classes: Number of classes, background included.
        strong_ids: Ids of the fully labelled subset F; None marks every image that has a mask.
        indices: Positions in ``source`` that make up this dataset; None for all.
        scribbles: ``none``, ``dataset`` (the reader's scribbles) or ``synthesize`` (from masks).
        scribble_width: Stroke width of synthesised scribbles.
        scribble_seed: Global seed of synthesised scribbles (mixed with each image id).
        curated_scribbles: Give every scribbled pixel its class in the full mask
            (`wseg.data.scribbles.curate_scribbles`).
        pseudo_store: A `wseg.data.store.PseudoLabelStore` read for the ``pseudo`` key, or None.
        with_size: Add ``size``, long ``(H, W)`` of the transformed image, so that predictions can
            be cropped back to it after the collate pads the batch (the evaluation datasets).

    """

    def __init__(
        self,
        source: SegmentationSource,
        transform: Any,
        num_classes: int,
        strong_ids: set[str] | None = None,
        indices: Sequence[int] | None = None,
        scribbles: Literal["none", "dataset", "synthesize"] = "none",
        scribble_width: int = 3,
        scribble_seed: int = 0,
        pseudo_store: Any = None,
        with_size: bool = False,
        curated_scribbles: bool = False,
    ) -> None:
        self.source = source
        self.transform = transform
        self.num_classes = num_classes
        self.strong_ids = strong_ids
        self.indices = list(range(len(source))) if indices is None else list(indices)
        self.scribbles = scribbles
        self.scribble_width = scribble_width
        self.scribble_seed = scribble_seed
        self.pseudo_store = pseudo_store
        self.with_size = with_size
        self.curated_scribbles = curated_scribbles
        self._transform_seed: int | None = None

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict[str, Any]:
        # albumentations draws from its own generator: seed it from torch's per-process seed, which
        # `seed_everything` fixes in the main process and the DataLoader varies per worker/epoch.
        torch_seed = torch.initial_seed()
        if torch_seed != self._transform_seed:
            self.transform.set_random_seed(torch_seed % 2**32)
            self._transform_seed = torch_seed
        sample = self.source[self.indices[index]]
        where = f"image {sample.id!r} ({sample.source or 'no file'})"
        if self.strong_ids is None:
            strong = sample.mask is not None
        else:
            strong = sample.id in self.strong_ids
            if strong and sample.mask is None:
                raise ValueError(f"{where} is in the strong split but has no full mask")
        scribble = None
        if self.scribbles != "none":
            scribble = sample_scribble(
                sample,
                self.scribbles,
                width=self.scribble_width,
                seed=self.scribble_seed,
                curated=self.curated_scribbles,
            )
        pseudo = None if self.pseudo_store is None else self.pseudo_store.read(sample.id)
        out = transform_sample(self.transform, sample, self.num_classes, scribble, pseudo)
        out["strong"] = torch.tensor(strong)
        if self.with_size:
            out["size"] = torch.tensor(out["image"].shape[-2:], dtype=torch.long)
        return out
