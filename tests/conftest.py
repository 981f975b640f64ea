"""Suite-wide settings: offline W&B, one torch thread per xdist worker, no network."""

import os

import pytest
import torch

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("PYTHONHASHSEED", "0")

# Two xdist workers share two cores: one intra-op thread each avoids oversubscription.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _wandb_dir(tmp_path, monkeypatch):
    """Keep W&B's offline run files inside the test's temporary directory."""
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
