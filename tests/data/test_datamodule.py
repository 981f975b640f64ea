import inspect
import warnings

import numpy as np
import pytest
import torch
from jsonargparse import ArgumentParser
from lightning import LightningModule, Trainer
from lightning.pytorch.loggers import CSVLogger

from tests.data.fixtures_datamodule import CLASSES, MemorySource
from wseg.data import StrongWeakSampler, WeakSegDataModule
from wseg.data.datasets import SYNTHETIC_CLASSES, DataWarning
from wseg.data.strong_split import load_split, make_strong_split, save_split
from wseg.data.synthetic import generate_synthetic

NUM_TRAIN, NUM_VAL, SIZE = 10, 3, (32, 40)


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    generate_synthetic(root, num_train=NUM_TRAIN, num_val=NUM_VAL, size=SIZE, seed=0)
    return root


def make_dm(root, **kwargs) -> WeakSegDataModule:
    options = {
        "dataset": "synthetic",
        "root": str(root),
        "crop_size": 24,
        "batch_size": 4,
        "num_workers": 0,
        "synthetic_num_train": NUM_TRAIN,
        "synthetic_num_val": NUM_VAL,
        "synthetic_size": SIZE,
    }
    options.update(kwargs)
    return WeakSegDataModule(**options)


class MemoryDataModule(WeakSegDataModule):
    """The datamodule over an in-memory source (no files): mixes images with and without masks."""

    def __init__(self, **kwargs):
        super().__init__(**{"crop_size": 24, "batch_size": 2, "num_workers": 0, **kwargs})
        self._class_names = CLASSES

    def make_source(self, split, evaluation=False):
        return MemorySource(6, prefix=split)


def test_classes_known_at_construction_without_files(tmp_path):
    dm = WeakSegDataModule(dataset="synthetic", root=str(tmp_path / "absent"))
    assert dm.class_names == SYNTHETIC_CLASSES and dm.num_classes == len(SYNTHETIC_CLASSES)
    assert WeakSegDataModule(dataset="voc", root="nowhere").num_classes == 21
    assert WeakSegDataModule(dataset="cityscapes", root="nowhere").num_classes == 12
    assert (
        WeakSegDataModule(dataset="coco", root="nowhere", coco_class_map="coco").num_classes == 81
    )


def test_train_batch_has_exactly_the_design_keys(synthetic_root):
    dm = make_dm(synthetic_root, scribbles="synthesize", num_strong=4)
    dm.prepare_data()
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    C, B = dm.num_classes, 4
    expected = {
        "image",
        "mask",
        "strong",
        "boxes",
        "box_mask",
        "box_label",
        "tags",
        "scribble",
        "id",
    }
    assert set(batch) == expected
    assert batch["image"].shape == (B, 3, 24, 24) and batch["image"].dtype == torch.float32
    for key in ("mask", "box_label", "scribble"):
        assert batch[key].shape == (B, 24, 24) and batch[key].dtype == torch.long, key
    assert batch["box_mask"].shape == (B, C, 24, 24) and batch["box_mask"].dtype == torch.float32
    assert batch["tags"].shape == (B, C) and batch["tags"].dtype == torch.float32
    assert batch["strong"].shape == (B,) and batch["strong"].dtype == torch.bool
    assert len(batch["boxes"]) == B and all(b.shape[1] == 5 for b in batch["boxes"])
    assert all(b.dtype == torch.float32 for b in batch["boxes"])
    assert len(batch["id"]) == B and all(isinstance(i, str) for i in batch["id"])
    # weak labels agree with each other and with the mask
    labelled = batch["scribble"] != 255
    assert torch.equal(batch["scribble"][labelled], batch["mask"][labelled])
    assert torch.equal(batch["tags"][:, 1:], batch["box_mask"][:, 1:].amax((2, 3)))


def test_scribbles_from_the_dataset_and_none(synthetic_root):
    # a crop larger than the image at scale 1 keeps every stroke
    dm = make_dm(synthetic_root, scribbles="dataset", crop_size=48, scale_range=(1.0, 1.0))
    dm.setup("fit")
    item = dm.train_dataset[0]
    raw = dm.train_dataset.source[0].scribble
    assert int((item["scribble"] != 255).sum()) == int((raw != 255).sum()) > 0
    dm = make_dm(synthetic_root)
    dm.setup("fit")
    assert "scribble" not in dm.train_dataset[0]


def test_strong_flags_follow_the_split_and_the_split_is_saved(synthetic_root, tmp_path):
    trainer = Trainer(
        logger=CSVLogger(tmp_path / "logs"), default_root_dir=tmp_path, enable_progress_bar=False
    )
    dm = make_dm(synthetic_root, num_strong=3, split_seed=5)
    dm.trainer = trainer
    dm.setup("fit")
    assert len(dm.strong_ids) == 3
    for index in range(len(dm.train_dataset)):
        item = dm.train_dataset[index]
        assert bool(item["strong"]) == (item["id"] in dm.strong_ids)
    saved = tmp_path / "logs" / "lightning_logs" / "version_0" / "strong_split.txt"
    assert set(load_split(saved)) == dm.strong_ids
    # The same configuration draws the same split; a different seed another one.
    again = make_dm(synthetic_root, num_strong=3, split_seed=5)
    again.setup("fit")
    assert again.strong_ids == dm.strong_ids
    other = make_dm(synthetic_root, num_strong=3, split_seed=6)
    other.setup("fit")
    assert other.strong_ids != dm.strong_ids
    # A different split is never written over the saved one.
    other.trainer = trainer
    with pytest.raises(FileExistsError, match="different id list"):
        other._save_to_run_dir()
    assert set(load_split(saved)) == dm.strong_ids


def test_strong_split_file_is_written_then_loaded(synthetic_root, tmp_path):
    path = tmp_path / "split.txt"
    dm = make_dm(synthetic_root, strong_fraction=0.3, strong_split_file=str(path))
    dm.setup("fit")
    assert set(load_split(path)) == dm.strong_ids and len(dm.strong_ids) == 3
    # A user-given list wins over a new draw.
    save_split_ids = sorted(dm.train_dataset.source.ids)[:2]
    user_file = tmp_path / "user.txt"
    save_split(save_split_ids, user_file)
    loaded = make_dm(synthetic_root, strong_split_file=str(user_file), strong_only=True)
    loaded.setup("fit")
    assert loaded.strong_ids == set(save_split_ids)
    assert len(loaded.train_dataset) == 2
    assert all(bool(loaded.train_dataset[i]["strong"]) for i in range(2))


def test_strong_split_file_with_unknown_ids(synthetic_root, tmp_path):
    path = tmp_path / "bad.txt"
    save_split(["not_an_image"], path)
    dm = make_dm(synthetic_root, strong_split_file=str(path))
    with pytest.raises(ValueError, match="strong_split_file=.*bad.txt.*1 ids that are not"):
        dm.setup("fit")


def test_no_split_means_every_image_is_strong(synthetic_root):
    dm = make_dm(synthetic_root)
    dm.setup("fit")
    assert dm.strong_ids is None
    assert all(bool(dm.train_dataset[i]["strong"]) for i in range(3))


def test_validation_is_full_image(synthetic_root):
    dm = make_dm(synthetic_root, val_batch_size=2)
    dm.setup("validate")
    batches = list(dm.val_dataloader())
    assert sum(len(b["id"]) for b in batches) == NUM_VAL
    batch = batches[0]
    assert batch["image"].shape == (2, 3, *SIZE)
    assert batch["mask"].shape == (2, *SIZE)
    assert "scribble" not in batch and "pseudo" not in batch
    assert batch["strong"].all()
    assert batch["size"].dtype == torch.long and batch["size"].tolist() == [list(SIZE)] * 2


def test_eval_batches_of_different_sizes_carry_each_size():
    sizes = [(40, 48), (28, 36), (36, 24)]

    class Mixed(MemoryDataModule):
        def make_source(self, split, evaluation=False):
            return MemorySource(len(sizes), prefix=split, sizes=sizes)

    dm = Mixed(val_batch_size=2)
    dm.setup("predict")
    batch = next(iter(dm.predict_dataloader()))
    assert batch["image"].shape == (2, 3, 40, 48)
    assert batch["size"].tolist() == [[40, 48], [28, 36]]
    assert (batch["mask"][1, 28:] == 255).all() and (batch["mask"][1, :, 36:] == 255).all()
    assert (batch["mask"][1, :28, :36] != 255).any()
    dm.setup("fit")
    assert "size" not in dm.train_dataset[0]


def test_test_and_predict_default_to_the_validation_split(synthetic_root):
    dm = make_dm(synthetic_root)
    dm.setup("test")
    dm.setup("predict")
    assert len(dm.test_dataset) == len(dm.predict_dataset) == NUM_VAL
    with pytest.raises(RuntimeError, match="setup"):
        make_dm(synthetic_root).train_dataloader()


def test_two_worker_loader_gives_the_same_images(synthetic_root):
    dm = make_dm(synthetic_root, num_workers=2, batch_size=2)
    dm.setup("fit")
    ids = [i for batch in dm.train_dataloader() for i in batch["id"]]
    assert sorted(ids) == sorted(dm.train_dataset.source.ids)


def test_seeded_training_batches_are_reproducible(synthetic_root):
    def first_batch():
        torch.manual_seed(0)
        dm = make_dm(synthetic_root)
        dm.setup("fit")
        return next(iter(dm.train_dataloader()))

    first, second = first_batch(), first_batch()
    assert first["id"] == second["id"]
    torch.testing.assert_close(first["image"], second["image"])


def test_strong_per_batch_fixes_the_share_of_strong_images(synthetic_root):
    dm = make_dm(synthetic_root, num_strong=3, strong_per_batch=1, batch_size=3)
    dm.setup("fit")
    batches = list(dm.train_dataloader())
    assert len(batches) == (NUM_TRAIN - 3) // 2
    for batch in batches:
        assert int(batch["strong"].sum()) == 1
    weak_seen = [i for b in batches for i, s in zip(b["id"], b["strong"]) if not s]
    assert len(set(weak_seen)) == len(weak_seen) == 2 * len(batches)


@pytest.mark.parametrize(("batch_size", "strong_per_batch"), [(4, 1), (3, 3), (2, 0)])
def test_strong_weak_sampler_shards_across_ranks(batch_size, strong_per_batch):
    strong, weak = list(range(8)), list(range(8, 40))
    ranks = 2
    samplers = [
        StrongWeakSampler(strong, weak, batch_size, strong_per_batch, ranks, rank)
        for rank in range(ranks)
    ]
    shards = [list(sampler) for sampler in samplers]
    assert len(shards[0]) == len(shards[1]) == len(samplers[0])
    weak_per_batch = batch_size - strong_per_batch
    pool, per_block = (weak, weak_per_batch) if weak_per_batch else (strong, batch_size)
    assert len(samplers[0]) == batch_size * (len(pool) // (per_block * ranks))
    for shard in shards:
        for start in range(0, len(shard), batch_size):
            batch = shard[start : start + batch_size]
            assert sum(i in strong for i in batch) == strong_per_batch
    weak_items = [i for shard in shards for i in shard if i >= 8]
    assert len(weak_items) == len(set(weak_items))  # ranks see disjoint weak images
    # the epoch counter advances on each pass: a new order, identical for the same epoch
    sampler = samplers[0]
    sampler.set_epoch(3)
    first = list(sampler)
    sampler.set_epoch(3)
    assert list(sampler) == first
    assert list(sampler) != first


def test_strong_weak_sampler_bad_input():
    with pytest.raises(ValueError, match="strong_per_batch=5"):
        StrongWeakSampler([0], [1], 4, 5)
    with pytest.raises(ValueError, match="strong set F is empty"):
        StrongWeakSampler([], [1, 2], 2, 1)
    with pytest.raises(ValueError, match="too few images"):
        StrongWeakSampler([0], [1, 2], 4, 1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_strong": 3, "strong_fraction": 0.5}, "num_strong .*strong_fraction"),
        ({"crop_size": 0}, "crop_size must be positive, got 0"),
        ({"strong_fraction": 1.5}, "strong_fraction must lie in"),
        ({"batch_size": 0}, "batch_size must be >= 1, got 0"),
        ({"strong_per_batch": 9}, "strong_per_batch=9"),
        ({"scale_range": (1.5, 0.5)}, "scale_range"),
        ({"dataset": "coco", "scribbles": "dataset"}, "scribbles='dataset'"),
        ({"dataset": "voc", "scribbles": "dataset"}, "scribble_dir"),
        ({"dataset": "imagenet"}, "dataset must be"),
        ({"strong_only": True}, "strong_only=True, strong_per_batch=None need a strong/weak split"),
        ({"strong_per_batch": 1}, "strong_per_batch=1 need a strong/weak split"),
    ],
)
def test_bad_config_names_the_argument(kwargs, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        make_dm(tmp_path, **kwargs)


def test_num_strong_larger_than_split(synthetic_root):
    dm = make_dm(synthetic_root, num_strong=NUM_TRAIN + 1)
    with pytest.raises(ValueError, match=f"num_strong={NUM_TRAIN + 1}"):
        dm.setup("fit")


def test_unknown_pseudo_store(synthetic_root, tmp_path):
    dm = make_dm(synthetic_root, pseudo_labels=str(tmp_path / "nostore"))
    with pytest.raises(ValueError, match="pseudo_labels=.*nostore"):
        dm.setup("fit")


@pytest.fixture
def store_factory(tmp_path):
    from wseg.data.store import PseudoLabelStore

    def make(ids, kind, num_classes, skip=()):
        store = PseudoLabelStore.create_or_resume(
            tmp_path / "stores", {"generator": "test", "kind": kind}, kind=kind
        )
        for image_id in ids:
            if image_id in skip:
                continue
            if kind == "hard":
                label = np.full(SIZE, 255, np.uint8)
                label[:, : SIZE[1] // 2] = 1
            else:
                label = np.full((num_classes, *SIZE), 1.0 / num_classes, np.float32)
            store.write(image_id, label)
        return store

    return make


@pytest.mark.parametrize("kind", ["hard", "soft"])
def test_pseudo_labels_from_a_store(synthetic_root, store_factory, kind):
    dm = make_dm(synthetic_root)
    ids = dm.make_source("train").ids
    store = store_factory(ids, kind, dm.num_classes)
    dm = make_dm(synthetic_root, pseudo_labels=str(store.path), batch_size=2)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    if kind == "hard":
        assert batch["pseudo"].shape == (2, 24, 24) and batch["pseudo"].dtype == torch.long
        assert set(batch["pseudo"].unique().tolist()) <= {1, 255}
    else:
        assert batch["pseudo"].shape == (2, dm.num_classes, 24, 24)
        sums = batch["pseudo"].sum(1)
        inside = batch["box_label"] != 255
        torch.testing.assert_close(
            sums[inside], torch.ones(int(inside.sum())), rtol=1e-3, atol=1e-3
        )
        assert (sums[~inside] == 0).all()


def test_missing_pseudo_label_fails_or_is_skipped_with_a_count(synthetic_root, store_factory):
    ids = make_dm(synthetic_root).make_source("train").ids
    store = store_factory(ids, "hard", len(SYNTHETIC_CLASSES), skip=set(ids[:2]))
    dm = make_dm(synthetic_root, pseudo_labels=str(store.path))
    with pytest.raises(FileNotFoundError, match=rf"{store.path}.* 2 of {NUM_TRAIN}.*{ids[0]}"):
        dm.setup("fit")
    dm = make_dm(synthetic_root, pseudo_labels=str(store.path), skip_missing_pseudo=True)
    with pytest.warns(DataWarning, match=f"skipping 2 of {NUM_TRAIN}"):
        dm.setup("fit")
    assert len(dm.train_dataset) == NUM_TRAIN - 2


def test_images_without_masks_are_weak_only():
    class HalfMasked(MemoryDataModule):
        def make_source(self, split, evaluation=False):
            source = MemorySource(6, prefix=split)
            load = source.load

            def without_odd_masks(index):
                sample = load(index)
                if index % 2:
                    sample.mask = None
                return sample

            source.load = without_odd_masks
            return source

    dm = HalfMasked()
    dm.setup("fit")
    items = [dm.train_dataset[i] for i in range(6)]
    assert [bool(item["strong"]) for item in items] == [True, False] * 3
    assert all((item["mask"] == 255).all() for item in items[1::2])
    dm = HalfMasked(strong_fraction=1.0)
    dm.setup("fit")
    with pytest.raises(ValueError, match=r"train001.*memory://train001.*strong split but has no"):
        dm.train_dataset[1]


def test_in_memory_source_with_synthesised_scribbles():
    dm = MemoryDataModule(scribbles="synthesize", scribble_width=1)
    dm.setup("fit")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        batch = next(iter(dm.train_dataloader()))
    assert batch["scribble"].shape == (2, 24, 24)
    labelled = batch["scribble"] != 255
    assert labelled.any()
    assert torch.equal(batch["scribble"][labelled], batch["mask"][labelled])


def test_cli_parser_builds_and_documents_every_argument():
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(WeakSegDataModule, "data")
    config = parser.parse_args(["--data.num_strong=3", "--data.scale_range=[0.5, 1.5]"])
    assert config.data.num_strong == 3 and tuple(config.data.scale_range) == (0.5, 1.5)
    docstring = WeakSegDataModule.__doc__
    for name in inspect.signature(WeakSegDataModule).parameters:
        assert f"\n        {name}: " in docstring, name


class _RecordBatches(LightningModule):
    def __init__(self, out_dir):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.out_dir = out_dir

    def training_step(self, batch, batch_idx):
        line = f"{self.global_rank} {int(batch['strong'].sum())} {' '.join(batch['id'])}\n"
        with open(self.out_dir / f"rank{self.global_rank}.txt", "a") as file:
            file.write(line)
        return (self.weight * batch["image"].mean()).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.slow
def test_strong_per_batch_under_ddp_on_cpu(synthetic_root, tmp_path):
    dm = make_dm(synthetic_root, num_strong=4, strong_per_batch=1, batch_size=2)
    trainer = Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp_spawn",
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        default_root_dir=tmp_path,
    )
    trainer.fit(_RecordBatches(tmp_path), datamodule=dm)
    lines = [line.split() for rank in (0, 1) for line in open(tmp_path / f"rank{rank}.txt")]
    strong = make_strong_split(dm.make_source("train").ids, num_strong=4, seed=0)
    assert len(lines) == 2 * ((NUM_TRAIN - 4) // 2)  # two ranks, each a third of W per epoch
    for _, count, *ids in lines:
        assert int(count) == 1 and sum(i in strong for i in ids) == 1
    weak_seen = [i for _, _, *ids in lines for i in ids if i not in strong]
    assert sorted(weak_seen) == sorted(set(dm.make_source("train").ids) - strong)
