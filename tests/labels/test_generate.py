import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from wseg.data.datasets import make_source
from wseg.data.records import Sample
from wseg.data.store import PseudoLabelStore
from wseg.data.synthetic import generate_synthetic
from wseg.data.weak import rect_labels
from wseg.labels.__main__ import main
from wseg.labels.generate import generate, shard
from wseg.labels.generators import (
    CRFGenerator,
    GrabCutGenerator,
    RectGenerator,
    box_unaries,
    build_generator,
)

NUM_TRAIN = 40


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    generate_synthetic(root, num_train=NUM_TRAIN, num_val=2, size=(48, 64), seed=3, layouts=["voc"])
    return root


def identity(root: Path) -> dict:
    return {"name": "synthetic", "root": str(root), "split": "train"}


def disk_sample() -> tuple[Sample, np.ndarray]:
    rng = np.random.default_rng(0)
    image = np.zeros((48, 64, 3), np.uint8)
    image[:] = (40, 140, 40)
    yy, xx = np.mgrid[:48, :64]
    disk = (yy - 24) ** 2 + (xx - 30) ** 2 < 12**2
    image[disk] = (210, 50, 50)
    image = np.clip(image + rng.integers(-15, 16, image.shape), 0, 255).astype(np.uint8)
    boxes = np.array([[18, 12, 42, 36]], np.float32)
    return Sample("disk", image, disk.astype(np.uint8) * 3, boxes, np.array([3])), disk


def test_build_generator_checks_names_and_options():
    assert build_generator("grabcut", iterations=3).options() == {
        "iterations": 3,
        "context": 1.0,
        "min_size": 5,
        "upsample_to": 0,
        "core": 0.2,
    }
    with pytest.raises(ValueError, match="unknown generator 'snake'.*crf"):
        build_generator("snake")
    with pytest.raises(ValueError, match="no option.*'iters'.*iterations"):
        build_generator("grabcut", iters=3)


def test_crf_generator_config_holds_every_crf_parameter():
    options = CRFGenerator(crf={"iterations": 5}).options()
    assert options["crf"]["iterations"] == 5
    assert {"bilateral_sxy", "bilateral_srgb", "gaussian_sxy"} <= options["crf"].keys()
    assert options["alpha"] == 0.3
    # A partial ``crf`` dict keeps the generator's own departures from DeepLab's parameters.
    assert options["crf"]["bilateral_compat"] == 8.0
    assert CRFGenerator(crf={"bilateral_compat": 4}).options()["crf"]["bilateral_compat"] == 4


def test_box_unaries_hand_computed():
    # Box 6x6 at (2, 2); alpha = 1/9 shrinks it by 1/3 per side to the 2x2 centre (4..6).
    boxes = np.array([[2, 2, 8, 8], [6, 0, 10, 4]], np.float32)
    classes, probs, clamp = box_unaries(boxes, np.array([3, 1]), (10, 10), 1 / 9, 0.5)
    assert classes.tolist() == [0, 1, 3]
    assert probs[:, 0, 0].tolist() == [1.0, 0.0, 0.0]  # outside: background
    assert probs[:, 3, 3].tolist() == [0.5, 0.0, 0.5]  # in box 0 only
    assert probs[:, 1, 8].tolist() == [0.5, 0.5, 0.0]  # in box 1 only
    assert probs[:, 2, 6].tolist() == [0.5, 0.25, 0.25]  # in both
    expected = np.full((10, 10), 255)
    expected[:, :] = np.where(rect_labels(boxes, [3, 1], (10, 10)) > 0, 255, 0)
    expected[4:6, 4:6] = 2  # centre of box 0 -> index of class 3
    # box 1 (4x4, centre 8, 2): shrunk to 4/3 x 4/3 -> [7.33, 8.67) -> pixels 7..8, rows 1..2
    expected[1:3, 7:9] = 1
    np.testing.assert_array_equal(clamp, expected)


@pytest.mark.parametrize("name", ["rect", "grabcut", "crf"])
def test_image_without_boxes_is_all_background(name):
    sample, _ = disk_sample()
    sample.boxes, sample.labels = np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
    label, _ = build_generator(name)(sample, 4)
    assert label.shape == sample.size and not label.any()


def test_rect_generator_is_bbox_rect():
    sample, _ = disk_sample()
    label, counts = RectGenerator()(sample, 4)
    np.testing.assert_array_equal(label, rect_labels(sample.boxes, sample.labels, sample.size))
    assert counts["boxes"] == 1


@pytest.mark.parametrize("backend", ["pydensecrf", "torch"])
def test_crf_generator_beats_the_rectangle_on_a_disk(backend):
    sample, disk = disk_sample()
    label, _ = CRFGenerator(backend=backend)(sample, 4)
    rect = rect_labels(sample.boxes, sample.labels, sample.size) == 3
    iou = ((label == 3) & disk).sum() / ((label == 3) | disk).sum()
    assert iou > 0.9 > (rect & disk).sum() / rect.sum()
    assert (label[~rect] == 0).all()


def test_generate_resume_and_new_config(synthetic, tmp_path):
    source = make_source("synthetic", synthetic, "train")
    summary = generate(source, GrabCutGenerator(), tmp_path, identity(synthetic), progress=False)
    store = summary.store
    assert sorted(summary.generated) == sorted(source.ids) == store.ids()
    assert store.manifest["config"]["options"] == GrabCutGenerator().options()
    run = store.manifest["runs"][-1]
    assert run["generated"] == NUM_TRAIN and run["stats"]["boxes"] == summary.stats["boxes"] > 0
    again = generate(source, GrabCutGenerator(), tmp_path, identity(synthetic), progress=False)
    assert again.generated == [] and again.skipped == NUM_TRAIN and again.store.path == store.path
    other = generate(
        source, GrabCutGenerator(iterations=2), tmp_path, identity(synthetic), 2, False
    )
    assert other.store.path != store.path and len(other.generated) == NUM_TRAIN


def test_worker_pool_equals_serial_run(synthetic, tmp_path):
    source = make_source("synthetic", synthetic, "train")
    serial = generate(source, GrabCutGenerator(), tmp_path / "a", identity(synthetic), 1, False)
    pooled = generate(source, GrabCutGenerator(), tmp_path / "b", identity(synthetic), 2, False)
    assert serial.stats == pooled.stats
    for image_id in source.ids:
        np.testing.assert_array_equal(serial.store.read(image_id), pooled.store.read(image_id))


def test_shard():
    items = list(range(7))
    assert shard(items, 0, 3) == [0, 3, 6] and shard(items, 2, 3) == [2, 5]
    assert sorted(shard(items, 0, 2) + shard(items, 1, 2)) == items
    with pytest.raises(ValueError, match="rank 2"):
        shard(items, 2, 2)


KILLED_RUN = """
import sys, time
from wseg.data.datasets import make_source
from wseg.data.records import SegmentationSource
from wseg.labels.generate import generate
from wseg.labels.generators import GrabCutGenerator

class SlowDisk(SegmentationSource):
    # The real reader behind a slow disk, so that the run can be killed half-way.
    def __init__(self, source):
        self.source, self.classes = source, source.classes

    @property
    def ids(self):
        return self.source.ids

    def load(self, index):
        time.sleep(0.15)
        return self.source.load(index)

if __name__ == "__main__":  # the pool's workers are spawned: they import this file
    root, out = sys.argv[1], sys.argv[2]
    identity = {"name": "synthetic", "root": root, "split": "train"}
    source = SlowDisk(make_source("synthetic", root, "train"))
    generate(source, GrabCutGenerator(), out, identity, 2)
"""


def test_killed_generation_resumes_with_only_the_missing_ids(synthetic, tmp_path):
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(KILLED_RUN))
    out = tmp_path / "stores"
    config = {"generator": "grabcut", "options": GrabCutGenerator().options()}
    store_dir = PseudoLabelStore.directory_for(out, {**config, "dataset": identity(synthetic)})
    log = (tmp_path / "log.txt").open("w")
    process = subprocess.Popen(
        [sys.executable, str(script), str(synthetic), str(out)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: the pool workers die with it
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if store_dir.is_dir() and len(list(store_dir.glob("*.png"))) >= 6:
            break
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    time.sleep(0.2)
    assert process.returncode == -signal.SIGKILL, (tmp_path / "log.txt").read_text()
    before = {p.name: (p.stat().st_mtime_ns, p.stat().st_ino) for p in store_dir.glob("*.png")}
    assert 6 <= len(before) < NUM_TRAIN
    store = PseudoLabelStore(store_dir)
    done = set(store.ids())
    assert all(store.read(i).shape == (48, 64) for i in done)  # no truncated file
    assert store.manifest["runs"] == []  # the killed run never finished

    source = make_source("synthetic", synthetic, "train")
    summary = generate(source, GrabCutGenerator(), out, identity(synthetic), progress=False)
    assert summary.store.path == store_dir
    assert set(summary.generated) == set(source.ids) - done
    assert summary.skipped == len(done)
    after = {p.name: (p.stat().st_mtime_ns, p.stat().st_ino) for p in store_dir.glob("*.png")}
    assert {name: after[name] for name in before} == before  # earlier labels untouched
    assert PseudoLabelStore(store_dir).manifest["runs"][-1]["generated"] == NUM_TRAIN - len(done)

    reference = generate(
        source, GrabCutGenerator(), tmp_path / "ref", identity(synthetic), 1, False
    )
    for image_id in source.ids:
        np.testing.assert_array_equal(summary.store.read(image_id), reference.store.read(image_id))
    # The killed run's statistics (GrabCut's fallback counts) are kept, as an interrupted run.
    killed, resumed = PseudoLabelStore(store_dir).manifest["runs"]
    assert killed["interrupted"] and killed["generated"] == len(done)
    total = Counter(killed["stats"])
    total.update(resumed["stats"])  # (update keeps zero counts, + would drop them)
    assert dict(total) == reference.stats and total["boxes"] > 0


DDP_RUN = """
import sys
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from wseg.data.datasets import make_source
from wseg.labels.generate import generate
from wseg.labels.generators import RectGenerator

def run(rank, root, out, rendezvous):
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=2)
    identity = {"name": "synthetic", "root": root, "split": "train"}
    summary = generate(make_source("synthetic", root, "train"), RectGenerator(), out, identity,
                       progress=False)
    with open(f"{out}/rank{rank}.txt", "w") as handle:
        handle.write("\\n".join(summary.generated))
    dist.destroy_process_group()

if __name__ == "__main__":
    mp.spawn(run, args=tuple(sys.argv[1:]), nprocs=2)
"""


@pytest.mark.slow
def test_distributed_ranks_take_their_shards(synthetic, tmp_path):
    script = tmp_path / "ddp.py"
    script.write_text(textwrap.dedent(DDP_RUN))
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run(
        [sys.executable, str(script), str(synthetic), str(out), str(tmp_path / "rendezvous")],
        check=True,
        timeout=300,
    )
    ids = make_source("synthetic", synthetic, "train").ids
    for rank in range(2):
        assert (out / f"rank{rank}.txt").read_text().split("\n") == ids[rank::2]
    (store_dir,) = [p for p in out.iterdir() if p.is_dir()]
    store = PseudoLabelStore(store_dir)
    assert store.ids() == sorted(ids)
    (run,) = store.manifest["runs"]
    assert run["generated"] == NUM_TRAIN and run["world_size"] == 2


def test_command_line_generate_and_report(synthetic, tmp_path, capsys):
    out = tmp_path / "stores"
    main(
        ["generate", "--dataset", "synthetic", "--root", str(synthetic), "--generator", "rect"]
        + ["--out", str(out), "--workers", "1"]
    )
    printed = capsys.readouterr().out
    (store_dir,) = list(out.iterdir())
    assert f"generated {NUM_TRAIN}" in printed and "mIoU" in printed
    quality = json.loads((store_dir / "manifest.json").read_text())["quality"]
    assert quality["images"] == NUM_TRAIN and 0 < quality["miou"] < 1
    main(["report", str(store_dir)])
    assert f"mIoU {100 * quality['miou']:5.1f}" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="no option"):
        main(
            ["generate", "--dataset", "synthetic", "--root", str(synthetic), "--generator"]
            + ["grabcut", "--out", str(out), "-o", "iters=3"]
        )
