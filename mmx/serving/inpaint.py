"""Cleaned images: pixels flagged as detector or transient defects replaced from their neighbours.

Which pixels
------------
Those of :data:`CLEAN_CLASSES`: cosmic rays (CR), hot pixels (HP), hot and dead
columns/lines (HCL, DCL) and satellite trails (TRL), the contaminants with no sky signal
under them worth keeping. A mask's thresholds are set for few false alarms, so the faint
wings of a cosmic ray or a trail fall below them, and replacing a good pixel by its local
median costs little: cleaning uses its own operating point (:func:`clean_mask`), the
hysteresis of L.A.Cosmic's neighbour rule. A pixel is replaced when its probability
reaches :data:`CLEAN_FRACTION` of its class's threshold and it connects to a flagged pixel
of that class; cosmic rays are grown by :data:`CR_GROWTH` px (their charge diffuses).
Saturation, spikes, nebulosity, persistence and the rest are left alone: their pixels hold
real, if compromised, flux. Another set can be chosen (``classes=``).

How
---
Each flagged pixel gets the median of the good pixels in its ``(2 radius + 1)`` square,
growing from the edge of a hole inward (:func:`mmx.cleaning.defects.repair`, the same
method the clean stage uses on training frames). Pixels with no valid input value (NaN,
Inf, BLANK, a ``CCDData`` ``.mask``) are never used as neighbours and stay NaN in the
output: a cleaned image does not invent data where the input had none.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
from scipy import ndimage

from mmx.classes import by_abbr

__all__ = ["CLEAN_CLASSES", "CLEAN_FRACTION", "CLEAN_SUFFIX", "CR_GROWTH", "clean_bits",
           "clean_mask", "inpaint", "writer_clean_mask"]

#: classes whose pixels a cleaned image replaces
CLEAN_CLASSES: tuple[str, ...] = ("CR", "HP", "HCL", "DCL", "TRL")
CLEAN_SUFFIX = ".clean.fits"  #: file name ending of a cleaned image, ``<name>.clean.fits``
#: a pixel joins a flagged region of its class down to this fraction of the class threshold
CLEAN_FRACTION = 0.1
CR_GROWTH = 1  #: cosmic rays are grown by this many pixels (8-connected) before cleaning


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
    from mmx.cleaning.defects import repair  # mmx.cleaning costs ~0.5 s of imports (scipy.signal)

    image = np.asarray(image)
    nodata = ~np.isfinite(image)
    out = repair(image, np.asarray(bad, dtype=bool), radius=radius)
    out[nodata] = np.nan
    return out


def clean_mask(flagged: Mapping[str, np.ndarray], candidate: Mapping[str, np.ndarray], *,
               protect: np.ndarray | None = None) -> np.ndarray:
    """Pixels a cleaned image replaces, from each class's flags and its weaker candidates.

    Parameters
    ----------
    flagged : mapping
        ``{abbr: bool array}``: probability at or above the class's threshold.
        Every key is cleaned.
    candidate : mapping
        ``{abbr: bool array}`` for the same keys: probability at or above
        :data:`CLEAN_FRACTION` of the threshold.
    protect : numpy.ndarray of bool, optional
        Pixels never replaced (the saturated ones: real, if compromised, flux).

    Returns
    -------
    numpy.ndarray of bool
        Candidates connected (8-connected) to a flag of their class, cosmic rays grown by
        :data:`CR_GROWTH` px.
    """
    eight = np.ones((3, 3), bool)
    bad = None
    for abbr, strong in flagged.items():
        strong = np.asarray(strong, bool)
        grown = ndimage.binary_propagation(strong, structure=eight,
                                           mask=strong | np.asarray(candidate[abbr], bool))
        if abbr == "CR" and CR_GROWTH:
            grown = ndimage.binary_dilation(grown, structure=eight, iterations=CR_GROWTH)
        bad = grown if bad is None else bad | grown
    if bad is None:
        raise ValueError("clean_mask needs at least one class")
    return bad if protect is None else bad & ~np.asarray(protect, bool)


def writer_clean_mask(writer, classes: Iterable[str]) -> np.ndarray:
    """:func:`clean_mask` of an image's mask writer (made with ``candidate_classes``).

    Its flags at the thresholds, its candidates, and its SAT plane (if any) as protected.
    """
    planes = writer.binary_planes()
    return clean_mask({a: planes[a] for a in classes}, writer.candidates,
                      protect=planes.get("SAT"))
