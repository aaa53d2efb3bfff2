"""Cleaned images: pixels flagged as detector or transient defects replaced from their neighbours.

Which pixels
------------
Those flagged in the bit mask (:mod:`mmx.serving.masks`) as one of :data:`CLEAN_CLASSES`: cosmic
rays (CR), hot pixels (HP), hot and dead columns/lines (HCL, DCL) and satellite trails
(TRL), the contaminants with no sky signal under them worth keeping. Saturation, spikes,
nebulosity, persistence and the rest are left alone: their pixels hold real, if
compromised, flux. Another set can be chosen (``classes=``).

How
---
Each flagged pixel gets the median of the good pixels in its ``(2 radius + 1)`` square,
growing from the edge of a hole inward (:func:`mmx.cleaning.defects.repair`, the same
method the clean stage uses on training frames). Pixels with no valid input value (NaN,
Inf, BLANK, a ``CCDData`` ``.mask``) are never used as neighbours and stay NaN in the
output: a cleaned image does not invent data where the input had none.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from mmx.classes import by_abbr
from mmx.cleaning.defects import repair

__all__ = ["CLEAN_CLASSES", "CLEAN_SUFFIX", "clean_bits", "inpaint", "clean_from_bitmask"]

#: classes whose pixels a cleaned image replaces
CLEAN_CLASSES: tuple[str, ...] = ("CR", "HP", "HCL", "DCL", "TRL")
CLEAN_SUFFIX = ".clean.fits"  #: file name ending of a cleaned image, ``<name>.clean.fits``


def clean_bits(classes: Iterable[str] = CLEAN_CLASSES) -> int:
    """OR of the MaxiMask bits of ``classes``.

    Raises
    ------
    ConfigError
        On an unknown class.
    """
    bits = 0
    for abbr in classes:
        bits |= by_abbr(abbr).bit
    return bits


def inpaint(image: np.ndarray, bad: np.ndarray, *, radius: int = 2) -> np.ndarray:
    """Replace ``bad`` pixels by the median of their good neighbours; no-data stays NaN.

    Parameters
    ----------
    image : numpy.ndarray
        2-D image; NaN/Inf are no-data.
    bad : numpy.ndarray of bool
        Pixels to replace.
    radius : int
        Half-width of the neighbourhood [px].

    Returns
    -------
    numpy.ndarray
        float32 copy of ``image``, changed only where ``bad`` and the input is finite.
    """
    image = np.asarray(image)
    nodata = ~np.isfinite(image)
    out = repair(image, np.asarray(bad, dtype=bool), radius=radius)
    out[nodata] = np.nan
    return out


def clean_from_bitmask(
    image: np.ndarray,
    bitmask: np.ndarray,
    *,
    classes: Iterable[str] = CLEAN_CLASSES,
    radius: int = 2,
) -> np.ndarray:
    """Cleaned copy of ``image`` given its mmx bit mask.

    Parameters
    ----------
    image : numpy.ndarray
        2-D image (NaN = no data).
    bitmask : numpy.ndarray
        Its ``bitmask``-mode mask (:mod:`mmx.serving.masks`), same shape.
    classes : iterable of str
        Classes whose pixels are replaced (default :data:`CLEAN_CLASSES`).
    radius : int
        Half-width of the neighbourhood [px].

    Returns
    -------
    numpy.ndarray
        float32 image.
    """
    bad = (np.asarray(bitmask) & clean_bits(classes)) != 0
    return inpaint(image, bad, radius=radius)
