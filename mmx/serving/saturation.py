"""Saturation from the header: pixels at or above ``SATURATE`` are SAT, whatever the network says.

The network learns saturation from the look of a plateau; a camera's header knows the
level. Where an image's header (or a ``CCDData``'s meta) has a numeric, finite
``SATURATE`` (the SExtractor convention, in the units of the pixels), every finite pixel
``>= SATURATE`` is flagged SAT in the mask, in every output mode; pixels the network
flags SAT below it stay flagged (bleed trails and the wings of a plateau are SAT too).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from mmx.classes import BITMASK_DTYPE, by_abbr

__all__ = ["SATURATE_KEY", "saturation_level", "flag_saturated"]

SATURATE_KEY = "SATURATE"  #: header key of the saturation level, in pixel units


def saturation_level(header: Mapping | None) -> float | None:
    """The ``SATURATE`` value of a header or meta mapping, or None if absent or not a number.

    Parameters
    ----------
    header : astropy.io.fits.Header or mapping, optional
        Header of the image.
    """
    if header is None:
        return None
    try:
        value = header.get(SATURATE_KEY)
    except Exception:  # an unparsable card
        return None
    if value is None or isinstance(value, bool | str):
        return None
    try:
        level = float(value)
    except (TypeError, ValueError):
        return None
    return level if np.isfinite(level) else None


def flag_saturated(writer, image: np.ndarray, level: float) -> np.ndarray:
    """Set SAT in ``writer``'s array where ``image >= level``; return those pixels.

    Parameters
    ----------
    writer : mmx.serving.masks.MaskWriter
        The filled writer of ``image``; nothing changes when SAT is not one of its classes.
    image : numpy.ndarray
        The 2-D pixels the mask was made from (NaN = no data, never flagged).
    level : float
        Saturation level, in the units of ``image``.

    Returns
    -------
    numpy.ndarray of bool
        The pixels at or above ``level``.
    """
    from mmx.serving.masks import OutputMode

    with np.errstate(invalid="ignore"):
        hit = np.isfinite(image) & (image >= level)
    abbrs = [c.abbr for c in writer.classes]
    if "SAT" not in abbrs or not hit.any():
        return hit
    mode = OutputMode(writer.mode)
    if mode is OutputMode.BITMASK:
        writer.array[hit] |= BITMASK_DTYPE.type(by_abbr("SAT").bit)
    else:
        plane = writer.array[abbrs.index("SAT")]
        plane[hit] = {OutputMode.PROB: 1.0, OutputMode.PROB8: 255, OutputMode.BINARY: 1}[mode]
    return hit
