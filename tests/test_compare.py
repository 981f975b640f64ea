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
from tiny_data import TINY_FIT

from wseg.compare import (
    DATASETS,
    ROWS,
    Ordering,
    Row,
    RowResult,
    Spread,
    check,
    check_all,
    data_args,
    format_minutes,
    format_table,
    main,
    rows_for,
    summarise,
    train_row,
)
from wseg.constants import EXPERIMENTS
from wseg.data.synthetic import generate_synthetic
from wseg.pipeline import commands

TINY = [
    "--data.init_args.synthetic_num_train", "6",
    "--data.init_args.synthetic_num_val", "2",
    "--data.init_args.synthetic_size", "[64, 64]",
    *TINY_FIT,
    "--trainer.max_epochs", "1",
    "--trainer.limit_train_batches", "2",
    "--trainer.enable_progress_bar", "false",
]  # fmt: skip


def result(name: str, miou: float, seed: int = 0) -> RowResult:
    return RowResult(name, name, None, miou, miou, miou, seed=seed)


def test_gap_reduction_is_relative_to_the_weak_baseline_and_full_masks() -> None:
    rows = summarise([result("full", 80.0), result("bbox_rect", 60.0), result("other", 75.0)])
    assert [r.gap_reduction for r in rows] == [1.0, 0.0, pytest.approx(0.75)]
    assert "| other | 1 | - | 75.0 | 75.0 | 75.0 | 0.75 |  |" in format_table(rows)
    alone = summarise([result("other", 75.0)])
    assert alone[0].gap_reduction is None


def test_seeds_are_summarised_as_mean_and_sample_std() -> None:
    (row,) = summarise([result("full", 60.0, seed=0), result("full", 62.0, seed=1)])
    assert row.seeds == [0, 1]
    assert row.miou == Spread(61.0, pytest.approx(2**0.5), 2)
    assert "| full | 2 | - | 61.0 ± 1.4 |" in format_table([row])
    refined = RowResult("a", "a", None, 50.0, None, None)
    assert "| a | 1 | - | 50.0 | - | - |" in format_table(summarise([refined]))


def test_an_ordering_holds_only_beyond_the_spread() -> None:
    # seeds: A 64, 66 (std 1.41); B 60, 61 (std 0.71): margin 4.5 > spread 1.41
    rows = summarise(
        [result("a", 64, 0), result("a", 66, 1), result("b", 60, 0), result("b", 61, 1)]
    )
    greater = Ordering(("a",), ">", "b", "test")
    assert "holds (margin +4.5, spread 1.4; test)" in check(greater, rows)
    assert "fails (margin -4.5" in check(Ordering(("b",), ">", "a", "test"), rows)
    assert "fails" in check(Ordering(("b",), ">=", "a", "test"), rows)
    close = summarise([result("a", 60, 0), result("a", 62, 1), result("b", 61.5, 0)])
    assert "within spread" in check(Ordering(("a",), ">", "b", "test"), close)
    assert "holds (within spread)" in check(Ordering(("a",), ">=", "b", "test"), close)
    # the best of several rows against a share of another: max(50, 58) - 0.9 x 60 = +4.0
    best = summarise([result("x", 50), result("y", 58), result("full", 60)])
    line = check(Ordering(("x", "y"), ">=", "full", "test", factor=0.9), best)
    assert line.startswith("y >= 0.9 x full: holds (margin +4.0")
    assert check(Ordering(("z",), ">", "full", "test"), best) is None  # z was not run


def test_the_papers_orderings_are_checked_on_the_rows_run() -> None:
    rows = summarise([result("full", 70), result("bbox_rect", 55), result("bbox_seg", 60)])
    lines = check_all(rows)
    assert any(line.startswith("bbox_seg > bbox_rect: holds") for line in lines)
    assert any("90% of full" in line and "fails" in line for line in lines)  # 60 < 63
    assert not any("selfcorr" in line for line in lines)


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
        assert {"synthetic", "camvid"} <= set(row.setups) <= set(DATASETS) or (
            row.name.endswith("_f25") and set(row.setups) == {"camvid"}
        ), row.name
        for setup in row.setups.values():
            if row.pipeline is None:
                assert (EXPERIMENTS / setup).is_file(), setup
            else:  # the pipeline has the setting, and its run_chain takes the row's options
                module = pipelines[row.pipeline]
                assert setup in module.SETTINGS, (row.name, setup)
                parameters = inspect.signature(module.run_chain).parameters
                assert set(row.pipeline_options) <= set(parameters), row.name
    assert rows_for("tiny_coco") == [
        "full", "bbox_rect", "bbox_seg", "selfcorr_conv", "box2seg", "box2tag"
    ]  # fmt: skip
    assert len(rows_for("camvid")) == len(ROWS)
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
    table = (out / "results.md").read_text()
    assert "Full masks (Supervised)" in table and "Bbox-Rect (weak baseline)" in table
    assert "Bbox-Rect (weak baseline) | 1 |" in table  # one seed on synthetic by default
    with open(out / "results.csv") as handle:
        assert [row["row"] for row in csv.DictReader(handle)] == ["full", "bbox_rect"]
    assert (out / "results.png").stat().st_size > 0
    assert list(out.glob("wandb/offline-run-*/files/results.md"))
    cached = json.loads((out / "full" / "seed0" / "result.json").read_text())
    assert cached["miou"] == full.miou
    stamp = (out / "full" / "seed0" / "full" / "final.ckpt").stat().st_mtime_ns
    # A second seed: seed 0 is read back, seed 1 trains in its own folder with its own seed.
    again = main(["--rows", "full", "--seeds", "0", "1", "--out", str(out), "--no-wandb",
                  "--no-refine", "--", *extra])  # fmt: skip
    assert "seed 0: done" in capsys.readouterr().out
    assert again[0].miou == full.miou and again[1].seed == 1
    assert again[1].miou_tta is None  # --no-refine
    assert (out / "full" / "seed0" / "full" / "final.ckpt").stat().st_mtime_ns == stamp
    (run_config,) = (out / "full" / "seed1" / "full").glob("wseg-demo/*/config.yaml")
    assert yaml.safe_load(run_config.read_text())["seed_everything"] == 1  # what the fit ran
    assert "| Full masks (Supervised) | 2 |" in (out / "results.md").read_text()


def test_seeds_share_the_stores_no_seed_changes(tmp_path: Path) -> None:
    from wseg.compare.runner import share_stores

    first, other = tmp_path / "seed0", tmp_path / "seed1"
    (first / "demo" / "stores" / "crf-1234").mkdir(parents=True)
    (first / "demo" / "pseudo" / "grabcut-5678").mkdir(parents=True)
    (first / "demo" / "final").mkdir(parents=True)  # a stage: never shared
    links = share_stores(first, other)
    assert sorted(p.relative_to(other).as_posix() for p in links) == ["demo/pseudo", "demo/stores"]
    assert (other / "demo" / "stores" / "crf-1234").is_dir()
    assert not (other / "demo" / "final").exists()
    assert share_stores(first, other) == []  # already linked


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
    config = yaml.safe_load((out / "full" / "seed0" / "full" / "config.yaml").read_text())
    assert config["model"]["class_path"].endswith("Supervised")
    assert config["data"]["init_args"]["dataset"] == "voc"
    assert config["data"]["init_args"]["train_split"] == "train_aug"
    for r in (full, rect):
        assert all(0.0 <= value <= 100.0 for value in (r.miou, r.miou_tta, r.miou_tta_crf))


def test_report_run_is_offline_without_wandb_settings(tmp_path: Path) -> None:
    # In a fresh process without WANDB_MODE or a login (wandb caches its settings per process).
    code = (
        "import sys; from pathlib import Path; from wseg.compare import RowResult, log_to_wandb, "
        "summarise, write_outputs; out = Path(sys.argv[1]); runs = [RowResult('full', 'Full', "
        "None, 1, 2, 3)]; rows = summarise(runs); "
        "print(log_to_wandb(rows, write_outputs(rows, runs, out, 'h'), out, 'bench_test'))"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("WANDB_MODE", "WANDB_API_KEY")}
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert list(tmp_path.glob("wandb/offline-run-*/files/results.md"))
