"""Real frames that join training: copied from a source folder by name, held-out ones refused.

``params.yaml``'s ``real`` section lists which real frames train (``train``, as
``<instrument>/<file>``) and which are held out for the real-sky benchmark (``holdout``).
:func:`stage_real_frames` fills the stage input folder (``paths.real``) with exactly the
training list, so DVC hashes what trains; :func:`check_no_holdout` makes the clean stage
refuse a held-out frame that found its way in, so nothing scored was ever trained on.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from pathlib import Path

from mmx.errors import ConfigError, InputError

__all__ = ["README_NAME", "check_no_holdout", "stage_real_frames"]

log = logging.getLogger(__name__)

README_NAME = "README.txt"  #: written into the folder, so it exists (and is hashed) when empty


def _entries(train: Sequence[str]) -> list[tuple[str, str]]:
    out = []
    for entry in train:
        parts = Path(str(entry)).parts
        if len(parts) != 2 or ".." in parts:
            raise ConfigError(f"real.train entry {entry!r}: expected '<instrument>/<file>'")
        out.append((parts[0], parts[1]))
    return out


def stage_real_frames(source: str | Path, dest: str | Path, *, train: Sequence[str],
                      holdout: Sequence[str] = ()) -> list[Path]:
    """Make ``dest`` hold exactly the ``train`` frames of ``source``; return what it holds.

    Frames missing from ``source`` are skipped with a warning (a machine without the real
    frames trains on simulated skies alone); files in ``dest`` that are not listed are
    removed. Copies are made only when missing or different in size.

    Raises
    ------
    ConfigError
        If an entry is malformed or names a held-out frame.
    """
    source, dest = Path(source), Path(dest)
    entries = _entries(train)
    held = {Path(h).name for h in holdout}
    clash = sorted(name for _, name in entries if name in held)
    if clash:
        raise ConfigError(f"real.train lists held-out frame(s) {', '.join(clash)}: a frame "
                          "is either trained on or scored, never both")
    dest.mkdir(parents=True, exist_ok=True)
    wanted = {dest / inst / name for inst, name in entries}
    for old in sorted(p for p in dest.rglob("*") if p.is_file() and p.name != README_NAME):
        if old not in wanted:
            old.unlink()
    kept: list[Path] = []
    for inst, name in entries:
        src, dst = source / name, dest / inst / name
        if not src.is_file():
            log.warning("real frame %s not found: training without it", src)
            dst.unlink(missing_ok=True)  # an old copy would train on what is no longer listed
            continue
        if not dst.is_file() or dst.stat().st_size != src.stat().st_size:
            dst.parent.mkdir(parents=True, exist_ok=True)
            tmp = dst.with_name(f".{dst.name}.part")
            shutil.copyfile(src, tmp)
            tmp.replace(dst)
        kept.append(dst)
    for folder in sorted((p for p in dest.rglob("*") if p.is_dir()), reverse=True):
        if not any(folder.iterdir()):
            folder.rmdir()
    (dest / README_NAME).write_text(
        "Real frames whose clean skies join training, copied by the main job from "
        f"real.source ({source}) as listed in params.yaml real.train. Not in git.\n"
        f"Frames: {len(kept)} of {len(entries)} listed.\n")
    return kept


def check_no_holdout(folder: str | Path, holdout: Sequence[str]) -> None:
    """Refuse a held-out frame in a training input folder.

    Raises
    ------
    InputError
        Naming the held-out file found.
    """
    held = {Path(h).name for h in holdout}
    found = sorted(str(p) for p in Path(folder).rglob("*") if p.name in held)
    if found:
        raise InputError(f"{found[0]}: this frame is held out for the real-sky benchmark "
                         "(params.yaml real.holdout) and must not be trained on; remove it")
