"""Files that appear complete or not at all: write to a temporary file, then rename.

A reader (another process, DVC, a crashed run's rerun) never sees half a file: the
temporary file lives in the destination's folder (same file system, so the rename is
atomic) and is removed if writing fails. Folders have their own variants where they are
made (:class:`mmx.io.shards.ShardWriter`, :func:`mmx.model.package.save_package`), and
FITS files written HDU by HDU theirs (:class:`mmx.io.fitsio.AtomicFitsWriter`).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["atomic_write", "atomic_write_text"]


def _read_umask() -> int:
    """The process's umask (read once, at import, when no other thread creates files)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


#: the mode a plain ``open(path, "w")`` would give: mkstemp's 0600 would hide the file
_FILE_MODE = 0o666 & ~_read_umask()


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` to fill a temporary file, then rename it to ``path``.

    The parent folder is created if needed. If ``write`` raises, ``path`` is untouched
    and the temporary file is gone.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # ".<name>.part-XXXX<suffix>": hidden, marked unfinished, same suffix for writers that
    # choose a format by it
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.part-", suffix=path.suffix,
                                dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
