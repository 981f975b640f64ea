"""The method-table benchmarks run end to end at a tiny budget and print their tables.

They are measured by hand (``make bench-methods``) at budgets of tens of minutes; these runs only
check that each command still trains, evaluates and prints every row, so a refactor of the
library cannot break them silently. The self-correction chain (six CLI fits, about 90 s) runs with
the slow tests (``make test-slow``).
"""

import argparse
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_data import CAMVID, camvid_subset

from benchmarks import dataset_root, describe_data, fit_timed, segmentation_data, val_miou
from wseg.data.datamodule import WeakSegDataModule
from wseg.methods import Supervised

REPO = Path(__file__).resolve().parents[1]


def run_benchmark(name: str, *args: str) -> str:
    """``python -m benchmarks.NAME ARGS`` from the repository root; its stdout (it must exit 0)."""
    done = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{name}", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def percent_after(text: str, marker: str) -> float:
    """The number that follows ``marker`` in ``text``; it must be a percentage."""
    value = float(text.split(marker, 1)[1].split()[0])
    assert 0.0 <= value <= 100.0, f"{marker} {value}"
    return value


def test_helpers_train_and_validate_a_model_on_the_synthetic_set(tmp_path) -> None:
    args = argparse.Namespace(data="synthetic", root=None, size=32, train_images=4, val_images=2)
    root = dataset_root(args, tmp_path)
    datamodule = WeakSegDataModule(**segmentation_data(args, root), batch_size=2, num_workers=0)
    assert len(datamodule.make_source("train")) == 4
    assert len(datamodule.make_source("val")) == 2
    model = Supervised(
        num_classes=datamodule.num_classes,
        class_names=list(datamodule.class_names),
        encoder="tu-mobilenetv3_small_050",
        encoder_weights=None,
        log_images_every_n_epochs=0,
    )
    seconds = fit_timed(model, datamodule, steps=2, root_dir=tmp_path / "fit")
    assert seconds > 0.0
    assert model.trainer.global_step == 2
    assert 0.0 <= val_miou(model, datamodule) <= 100.0
    assert describe_data(args, 4) == "Synthetic: 4 train / 2 val, 32 px"


def test_tiny_coco_arguments_are_accepted_by_the_datamodule(tmp_path) -> None:
    args = argparse.Namespace(data="tiny_coco", root=str(tmp_path), size=96)
    options = segmentation_data(args, dataset_root(args, tmp_path))
    datamodule = WeakSegDataModule(**options)
    assert (datamodule.dataset, datamodule.train_split, datamodule.crop_size) == (
        "coco",
        "train2017",
        96,
    )
    assert describe_data(args, 50) == "tiny_coco: 50 train2017 photos, val2017, 96 px crops"


TINY = ["--train-images", "4", "--val-images", "2", "--size", "32", "--batch-size", "2"]


def test_em_family_benchmark_prints_label_quality_and_every_method(tmp_path) -> None:
    out = run_benchmark(
        "em_family", *TINY, "--steps", "1", "--warmup-steps", "1",
        "--methods", "bbox_rect", "bbox_em_fixed", "--num-strong", "2", "--out", str(tmp_path),
    )  # fmt: skip
    percent_after(out, "Bbox-Rect")
    percent_after(out, "Bbox-Seg (CRF from boxes)")
    for method in ("bbox_rect", "bbox_em_fixed"):
        percent_after(out, f"{method}: val mIoU")


def test_box2seg_benchmark_prints_each_row_with_its_attention(tmp_path) -> None:
    out = run_benchmark(
        "box2seg_ablation", *TINY, "--steps", "1", "--pretrain-steps", "1",
        "--rows", "grabcut", "box2seg", "--out", str(tmp_path),
    )  # fmt: skip
    percent_after(out, "GrabCut")
    percent_after(out, "grabcut: val mIoU")
    percent_after(out, "box2seg: val mIoU")
    # Only rows with an attention branch have an alpha; Box2Seg's is a probability.
    assert "mean alpha in boxes nan" in out.split("grabcut: val mIoU", 1)[1].splitlines()[0]
    alpha = float(out.split("box2seg: val mIoU", 1)[1].split("mean alpha in boxes ")[1][:5])
    assert 0.0 <= alpha <= 1.0


def test_box2tag_benchmark_prints_both_tables(tmp_path) -> None:
    out = run_benchmark(
        "box2tag_pseudo_gt", "--train-images", "4", "--size", "48", "48", "--crop-size", "32",
        "--batch-size", "2", "--steps", "1", "--out", str(tmp_path),
    )  # fmt: skip
    # The default weight is the paper's 100 scaled to the crop side: 100 x 32 / 256.
    assert "lambda_crf 12.5 at 32-px crops" in out
    for row in ("Box2Tag tight+neg", "grabcut", "crf"):
        assert any(line.startswith(row) for line in out.splitlines()), row
    for rule in ("overlap-small", "overlap-void", "overlap-back-void"):
        percent_after(out, rule)


def test_box2tag_budget_benchmark_prints_a_row_per_variant_and_budget() -> None:
    out = run_benchmark(
        "box2tag_budget", "--train-images", "6", "--size", "48", "48", "--crop-size", "32",
        "--batch-size", "2", "--steps", "1", "2", "--variants", "paper", "chosen",
    )  # fmt: skip
    rows = [line.split("|")[1:-1] for line in out.splitlines() if line.startswith("| ")]
    names = [(row[0].strip(), row[1].strip()) for row in rows[1:]]
    assert names == [("grabcut", "-"), ("box", "-"), ("paper", "1"), ("paper", "2"),
                     ("chosen", "1"), ("chosen", "2")]  # fmt: skip
    assert all(0.0 <= float(row[2]) <= 100.0 for row in rows[1:])


def test_pseudo_label_quality_benchmark_prints_every_generator_and_box2tag_budget(
    tmp_path,
) -> None:
    out = run_benchmark(
        "pseudo_label_quality", "--datasets", "synthetic", "--synthetic-images", "4",
        "--workers", "1", "--box2tag-steps", "1", "2", "--crop-size", "32",
        "--out", str(tmp_path),
    )  # fmt: skip
    # columns: dataset (20 wide), labels (13 wide), images, boxes, mIoU, F-beta, ...
    rows = {
        line[21:34].strip(): line[34:].split()
        for line in out.splitlines()
        if line.startswith("synthetic ")
    }
    # the trend: one Box2Tag row per budget
    expected = {"rect", "grabcut (old)", "grabcut", "crf (old)", "crf", "box2tag 1", "box2tag 2"}
    assert set(rows) == expected, out
    for name, values in rows.items():
        miou, fbeta = float(values[2]), float(values[3])
        assert 0.0 <= miou <= 100.0 and 0.0 <= fbeta <= 100.0, (name, values)
    assert "x old" in out and "F 76.7 [1]" in out


def test_scribbles_benchmark_prints_the_local_pam_table(tmp_path) -> None:
    out = run_benchmark(
        "scribbles", "--images", "3", "--coco-root", str(tmp_path / "no_coco"),
        "--potts-max-iter", "5", "--workers", "1", "--out", str(tmp_path),
    )  # fmt: skip
    rows = [line for line in out.splitlines() if line.startswith("| synthetic |")]
    assert rows, out
    for row in rows:
        assert 0.0 <= float(row.split("|")[5]) <= 100.0, row


@pytest.mark.slow
def test_self_correction_benchmark_prints_every_model_and_target(tmp_path) -> None:
    out = run_benchmark(
        "self_correction", "--steps", "2", "--batch-size", "2", "--val-every", "2",
        "--target-images", "2", "--out", str(tmp_path),
    )  # fmt: skip
    for label in ("No self-correction", "Linear self-correction", "Conv self-correction"):
        percent_after(out, label)
    for target in ("no SC: argmax p_anc", "conv SC at the end: q_conv"):
        percent_after(out, target)
    assert "conv >= no self-correction:" in out


@pytest.mark.skipif(not CAMVID.is_dir(), reason=f"{CAMVID} (the shared CamVid frames) is absent")
def test_camvid_recipe_records_a_validation_curve(tmp_path) -> None:
    root = camvid_subset(tmp_path / "camvid", {"train": 2, "val": 1})
    tiny = ["--data.init_args.crop_size", "64", "--data.init_args.batch_size", "2"]
    tiny += ["--data.init_args.num_workers", "0", "--model.init_args.encoder_weights", "null"]
    tiny += ["--model.init_args.encoder", "tu-mobilenetv3_small_050"]
    tiny += ["--trainer.max_steps", "2", "--trainer.val_check_interval", "1"]
    out = tmp_path / "recipe"
    args = ["--root", str(root), "--variants", "adamw", "--out", str(out), "--", *tiny]
    table = run_benchmark("camvid_recipe", *args)
    rows = [line for line in table.splitlines() if line.startswith("| adamw |")]
    assert [row.split(" | ")[2] for row in rows] == ["1", "2"]  # a row per validation: its step
    assert all(0.0 <= float(row.split(" | ")[4]) <= 100.0 for row in rows)  # val mIoU
    assert (out / "recipe.md").read_text().splitlines()[2:] == rows
