"""The CamVid settings on a handful of real frames: the ladder's rows and seeds run end to end.

The ladder itself (every row, two seeds, the recipe's budget) is a benchmark:
``python -m wseg.compare --data camvid`` (``make compare DATA=camvid``).
"""

from pathlib import Path

import pytest
import yaml
from tiny_data import CAMVID, TINY_FIT, camvid_subset

from wseg.compare import main
from wseg.constants import EXPERIMENTS
from wseg.data.datamodule import WeakSegDataModule

pytestmark = pytest.mark.skipif(
    not CAMVID.is_dir(), reason=f"{CAMVID} (the shared CamVid frames) is not beside this checkout"
)
TINY = [
    *TINY_FIT,
    "--trainer.max_steps", "2",
    "--trainer.val_check_interval", "2",
    "--trainer.enable_progress_bar", "false",
]  # fmt: skip


def test_the_camvid_data_section_reads_the_five_present_object_classes() -> None:
    data = yaml.safe_load((EXPERIMENTS / "_shared" / "data_camvid.yaml").read_text())
    datamodule = WeakSegDataModule(**{**data["init_args"], "root": str(CAMVID)})
    source = datamodule.make_source("train")
    assert len(source.ids) == 367 and len(datamodule.make_source("val").ids) == 101
    sample = source.load(0)
    assert sample.size == (360, 480)
    present = {datamodule.class_names[label] for label in sample.labels}
    assert present <= {"pole", "traffic sign", "person", "car", "bicycle"} and present


def test_ladder_rows_and_seeds_run_on_a_handful_of_real_frames(tmp_path: Path) -> None:
    root = camvid_subset(tmp_path / "camvid", {"train": 4, "val": 2})
    out = tmp_path / "bench"
    rows = ["bbox_rect", "bbox_seg"]
    args = ["--data", "camvid", "--root", str(root), "--rows", *rows, "--out", str(out)]
    results = main([*args, "--no-refine", "--no-wandb", "--", *TINY])
    assert [(r.name, r.seed) for r in results] == [(n, s) for n in rows for s in (0, 1)]
    assert all(0.0 <= r.miou <= 100.0 and r.miou_tta is None for r in results)
    # The CRF store is made once and shared by the second seed.
    (first,) = (out / "bbox_seg" / "seed0" / "camvid" / "stores").glob("crf-*")
    assert (out / "bbox_seg" / "seed1" / "camvid" / "stores").is_symlink()
    assert (out / "bbox_seg" / "seed1" / "camvid" / "stores" / first.name).is_dir()
    table = (out / "results.md").read_text()
    assert "| Bbox-Seg (Papandreou 2015) | 2 |" in table
    assert "Bbox-Seg (Papandreou 2015) > Bbox-Rect (weak baseline):" in table
