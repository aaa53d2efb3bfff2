"""A verified local copy of each registered model package, so serving needs no MLflow.

Resolving ``models:/mmx@production`` through the MLflow client imports its whole stack
(several seconds) and copies the artifacts on every call. Instead, :mod:`mmx.tracking.registry`
reads the alias straight from the store and asks this cache for the package of the version
it names:

``<root>/refs/<store key>/<name>/<version>.json``
    what the registry said about that version when it was cached: run id, storage
    location, SHA-256 of ``weights.pt``, and the entry folder;
``<root>/packages/<key>/``
    the model package itself (``weights.pt``, ``mmx_model.json``), named by the hash of
    both files' hashes, shared by every store and version holding the same package.

An entry is used only if the registry still reports the same run and storage location for
that version (a store rebuilt from scratch reuses version numbers) and the cached weights
and metadata still hash to the recorded values; anything else is a miss, and the caller fetches the
package again. When the alias moves, it names another version: another ref, so a miss
the first time, a hit afterwards. Entries are written to a temporary folder and renamed,
so concurrent ``mmx predict`` processes never see half an entry.

The root is ``$MMX_CACHE_DIR``, else ``$XDG_CACHE_HOME/mmx``, else ``~/.cache/mmx``.
Deleting it is always safe.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mmx.io.atomic import atomic_write_text

__all__ = ["CacheRecord", "cache_root", "file_sha256", "lookup", "store", "derived_path"]

log = logging.getLogger(__name__)

_PACKAGE_FILES = ("weights.pt", "mmx_model.json")


@dataclass(frozen=True)
class CacheRecord:
    """What the registry says about one model version (the cache's key and check).

    Attributes
    ----------
    tracking_uri : str
        The store the version is registered in.
    name : str
        Registered model name.
    version : int
        Version number.
    run_id : str
        MLflow run of the version.
    storage_location : str
        Where the store keeps the version's artifacts.
    """

    tracking_uri: str
    name: str
    version: int
    run_id: str
    storage_location: str


def cache_root() -> Path:
    """Folder of the cache (``$MMX_CACHE_DIR``, ``$XDG_CACHE_HOME/mmx`` or ``~/.cache/mmx``)."""
    env = os.environ.get("MMX_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "mmx"


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes, hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _digests(folder: Path) -> tuple[str, str]:
    return file_sha256(folder / "weights.pt"), file_sha256(folder / "mmx_model.json")


def _ref_path(record: CacheRecord) -> Path:
    store = hashlib.sha256(record.tracking_uri.encode()).hexdigest()[:16]
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in record.name)
    return cache_root() / "refs" / store / safe / f"{int(record.version)}.json"


def lookup(record: CacheRecord) -> Path | None:
    """The cached package folder of ``record``'s version, verified, or None on a miss.

    A miss is: no entry, an entry made from another run or storage location (the store
    was rebuilt, or the version replaced), or weights whose hash no longer matches.
    """
    ref = _ref_path(record)
    try:
        saved = json.loads(ref.read_text())
    except (OSError, ValueError):
        return None
    if (saved.get("run_id"), saved.get("storage_location")) != (record.run_id,
                                                               record.storage_location):
        log.info("model cache: %s v%s changed in the registry; fetching again",
                 record.name, record.version)
        return None
    folder = cache_root() / "packages" / str(saved.get("package", ""))
    try:
        ok = _digests(folder) == (saved["sha256"], saved["meta_sha256"])
    except (OSError, KeyError):
        ok = False
    if not ok:
        log.warning("model cache: entry %s failed verification; fetching again", folder)
        return None
    return folder


def store(record: CacheRecord, package_dir: str | Path) -> Path:
    """Copy a model package into the cache under ``record``; return the cached folder.

    Parameters
    ----------
    record : CacheRecord
        The registry's description of the version.
    package_dir : path
        Folder holding ``weights.pt`` and ``mmx_model.json`` (as fetched from the store).
    """
    package_dir = Path(package_dir)
    sha, meta_sha = _digests(package_dir)
    key = hashlib.sha256(f"{sha}:{meta_sha}".encode()).hexdigest()[:24]
    folder = cache_root() / "packages" / key
    try:
        present = _digests(folder) == (sha, meta_sha)
    except OSError:
        present = False
    if not present:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".part-", dir=folder.parent))
        for name in _PACKAGE_FILES:
            shutil.copyfile(package_dir / name, tmp / name)
        shutil.rmtree(folder, ignore_errors=True)
        try:
            os.replace(tmp, folder)
        except OSError:  # another process won the race with the same content
            shutil.rmtree(tmp, ignore_errors=True)
    ref = _ref_path(record)
    ref.parent.mkdir(parents=True, exist_ok=True)
    entry = {"tracking_uri": record.tracking_uri, "name": record.name,
             "version": int(record.version), "run_id": record.run_id,
             "storage_location": record.storage_location, "sha256": sha, "meta_sha256": meta_sha,
             "package": folder.name}
    atomic_write_text(ref, json.dumps(entry, indent=1, sort_keys=True))
    return folder


def derived_path(package_dir: str | Path, kind: str) -> Path:
    """Where to keep a file derived from a package (e.g. an ONNX export), keyed by content.

    The key hashes the package's weights and its ``mmx_model.json``, so an export made for
    one model is never used for another; ``kind`` names the file (``"model.onnx"``).
    """
    package_dir = Path(package_dir)
    digest = hashlib.sha256()
    digest.update(file_sha256(package_dir / "weights.pt").encode())
    digest.update((package_dir / "mmx_model.json").read_bytes())
    return cache_root() / "derived" / digest.hexdigest()[:24] / kind
