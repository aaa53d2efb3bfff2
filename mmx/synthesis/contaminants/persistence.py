"""Persistence (P): decaying ghosts of bright stars from earlier exposures.

Model: charge trapped where an earlier exposure over-filled the pixels is released
during the next ones (residual bulk image in deep-depletion and front-side CCDs,
Janesick 2001, *Scientific Charge-Coupled Devices*, sect. 5.4; image persistence in
near-infrared arrays, Smith et al. 2008, Proc. SPIE 7021, 70210J; Long et al. 2015,
WFC3 ISR 2015-15). The ghost therefore has the shape of the *saturated* part of the
earlier star: ``min(star / full_well, 1)**sharpness``, a flat-topped disc with soft
edges, plus a ghost of its bleed column when it bled. Its amplitude decays with the
time since that exposure as a power law ``t**-decay`` (decay ~ 1, Smith et al. 2008;
Long et al. 2015): a dithered sequence leaves 1-``ghosts`` ghosts of the same star at
successive offsets, each weaker than the last by ``(j + 1)**-decay``. The newest
ghost's level is drawn in sky-noise sigma (``amplitude``, log-uniform, just visible to
strong). Positions are random (the earlier pointing is unrelated to this cutout).
Light below ``wing_cut`` sigma is not added.
"""

from __future__ import annotations

import numpy as np

from mmx.synthesis.contaminants._core import (
    Injection,
    _count,
    _finish,
    _fwhm,
    _loguniform,
    _noise,
    _probability,
    _uniform,
)

__all__ = ["inject_persistence"]


def inject_persistence(
    image: np.ndarray,
    *,
    record: dict,
    rng: np.random.Generator,
    number: float = 1.5,
    amplitude: list[float] = (1.5, 30.0),
    star_peak: list[float] = (3.0, 1000.0),
    sharpness: list[float] = (1.0, 3.0),
    ghosts: int = 3,
    dither: list[float] = (10.0, 80.0),
    decay: list[float] = (0.8, 1.3),
    bleed_probability: float = 0.5,
    wing_cut: float = 0.5,
) -> Injection:
    """Add persistence ghosts of bright stars.

    Parameters
    ----------
    image : numpy.ndarray
        Cutout [ADU], not modified.
    record : dict
        Its record (``fwhm`` [px], ``sky_noise`` [ADU]).
    rng : numpy.random.Generator
        Source of every random draw.
    number : float
        Mean number of earlier bright stars (Poisson, at least 1).
    amplitude : [float, float]
        Level of the newest ghost's flat top [sky-noise sigma], log-uniform.
    star_peak : [float, float]
        Peak of the earlier star [units of full well], log-uniform: sets ghost size.
    sharpness : [float, float]
        Exponent of the ghost edge profile.
    ghosts : int
        Largest number of successive ghosts per star.
    dither : [float, float]
        Offset between successive earlier exposures [px].
    decay : [float, float]
        Power-law index of the decay with time.
    bleed_probability : float
        Probability that the earlier star bled (a ghost column segment).
    wing_cut : float
        Ghost light below this many sky-noise sigma is not added.

    Returns
    -------
    Injection
        ``truth`` = ghost pixels above the cut.
    """
    ny, nx = image.shape
    noise = _noise(record)
    fwhm = _fwhm(record)
    alpha_beta = 3.0
    alpha = fwhm / (2.0 * np.sqrt(2.0 ** (1.0 / alpha_beta) - 1.0))
    yy, xx = np.mgrid[0:ny, 0:nx].astype(np.float64)
    delta = np.zeros(image.shape)
    n = _count(rng, number, "P number")
    for _ in range(n):
        amp = _loguniform(rng, amplitude, "P amplitude") * noise
        pk = _loguniform(rng, star_peak, "P star_peak")
        sharp = _uniform(rng, sharpness, "P sharpness", low=0.1)
        index = _uniform(rng, decay, "P decay", low=0.0)
        x, y = rng.uniform(0, nx - 1), rng.uniform(0, ny - 1)
        step = _uniform(rng, dither, "P dither", low=0.0)
        direction = rng.uniform(0, 2 * np.pi)
        # the earlier star's bleed: its flux (in full wells) spread over ~2 alpha columns
        bled = rng.uniform() < _probability(bleed_probability, "P bleed_probability")
        flux = np.pi * alpha**2 * pk / (alpha_beta - 1.0)
        half = 0.5 * flux / (2.0 * alpha + 1.0) if bled else 0.0
        for j in range(int(rng.integers(1, max(int(ghosts), 1) + 1))):
            gx = x + j * step * np.cos(direction)
            gy = y + j * step * np.sin(direction)
            r2 = (xx - gx) ** 2 + (yy - gy) ** 2
            shape = np.minimum(pk * (1.0 + r2 / alpha**2) ** (-alpha_beta), 1.0) ** sharp
            if bled:
                col = (np.abs(xx - gx) < 0.5 + alpha) & (np.abs(yy - gy) < half)
                shape = np.maximum(shape, 0.6 * col)
            delta += amp * (j + 1.0) ** (-index) * shape
    keep = delta >= wing_cut * noise
    return _finish("P", image, np.where(keep, delta, 0.0), keep, info={"stars": n})
