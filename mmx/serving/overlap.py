"""Reading, computing and writing at the same time: one reader and one writer thread.

:func:`mmx.serving.predict.predict_file` reads the next HDU while the network masks the
current one and writes the previous one's outputs meanwhile. The network, FITS reading
(``readinto``, byte swapping) and writing release the GIL, so on a machine whose cores are
not all busy with the network (or whose files sit on a slow disk or a network file
system), the reading and writing time hides behind the computing. Memory holds at most
three HDUs: the one read ahead, the one being masked and the one being written (with
its outputs). Across
files, :func:`prefetch_file` asks the kernel to read the next input into its page cache
while the current one is masked (no memory of this process).

``MMX_OVERLAP=0`` in the environment runs everything in the calling thread, in the same
order (for benchmarks); the outputs are the same either way.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

__all__ = ["overlap_enabled", "read_ahead", "OrderedWriter", "prefetch_file"]

T = TypeVar("T")

_END = object()


def overlap_enabled() -> bool:
    """False when ``MMX_OVERLAP`` is ``0`` (or ``false``/``no``/``off``), else True."""
    return os.environ.get("MMX_OVERLAP", "1").strip().lower() not in ("0", "false", "no", "off")


def prefetch_file(path: str | os.PathLike) -> None:
    """Ask the kernel to start reading ``path`` into its page cache (never an error).

    ``posix_fadvise(POSIX_FADV_WILLNEED)``: the read happens in the background, so opening
    the file later finds its bytes in memory (on slow disks and network file systems).
    Nothing where the call does not exist or the file cannot be opened.
    """
    advise = getattr(os, "posix_fadvise", None)
    if advise is None:
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        advise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_ahead(items: Iterator[T], *, enabled: bool = True) -> Iterator[T]:
    """Yield ``items``, producing the next one in a background thread meanwhile.

    At most one item is produced ahead of the one the caller holds: the thread starts
    item ``k + 1`` only once the caller has taken item ``k``. An exception raised while
    producing an item is raised here, where that item would have been yielded; the items
    before it are yielded first. Closing the generator early stops the thread after the
    item it is producing.
    """
    if not enabled:
        yield from items
        return
    slot: queue.Queue = queue.Queue(maxsize=1)
    turn = threading.Semaphore(1)  # one item may be made ahead of the caller's
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in _taking_turns(items, turn, stop):
                slot.put((item, None))
                del item
            slot.put((_END, None))
        except BaseException as exc:  # handed to the consumer, raised there
            slot.put((_END, exc))

    thread = threading.Thread(target=produce, name="mmx-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            item, error = slot.get()
            if error is not None:
                raise error
            if item is _END:
                return
            turn.release()  # the caller now holds this item: the next one may be made
            yield item
            item = None  # not kept alive while the caller works on the next one
    finally:
        stop.set()
        turn.release()  # a producer waiting for its turn wakes up and sees stop
        while thread.is_alive():  # a producer blocked on the full slot is let through
            try:
                slot.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.05)


def _taking_turns(items: Iterator[T], turn: threading.Semaphore, stop: threading.Event
                  ) -> Iterator[T]:
    """``items``, each one started only after a turn is granted, until ``stop``."""
    iterator = iter(items)
    while True:
        turn.acquire()
        if stop.is_set():
            return
        try:
            item = next(iterator)
        except StopIteration:
            return
        yield item


class OrderedWriter:
    """Run calls in submission order in one background thread, at most one at a time.

    :meth:`submit` first waits for the previous call (so at most one output is held in
    memory waiting to be written) and raises its exception, if any; :meth:`finish` waits
    for the last. Use as a context manager: leaving it waits for the running call, so the
    caller may then discard what that call was writing to.
    """

    def __init__(self, *, enabled: bool = True) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="mmx-write") if enabled else None
        self._last: Future | None = None

    def submit(self, call: Callable[..., object], *args) -> None:
        """Run ``call(*args)`` after the previous call (here, when disabled)."""
        self.finish()
        if self._pool is None:
            call(*args)
        else:
            self._last = self._pool.submit(call, *args)

    def finish(self) -> None:
        """Wait for the last call; raise its exception."""
        last, self._last = self._last, None
        if last is not None:
            last.result()

    def __enter__(self) -> OrderedWriter:
        return self

    def __exit__(self, *exc_info) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
