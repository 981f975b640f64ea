"""A pseudo-label store knows the data it labels: other data is refused, its labels are checked."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from wseg.data import WeakSegDataModule
from wseg.data.__main__ import main as data_main
from wseg.data.check import DataCheckError, check_datamodule, require_clean
from wseg.data.datasets import make_source
from wseg.data.store import MANIFEST_NAME, PseudoLabelStore, ids_digest
from wseg.labels.generate import generate
from wseg.labels.generators import RectGenerator


@pytest.fixture
def voc(synthetic_root, tmp_path) -> Path:
    """A private copy of the tiny synthetic VOC layout (tests change its files)."""
    return Path(shutil.copytree(synthetic_root / "voc", tmp_path / "voc"))


def rect_store(root: Path, out: Path) -> PseudoLabelStore:
    identity = {"name": "voc", "root": str(root), "split": "train"}
    source = make_source("voc", root, "train")
    return generate(source, RectGenerator(), out, identity, progress=False).store


def datamodule(root: Path, store: PseudoLabelStore, **more) -> WeakSegDataModule:
    return WeakSegDataModule(
        dataset="voc", root=str(root), pseudo_labels=str(store.path), num_workers=0, **more
    )


def test_the_store_records_the_data_it_labels(voc, tmp_path) -> None:
    store = rect_store(voc, tmp_path / "stores")
    ids = make_source("voc", voc, "train").ids
    assert store.manifest["data"] == {
        "root": str(voc.resolve()),
        "split": "train",
        "num_images": len(ids),
        "ids_sha256": ids_digest(ids),
    }
    assert store.labelled_data()["root"] == str(voc.resolve())


def test_a_store_of_another_root_is_refused_naming_both_unless_declared_the_same(
    voc, tmp_path
) -> None:
    store = rect_store(voc, tmp_path / "stores")
    copy = Path(shutil.copytree(voc, tmp_path / "copy"))  # same ids, same classes
    with pytest.raises(ValueError) as error:
        datamodule(copy, store).setup("fit")
    message = str(error.value)
    assert f"labels {voc.resolve()} split 'train'" in message
    assert f"this run trains on {copy.resolve()} split 'train'" in message
    assert "pseudo_labels_same_data: true" in message
    same = datamodule(copy, store, pseudo_labels_same_data=True)
    same.setup("fit")
    assert "pseudo" in same.train_dataset[0]
    datamodule(voc, store).setup("fit")  # its own data


def test_a_store_written_before_the_data_record_still_loads_and_is_checked(voc, tmp_path) -> None:
    store = rect_store(voc, tmp_path / "stores")
    manifest = json.loads((store.path / MANIFEST_NAME).read_text())
    del manifest["data"]  # as written before stores recorded their data
    (store.path / MANIFEST_NAME).write_text(json.dumps(manifest))
    (store.path / "label_stats.jsonl").unlink()
    datamodule(voc, store).setup("fit")
    copy = Path(shutil.copytree(voc, tmp_path / "copy"))
    with pytest.raises(ValueError, match="split 'train', but this run trains on"):
        datamodule(copy, store).setup("fit")  # the root of its config is the data it labels


def test_the_data_check_reads_every_pseudo_label_and_lists_every_problem(
    voc, tmp_path, capsys
) -> None:
    store = rect_store(voc, tmp_path / "stores")
    ids = make_source("voc", voc, "train").ids
    truncated, missing, small, strange = ids[:4]
    data = store.file_for(truncated).read_bytes()
    store.file_for(truncated).write_bytes(data[: len(data) // 2])
    store.file_for(missing).unlink()
    store.write(small, np.zeros((10, 10), np.uint8))
    odd = store.read(strange)
    odd[0, 0] = 77
    store.write(strange, odd)
    with pytest.raises(DataCheckError) as error:
        require_clean(datamodule(voc, store), progress=False)
    message = str(error.value)
    assert f"{truncated}: pseudo label: " in message and "corrupt pseudo-label PNG" in message
    assert f"{missing}: pseudo label missing from {store.path}" in message
    assert f"{small}: pseudo label {small}.png is 10x10 (HxW), the image 48x64" in message
    assert f"{strange}: pseudo label {strange}.png holds values [77] outside the classes" in message
    assert "4 errors" in message
    skipping = check_datamodule(datamodule(voc, store, skip_missing_pseudo=True), progress=False)
    (train,) = [r for r in skipping if "train" in r.role]
    assert len(train.errors) == 3
    assert any("1 training images have no pseudo label" in w for w in train.warnings)
    config = tmp_path / "run.yaml"
    config.write_text(
        "data:\n  class_path: WeakSegDataModule\n  init_args:\n"
        f"    dataset: voc\n    root: {voc}\n    pseudo_labels: {store.path}\n"
    )
    assert data_main(["check", "--config", str(config), "--no-progress"]) == 1
    assert "4 errors" in capsys.readouterr().out


def test_the_data_check_refuses_a_store_of_other_data(voc, tmp_path) -> None:
    store = rect_store(voc, tmp_path / "stores")
    copy = Path(shutil.copytree(voc, tmp_path / "copy"))
    reports = check_datamodule(datamodule(copy, store), progress=False)
    (train,) = [r for r in reports if "train" in r.role]
    ((where, message),) = train.errors
    assert where == "(pseudo labels)" and f"labels {voc.resolve()}" in message
