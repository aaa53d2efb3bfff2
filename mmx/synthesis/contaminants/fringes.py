"""Residual fringing (FR): interference bands of night-sky lines in a thin CCD.

Model: monochromatic sky emission lines (OH, in the red: i, z, y bands) interfere
between the front and back surfaces of a thinned CCD, so the response follows
``cos(4 pi n t(x, y) / lambda)`` with ``t`` the local thickness: bands that trace the
contours of a smooth thickness map (Howell 2006, *Handbook of CCD Astronomy*, 2nd ed.,
sect. 4.5; Gullixson 1992, ASP Conf. Ser. 23, 130). The phase here is a tilted plane
(the wedge of the device, ``period`` px between bands) plus a smooth Gaussian random
field (``P(k) ~ k**-4``) worth ``warp`` periods of thickness variation, which bends the
bands into the typical whorls. Raw fringes reach a few to ~10 % of the sky; after a
fringe frame is subtracted the *residual* is ~10x weaker, so the amplitude is drawn in
sky-noise sigma (``amplitude``, log-uniform: just visible to obvious), modulated by a
smooth envelope (fringe frames scale imperfectly across a CCD). The pattern covers the
whole cutout; where it is weaker than ``wing_cut`` sigma (zero crossings) nothing is
added and nothing labelled.
"""

from __future__ import annotations

import numpy as np

from mmx.synthesis.contaminants._core import (
    Injection,
    _finish,
    _gaussian_field,
    _loguniform,
    _noise,
    _uniform,
)

__all__ = ["inject_fringes"]


def inject_fringes(
    image: np.ndarray,
    *,
    record: dict,
    rng: np.random.Generator,
    amplitude: list[float] = (0.6, 4.0),
    period: list[float] = (12.0, 60.0),
    warp: list[float] = (0.5, 3.0),
    envelope: list[float] = (0.0, 0.5),
    wing_cut: float = 0.1,
) -> Injection:
    """Add a residual fringe pattern over the whole cutout.

    Parameters
    ----------
    image : numpy.ndarray
        Cutout [ADU], not modified.
    record : dict
        Its record (``sky_noise`` [ADU]).
    rng : numpy.random.Generator
        Source of every random draw.
    amplitude : [float, float]
        Fringe semi-amplitude [sky-noise sigma], log-uniform.
    period : [float, float]
        Distance between bands [px], log-uniform.
    warp : [float, float]
        Rms of the random thickness variation [periods].
    envelope : [float, float]
        Rms of the relative amplitude variation across the cutout.
    wing_cut : float
        Pixels where the pattern is below this many sky-noise sigma are left alone.

    Returns
    -------
    Injection
        ``truth`` = pixels where the pattern reaches the cut.
    """
    ny, nx = image.shape
    noise = _noise(record)
    p = _loguniform(rng, period, "FR period")
    theta = rng.uniform(0, np.pi)
    yy, xx = np.mgrid[0:ny, 0:nx].astype(np.float64)
    phase = (xx * np.cos(theta) + yy * np.sin(theta)) / p
    phase += _uniform(rng, warp, "FR warp", low=0.0) * _gaussian_field((ny, nx), 4.0, rng)
    env = 1.0 + _uniform(rng, envelope, "FR envelope", low=0.0) * _gaussian_field((ny, nx),
                                                                                    4.0, rng)
    amp = _loguniform(rng, amplitude, "FR amplitude") * noise
    delta = amp * np.clip(env, 0.0, None) * np.cos(2 * np.pi * (phase + rng.uniform()))
    keep = np.abs(delta) >= wing_cut * noise
    return _finish("FR", image, delta, keep, info={"period": round(p, 2)})
