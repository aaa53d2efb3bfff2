"""Image sets on disk as memory-mapped shards: images, per-pixel truth and ignore planes.

A set is a folder of shards ``shard-0000/``, ``shard-0001/``... each holding

``images.npy``  float32 ``(N, H, W)``  pixel values (ADU, bias subtracted)
``labels.npy``  uint16 ``(N, H, W)``   truth bits, class ``k`` is bit ``1 << k``
``ignore.npy``  uint8 ``(N, H, W)``    1 where truth is unknown: no loss, no metric
``records.json``                        one metadata dict per image (instrument, gain...)

plus a set-level ``summary.json`` (count, shape, class fractions over non-ignored pixels).
``numpy.load(..., mmap_mode="r")`` streams them without reading whole files.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mmx.classes import ABBREVIATIONS, N_CLASSES
from mmx.errors import InputError

__all__ = ["Sample", "ShardWriter", "ShardSet", "class_pixel_counts"]

_ARRAYS = {"images": np.float32, "labels": np.uint16, "ignore": np.uint8}


@dataclass
class Sample:
    """One image with its truth, ignore plane and metadata."""

    image: np.ndarray
    labels: np.ndarray
    ignore: np.ndarray
    record: dict = field(default_factory=dict)


def class_pixel_counts(labels: np.ndarray, ignore: np.ndarray) -> np.ndarray:
    """Number of non-ignored pixels carrying each class, shape ``(N_CLASSES,)``."""
    valid = np.asarray(ignore) == 0
    lab = np.asarray(labels)[valid]
    return np.array([np.count_nonzero(lab & (1 << k)) for k in range(N_CLASSES)], dtype=np.int64)


class ShardWriter:
    """Write samples into a new shard set, ``shard_size`` images per shard.

    The set is built in ``<folder>.part`` and renamed into place by :meth:`close`, so an
    interrupted run never leaves a set that looks complete. Use as a context manager.
    """

    def __init__(self, folder: str | Path, *, shard_size: int = 256) -> None:
        self.folder = Path(folder)
        self.tmp = self.folder.with_name(self.folder.name + ".part")
        if self.tmp.exists():
            shutil.rmtree(self.tmp)
        self.tmp.mkdir(parents=True)
        self.shard_size = shard_size
        self._buffer: list[Sample] = []
        self._n_shards = 0
        self._n = 0
        self._shape: tuple[int, int] | None = None
        self._counts = np.zeros(N_CLASSES, dtype=np.int64)
        self._valid = 0

    def add(self, sample: Sample) -> None:
        """Queue one sample; a full shard is flushed to disk."""
        shape = sample.image.shape
        if self._shape is None:
            self._shape = shape
        if shape != self._shape or sample.labels.shape != shape or sample.ignore.shape != shape:
            raise InputError(f"sample {self._n}: shapes {shape}, {sample.labels.shape}, "
                             f"{sample.ignore.shape} differ from the set's {self._shape}")
        self._counts += class_pixel_counts(sample.labels, sample.ignore)
        self._valid += int(np.count_nonzero(sample.ignore == 0))
        self._buffer.append(sample)
        self._n += 1
        if len(self._buffer) >= self.shard_size:
            self._flush()

    def _flush(self) -> None:
        if not self._buffer:
            return
        shard = self.tmp / f"shard-{self._n_shards:04d}"
        shard.mkdir()
        np.save(shard / "images.npy", np.stack([s.image for s in self._buffer]).astype(np.float32))
        np.save(shard / "labels.npy", np.stack([s.labels for s in self._buffer]).astype(np.uint16))
        np.save(shard / "ignore.npy", np.stack([s.ignore for s in self._buffer]).astype(np.uint8))
        (shard / "records.json").write_text(json.dumps([s.record for s in self._buffer]))
        self._buffer.clear()
        self._n_shards += 1

    def close(self, **extra: object) -> dict:
        """Flush, write ``summary.json`` (with ``extra`` keys) and move the set into place."""
        self._flush()
        fractions = self._counts / max(self._valid, 1)
        summary = {
            "n_images": self._n,
            "n_shards": self._n_shards,
            "shape": list(self._shape or (0, 0)),
            "valid_pixels": self._valid,
            "class_pixels": dict(zip(ABBREVIATIONS, map(int, self._counts), strict=True)),
            "class_fraction": dict(zip(ABBREVIATIONS, map(float, fractions), strict=True)),
            **extra,
        }
        (self.tmp / "summary.json").write_text(json.dumps(summary, indent=2))
        if self.folder.exists():
            shutil.rmtree(self.folder)
        os.replace(self.tmp, self.folder)
        return summary

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


class ShardSet(Sequence[Sample]):
    """Read-only, memory-mapped access to a shard set written by :class:`ShardWriter`."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        summary = self.folder / "summary.json"
        if not summary.is_file():
            raise InputError(f"{self.folder}: not a shard set (no summary.json); run the "
                             "pipeline stage that makes it (`dvc repro`)")
        self.summary: dict = json.loads(summary.read_text())
        self._shards = []
        self._offsets = [0]
        for i in range(self.summary["n_shards"]):
            shard = self.folder / f"shard-{i:04d}"
            arrays = {k: np.load(shard / f"{k}.npy", mmap_mode="r") for k in _ARRAYS}
            records = json.loads((shard / "records.json").read_text())
            self._shards.append((arrays, records))
            self._offsets.append(self._offsets[-1] + len(records))

    def __len__(self) -> int:
        return self._offsets[-1]

    def __reduce__(self):
        """Pickled as its folder (a process pool reopens the memory maps, copying nothing)."""
        return ShardSet, (self.folder,)

    def _locate(self, index: int) -> tuple[int, int]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"sample {index} out of range for {len(self)} samples")
        index %= len(self)
        shard = int(np.searchsorted(self._offsets, index, side="right")) - 1
        return shard, index - self._offsets[shard]

    def __getitem__(self, index: int) -> Sample:  # type: ignore[override]
        shard, local = self._locate(index)
        arrays, records = self._shards[shard]
        return Sample(
            image=np.asarray(arrays["images"][local]),
            labels=np.asarray(arrays["labels"][local]),
            ignore=np.asarray(arrays["ignore"][local]),
            record=records[local],
        )

    def __iter__(self) -> Iterator[Sample]:
        for i in range(len(self)):
            yield self[i]

    @property
    def class_fraction(self) -> dict[str, float]:
        """Fraction of non-ignored pixels carrying each class (the training prior P_N)."""
        return dict(self.summary["class_fraction"])
