"""Detector characteristics of frames that are not raw read-outs.

Real frames come raw (prescan and overscan, ``BIASSEC``/``DATASEC`` inside the array) or
processed in many ways: trimmed, bias-subtracted or not, flat-fielded, sky-subtracted,
scaled to counts/s, quantised integers (``BSCALE``), cut out of a larger CCD whose
``DATASEC`` no longer describes the array, or stacked as a cube of chips. The cleaning
stage needs, for any of them, the gain, read noise, saturation level and the pedestal
(bias left in the data). :func:`characterise` takes each from the header when it is
there and plausible, else estimates it from the pixels, and says which it did.

Estimates (documented here, reported per CCD as ``*_source``):

* sky ``m`` and noise ``s`` [ADU]: medians of the mesh background and noise maps;
* a frame whose sky is within ``10 s`` of zero is sky-subtracted: all its noise counts as
  read noise (``rn = s``), and without ``GAIN`` the gain is ``assumed_noise_e / s``;
* otherwise, with ``GAIN`` and ``RDNOISE``, the sky in ADU is ``(s^2 - rn^2) g`` and the rest
  of ``m`` is pedestal (a bias left in); without ``GAIN``, or when that sky would be under
  a fifth of ``m`` (the data are not in the header's ADU: counts/s, rescaled), the frame
  is taken as photon-limited with no pedestal: ``g = m / s^2``;
* saturation: ``SATURATE`` when the data reach no higher than 1.5 times it, else the
  data maximum when at least ``plateau`` pixels sit at it (a clipped plateau), else
  ``max(data) + 1`` (nothing saturated).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy.io import fits

from mmx.cleaning.overscan import parse_section
from mmx.errors import InputError
from mmx.sky.normalize import background_maps

__all__ = ["Characteristics", "characterise", "is_raw_layout"]


@dataclass(frozen=True)
class Characteristics:
    """Detector figures of one processed frame.

    Attributes
    ----------
    gain : float
        [e-/ADU].
    read_noise : float
        [ADU].
    pedestal : float
        Bias level still in the data [ADU]; subtract it to get sky + sources.
    saturate : float
        Saturation level in the data's own units, pedestal included [ADU].
    sky_subtracted : bool
        The sky had been removed.
    sources : dict
        ``header`` or ``estimated`` per figure.
    """

    gain: float
    read_noise: float
    pedestal: float
    saturate: float
    sky_subtracted: bool
    sources: dict


def is_raw_layout(header: fits.Header, shape: tuple[int, int]) -> bool:
    """True when ``BIASSEC`` and ``DATASEC`` parse and both lie inside an array of ``shape``.

    Cut-outs and processed frames often keep the keys of the full raw CCD; those point
    outside the array and mean nothing for it.
    """
    try:
        sections = [parse_section(str(header[k])) for k in ("BIASSEC", "DATASEC")]
    except (KeyError, InputError, ValueError):
        return False
    ny, nx = shape
    return all(s.x0 >= 0 and s.y0 >= 0 and s.x1 <= nx and s.y1 <= ny for s in sections)


def _positive(header: fits.Header, key: str) -> float | None:
    value = header.get(key)
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, int | float) and np.isfinite(value) and value > 0:
        return float(value)
    return None


def characterise(image: np.ndarray, header: fits.Header, *, mesh: int = 64,
                 assumed_noise_e: float = 20.0, plateau: int = 3) -> Characteristics:
    """Gain, read noise, pedestal and saturation of a processed frame (module docstring).

    Parameters
    ----------
    image : numpy.ndarray
        The frame's pixels [ADU or any linear unit]; NaN where invalid.
    header : astropy.io.fits.Header
        Its header merged with the primary one.
    mesh : int
        Mesh of the sky and noise maps [px].
    assumed_noise_e : float
        Sky noise in electrons assumed for a sky-subtracted frame without ``GAIN`` [e-].
    plateau : int
        Pixels at the maximum that make it a saturation plateau.
    """
    finite = image[np.isfinite(image)]
    if finite.size == 0:
        raise InputError("frame has no finite pixel")
    sky, noise = background_maps(image, mesh=mesh)
    m = float(np.median(sky))
    s = max(float(np.median(noise)), 1e-6)
    gain = _positive(header, "GAIN")
    rn_e = _positive(header, "RDNOISE")
    sources = {"gain": "header" if gain else "estimated",
               "read_noise": "header" if (rn_e and gain) else "estimated"}
    sky_subtracted = abs(m) < 10.0 * s
    pedestal = 0.0
    if sky_subtracted:
        gain = gain or assumed_noise_e / s
        read_noise = s
        sources["read_noise"] = "estimated"
    elif gain and (s * s - min(rn_e / gain, s) ** 2 if rn_e else 0.75 * s * s) * gain > 0.2 * m:
        read_noise = min(rn_e / gain, s) if rn_e else 0.5 * s
        pedestal = max(m - (s * s - read_noise * read_noise) * gain, 0.0)
    else:  # no GAIN, or one that does not fit the data's units (counts/s, scaled frames)
        sources["gain"] = sources["read_noise"] = "estimated"
        gain = m / (s * s)
        read_noise = 0.5 * s
    top = float(finite.max())
    saturate = _positive(header, "SATURATE")
    sources["saturate"] = "header"
    if saturate is None or top > 1.5 * saturate:
        at_top = int(np.count_nonzero(finite >= top))
        saturate = top if at_top >= plateau else top + 1.0
        sources["saturate"] = "plateau" if at_top >= plateau else "none"
    return Characteristics(gain=float(gain), read_noise=float(read_noise),
                           pedestal=float(pedestal), saturate=float(saturate),
                           sky_subtracted=bool(sky_subtracted), sources=sources)
