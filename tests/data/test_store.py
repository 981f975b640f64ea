import json
import os

import numpy as np
import pytest

import wseg
from wseg.data.store import MANIFEST_NAME, PseudoLabelStore, StoreError, config_hash

CONFIG = {"generator": "rect", "options": {}, "dataset": {"name": "toy", "split": "train"}}


def label(seed: int, size: tuple[int, int] = (5, 7)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 4, size).astype(np.uint8)


def test_create_writes_manifest_and_directory_name(tmp_path):
    store = PseudoLabelStore.create_or_resume(tmp_path, CONFIG, classes=["bg", "a"], num_images=3)
    digest = config_hash(CONFIG)
    assert store.path == tmp_path / f"rect-{digest[:8]}"
    manifest = json.loads((store.path / MANIFEST_NAME).read_text())
    assert manifest["config"] == CONFIG
    assert manifest["config_hash"] == digest
    assert manifest["wseg_version"] == wseg.__version__
    assert manifest["kind"] == "hard"
    assert manifest["classes"] == ["bg", "a"]
    assert manifest["num_images"] == 3
    assert manifest["created"]
    assert store.manifest == manifest


def test_config_hash_ignores_key_order_but_not_values():
    reordered = {"dataset": CONFIG["dataset"], "options": {}, "generator": "rect"}
    assert config_hash(reordered) == config_hash(CONFIG)
    assert config_hash({**CONFIG, "options": {"iterations": 5}}) != config_hash(CONFIG)


def test_hard_round_trip_and_reopen(tmp_path):
    store = PseudoLabelStore.create_or_resume(tmp_path, CONFIG)
    store.write("a", label(0))
    store.write("b", label(1, (3, 2)))
    assert store.has("a") and not store.has("c")
    np.testing.assert_array_equal(store.read("a"), label(0))
    reopened = PseudoLabelStore(store.path)
    assert reopened.ids() == ["a", "b"]
    assert reopened.read("b").dtype == np.uint8
    np.testing.assert_array_equal(reopened.read("b"), label(1, (3, 2)))


def test_soft_round_trip_in_float16(tmp_path):
    store = PseudoLabelStore.create_or_resume(tmp_path, CONFIG, kind="soft")
    probs = np.random.default_rng(0).random((3, 4, 5)).astype(np.float32)
    store.write("x", probs)
    assert store.file_for("x").suffix == ".npz"
    out = store.read("x")
    assert out.dtype == np.float32 and out.shape == (3, 4, 5)
    np.testing.assert_array_equal(out, probs.astype(np.float16).astype(np.float32))


def test_ids_with_slashes_map_to_flat_names_and_back(tmp_path):
    store = PseudoLabelStore.create_or_resume(tmp_path, CONFIG)
    ids = ["aachen/aachen_000000_000019", "a%2Fb", "weird name+ü", "..", "x/../y"]
    for n, image_id in enumerate(ids):
        store.write(image_id, label(n))
    files = sorted(p.name for p in store.path.iterdir() if p.name != MANIFEST_NAME)
    assert len(files) == len(ids)
    assert all("/" not in name for name in files)
    assert all(store.file_for(i).parent == store.path for i in ids)
    assert store.ids() == sorted(ids)
    for n, image_id in enumerate(ids):
        np.testing.assert_array_equal(store.read(image_id), label(n))


def test_resume_keeps_labels_and_new_config_is_new_store(tmp_path):
    first = PseudoLabelStore.create_or_resume(tmp_path, CONFIG)
    first.write("a", label(0))
    mtime = first.file_for("a").stat().st_mtime_ns
    again = PseudoLabelStore.create_or_resume(tmp_path, CONFIG)
    assert again.path == first.path and again.ids() == ["a"]
    assert again.file_for("a").stat().st_mtime_ns == mtime
    other = PseudoLabelStore.create_or_resume(tmp_path, {**CONFIG, "options": {"iterations": 3}})
    assert other.path != first.path and other.ids() == []
    assert first.read("a").shape == (5, 7)


def test_existing_directory_with_other_config_hash_is_refused(tmp_path):
    store = PseudoLabelStore.create_or_resume(tmp_path, CONFIG)
    manifest = json.loads((store.path / MANIFEST_NAME).read_text())
    manifest["config_hash"] = "0" * 64
    (store.path / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(StoreError, match="refusing to mix"):
        PseudoLabelStore.create_or_resume(tmp_path, CONFIG)
    with pytest.raises(StoreError, match=str(store.path)):
        PseudoLabelStore(store.path, expected_hash=config_hash(CONFIG))


def test_kind_mismatch_is_refused(tmp_path):
    PseudoLabelStore.create_or_resume(tmp_path, CONFIG, kind="hard")
    with pytest.raises(StoreError, match="hard labels, not soft"):
        PseudoLabelStore.create_or_resume(tmp_path, CONFIG, kind="soft")


def test_not_a_store(tmp_path):
    with pytest.raises(StoreError, match=f"{tmp_path}.*manifest.json is missing"):
        PseudoLabelStore(tmp_path)
    (tmp_path / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(StoreError, match="unreadable manifest"):
        PseudoLabelStore(tmp_path)


def test_non_empty_directory_without_manifest_is_not_touched(tmp_path):
    target = PseudoLabelStore.directory_for(tmp_path, CONFIG)
    target.mkdir(parents=True)
    (target / "precious.txt").write_text("user data")
    with pytest.raises(StoreError, match="not empty"):
        PseudoLabelStore.create_or_resume(tmp_path, CONFIG)
    assert (target / "precious.txt").read_text() == "user data"


def test_read_errors_name_the_id_and_file(tmp_path):
    store = PseudoLabelStore.create_or_resume(tmp_path, CONFIG)
    with pytest.raises(FileNotFoundError, match="'nope'"):
        store.read("nope")
    store.file_for("bad").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="bad.png.*corrupt"):
        store.read("bad")
    soft = PseudoLabelStore.create_or_resume(tmp_path / "s", CONFIG, kind="soft")
    soft.file_for("bad").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="bad.npz.*corrupt"):
        soft.read("bad")


def test_write_validates_labels(tmp_path):
    store = PseudoLabelStore.create_or_resume(tmp_path, CONFIG)
    with pytest.raises(ValueError, match="integer H,W"):
        store.write("a", np.zeros((3, 3), np.float32))
    with pytest.raises(ValueError, match="0..255"):
        store.write("a", np.full((3, 3), 300, np.int64))
    soft = PseudoLabelStore.create_or_resume(tmp_path / "s", CONFIG, kind="soft")
    with pytest.raises(ValueError, match="float L,H,W"):
        soft.write("a", np.zeros((3, 3), np.float32))
    assert store.ids() == [] and soft.ids() == []


def test_writes_are_atomic_and_stray_temporaries_ignored(tmp_path):
    store = PseudoLabelStore.create_or_resume(tmp_path, CONFIG)
    (store.path / ".tmp-abandoned").write_bytes(b"half a file")
    store.write("a", label(0))
    store.write("a", label(5))  # replacing keeps exactly one file
    names = sorted(os.listdir(store.path))
    assert names == [".tmp-abandoned", "a.png", MANIFEST_NAME]
    assert store.ids() == ["a"]
    np.testing.assert_array_equal(store.read("a"), label(5))
    assert PseudoLabelStore.create_or_resume(tmp_path, CONFIG).ids() == ["a"]


def test_update_manifest(tmp_path):
    store = PseudoLabelStore.create_or_resume(tmp_path, CONFIG)
    store.update_manifest(quality={"miou": 0.5})
    assert PseudoLabelStore(store.path).manifest["quality"] == {"miou": 0.5}
    with pytest.raises(ValueError, match="fixed at creation"):
        store.update_manifest(config={})
