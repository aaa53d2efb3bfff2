"""Nebulosity (NEB): diffuse, filamentary emission from a power-law random field.

Model: Galactic cirrus and HII/reflection nebulae have a power spectrum ``P(k) ~
k**-slope`` with ``slope ~ 2.5-3.5`` over a wide range of scales (Miville-Deschenes et
al. 2007, A&A 469, 595: 2.9 +- 0.2 for cirrus; Gautier et al. 1992, AJ 103, 1313), and a
filamentary texture (Miville-Deschenes et al. 2016, A&A 593, A4). The field is a
Gaussian random field with that spectrum, mixed with a *ridged* version of itself
(``1 - |g|``, sharp ridges along the zero contours: filaments) by ``filaments``, and
exponentiated (log-normal intensity, as observed for dust emission). Only the part of
the field above its ``1 - coverage`` quantile is kept, so the nebula covers a fraction
of the cutout and clean sky remains; its brightest pixel is ``peak`` sky-noise sigma.
Photon noise of the added light is included; light below ``wing_cut`` sigma is not added.
"""

from __future__ import annotations

import numpy as np

from mmx.synthesis.contaminants._core import (
    Injection,
    _finish,
    _gain,
    _gaussian_field,
    _loguniform,
    _noise,
    _shot_noise,
    _uniform,
)

__all__ = ["inject_nebulosity"]


def inject_nebulosity(
    image: np.ndarray,
    *,
    record: dict,
    rng: np.random.Generator,
    slope: list[float] = (2.5, 3.5),
    filaments: list[float] = (0.0, 0.8),
    contrast: list[float] = (0.5, 1.5),
    coverage: list[float] = (0.15, 0.7),
    peak: list[float] = (1.5, 40.0),
    wing_cut: float = 0.1,
) -> Injection:
    """Add a patch of diffuse nebulosity.

    Parameters
    ----------
    image : numpy.ndarray
        Cutout [ADU], not modified.
    record : dict
        Its record (``sky_noise`` [ADU], ``gain`` [e-/ADU]).
    rng : numpy.random.Generator
        Source of every random draw.
    slope : [float, float]
        Power-spectrum index of the field.
    filaments : [float, float]
        Weight of the ridged (filamentary) component, 0-1.
    contrast : [float, float]
        Rms of the log-intensity (log-normal contrast).
    coverage : [float, float]
        Fraction of the cutout the nebula covers before the cut.
    peak : [float, float]
        Brightest added surface brightness [sky-noise sigma], log-uniform.
    wing_cut : float
        Light below this many sky-noise sigma is not added.

    Returns
    -------
    Injection
        ``truth`` = pixels with nebular light above the cut.
    """
    noise = _noise(record)
    g = _gaussian_field(image.shape, _uniform(rng, slope, "NEB slope", low=0.0), rng)
    w = _uniform(rng, filaments, "NEB filaments", low=0.0, high=1.0)
    ridged = 1.0 - np.abs(g)
    ridged = (ridged - ridged.mean()) / max(ridged.std(), 1e-12)
    field = np.exp(_uniform(rng, contrast, "NEB contrast", low=0.0) * ((1 - w) * g + w * ridged))
    cover = _uniform(rng, coverage, "NEB coverage", low=0.0, high=1.0)
    floor = np.quantile(field, 1.0 - cover)
    excess = np.clip(field - floor, 0.0, None)
    top = excess.max()
    delta = excess / top * _loguniform(rng, peak, "NEB peak") * noise if top > 0 else excess
    keep = delta >= wing_cut * noise
    delta = _shot_noise(np.where(keep, delta, 0.0), _gain(record), rng)
    return _finish("NEB", image, delta, keep, info={"coverage": round(float(keep.mean()), 3)})
