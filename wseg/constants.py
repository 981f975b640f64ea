"""Values every layer of wseg shares; this module imports nothing of wseg."""

IGNORE_INDEX = 255
"""Label of void pixels: no loss, no metric counts them (VOC's boundary label)."""
