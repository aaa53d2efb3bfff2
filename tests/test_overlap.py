"""The read-ahead and writer threads of mmx.serving.overlap: order, errors, early stops."""

from __future__ import annotations

import threading
import time

import pytest

from mmx.serving.overlap import OrderedWriter, overlap_enabled, read_ahead


@pytest.mark.parametrize("enabled", [True, False])
def test_read_ahead_yields_every_item_in_order(enabled):
    assert list(read_ahead(iter(range(7)), enabled=enabled)) == list(range(7))
    assert list(read_ahead(iter([]), enabled=enabled)) == []


def test_read_ahead_produces_the_next_item_while_the_consumer_works():
    produced: list[tuple[int, str]] = []

    def items():
        for k in range(3):
            produced.append((k, threading.current_thread().name))
            yield k

    stream = read_ahead(items())
    assert next(stream) == 0
    deadline = time.monotonic() + 5
    while len(produced) < 2 and time.monotonic() < deadline:  # item 1 comes unasked
        time.sleep(0.01)
    assert [k for k, _ in produced[:2]] == [0, 1]
    time.sleep(0.1)
    assert len(produced) == 2  # one item ahead of the caller's, never two
    assert {name for _, name in produced} == {"mmx-read-ahead"}
    assert list(stream) == [1, 2]


@pytest.mark.parametrize("enabled", [True, False])
def test_read_ahead_raises_a_producer_error_where_its_item_would_come(enabled):
    def items():
        yield 1
        yield 2
        raise OSError("disk gone at item 3")

    got = []
    with pytest.raises(OSError, match="disk gone at item 3"):
        for item in read_ahead(items(), enabled=enabled):
            got.append(item)
    assert got == [1, 2]


def test_closing_early_stops_the_producer():
    produced = []

    def items():
        for k in range(1000):
            produced.append(k)
            yield k

    stream = read_ahead(items())
    assert next(stream) == 0
    stream.close()
    count = len(produced)
    time.sleep(0.1)
    assert len(produced) == count <= 2  # the caller's item and one made ahead
    assert not any(t.name == "mmx-read-ahead" for t in threading.enumerate())


@pytest.mark.parametrize("enabled", [True, False])
def test_ordered_writer_runs_calls_in_order_and_reports_errors(enabled):
    done: list[int] = []

    def slow(k: int) -> None:
        time.sleep(0.01 * (3 - k))
        done.append(k)

    with OrderedWriter(enabled=enabled) as writer:
        for k in range(3):
            writer.submit(slow, k)
        writer.finish()
    assert done == [0, 1, 2]

    def fail() -> None:
        raise OSError("No space left on device")

    with OrderedWriter(enabled=enabled) as writer, pytest.raises(OSError, match="No space"):
        writer.submit(fail)
        writer.finish()


def test_mmx_overlap_switch(monkeypatch):
    monkeypatch.delenv("MMX_OVERLAP", raising=False)
    assert overlap_enabled()
    for off in ("0", "false", "OFF", "no"):
        monkeypatch.setenv("MMX_OVERLAP", off)
        assert not overlap_enabled()
    monkeypatch.setenv("MMX_OVERLAP", "1")
    assert overlap_enabled()


def test_prefetch_file_advises_the_kernel_and_never_fails(tmp_path, monkeypatch):
    import os

    from mmx.serving.overlap import prefetch_file

    path = tmp_path / "frame.fits"
    path.write_bytes(b"x" * 4096)
    calls = []
    real = getattr(os, "posix_fadvise", None)
    if real is None:
        pytest.skip("no posix_fadvise on this platform")

    def advise(fd, offset, length, how):
        calls.append((os.fstat(fd).st_size, offset, length, how))
        return real(fd, offset, length, how)

    monkeypatch.setattr(os, "posix_fadvise", advise)
    prefetch_file(path)
    assert calls == [(4096, 0, 0, os.POSIX_FADV_WILLNEED)]
    prefetch_file(tmp_path / "missing.fits")  # nothing to read: nothing happens
    assert len(calls) == 1
