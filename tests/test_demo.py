"""The README's main command end to end, on tiny data with a tiny encoder."""

import csv
from pathlib import Path

from PIL import Image

from wseg.demo import main


def test_demo_trains_both_methods_and_writes_table_and_overlays(tmp_path) -> None:
    out = tmp_path / "demo"
    rows = main(
        ["--root", str(tmp_path / "synthetic"), "--out", str(out), "--epochs", "1"]
        + ["--num-overlays", "2", "--"]
        + ["--data.init_args.synthetic_num_train", "6", "--data.init_args.synthetic_num_val", "2"]
        + ["--data.init_args.synthetic_size", "[64, 64]", "--data.init_args.crop_size", "64"]
        + ["--data.init_args.batch_size", "2", "--data.init_args.num_workers", "0"]
        + ["--model.init_args.encoder", "tu-mobilenetv3_small_050"]
        + ["--model.init_args.encoder_weights", "null", "--trainer.enable_progress_bar", "false"]
    )
    assert [row.method for row in rows] == ["Supervised", "BboxRect"]
    assert all(0.0 <= row.val_miou <= 100.0 for row in rows)
    table = list(csv.reader((out / "results.csv").open()))
    assert [line[0] for line in table[1:]] == ["bbox_rect_labels_train", "supervised", "bbox_rect"]
    assert 0.0 < float(table[1][1]) < 100.0
    panels = sorted((out / "overlays").glob("*.png"))
    assert len(panels) == 2
    with Image.open(panels[0]) as panel:  # image | truth | Supervised | BboxRect, 4 px gaps
        assert panel.size == (4 * 64 + 3 * 4, 64)
    # Each method is its own W&B run, with its own checkpoints and config.
    runs = sorted(Path(out).glob("wseg-demo/*/config.yaml"))
    assert len(runs) == 2
    classes = {run.read_text().split("class_path: wseg.methods.")[1].split()[0] for run in runs}
    assert classes == {"Supervised", "BboxRect"}
