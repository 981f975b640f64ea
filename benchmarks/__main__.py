"""Run every benchmark in turn (``make bench``); ``python -m benchmarks NAME ...`` runs some.

Each benchmark prints its own table of ratios measured in that one run. They take minutes on CPU
(tiny_coco_fit about 20), so they are not part of the test suite.
"""

import subprocess
import sys

BENCHMARKS = ("train_overhead", "crf_speed", "pseudo_label_quality", "tiny_coco_fit")


def main() -> int:
    """Run the named benchmarks (default: all); return the first failing exit code."""
    names = sys.argv[1:] or list(BENCHMARKS)
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        print(f"unknown benchmark(s) {unknown}; choose from {list(BENCHMARKS)}", file=sys.stderr)
        return 2
    for name in names:
        print(f"\n===== benchmarks.{name} =====", flush=True)
        code = subprocess.call([sys.executable, "-m", f"benchmarks.{name}"])
        if code:
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
