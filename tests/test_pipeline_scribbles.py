"""The scribble gap study command: settings, Table 1 arithmetic, outputs, and a tiny full chain."""

import csv
from pathlib import Path

import pytest
import yaml
from tiny_data import data_args, synthetic

from tests.data.test_scribbles import ScribbleSource
from wseg.compare import validate
from wseg.data.strong_split import load_split
from wseg.labels.quality import scribble_miou
from wseg.pipeline import commands
from wseg.pipeline.__main__ import main
from wseg.pipeline.evaluation import load_method
from wseg.pipeline.scribble_table import (
    format_markdown,
    gap_table,
    key_findings,
    plot_table,
    write_csv,
)
from wseg.pipeline.scribbles import ROWS, SETTINGS, training_source

TINY = synthetic(6)


def tiny_args(root: Path) -> list[str]:
    return data_args(root, TINY)


def test_command_settings_and_rows() -> None:
    assert "scribbles" in commands()
    assert all(p.is_file() for s in SETTINGS.values() for p in (s.full, s.weak, s.pfa))
    assert all(set(s.rows) <= set(ROWS) for s in SETTINGS.values())
    assert list(ROWS) == [
        "local",
        "local_potts",
        "global_potts",
        "global_crf",
        "combined",
        "combined_potts",
        "combined_crf",
    ]
    assert SETTINGS["voc_original"].rows == ("combined_potts", "combined_crf")
    assert SETTINGS["voc"].potts_max_iter == 1000 and SETTINGS["demo"].potts_max_iter == 200
    weak = yaml.safe_load(SETTINGS["voc"].weak.read_text())
    assert weak["model"]["init_args"]["target"] == "scribble"
    assert SETTINGS["voc"].curated and not SETTINGS["voc_original"].curated


def test_gap_table_hand_computed() -> None:
    full = {"pfa": 1.0, "train": 0.9, "val": 0.8}
    weak = {"pfa": 1.0, "train": 0.7, "val": 0.6}
    rows = {
        "combined": {"pfa": 0.85, "train": 0.8, "val": 0.7},
        "local": {"pfa": 0.5, "train": 0.55, "val": 0.5},
    }
    table = gap_table(full, weak, rows)
    assert [e["row"] for e in table] == ["HFA", "WA", "combined", "local"]
    assert table[0]["reduction"] is None and table[1]["full_gap"] is None
    combined, local = table[2], table[3]
    assert combined["pfa"] == pytest.approx(85.0) and combined["val"] == pytest.approx(70.0)
    assert combined["full_gap"] == pytest.approx(20.0)
    assert combined["remaining_gap"] == pytest.approx(10.0)
    assert combined["reduction"] == pytest.approx(50.0)  # (20 - 10) / 20
    assert local["remaining_gap"] == pytest.approx(30.0)
    assert local["reduction"] == pytest.approx(-50.0)  # (20 - 30) / 20
    no_gap = gap_table(full, dict(weak, val=0.8), rows)
    assert no_gap[2]["reduction"] is None


def test_key_findings_compare_combined_with_global_alone() -> None:
    full = {"pfa": 1.0, "train": 0.9, "val": 0.8}
    weak = {"pfa": 1.0, "train": 0.7, "val": 0.6}
    rows = {
        "combined": {"pfa": 0.75, "train": 0.8, "val": 0.59},
        "global + CRF": {"pfa": 0.8, "train": 0.8, "val": 0.65},
        "combined + CRF": {"pfa": 0.85, "train": 0.8, "val": 0.7},
    }
    assert key_findings(gap_table(full, weak, rows)) == [
        "combined vs global (WA network): PFA 75.0 vs 70.0 (holds), val 59.0 vs 60.0 "
        "(does not hold)",
        "combined + CRF vs global + CRF: PFA 85.0 vs 80.0 (holds), val 70.0 vs 65.0 (holds)",
    ]


def test_markdown_csv_and_plot(tmp_path: Path) -> None:
    full = {"pfa": 1.0, "train": 0.9, "val": 0.8}
    weak = {"pfa": 0.954, "train": 0.7, "val": 0.6}
    table = gap_table(full, weak, {"combined + CRF": {"pfa": 0.839, "train": 0.776, "val": 0.7}})
    markdown = format_markdown(table).splitlines()
    assert markdown[0].startswith("| row | PFA mIoU (train) |") and len(markdown) == 5
    assert markdown[3] == "| WA | 95.4 | 70.0 | 60.0 | n/a | n/a | n/a |"
    assert markdown[4] == "| combined + CRF | 83.9 | 77.6 | 70.0 | 20.0 | 10.0 | 50.0 |"
    write_csv(table, tmp_path / "t.csv")
    with (tmp_path / "t.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert rows[1]["reduction"] == "" and float(rows[2]["reduction"]) == 50.0
    plot_table(table, tmp_path / "t.png", "test")
    assert (tmp_path / "t.png").stat().st_size > 1000


def test_scribble_miou_hand_computed() -> None:
    options = {"scribbles": "dataset", "scribble_width": 3, "scribble_seed": 0, "curated": False}
    # Background 18/18; class 1: 12 right, 6 tagged 2; class 2: 12 right, 6 wrongly added.
    assert scribble_miou(ScribbleSource(), options, progress=False) == pytest.approx(7 / 9)
    curated = dict(options, curated=True)
    assert scribble_miou(ScribbleSource(), curated, progress=False) == pytest.approx(1.0)


def test_load_method_needs_a_finished_stage(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no final checkpoint"):
        load_method(tmp_path)


def test_training_source_saves_the_curated_ids(tmp_path: Path) -> None:
    data = {
        "dataset": "synthetic",
        "root": str(tmp_path / "syn"),
        **TINY,
        "scribbles": "synthesize",
        "curated_scribbles": True,
        "num_strong": 2,
        "pseudo_labels": "somewhere",
    }
    train, val = training_source(data, tmp_path, progress=False)
    ids = load_split(tmp_path / "curated_ids.txt")
    assert 0 < len(train) <= 6 and sorted(train.ids) == ids and len(val) == 2
    (tmp_path / "curated_ids.txt").write_text(f"{ids[0]}\n")
    assert training_source(data, tmp_path, progress=False)[0].ids == [ids[0]]


def test_dry_run_writes_the_baseline_configs(tmp_path: Path, capsys) -> None:
    out = tmp_path / "runs"
    assert main(["scribbles", "--setting", "demo", "--out", str(out), "--dry-run"]) == []
    printed = capsys.readouterr().out
    assert "hfa: " in printed and "wa: " in printed
    weak = yaml.safe_load((out / "demo" / "wa" / "config.yaml").read_text())
    assert weak["model"]["class_path"] == "ScribblePAM"
    assert weak["data"]["init_args"]["curated_scribbles"] is True
    full = yaml.safe_load((out / "demo" / "hfa" / "config.yaml").read_text())
    assert "curated_scribbles" not in full["data"]["init_args"]
    with pytest.raises(ValueError, match="unknown rows"):
        main(["scribbles", "--setting", "demo", "--out", str(out), "--rows", "local,tv"])


@pytest.mark.slow
def test_two_rows_end_to_end_then_resumed(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    extra = tiny_args(tmp_path / "syn") + [
        "--data.init_args.crop_size", "64",
        "--data.init_args.batch_size", "2",
        "--data.init_args.num_workers", "0",
        "--model.init_args.encoder", "tu-mobilenetv3_small_050",
        "--model.init_args.encoder_weights", "null",
        "--model.init_args.log_images_every_n_epochs", "0",
        "--trainer.max_steps", "2",
        "--trainer.limit_val_batches", "0",
        "--trainer.enable_progress_bar", "false",
    ]  # fmt: skip
    args = ["scribbles", "--setting", "demo", "--out", str(tmp_path / "runs")]
    args += ["--rows", "local,combined_potts", "--potts-max-iter", "20", "--no-progress"]
    table = main([*args, "--", *extra])
    assert [e["row"] for e in table] == ["HFA", "WA", "local", "combined + Potts"]
    assert all(0.0 <= e[k] <= 100.0 for e in table for k in ("pfa", "train", "val"))
    folder = tmp_path / "runs" / "demo"
    assert {p.name for p in folder.iterdir()} >= {"hfa", "wa", "local", "combined_potts", "pseudo"}
    assert (folder / "table.md").read_text().startswith(format_markdown(table))
    assert (folder / "table.csv").is_file() and (folder / "table.png").is_file()
    assert list((folder / "wandb").glob("offline-run-*"))
    # one evaluation path: the study's val mIoU is what `python -m wseg validate` logs for the fit
    validated = validate(folder / "hfa", [*extra, "--trainer.limit_val_batches", "1.0"], False)
    assert table[0]["val"] == pytest.approx(validated["val/miou"], abs=1e-4)
    stamp = (folder / "local" / "final.ckpt").stat().st_mtime_ns
    assert main([*args, "--no-wandb", "--", *extra]) == table
    assert (folder / "local" / "final.ckpt").stat().st_mtime_ns == stamp
