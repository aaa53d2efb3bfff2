"""Lightning data over shard sets: normalised images, random crops, physical augmentations.

Each image is normalised whole with :func:`mmx.sky.normalize.normalize_image` (exactly what
inference does), then cropped. Training crops are drawn uniformly, except a share
``focus_fraction`` of them placed around a pixel of a *focus* class (rare ones, such as
hot pixels: 1 pixel in 10^4 of the split), so that every batch holds examples of them.
They are augmented with the 8 symmetries of the pixel grid (flips and 90-degree
rotations): they move no flux between pixels, so labels stay exact (a rotated hot column
is a hot line, also in its class).

Randomness is explicit: the training sampler draws epoch ``e``'s order from
``numpy.random.default_rng([seed, e])`` and hands each item its epoch, and the dataset
draws that item's crop (uniform or focused, focus class and pixel) and symmetry from
``default_rng([seed, e, index])``, so a run is reproducible whatever the number of workers.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from mmx.classes import label_bit
from mmx.errors import ConfigError
from mmx.io.shards import ShardSet
from mmx.sky.normalize import DEFAULT_MESH, normalize_image

__all__ = ["ShardDataset", "EpochSampler", "ShardDataModule"]


class ShardDataset(Dataset):
    """Normalised, optionally cropped and augmented samples of one shard set.

    Items are dicts of ``image`` float32 ``(1, h, w)``, ``labels`` int32 ``(h, w)`` (truth
    bits) and ``ignore`` uint8 ``(h, w)``.

    Parameters
    ----------
    folder : str or Path
        Shard set folder.
    crop : int, optional
        Side of the crops, pixels; ``None`` keeps whole images. Images smaller than the
        crop are padded with sky (0) marked ignored.
    random_crop : bool
        Random crop positions (training) instead of centred ones.
    augment : bool
        Random flips and 90-degree rotations.
    mesh : int
        Mesh of :func:`mmx.sky.normalize.normalize_image`, pixels.
    seed : int
        Seed of the crop and augmentation draws.
    cache_mb : float
        Keep normalised images in memory up to this many MiB (normalisation of a
        512x512 image costs ~40 ms, more than a training step's share of it).
    focus_classes : sequence of str
        Abbreviations of the classes random crops may be placed around.
    focus_fraction : float
        Chance that a random crop is placed around a focus pixel, in [0, 1]: a focus class
        present (non-ignored) in the image is drawn uniformly, then one of its pixels, and
        the crop is drawn uniformly among those holding that pixel at least ``crop // 8``
        pixels inside its edges. Images without a focus class get a uniform crop.
    """

    def __init__(
        self,
        folder: str | Path,
        *,
        crop: int | None = None,
        random_crop: bool = False,
        augment: bool = False,
        mesh: int = DEFAULT_MESH,
        seed: int = 0,
        cache_mb: float = 0.0,
        focus_classes: tuple[str, ...] | list[str] = (),
        focus_fraction: float = 0.0,
    ) -> None:
        if crop is not None and crop < 1:
            raise ConfigError(f"crop must be a positive number of pixels or null, got {crop}")
        if not 0.0 <= focus_fraction <= 1.0:
            raise ConfigError(f"focus_fraction must be in [0, 1], got {focus_fraction}")
        self.focus_bits = [label_bit(c) for c in focus_classes]  # ConfigError if unknown
        self.focus_fraction = float(focus_fraction)
        self._focus: dict[int, list[np.ndarray]] = {}
        self.folder = Path(folder)
        self.crop, self.random_crop, self.augment = crop, random_crop, augment
        self.mesh, self.seed = int(mesh), int(seed)
        self.cache_bytes = float(cache_mb) * 2**20
        self._set: ShardSet | None = None
        self._length = len(ShardSet(self.folder))  # validates the folder now
        self._cache: dict[int, np.ndarray] = {}
        self._cached_bytes = 0

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_set"] = None  # memory maps are reopened in each worker, not pickled
        return state

    @property
    def shards(self) -> ShardSet:
        """The underlying shard set (opened on first use)."""
        if self._set is None:
            self._set = ShardSet(self.folder)
        return self._set

    def __len__(self) -> int:
        return self._length

    def _normalized(self, index: int, image: np.ndarray) -> np.ndarray:
        if index in self._cache:
            return self._cache[index]
        norm = normalize_image(image, mesh=self.mesh)
        if self._cached_bytes + norm.nbytes <= self.cache_bytes:
            self._cache[index] = norm
            self._cached_bytes += norm.nbytes
        return norm

    def __getitem__(self, item: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        index, epoch = item if isinstance(item, tuple) else (item, 0)
        sample = self.shards[index]
        image = self._normalized(index, sample.image)
        labels = sample.labels.astype(np.int32)
        ignore = sample.ignore.astype(np.uint8)
        rng = np.random.default_rng([self.seed, epoch, index])
        if self.crop is not None:
            centre = None
            if self.random_crop and self.focus_fraction > 0 and self.focus_bits:
                if rng.random() < self.focus_fraction:
                    centre = self._focus_pixel(index, labels, ignore, rng)
            image, labels, ignore = _crop(image, labels, ignore, self.crop,
                                          rng if self.random_crop else None, centre=centre)
        if self.augment:
            k, flip = int(rng.integers(4)), bool(rng.integers(2))
            arrays = [np.rot90(a, k) for a in (image, labels, ignore)]
            image, labels, ignore = (a[:, ::-1] if flip else a for a in arrays)
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None],
            "labels": torch.from_numpy(np.ascontiguousarray(labels)),
            "ignore": torch.from_numpy(np.ascontiguousarray(ignore)),
        }

    def _focus_pixel(self, index: int, labels: np.ndarray, ignore: np.ndarray,
                     rng: np.random.Generator) -> tuple[int, int] | None:
        """A random non-ignored pixel of a random focus class present in image ``index``."""
        if index not in self._focus:
            valid = ignore == 0
            flat = [np.flatnonzero(((labels & bit) != 0) & valid).astype(np.int32)
                    for bit in self.focus_bits]
            self._focus[index] = [f for f in flat if f.size]
        present = self._focus[index]
        if not present:
            return None
        pixels = present[int(rng.integers(len(present)))]
        y, x = divmod(int(pixels[int(rng.integers(pixels.size))]), labels.shape[1])
        return y, x


def _crop(image, labels, ignore, size: int, rng: np.random.Generator | None,
          centre: tuple[int, int] | None = None):
    h, w = image.shape
    if h < size or w < size:
        ph, pw = max(size - h, 0), max(size - w, 0)
        image = np.pad(image, ((0, ph), (0, pw)))
        labels = np.pad(labels, ((0, ph), (0, pw)))
        ignore = np.pad(ignore, ((0, ph), (0, pw)), constant_values=1)
        h, w = image.shape
    if rng is None:
        y, x = (h - size) // 2, (w - size) // 2
    elif centre is not None:  # a window holding the pixel at least size // 8 from its edges
        inset = min(size // 8, (size - 1) // 2)  # (less when the pixel is near the border)
        lo_hi = [(min(max(c - size + 1 + inset, 0), n - size), min(max(c - inset, 0), n - size))
                 for c, n in zip(centre, (h, w), strict=True)]
        y, x = (int(rng.integers(lo, hi + 1)) for lo, hi in lo_hi)
    else:
        y, x = int(rng.integers(h - size + 1)), int(rng.integers(w - size + 1))
    window = (slice(y, y + size), slice(x, x + size))
    return image[window], labels[window], ignore[window]


class EpochSampler(Sampler):
    """Shuffled indices, each paired with its epoch: epoch ``e`` uses ``default_rng([seed, e])``.

    The epoch counter advances at every pass, so consecutive epochs see new orders, crops
    and symmetries; Lightning sets it at each epoch start (:meth:`set_epoch`), so a resumed
    fit continues with the epoch it stopped at, not epoch 0.
    """

    def __init__(self, n: int, *, seed: int = 0, shuffle: bool = True) -> None:
        self.n, self.seed, self.shuffle = int(n), int(seed), shuffle
        self.epoch = 0

    def __len__(self) -> int:
        return self.n

    def set_epoch(self, epoch: int) -> None:
        """Make the next pass epoch ``epoch`` (Lightning calls it at every epoch start)."""
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        self.epoch += 1
        order = (np.random.default_rng([self.seed, epoch]).permutation(self.n) if self.shuffle
                 else np.arange(self.n))
        for i in order:
            yield int(i), epoch


class ShardDataModule(pl.LightningDataModule):
    """Train/val(/test) shard sets as Lightning dataloaders.

    Parameters
    ----------
    train, val : str or Path
        Shard set folders of the training and validation splits.
    test : str or Path, optional
        Shard set of the test split (whole images, no augmentation).
    crop : int
        Training crop side, pixels.
    val_crop : int, optional
        Centred validation crop side, pixels; ``None`` validates on whole images.
    batch_size, val_batch_size : int
        Samples per training / evaluation batch.
    augment : bool
        Flips and 90-degree rotations of training crops.
    mesh : int
        Normalisation mesh, pixels.
    seed : int
        Seed of the training order, crops and augmentations.
    num_workers : int
        DataLoader worker processes (0 was fastest on 2 CPU cores).
    cache_mb : float
        Memory for normalised training and validation images, MiB per split.
    focus_classes : sequence of str
        Classes training crops may be placed around (:class:`ShardDataset`).
    focus_fraction : float
        Share of training crops placed around a focus-class pixel.
    """

    def __init__(
        self,
        train: str | Path,
        val: str | Path,
        test: str | Path | None = None,
        *,
        crop: int = 128,
        val_crop: int | None = None,
        batch_size: int = 16,
        val_batch_size: int = 4,
        augment: bool = True,
        mesh: int = DEFAULT_MESH,
        seed: int = 0,
        num_workers: int = 0,
        cache_mb: float = 1024.0,
        focus_classes: tuple[str, ...] | list[str] = (),
        focus_fraction: float = 0.0,
    ) -> None:
        super().__init__()
        if batch_size < 1 or val_batch_size < 1 or num_workers < 0:
            raise ConfigError(f"batch sizes must be >= 1 and num_workers >= 0, got "
                              f"{batch_size}, {val_batch_size}, {num_workers}")
        self.paths = {"train": train, "val": val, "test": test}
        self.crop, self.val_crop = crop, val_crop
        self.batch_size, self.val_batch_size = batch_size, val_batch_size
        self.augment, self.mesh, self.seed = augment, mesh, seed
        self.num_workers, self.cache_mb = num_workers, cache_mb
        self.focus_classes, self.focus_fraction = tuple(focus_classes), float(focus_fraction)
        self.datasets: dict[str, ShardDataset] = {}

    def setup(self, stage: str | None = None) -> None:
        """Open the shard sets the stage needs."""
        common = {"mesh": self.mesh, "seed": self.seed, "cache_mb": self.cache_mb}
        if stage in (None, "fit") and "train" not in self.datasets:
            self.datasets["train"] = ShardDataset(self.paths["train"], crop=self.crop,
                                                  random_crop=True, augment=self.augment,
                                                  focus_classes=self.focus_classes,
                                                  focus_fraction=self.focus_fraction, **common)
        if stage in (None, "fit", "validate") and "val" not in self.datasets:
            self.datasets["val"] = ShardDataset(self.paths["val"], crop=self.val_crop, **common)
        if stage in (None, "test") and self.paths["test"] is not None:
            self.datasets["test"] = ShardDataset(self.paths["test"], mesh=self.mesh, seed=self.seed)

    def _loader(self, split: str, *, batch_size: int, sampler: Sampler | None = None,
                drop_last: bool = False) -> DataLoader:
        return DataLoader(self.datasets[split], batch_size=batch_size, sampler=sampler,
                          shuffle=False, num_workers=self.num_workers, drop_last=drop_last,
                          persistent_workers=False)

    def train_dataloader(self) -> DataLoader:
        """Shuffled, cropped, augmented training batches."""
        ds = self.datasets["train"]
        return self._loader("train", batch_size=self.batch_size,
                            sampler=EpochSampler(len(ds), seed=self.seed),
                            drop_last=len(ds) >= self.batch_size)

    def val_dataloader(self) -> DataLoader:
        """Validation batches in order."""
        return self._loader("val", batch_size=self.val_batch_size)

    def test_dataloader(self) -> DataLoader:
        """Whole test images in order."""
        return self._loader("test", batch_size=self.val_batch_size)
