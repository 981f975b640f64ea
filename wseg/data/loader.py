"""The one DataLoader builder of wseg's datamodules, and their worker defaults."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset


def default_num_workers(num_workers: int | None) -> int:
    """``num_workers`` as given, or min(4, CPU count) when None."""
    return min(4, os.cpu_count() or 1) if num_workers is None else num_workers


def default_pin_memory(pin_memory: bool | None) -> bool:
    """``pin_memory`` as given, or whether CUDA is available when None."""
    return torch.cuda.is_available() if pin_memory is None else pin_memory


def make_loader(
    dataset: Dataset,
    batch_size: int,
    num_workers: int,
    pin_memory: bool,
    persistent_workers: bool = False,
    collate_fn: Callable[[Any], Any] | None = None,
    **kwargs: Any,
) -> DataLoader:
    """A DataLoader over ``dataset`` with a datamodule's worker options.

    Args:
        dataset: The dataset.
        batch_size: Images per batch.
        num_workers: Worker processes (0: load in the main process).
        pin_memory: Pin batches in page-locked memory.
        persistent_workers: Keep workers alive between epochs (only with workers).
        collate_fn: How to batch the items; None: PyTorch's default collate.
        **kwargs: Further DataLoader options (``shuffle``, ``sampler``, ``drop_last``).

    """
    return DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=persistent_workers and num_workers > 0,
        collate_fn=collate_fn,
        **kwargs,
    )
