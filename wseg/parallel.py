"""Worker processes that are safe to start from a process already running torch or OpenCV threads.

A child forked from a process whose OpenMP thread pool is running can hang on its first parallel
call (seen here: ``torch.set_num_threads`` in a forked pool initializer, after the parent had run
torch). Every wseg pool therefore starts its workers with "spawn": a fresh interpreter, a second or
two of imports per worker, no inherited locks.
"""

from __future__ import annotations

import multiprocessing
from multiprocessing.context import BaseContext


def worker_context() -> BaseContext:
    """The multiprocessing context of every wseg worker pool ("spawn")."""
    return multiprocessing.get_context("spawn")
