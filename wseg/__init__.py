"""wseg: weakly- and semi-supervised semantic segmentation from boxes, scribbles and tags."""

__version__ = "0.1.0"
