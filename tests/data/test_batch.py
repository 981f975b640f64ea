"""The `Batch` TypedDict states the keys of the datamodule's real batches."""

from wseg.data import Batch, WeakSegDataModule


def make_dm(root, **kwargs) -> WeakSegDataModule:
    options = {
        "dataset": "synthetic",
        "root": str(root),
        "crop_size": 24,
        "batch_size": 2,
        "val_batch_size": 2,
        "num_workers": 0,
        "synthetic_num_train": 6,
        "synthetic_num_val": 3,
        "synthetic_size": (48, 64),
    }
    return WeakSegDataModule(**{**options, **kwargs})


def test_batch_declares_the_required_and_optional_keys():
    assert Batch.__required_keys__ == {
        "image", "mask", "strong", "boxes", "box_mask", "box_label", "tags", "id",
    }  # fmt: skip
    assert Batch.__optional_keys__ == {"scribble", "pseudo", "size"}


def test_a_plain_training_batch_has_exactly_the_required_keys(synthetic_root):
    dm = make_dm(synthetic_root)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == Batch.__required_keys__


def test_scribble_and_validation_batches_hold_only_declared_keys(synthetic_root):
    declared = Batch.__required_keys__ | Batch.__optional_keys__
    dm = make_dm(synthetic_root, scribbles="synthesize")
    dm.setup("fit")
    train = next(iter(dm.train_dataloader()))
    assert Batch.__required_keys__ <= set(train) <= declared
    assert "scribble" in train
    val = next(iter(dm.val_dataloader()))
    assert Batch.__required_keys__ <= set(val) <= declared
    assert "size" in val
