"""Satellite and aircraft trails (TRL): PSF-convolved lines across the cutout.

Model: an object moving across the field during the exposure leaves a line whose
cross-section is the seeing PSF (Gaussian of the record's ``fwhm``), widened by
defocus for near objects (``defocus``: low-orbit satellites are out of focus for large
telescopes, Tyson et al. 2020, AJ 160, 226; aircraft even more). The line crosses the
whole cutout, straight or slightly curved (``sagitta`` px over the cutout: orbital
arcs and aircraft turns). Peak surface brightness is drawn log-uniformly from just
above the noise to far beyond saturation (``peak`` in sky-noise sigma: faint geostationary
or high-orbit objects to Starlink-like trails that saturate, Tyson et al. 2020;
Hainaut & Williams 2020, A&A 636, A121), with a slow glint modulation from tumbling.
Aircraft (``plane_fraction``) show 2-3 parallel navigation lights a few px apart, the
strobes blinking (``blink_period`` px along the trail, duty cycle ``duty``).
Photon noise of the added light is included. Light below ``wing_cut`` sigma is not added.
"""

from __future__ import annotations

import numpy as np
from scipy.special import erf

from mmx.synthesis.contaminants._core import (
    Injection,
    _count,
    _finish,
    _fwhm,
    _gain,
    _loguniform,
    _noise,
    _probability,
    _shot_noise,
    _uniform,
)

__all__ = ["inject_trails"]


def _dashes(u: np.ndarray, period: float, duty: float, sigma: float, phase: float) -> np.ndarray:
    """Square wave of ``duty`` along ``u``, blurred by a Gaussian of ``sigma`` (blinking light)."""
    on = duty * period
    centred = np.mod(u - phase, period) - on / 2.0
    # distance to the centre of the nearest "on" segment, wrapped
    centred = np.where(centred > period / 2.0, centred - period, centred)
    s = np.sqrt(2.0) * max(sigma, 1e-3)
    return 0.5 * (erf((centred + on / 2.0) / s) - erf((centred - on / 2.0) / s))


def inject_trails(
    image: np.ndarray,
    *,
    record: dict,
    rng: np.random.Generator,
    number: float = 1.0,
    peak: list[float] = (1.0, 3000.0),
    defocus: list[float] = (1.0, 2.0),
    sagitta: list[float] = (0.0, 4.0),
    glint: list[float] = (0.0, 0.5),
    plane_fraction: float = 0.25,
    plane_lights: list[int] = (2, 3),
    light_spacing: list[float] = (3.0, 12.0),
    blink_period: list[float] = (8.0, 80.0),
    duty: list[float] = (0.15, 0.6),
    wing_cut: float = 0.5,
) -> Injection:
    """Add satellite or aircraft trails crossing the cutout.

    Parameters
    ----------
    image : numpy.ndarray
        Cutout [ADU], not modified.
    record : dict
        Its record: ``fwhm`` [px], ``gain`` [e-/ADU], ``sky_noise`` [ADU].
    rng : numpy.random.Generator
        Source of every random draw.
    number : float
        Mean number of trails (Poisson, at least 1).
    peak : [float, float]
        Peak surface brightness [sky-noise sigma], log-uniform.
    defocus : [float, float]
        Cross-section width [units of the PSF sigma].
    sagitta : [float, float]
        Deviation from a straight line over the cutout [px].
    glint : [float, float]
        Relative amplitude of the slow brightness modulation along satellite trails.
    plane_fraction : float
        Probability that a trail is an aircraft (parallel blinking lights).
    plane_lights : [int, int]
        Number of parallel lights of an aircraft.
    light_spacing : [float, float]
        Separation of adjacent aircraft lights [px].
    blink_period : [float, float]
        Blink period of aircraft strobes along the trail [px].
    duty : [float, float]
        Fraction of the period a strobe is on.
    wing_cut : float
        Light below this many sky-noise sigma is not added.

    Returns
    -------
    Injection
        ``truth`` = trail pixels above the cut.
    """
    ny, nx = image.shape
    noise = _noise(record)
    sigma0 = _fwhm(record) / 2.3548
    plane_fraction = _probability(plane_fraction, "TRL plane_fraction")
    yy, xx = np.mgrid[0:ny, 0:nx].astype(np.float64)
    size = float(np.hypot(ny, nx))
    delta = np.zeros(image.shape)
    n = _count(rng, number, "TRL number")
    planes = 0
    for _ in range(n):
        theta = rng.uniform(0, np.pi)
        xc, yc = rng.uniform(0, nx - 1), rng.uniform(0, ny - 1)
        u = (xx - xc) * np.cos(theta) + (yy - yc) * np.sin(theta)
        v = -(xx - xc) * np.sin(theta) + (yy - yc) * np.cos(theta)
        bend = _uniform(rng, sagitta, "TRL sagitta", low=0.0) * rng.choice([-1.0, 1.0])
        v = v - bend * (1.0 - (2.0 * u / size) ** 2)
        sigma = sigma0 * _uniform(rng, defocus, "TRL defocus", low=0.1)
        amp = _loguniform(rng, peak, "TRL peak") * noise
        if rng.uniform() < plane_fraction:
            planes += 1
            lo, hi = (int(v) for v in plane_lights)
            k = int(rng.integers(lo, hi + 1))
            spacing = _uniform(rng, light_spacing, "TRL light_spacing", low=0.0)
            offsets = (np.arange(k) - (k - 1) / 2.0) * spacing
            period = _uniform(rng, blink_period, "TRL blink_period", low=1.0)
            for j, off in enumerate(offsets):
                steady = j == k // 2 and rng.uniform() < 0.5  # a steady light between strobes
                along = 1.0 if steady else _dashes(
                    u, period, _uniform(rng, duty, "TRL duty", low=0.0, high=1.0), sigma,
                    rng.uniform(0, period))
                level = amp * (0.3 if steady else 1.0)
                delta += level * along * np.exp(-0.5 * ((v - off) / sigma) ** 2)
        else:
            g = _uniform(rng, glint, "TRL glint", low=0.0, high=1.0)
            mod = 1.0 + g * np.sin(2 * np.pi * u / rng.uniform(0.5, 3.0) / size
                                   + rng.uniform(0, 2 * np.pi))
            delta += amp * mod * np.exp(-0.5 * (v / sigma) ** 2)
    keep = delta >= wing_cut * noise
    delta = _shot_noise(np.where(keep, delta, 0.0), _gain(record), rng)
    return _finish("TRL", image, delta, keep, info={"trails": n, "planes": planes})
