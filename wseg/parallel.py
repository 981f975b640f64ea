"""Worker processes that are safe to start from a process already running torch or OpenCV threads.

A child forked from a process whose OpenMP thread pool is running can hang on its first parallel
call (seen here: ``torch.set_num_threads`` in a forked pool initializer, after the parent had run
torch). Every wseg pool therefore starts its workers with "spawn": a fresh interpreter, a second or
two of imports per worker, no inherited locks.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from multiprocessing.context import BaseContext
from typing import Any


def worker_context() -> BaseContext:
    """The multiprocessing context of every wseg worker pool ("spawn")."""
    return multiprocessing.get_context("spawn")


@contextmanager
def pool_imap_unordered(
    function: Callable[[Any], Any],
    items: Sequence[Any],
    workers: int,
    initializer: Callable[..., None],
    initargs: tuple,
) -> Iterator[Iterator[Any]]:
    """Results of ``function`` over ``items``, in completion order, from spawned workers.

    Up to ``workers`` processes, each set up once by ``initializer(*initargs)``. The pool is
    terminated on leaving the block, also on an error or an interrupt, so no worker outlives it.

    Args:
        function: Picklable function of one item.
        items: The items.
        workers: Largest number of processes.
        initializer: Picklable per-process set-up.
        initargs: Its arguments (pickled to every worker).

    Yields:
        An iterator over the results.

    """
    pool = worker_context().Pool(min(workers, len(items)), initializer, initargs)
    try:
        yield pool.imap_unordered(function, items)
    finally:
        pool.terminate()
        pool.join()
