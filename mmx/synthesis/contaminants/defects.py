"""Detector defects: hot and dead columns/lines and clusters (HCL, DCL), hot and dead pixels.

Models (Janesick 2001, *Scientific Charge-Coupled Devices*, SPIE, ch. 7 "dark current"
and "charge transfer": dark spikes, column defects and traps; Bertin's MaxiMask paper,
Paillassa et al. 2020, A&A 634, A48, sect. 3.2 for the classes):

* **HCL** hot columns (rows, rarer: ``line_fraction``): a dark-current or trap-release
  offset along a column, either the full height or *partial*, from a defect to the
  read-out edge (charge leaking as the column is clocked), 1-``max_width`` adjacent
  columns. The offset is ``amplitude`` sky-noise sigma (log-uniform: from barely
  visible to hundreds of sigma) with a slow 10 % modulation along the column.
* **DCL** dead columns/lines and dead clusters: pixels with quantum efficiency cut to a
  fraction ``response`` of normal (blocked columns, dust shadows, QE holes): the new
  value is ``response * value + (1 - response) * n``, ``n ~ N(0, read_noise)`` (a dead
  pixel reads the bias, i.e. 0 ADU here, plus read noise). Clusters are irregular blobs
  (thresholded smoothed noise) of 3-``cluster_size`` px.
* **HP** single hot pixels: offsets of ``amplitude`` sigma (the long tail of the dark
  current distribution, Janesick 2001).
* **DP** single dead pixels: response as DCL.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from mmx.synthesis.contaminants._core import (
    Injection,
    _count,
    _finish,
    _loguniform,
    _noise,
    _probability,
    _range,
    _replace,
    _uniform,
)

__all__ = ["inject_hot_columns", "inject_dead_columns", "inject_hot_pixels",
           "inject_dead_pixels"]


def _line_mask(rng: np.random.Generator, shape: tuple[int, int], *, line_fraction: float,
               partial_fraction: float, max_width: int) -> np.ndarray:
    """One column (or row) feature, full or partial, ``1..max_width`` px wide."""
    mask = np.zeros(shape, dtype=bool)
    rows = rng.uniform() < line_fraction
    length, across = (shape[1], shape[0]) if rows else (shape[0], shape[1])
    width = int(rng.integers(1, max(1, max_width) + 1))
    start = int(rng.integers(0, max(across - width, 0) + 1))
    lo, hi = 0, length
    if rng.uniform() < partial_fraction:
        cut = int(rng.integers(1, length))
        lo, hi = (cut, length) if rng.uniform() < 0.5 else (0, cut)
    if rows:
        mask[start:start + width, lo:hi] = True
    else:
        mask[lo:hi, start:start + width] = True
    return mask


def inject_hot_columns(
    image: np.ndarray,
    *,
    record: dict,
    rng: np.random.Generator,
    number: float = 1.5,
    amplitude: list[float] = (2.0, 300.0),
    line_fraction: float = 0.2,
    partial_fraction: float = 0.5,
    max_width: int = 3,
) -> Injection:
    """Add hot columns and lines (HCL).

    Parameters
    ----------
    image : numpy.ndarray
        Cutout [ADU], not modified.
    record : dict
        Its record (``sky_noise`` [ADU]).
    rng : numpy.random.Generator
        Source of every random draw.
    number : float
        Mean number of features per image (Poisson, at least 1).
    amplitude : [float, float]
        Offset range [sky-noise sigma], log-uniform per feature.
    line_fraction : float
        Probability that a feature is a row rather than a column.
    partial_fraction : float
        Probability that it stops part-way (runs from a defect to the edge).
    max_width : int
        Largest width [px].

    Returns
    -------
    Injection
        ``truth`` = every pixel of every feature.
    """
    noise = _noise(record)
    line_fraction = _probability(line_fraction, "HCL line_fraction")
    partial_fraction = _probability(partial_fraction, "HCL partial_fraction")
    delta = np.zeros(image.shape)
    n = _count(rng, number, "HCL number")
    for _ in range(n):
        mask = _line_mask(rng, image.shape, line_fraction=line_fraction,
                          partial_fraction=partial_fraction, max_width=max_width)
        amp = _loguniform(rng, amplitude, "HCL amplitude") * noise
        ys, xs = np.nonzero(mask)
        period = rng.uniform(50.0, 400.0)
        delta[ys, xs] += amp * (1.0 + 0.1 * np.sin(2 * np.pi * (ys + xs) / period
                                                   + rng.uniform(0, 2 * np.pi)))
    return _finish("HCL", image, delta, delta > 0, info={"features": n})


def _dead_values(image: np.ndarray, record: dict, rng: np.random.Generator, response,
                 name: str) -> tuple[np.ndarray, float]:
    frac = _uniform(rng, response, name, low=0.0, high=1.0)
    read_noise = float(record.get("read_noise") or _noise(record))
    floor = rng.standard_normal(image.shape) * read_noise
    return frac * image + (1.0 - frac) * floor, frac


def inject_dead_columns(
    image: np.ndarray,
    *,
    record: dict,
    rng: np.random.Generator,
    number: float = 1.5,
    response: list[float] = (0.0, 0.6),
    cluster_fraction: float = 0.35,
    cluster_size: list[float] = (3.0, 40.0),
    line_fraction: float = 0.2,
    partial_fraction: float = 0.5,
    max_width: int = 3,
) -> Injection:
    """Kill columns, lines or clusters of pixels (DCL).

    Parameters
    ----------
    image : numpy.ndarray
        Cutout [ADU], not modified.
    record : dict
        Its record (``read_noise`` [ADU]).
    rng : numpy.random.Generator
        Source of every random draw.
    number : float
        Mean number of features per image (Poisson, at least 1).
    response : [float, float]
        Remaining fraction of the signal, uniform per feature.
    cluster_fraction : float
        Probability that a feature is a dead cluster rather than a column/line.
    cluster_size : [float, float]
        Cluster diameter range [px], log-uniform.
    line_fraction, partial_fraction, max_width
        As :func:`inject_hot_columns`.

    Returns
    -------
    Injection
        ``truth`` = every dead pixel.
    """
    cluster_fraction = _probability(cluster_fraction, "DCL cluster_fraction")
    line_fraction = _probability(line_fraction, "DCL line_fraction")
    partial_fraction = _probability(partial_fraction, "DCL partial_fraction")
    values = np.array(image, dtype=np.float64)
    keep = np.zeros(image.shape, dtype=bool)
    n = _count(rng, number, "DCL number")
    for _ in range(n):
        if rng.uniform() < cluster_fraction:
            size = _loguniform(rng, cluster_size, "DCL cluster_size")
            half = int(np.ceil(size))
            blob = ndimage.gaussian_filter(rng.standard_normal((2 * half + 1,) * 2), size / 4)
            yy, xx = np.indices(blob.shape) - half
            blob = (blob / max(blob.std(), 1e-12) + 2.0 * (1 - np.hypot(xx, yy) / (size / 2))) > 0
            blob &= np.hypot(xx, yy) <= size / 2
            blob[half, half] = True
            mask = np.zeros(image.shape, dtype=bool)
            cy, cx = int(rng.integers(0, image.shape[0])), int(rng.integers(0, image.shape[1]))
            ys, xs = np.nonzero(blob)
            ys, xs = ys + cy - half, xs + cx - half
            ok = (ys >= 0) & (ys < image.shape[0]) & (xs >= 0) & (xs < image.shape[1])
            mask[ys[ok], xs[ok]] = True
        else:
            mask = _line_mask(rng, image.shape, line_fraction=line_fraction,
                              partial_fraction=partial_fraction, max_width=max_width)
        dead, _ = _dead_values(image, record, rng, response, "DCL response")
        values[mask] = dead[mask]
        keep |= mask
    return _replace("DCL", image, values, keep, info={"features": n})


def _pixels(rng: np.random.Generator, shape: tuple[int, int], n: int) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    flat = rng.choice(shape[0] * shape[1], size=min(n, shape[0] * shape[1]), replace=False)
    mask.flat[flat] = True
    return mask


def inject_hot_pixels(
    image: np.ndarray,
    *,
    record: dict,
    rng: np.random.Generator,
    number: float = 60.0,
    amplitude: list[float] = (5.0, 2000.0),
) -> Injection:
    """Add isolated hot pixels (HP).

    Parameters
    ----------
    image : numpy.ndarray
        Cutout [ADU], not modified.
    record : dict
        Its record (``sky_noise`` [ADU]).
    rng : numpy.random.Generator
        Source of every random draw.
    number : float
        Mean number of hot pixels per image (Poisson, at least 1).
    amplitude : [float, float]
        Excess range [sky-noise sigma], log-uniform per pixel.

    Returns
    -------
    Injection
        ``truth`` = the hot pixels.
    """
    n = _count(rng, number, "HP number")
    mask = _pixels(rng, image.shape, n)
    lo, hi = _range(amplitude, "HP amplitude", low=1e-6)
    amp = np.exp(rng.uniform(np.log(lo), np.log(hi), size=image.shape)) * _noise(record)
    return _finish("HP", image, np.where(mask, amp, 0.0), mask, info={"pixels": n})


def inject_dead_pixels(
    image: np.ndarray,
    *,
    record: dict,
    rng: np.random.Generator,
    number: float = 60.0,
    response: list[float] = (0.0, 0.5),
) -> Injection:
    """Kill isolated pixels (DP).

    Parameters
    ----------
    image : numpy.ndarray
        Cutout [ADU], not modified.
    record : dict
        Its record (``read_noise`` [ADU]).
    rng : numpy.random.Generator
        Source of every random draw.
    number : float
        Mean number of dead pixels per image (Poisson, at least 1).
    response : [float, float]
        Remaining fraction of the signal, uniform per image.

    Returns
    -------
    Injection
        ``truth`` = the dead pixels.
    """
    n = _count(rng, number, "DP number")
    mask = _pixels(rng, image.shape, n)
    values, _ = _dead_values(image, record, rng, response, "DP response")
    return _replace("DP", image, values, mask, info={"pixels": n})
