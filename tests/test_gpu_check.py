"""``benchmarks.gpu_check`` (issue 29): its plumbing on CPU at toy sizes, so that it cannot rot.

The figures are meaningless at these sizes; the run checks that every section trains, segments,
exports its table and judges its rows, as it will on a GPU.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def gpu_check(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu_check", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="would run the whole GPU check")
def test_without_cuda_it_says_so_in_one_line_and_exits_0(tmp_path) -> None:
    done = gpu_check("--out", str(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines() == [
        "gpu_check: no CUDA device on this machine; nothing checked (--device cpu --tiny runs "
        "the plumbing)"
    ]
    assert not (tmp_path / "results.md").exists()


def test_tiny_cpu_run_goes_through_every_check_and_writes_the_table(tmp_path) -> None:
    done = gpu_check("--device", "cpu", "--tiny", "--out", str(tmp_path))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    table = (tmp_path / "results.md").read_text()
    assert table in done.stdout
    for row in (
        "pydensecrf, one core",
        "labels agree with pydensecrf, batch 2",
        "precision 32: 2 steps, losses finite",
        "precision bf16-mixed: 2 steps, losses finite",
        "strategy ddp, 2 cpu device(s)",
        "wseg.load(device='cpu').segment(",
        "python -m wseg segment --device cpu",
        "DeepLabV3+ tu-mobilenetv3_small_050",
        "Box2Seg affinity loss",
        "Box2Tag class network",
        "wall time of the checks",
    ):
        assert row in table, row
    assert "FAIL" not in table and "ran to the end" not in table
    # the speed goals are not judged at toy sizes
    assert "| 0.4x | >= 50x | - |" in table or "| >= 50x | - |" in table
    passed, judged = table.strip().splitlines()[-1].split(" judged")[0].split(" of ")
    assert passed == judged and int(judged) >= 10


def test_a_failing_check_is_a_fail_line_and_exit_1(tmp_path) -> None:
    # segment alone has no fitted checkpoint to load: its row fails, the run still ends cleanly
    done = gpu_check("--device", "cpu", "--tiny", "--only", "segment", "--out", str(tmp_path))
    assert done.returncode == 1
    table = (tmp_path / "results.md").read_text()
    assert "FAIL: segment: ran to the end" in table
    assert "left no checkpoint" in table
