"""Run the benchmarks in turn (``make bench``); ``python -m benchmarks NAME ...`` runs some.

Each benchmark prints its own table of ratios measured in that one run. They take minutes on CPU,
so they are not part of the test suite. The per-family method tables
(`METHOD_TABLES`, ``make bench-methods``) train several models each and run only when named.
"""

import subprocess
import sys

BENCHMARKS = (
    "train_overhead",
    "crf_speed",
    "pseudo_label_quality",
    "box2seg_memory",
)
METHOD_TABLES = (
    "em_family",
    "self_correction",
    "box2seg_ablation",
    "box2tag_pseudo_gt",
    "scribbles",
)


def main() -> int:
    """Run the named benchmarks (default: all); return the first failing exit code."""
    names = sys.argv[1:] or list(BENCHMARKS)
    known = BENCHMARKS + METHOD_TABLES
    unknown = sorted(set(names) - set(known))
    if unknown:
        print(f"unknown benchmark(s) {unknown}; choose from {list(known)}", file=sys.stderr)
        return 2
    for name in names:
        print(f"\n===== benchmarks.{name} =====", flush=True)
        code = subprocess.call([sys.executable, "-m", f"benchmarks.{name}"])
        if code:
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
