"""Diffraction spikes (SP) of bright stars: four spikes from the spider vanes.

Model: a straight vane of the secondary-mirror support diffracts light into a thin
streak perpendicular to it (Fraunhofer diffraction by a slit-like obstruction): its
surface brightness falls roughly as ``r**-2`` along the spike (Richter 1984, *Appl. Opt.*
23, 1907; the spike envelope of a thin vane), with the seeing PSF as its cross-section.
A cross-shaped spider gives 4 spikes at ``spider_angle + k * 90`` deg (the record's
angle). The spike at ``r = fwhm`` is ``level`` (log-uniform, 0.3-5 %, typical of 4-vane
spiders, e.g. the CFHT MegaCam spikes that MaxiMask trained on) of the star's peak, with
index ``slope``; broad-band light makes it blotchy, modelled by a mild radial modulation.
Near the core the spike is tapered as ``(r / 1.5 fwhm)**2`` so the star's core stays
the star's (it saturates and is labelled SAT by the final saturation pass).

The star itself (Moffat profile) is added as a *source*: unlabelled here; the
BG/BBG rule and the saturation pass label it later like any real star.
"""

from __future__ import annotations

import numpy as np

from mmx.synthesis.contaminants._core import (
    Injection,
    _add_moffat,
    _count,
    _finish,
    _fwhm,
    _gain,
    _loguniform,
    _noise,
    _shot_noise,
    _uniform,
)

__all__ = ["inject_spikes"]


def inject_spikes(
    image: np.ndarray,
    *,
    record: dict,
    rng: np.random.Generator,
    number: float = 1.0,
    peak: list[float] = (0.5, 300.0),
    level: list[float] = (0.003, 0.05),
    slope: list[float] = (1.6, 2.2),
    width: list[float] = (0.8, 1.3),
    modulation: list[float] = (0.0, 0.4),
    beta: list[float] = (2.5, 4.5),
    edge_margin: float = 0.1,
    wing_cut: float = 0.5,
) -> Injection:
    """Add bright stars with four diffraction spikes.

    Parameters
    ----------
    image : numpy.ndarray
        Cutout [ADU], not modified.
    record : dict
        Its record: ``spider_angle`` [deg], ``fwhm`` [px], ``saturate``, ``gain``,
        ``sky_noise``.
    rng : numpy.random.Generator
        Source of every random draw.
    number : float
        Mean number of stars (Poisson, at least 1).
    peak : [float, float]
        Star peak [units of ``saturate``], log-uniform (above 1 it saturates later).
    level : [float, float]
        Spike surface brightness at ``r = fwhm`` [fraction of the star's peak].
    slope : [float, float]
        Power-law index of the fall-off along the spike.
    width : [float, float]
        Spike cross-section sigma [units of the PSF sigma].
    modulation : [float, float]
        Relative amplitude of the radial (chromatic) modulation along the spike.
    beta : [float, float]
        Moffat index of the star.
    edge_margin : float
        Stars may lie this fraction of the cutout size outside it (spikes only enter).
    wing_cut : float
        Spike and star light below this many sky-noise sigma is not added.

    Returns
    -------
    Injection
        ``truth`` = spike pixels; ``source`` = the rest of the stars.
    """
    ny, nx = image.shape
    noise = _noise(record)
    fwhm = _fwhm(record)
    sigma_psf = fwhm / 2.3548
    sat_level = float(record.get("saturate") or 6e4)
    angle0 = np.deg2rad(float(record.get("spider_angle") or 0.0))
    spike = np.zeros(image.shape)
    star = np.zeros(image.shape)
    yy, xx = np.mgrid[0:ny, 0:nx].astype(np.float64)
    n = _count(rng, number, "SP number")
    for _ in range(n):
        x0 = rng.uniform(-edge_margin * nx, (1 + edge_margin) * nx)
        y0 = rng.uniform(-edge_margin * ny, (1 + edge_margin) * ny)
        pk = _loguniform(rng, peak, "SP peak") * sat_level
        _add_moffat(star, x0, y0, peak=pk, fwhm=fwhm, beta=_uniform(rng, beta, "SP beta",
                                                                     low=1.01),
                    floor=wing_cut * noise)
        s0 = _loguniform(rng, level, "SP level") * pk
        index = _uniform(rng, slope, "SP slope", low=0.0)
        sw = _uniform(rng, width, "SP width", low=0.05) * sigma_psf
        mod = _uniform(rng, modulation, "SP modulation", low=0.0, high=1.0)
        period = rng.uniform(2.0, 6.0) * fwhm
        dx, dy = xx - x0, yy - y0
        for k in range(4):
            a = angle0 + k * np.pi / 2 + rng.normal(0.0, 0.002)
            along = dx * np.cos(a) + dy * np.sin(a)
            across = -dx * np.sin(a) + dy * np.cos(a)
            r = np.maximum(along, 1e-3)
            prof = s0 * (np.maximum(r, fwhm) / fwhm) ** (-index)
            prof *= np.minimum(r / (1.5 * fwhm), 1.0) ** 2
            prof *= 1.0 + mod * np.sin(2 * np.pi * r / period + rng.uniform(0, 2 * np.pi))
            prof *= np.exp(-0.5 * (across / sw) ** 2) * (along > 0)
            spike += prof
    truth = spike >= wing_cut * noise
    source = (star > 0) & ~truth
    delta = _shot_noise(np.where(truth, spike, 0.0) + star, _gain(record), rng)
    return _finish("SP", image, delta, truth, source=source, info={"stars": n})
