"""Values every layer of wseg shares; this module imports nothing of wseg."""

from pathlib import Path

IGNORE_INDEX = 255
"""Label of void pixels: no loss, no metric counts them (VOC's boundary label)."""

EXPERIMENTS = Path(__file__).resolve().parent / "experiments"
"""The experiment YAMLs, shipped in the package (the checkout's ``experiments/`` links here)."""
