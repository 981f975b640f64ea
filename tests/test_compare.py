"""`python -m wseg.compare`: rows train through the CLI, validate three ways, cache, resume."""

import csv
import inspect
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from wseg.compare import (
    DATASETS,
    ROWS,
    Row,
    RowResult,
    add_gap_reduction,
    data_args,
    format_minutes,
    format_table,
    main,
    train_row,
)
from wseg.constants import EXPERIMENTS
from wseg.data.synthetic import generate_synthetic
from wseg.pipeline import commands

TINY = [
    "--data.init_args.synthetic_num_train", "6",
    "--data.init_args.synthetic_num_val", "2",
    "--data.init_args.synthetic_size", "[64, 64]",
    "--data.init_args.crop_size", "64",
    "--data.init_args.batch_size", "2",
    "--data.init_args.val_batch_size", "2",
    "--data.init_args.num_workers", "0",
    "--model.init_args.encoder", "tu-mobilenetv3_small_050",
    "--model.init_args.encoder_weights", "null",
    "--trainer.max_epochs", "1",
    "--trainer.limit_train_batches", "2",
    "--trainer.enable_progress_bar", "false",
]  # fmt: skip


def result(name: str, miou: float) -> RowResult:
    return RowResult(name, name, None, miou, miou, miou)


def test_gap_reduction_is_relative_to_the_weak_baseline_and_full_masks() -> None:
    rows = [result("full", 80.0), result("bbox_rect", 60.0), result("other", 75.0)]
    add_gap_reduction(rows)
    assert [r.gap_reduction for r in rows] == [1.0, 0.0, pytest.approx(0.75)]
    assert "| other | - | 75.0 | 75.0 | 75.0 | 0.75 |  |" in format_table(rows)
    alone = [result("other", 75.0)]
    add_gap_reduction(alone)
    assert alone[0].gap_reduction is None


def test_the_table_folds_box2tag_class_stages_into_one_entry() -> None:
    minutes = {"class_cat": 0.71, "class_dog": 1.12, "class_cow": 0.9, "final_overlap_void": 2.9}
    assert format_minutes(minutes) == "3 classes 0.7-1.1 (2.7 in all), final_overlap_void 2.9"
    assert format_minutes({"class_cat": 0.5, "final": 1.0}) == "class_cat 0.5, final 1.0"
    assert format_minutes({"class_a": 0.2, "class_b": 0.21}) == "2 classes 0.2 (0.4 in all)"
    assert format_minutes({"pretrain": 1.4, "main": 1.4}) == "pretrain 1.4, main 1.4"


def test_every_row_has_a_runnable_setup_for_every_dataset() -> None:
    assert data_args(None) == [] and data_args("/data/coco") == [
        "--data.init_args.root",
        "/data/coco",
    ]
    pipelines = commands()
    for row in ROWS.values():
        assert set(row.setups) == set(DATASETS), row.name
        for setup in row.setups.values():
            if row.pipeline is None:
                assert (EXPERIMENTS / setup).is_file(), setup
            else:  # the pipeline has the setting, and its run_chain takes the row's options
                module = pipelines[row.pipeline]
                assert setup in module.SETTINGS, (row.name, setup)
                parameters = inspect.signature(module.run_chain).parameters
                assert set(row.pipeline_options) <= set(parameters), row.name
    tiny_coco = [ROWS[name].setups["tiny_coco"] for name in ("full", "bbox_rect")]
    for config in tiny_coco:
        data = yaml.safe_load((EXPERIMENTS / config).read_text())["data"]
        assert data == "_shared/data_tiny_coco.yaml"


def test_a_row_without_a_setup_for_the_data_is_an_error(tmp_path: Path) -> None:
    row = Row("only_synthetic", "Only synthetic", {"synthetic": "demo/supervised.yaml"})
    with pytest.raises(ValueError, match="no setup for 'tiny_coco'"):
        train_row(row, "tiny_coco", tmp_path, [])


def test_two_rows_end_to_end_then_read_back(tmp_path: Path, capsys) -> None:
    out = tmp_path / "bench"
    extra = ["--data.init_args.root", str(tmp_path / "syn"), *TINY]
    results = main(["--rows", "full", "bbox_rect", "--out", str(out), "--", *extra])
    full, rect = results
    assert full.label_miou is None and 0.0 <= rect.label_miou <= 100.0
    for r in results:
        assert all(0.0 <= value <= 100.0 for value in (r.miou, r.miou_tta, r.miou_tta_crf))
        assert set(r.stage_minutes) == {r.name} and r.stage_minutes[r.name] > 0
    # Two-step models may tie (no gap to reduce); the formula is tested above.
    assert (full.gap_reduction, rect.gap_reduction) in {(1.0, 0.0), (None, None)}
    table = (out / "results.md").read_text()
    assert "Full masks (Supervised)" in table and "Bbox-Rect (weak baseline)" in table
    with open(out / "results.csv") as handle:
        assert [row["row"] for row in csv.DictReader(handle)] == ["full", "bbox_rect"]
    assert (out / "results.png").stat().st_size > 0
    assert list(out.glob("wandb/offline-run-*/files/results.md"))
    cached = json.loads((out / "full" / "result.json").read_text())
    assert cached["miou"] == full.miou
    stamp = (out / "full" / "full" / "final.ckpt").stat().st_mtime_ns
    again = main(["--rows", "full", "--out", str(out), "--no-wandb", "--", *extra])
    assert "read back" in capsys.readouterr().out
    assert again[0].miou == full.miou
    assert (out / "full" / "full" / "final.ckpt").stat().st_mtime_ns == stamp


def test_voc_rows_run_the_papers_experiments_on_a_voc_layout(tmp_path: Path) -> None:
    # The VOC YAMLs (GPU budgets, resnet101, mixed precision) on tiny data in the VOC layout,
    # scaled down from the command line as a user would for a dry run.
    root = generate_synthetic(tmp_path / "syn", num_train=6, num_val=2, size=(64, 64)) / "voc"
    splits = root / "ImageSets" / "Segmentation"
    shutil.copy(splits / "train.txt", splits / "train_aug.txt")  # SBD's list, as the YAML reads
    extra = ["--data.init_args.root", str(root), *TINY[6:], "--trainer.accelerator", "cpu"]
    extra += ["--trainer.devices", "1", "--trainer.precision", "32", "--trainer.max_steps", "2"]
    out = tmp_path / "bench"
    extra += ["--trainer.val_check_interval", "2", "--trainer.logger.init_args.save_dir", str(out)]
    full, rect = main(["--data", "voc", "--rows", "full", "bbox_rect", "--out", str(out),
                       "--no-wandb", "--", *extra])  # fmt: skip
    assert 0.0 <= rect.label_miou <= 100.0
    config = yaml.safe_load((out / "full" / "full" / "config.yaml").read_text())
    assert config["model"]["class_path"].endswith("Supervised")
    assert config["data"]["init_args"]["dataset"] == "voc"
    assert config["data"]["init_args"]["train_split"] == "train_aug"
    for r in (full, rect):
        assert all(0.0 <= value <= 100.0 for value in (r.miou, r.miou_tta, r.miou_tta_crf))


def test_report_run_is_offline_without_wandb_settings(tmp_path: Path) -> None:
    # In a fresh process without WANDB_MODE or a login (wandb caches its settings per process).
    code = (
        "import sys; from pathlib import Path; from wseg.compare import RowResult, log_to_wandb, "
        "write_outputs; out = Path(sys.argv[1]); rows = [RowResult('full', 'Full', None, 1, 2, 3)];"
        " print(log_to_wandb(rows, write_outputs(rows, out, 'h'), out, 'bench_test'))"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("WANDB_MODE", "WANDB_API_KEY")}
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert list(tmp_path.glob("wandb/offline-run-*/files/results.md"))
