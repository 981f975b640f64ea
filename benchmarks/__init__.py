"""Measured comparisons (speed ratios, label quality), run by hand or with make bench."""
