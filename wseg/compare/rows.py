"""The rows of the comparison: every method family at one backbone and budget, per dataset."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

DATASETS = ("synthetic", "tiny_coco", "voc", "camvid")
"""The CPU demo experiments on the built-in synthetic data, the tiny_coco experiments (50 + 50 real
COCO photographs; every fit 192 px, 20 epochs of 8), the papers' PASCAL VOC 2012 experiments (GPU
budgets; ``--root`` is the VOC2012 folder with SBD), and the CamVid ladder (367 + 101 real street
frames, ``../shared/data/camvid``; the CPU recipe of ``experiments/supervised_camvid.yaml``)."""


@dataclass(frozen=True)
class Row:
    """One method of the comparison.

    Args:
        name: Row id (its folder under the output).
        title: What the table calls it.
        setups: For each dataset it runs on, the experiment YAML of a single-stage row (relative
            to ``experiments/``) or the ``--setting`` of a chain row's pipeline command.
        pipeline: `wseg.pipeline` command of a multi-stage row (None: one ``fit`` stage).
        pipeline_options: Keyword arguments of that pipeline's ``run_chain`` beyond the
            setting, output root and fit arguments (e.g. ``{"mode": "conv"}``).
        labels: ``rect`` to measure Bbox-Rect labels; ``store`` for the pseudo-label store the
            final stage trains on; None when the method makes no labels.
        uses_split: The row draws an F/W split: each seed draws its own F (``split_seed``).
        chain: Folder shared by rows of one chain (self-correction's none, linear and conv
            reuse one ancillary model per F); None: the row's own folder.
        args: Extra fit arguments of the row (e.g. another size of F).

    """

    name: str
    title: str
    setups: dict[str, str]
    pipeline: str | None = None
    pipeline_options: Mapping[str, Any] = field(default_factory=dict)
    labels: str | None = None
    uses_split: bool = False
    chain: str | None = None
    args: tuple[str, ...] = ()


def _setups(synthetic: str, tiny_coco: str, voc: str, camvid: str) -> dict[str, str]:
    return dict(zip(DATASETS, (synthetic, tiny_coco, voc, camvid), strict=True))


def _selfcorr(mode: str, title: str, setups: dict[str, str], suffix: str = "") -> Row:
    """A self-correction row; the rows of one F share a chain folder (one ancillary model)."""
    return Row(
        f"selfcorr_{mode}{suffix}",
        title,
        setups,
        pipeline="selfcorr",
        pipeline_options={"mode": mode},
        uses_split=True,
        chain=f"selfcorr{suffix}",
    )


F10 = {"synthetic": "demo", "camvid": "camvid_f37"}
F25 = {"camvid": "camvid_f92"}
ROWS: dict[str, Row] = {
    row.name: row
    for row in (
        Row(
            "full",
            "Full masks (Supervised)",
            _setups(
                "demo/supervised.yaml",
                "supervised_tiny_coco.yaml",
                "supervised_voc.yaml",
                "supervised_camvid.yaml",
            ),
        ),
        Row(
            "bbox_rect",
            "Bbox-Rect (weak baseline)",
            _setups(
                "demo/bbox_rect.yaml",
                "bbox_rect_tiny_coco.yaml",
                "bbox_rect_voc.yaml",
                "bbox_rect_camvid.yaml",
            ),
            labels="rect",
        ),
        Row(
            "bbox_seg",
            "Bbox-Seg (Papandreou 2015)",
            _setups("demo", "tiny_coco", "voc", "camvid"),
            pipeline="bbox-seg",
            labels="store",
        ),
        Row(
            "bbox_em_fixed",
            "Bbox-EM-Fixed (Papandreou 2015)",
            {
                "synthetic": "demo/bbox_em_fixed.yaml",
                "voc": "em/bbox_em_fixed_voc.yaml",
                "camvid": "em/bbox_em_fixed_camvid.yaml",
            },
        ),
        Row(
            "strong_only",
            "Strong only, F ~10% (masks of F alone)",
            {"synthetic": "demo/strong_only.yaml", "camvid": "strong_only_camvid.yaml"},
            uses_split=True,
        ),
        _selfcorr("none", "Self-correction none, F ~10%", F10),
        _selfcorr("linear", "Self-correction linear, F ~10%", F10),
        _selfcorr(
            "conv",
            "Self-correction conv, F ~10% (Ibrahim 2020)",
            _setups("demo", "tiny_coco", "voc_f1464", "camvid_f37"),
        ),
        Row(
            "strong_only_f25",
            "Strong only, F ~25%",
            {"camvid": "strong_only_camvid.yaml"},
            uses_split=True,
            args=("--data.init_args.num_strong", "92"),
        ),
        _selfcorr("none", "Self-correction none, F ~25%", F25, "_f25"),
        _selfcorr("linear", "Self-correction linear, F ~25%", F25, "_f25"),
        _selfcorr("conv", "Self-correction conv, F ~25%", F25, "_f25"),
        Row(
            "box2seg",
            "Box2Seg (Kulharia 2020)",
            _setups("demo", "tiny_coco", "voc", "camvid"),
            pipeline="box2seg",
            labels="store",
        ),
        Row(
            "box2tag",
            "Box2Tag, overlap-void (Ji & Veksler 2021)",
            _setups("demo", "tiny_coco", "voc", "camvid"),
            pipeline="box2tag",
            pipeline_options={"rule": "overlap-void"},
            labels="store",
        ),
    )
}
FULL, WEAK = "full", "bbox_rect"


def rows_for(data: str) -> list[str]:
    """The rows with a setup for ``data``, in table order."""
    return [name for name, row in ROWS.items() if data in row.setups]
