"""wseg: weakly- and semi-supervised semantic segmentation from boxes, scribbles and tags."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["Segmenter", "load"]

_LAZY = {"load": "wseg.inference", "Segmenter": "wseg.inference"}


def __getattr__(name: str) -> Any:
    """Import `wseg.inference` on first use of ``wseg.load`` or ``wseg.Segmenter``."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'wseg' has no attribute {name!r}")
