"""Measured comparisons (speed ratios, label quality), run by hand or with make bench."""

from pathlib import Path

TINY_COCO = Path(__file__).resolve().parents[2] / "shared" / "data" / "tiny_coco"
"""The 100 real COCO photographs, read in place beside the checkout (``../shared/data``)."""
