"""The papers' orderings of the comparison's rows, each checked against the measured spread.

An ordering ``A > B`` holds when A's mean val mIoU exceeds B's by more than the spread (the larger
of the two rows' standard deviations over seeds), fails when it is lower by more than the spread,
and is "within spread" otherwise. ``A >= B`` holds unless A is lower by more than the spread. With
one seed the spread is 0 and only the sign of the margin counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from wseg.compare.report import RowSummary


@dataclass(frozen=True)
class Ordering:
    """One claim of a paper about two rows (or the best of several rows against one).

    Args:
        left: The row (or rows: the best of them by mean) claimed higher.
        relation: ``>`` or ``>=``.
        right: The row claimed lower.
        source: Where the claim comes from.
        factor: The right side is ``factor`` times the right row (e.g. 0.9 of full masks).

    """

    left: tuple[str, ...]
    relation: str
    right: str
    source: str
    factor: float = 1.0


BOX_METHODS = ("bbox_seg", "bbox_em_fixed", "box2seg", "box2tag")
WEAK = (
    "bbox_seg",
    "bbox_em_fixed",
    "box2seg",
    "box2tag",
    "selfcorr_conv",
    "selfcorr_conv_f25",
)
ORDERINGS: tuple[Ordering, ...] = (
    Ordering(("bbox_seg",), ">", "bbox_rect", "Papandreou 2015, Table 1"),
    Ordering(("bbox_em_fixed",), ">=", "bbox_rect", "Papandreou 2015, Table 1"),
    Ordering(("selfcorr_conv",), ">=", "selfcorr_linear", "Ibrahim 2020, Table 1"),
    Ordering(("selfcorr_linear",), ">=", "selfcorr_none", "Ibrahim 2020, Table 1"),
    Ordering(("selfcorr_conv",), ">", "strong_only", "Ibrahim 2020: W helps (F ~10%)"),
    Ordering(("selfcorr_conv_f25",), ">=", "selfcorr_linear_f25", "Ibrahim 2020, Table 1"),
    Ordering(("selfcorr_linear_f25",), ">=", "selfcorr_none_f25", "Ibrahim 2020, Table 1"),
    Ordering(("selfcorr_conv_f25",), ">", "strong_only_f25", "Ibrahim 2020: W helps (F ~25%)"),
    Ordering(("box2seg",), ">", "bbox_rect", "Kulharia 2020, Table 3 (Box2Seg > Box)"),
    Ordering(("box2tag",), ">=", "bbox_seg", "Ji & Veksler 2021: Box2Tag >= Bbox-Seg"),
    *(Ordering((name,), ">=", "bbox_rect", "every weak method >= Bbox-Rect") for name in WEAK),
    Ordering(BOX_METHODS, ">=", "full", "best box method >= 90% of full masks", factor=0.9),
)


def check(ordering: Ordering, summaries: Sequence[RowSummary]) -> str | None:
    """The checked line of one ordering; None when one of its rows was not run."""
    by_name = {s.name: s for s in summaries}
    lefts = [by_name[name] for name in ordering.left if name in by_name]
    if not lefts or ordering.right not in by_name:
        return None
    left = max(lefts, key=lambda s: s.miou.mean)
    right = by_name[ordering.right]
    margin = left.miou.mean - ordering.factor * right.miou.mean
    spread = max(left.miou.std, ordering.factor * right.miou.std)
    if ordering.relation == ">":
        verdict = "holds" if margin > spread else "fails" if margin < -spread else "within spread"
    elif ordering.relation == ">=":
        verdict = "fails" if margin < -spread else "holds"
        if verdict == "holds" and margin < 0:
            verdict = "holds (within spread)"
    else:
        raise ValueError(f"relation must be '>' or '>=', got {ordering.relation!r}")
    scaled = f"{ordering.factor:g} x {right.title}" if ordering.factor != 1 else right.title
    return (
        f"{left.title} {ordering.relation} {scaled}: {verdict} "
        f"(margin {margin:+.1f}, spread {spread:.1f}; {ordering.source})"
    )


def check_all(summaries: Sequence[RowSummary]) -> list[str]:
    """The checked line of every ordering whose rows were run."""
    return [line for o in ORDERINGS if (line := check(o, summaries)) is not None]
