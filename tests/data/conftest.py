from pathlib import Path

import pytest

from wseg.data.synthetic import generate_synthetic


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """A tiny synthetic dataset (both layouts, 6 train + 3 val images of 48x64)."""
    return generate_synthetic(
        tmp_path_factory.mktemp("synthetic"), num_train=6, num_val=3, size=(48, 64), seed=0
    )
