"""Process pools for the stages that work piece by piece (simulate, clean, synthesize).

Workers are spawned, not forked (a forked child deadlocks in astroscrappy's OpenMP after
the parent used it), and each runs its native libraries on one thread: the pool already
keeps every core busy, and two OpenMP teams per core would only contend. Results never
depend on the number of workers: each job draws from its own seeded generator.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor

__all__ = ["available_cpus", "process_pool"]

_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _start_worker(initializer: Callable[..., None] | None, initargs: tuple) -> None:
    """Worker start: native libraries loaded from here on use one thread; then the caller's."""
    for name in _THREAD_VARIABLES:
        os.environ[name] = "1"
    if initializer is not None:
        initializer(*initargs)


@contextlib.contextmanager
def process_pool(workers: int, *, initializer: Callable[..., None] | None = None,
                 initargs: tuple = ()) -> Iterator[ProcessPoolExecutor | None]:
    """A pool of ``workers`` spawned single-threaded processes; ``None`` for one worker.

    With ``None`` the caller maps in its own process (no spawn, no pickling), so that a
    single job or a one-core machine pays nothing for the pool. ``initializer(*initargs)``
    runs once in each worker (inputs every job shares, sent once). If the caller's block
    raises, the jobs not yet started are cancelled.
    """
    if workers <= 1:
        yield None
        return
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=spawn, initializer=_start_worker,
                             initargs=(initializer, initargs)) as pool:
        try:
            yield pool
        except BaseException:  # an error or Ctrl-C: the queued jobs are not run for nothing
            pool.shutdown(wait=True, cancel_futures=True)
            raise
