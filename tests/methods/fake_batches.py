"""Hand-made batches with the keys of `wseg.data.batch.Batch`, and a tiny loader around them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Trainer

NUM_CLASSES = 4
ENCODER = "tu-mobilenetv3_small_050"
TINY = {"encoder": ENCODER, "encoder_weights": None, "log_images_every_n_epochs": 0}


def make_batch(batch_size: int = 2, size: tuple[int, int] = (64, 64), seed: int = 0) -> dict:
    """Every batch key: one box per image, filled with its class, plus an ignored border."""
    generator = torch.Generator().manual_seed(seed)
    height, width = size
    image = torch.randn(batch_size, 3, height, width, generator=generator)
    mask = torch.zeros(batch_size, height, width, dtype=torch.long)
    box_label = torch.zeros_like(mask)
    box_mask = torch.zeros(batch_size, NUM_CLASSES, height, width)
    box_mask[:, 0] = 1
    tags = torch.zeros(batch_size, NUM_CLASSES)
    tags[:, 0] = 1
    boxes = []
    for index in range(batch_size):
        label = 1 + index % (NUM_CLASSES - 1)
        y1, x1 = height // 4, width // 4 + index
        y2, x2 = 3 * height // 4, 3 * width // 4
        box_label[index, y1:y2, x1:x2] = label
        mask[index, y1 + 2 : y2 - 2, x1 + 2 : x2 - 2] = label
        box_mask[index, label, y1:y2, x1:x2] = 1
        box_mask[index, 0, y1:y2, x1:x2] = 0
        tags[index, label] = 1
        image[index, :, y1:y2, x1:x2] += label
        boxes.append(torch.tensor([[x1, y1, x2, y2, label]], dtype=torch.float32))
    mask[:, 0, :] = 255
    scribble = torch.full_like(mask, 255)
    scribble[:, height // 2, width // 3 : 2 * width // 3] = mask[
        :, height // 2, width // 3 : 2 * width // 3
    ]
    scribble[:, 1, :] = 0
    return {
        "image": image,
        "mask": mask,
        "strong": torch.arange(batch_size) % 2 == 0,
        "boxes": boxes,
        "box_mask": box_mask,
        "box_label": box_label,
        "tags": tags,
        "scribble": scribble,
        "pseudo": box_label.clone(),
        "id": [f"img_{seed}_{index}" for index in range(batch_size)],
    }


class BatchList(torch.utils.data.Dataset):
    """A dataset whose items are ready-made batches (use with ``batch_size=None``)."""

    def __init__(self, batches: list[dict]) -> None:
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int) -> dict:
        return self.batches[index]


def batch_loader(count: int = 2, **kwargs: Any) -> torch.utils.data.DataLoader:
    """``count`` hand-made batches, unshuffled."""
    batches = [make_batch(seed=seed, **kwargs) for seed in range(count)]
    return torch.utils.data.DataLoader(BatchList(batches), batch_size=None)


def quiet_trainer(root: Path, **kwargs: Any) -> Trainer:
    """A CPU `Trainer` without logger, checkpoints, progress bar or summary, under ``root``."""
    return Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
        **kwargs,
    )
