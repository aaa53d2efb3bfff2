"""Saturation (SAT): the full-well ceiling with charge bleeding along columns, and saturated stars.

Model (Janesick 2001, *Scientific Charge-Coupled Devices*, "blooming"; bleed trails
of DECam, Bernstein et al. 2017, PASP 129, 114502): a pixel holds at most the record's
``saturate`` level (ADU above bias: the full well, or the ADC ceiling when that comes
first). Charge above full well is not lost: it spills along the column (the direction
of the parallel clocks, axis 0), filling the neighbouring pixels up to full well in
both directions (a fraction ``asymmetry`` up, the rest down) until it is used up; the
last pixel of a bleed holds the remainder. When the ADC saturates first, or the camera
has anti-blooming, pixels are only clipped (``bleed=False``). The charge is
conserved exactly, so bleed length follows from the star's flux: a bright star's
bleed is ~ ``excess flux / (saturate * width)`` pixels long.

:func:`saturate` is applied once after every injection (it labels SAT wherever any
contaminant or star went past full well); :func:`inject_saturated_stars` adds stars
whose peak exceeds it (Moffat profiles, Moffat 1969, beta 2.5-4.5 as measured on
ground-based seeing PSFs, Trujillo et al. 2001, MNRAS 328, 977) and saturates them.
"""

from __future__ import annotations

import numpy as np

from mmx.errors import ConfigError
from mmx.synthesis.contaminants._core import (
    Injection,
    _add_moffat,
    _count,
    _fwhm,
    _gain,
    _loguniform,
    _noise,
    _probability,
    _shot_noise,
    _uniform,
)

__all__ = ["saturate", "inject_saturated_stars"]


def _fill(column: np.ndarray, start: int, step: int, charge: float, level: float) -> None:
    """Spill ``charge`` from row ``start`` onward (``step`` = +1 or -1), filling to ``level``."""
    if charge <= 0:
        return
    idx = np.arange(start, column.size) if step > 0 else np.arange(start, -1, -1)
    if idx.size == 0:
        return
    room = np.clip(level - column[idx], 0.0, None)
    filled = np.cumsum(room)
    n_full = int(np.searchsorted(filled, charge, side="right"))
    column[idx[:n_full]] = level
    if n_full < idx.size:
        before = filled[n_full - 1] if n_full else 0.0
        column[idx[n_full]] += charge - before


def saturate(
    image: np.ndarray,
    *,
    level: float,
    rng: np.random.Generator,
    bleed: bool = True,
    asymmetry: list[float] = (0.3, 0.7),
) -> Injection:
    """Clip an image at full well, spilling the excess charge along columns.

    Parameters
    ----------
    image : numpy.ndarray
        Image [ADU above bias], not modified.
    level : float
        Saturation level [ADU above bias] (the record's ``saturate``).
    rng : numpy.random.Generator
        Draws the up/down share of each bleed.
    bleed : bool
        Spill the excess (True) or only clip it (ADC ceiling, anti-blooming).
    asymmetry : [float, float]
        Range of the fraction of the excess that bleeds towards lower row numbers.

    Returns
    -------
    Injection
        ``truth`` = every pixel at or above ``level`` afterwards plus every pixel that
        received spilled charge (the whole bleed trail); pixels already at ``level``
        are labelled although unchanged.

    Raises
    ------
    ConfigError
        If ``level`` is not a positive number.
    """
    level = float(level)
    if not (np.isfinite(level) and level > 0):
        raise ConfigError(f"saturation level must be a positive number of ADU, got {level}")
    image = np.asarray(image, dtype=np.float32)
    new = np.array(image, dtype=np.float64)
    over = new > level
    share = _uniform(rng, asymmetry, "SAT asymmetry", low=0.0, high=1.0)
    for x in np.nonzero(over.any(axis=0))[0]:
        col = new[:, x]
        rows = np.nonzero(col > level)[0]
        if not bleed:
            col[rows] = level
            continue
        # contiguous runs of over-full pixels, each spilling its own excess
        breaks = np.nonzero(np.diff(rows) > 1)[0]
        for run in np.split(rows, breaks + 1):
            excess = float(np.sum(col[run] - level))
            col[run] = level
            _fill(col, run[0] - 1, -1, excess * share, level)
            _fill(col, run[-1] + 1, +1, excess * (1.0 - share), level)
    out = new.astype(np.float32)
    changed = out != image
    truth = changed | (out >= np.float32(level))
    return Injection("SAT", out, truth, np.zeros(image.shape, bool),
                     info={"pixels": int(truth.sum())})


def inject_saturated_stars(
    image: np.ndarray,
    *,
    record: dict,
    rng: np.random.Generator,
    number: float = 1.0,
    peak: list[float] = (1.5, 200.0),
    beta: list[float] = (2.5, 4.5),
    bleed_probability: float = 0.85,
    asymmetry: list[float] = (0.3, 0.7),
    wing_cut: float = 0.5,
) -> Injection:
    """Add bright stars whose cores saturate, with bleed trails.

    Parameters
    ----------
    image : numpy.ndarray
        Cutout [ADU], not modified.
    record : dict
        Its record: ``saturate`` [ADU above bias], ``fwhm`` [px], ``gain``, ``sky_noise``.
    rng : numpy.random.Generator
        Source of every random draw.
    number : float
        Mean number of stars (Poisson, at least 1).
    peak : [float, float]
        Peak of the unsaturated profile [units of ``saturate``], log-uniform.
    beta : [float, float]
        Moffat index range.
    bleed_probability : float
        Probability that the detector bleeds (else it only clips).
    asymmetry : [float, float]
        See :func:`saturate`.
    wing_cut : float
        Star wings below this many sky-noise sigma are not added.

    Returns
    -------
    Injection
        ``truth`` = saturated and bleed pixels; ``source`` = the rest of the stars.
    """
    level = float(record["saturate"])
    noise = _noise(record)
    fwhm = _fwhm(record)
    delta = np.zeros(image.shape)
    n = _count(rng, number, "SAT number")
    for _ in range(n):
        _add_moffat(delta, rng.uniform(0, image.shape[1] - 1), rng.uniform(0, image.shape[0] - 1),
                    peak=_loguniform(rng, peak, "SAT peak") * level, fwhm=fwhm,
                    beta=_uniform(rng, beta, "SAT beta", low=1.01), floor=wing_cut * noise)
    star = delta > 0
    with_star = np.array(image, dtype=np.float32)
    with_star[star] = (image[star] + _shot_noise(delta, _gain(record), rng)[star])
    bleed = rng.uniform() < _probability(bleed_probability, "SAT bleed_probability")
    sat = saturate(with_star, level=level, rng=rng, bleed=bleed, asymmetry=asymmetry)
    changed = sat.image != np.asarray(image, dtype=np.float32)
    truth = sat.truth & changed
    return Injection("SAT", sat.image, truth, changed & ~truth,
                     info={"stars": n, "bleed": bool(bleed)})
