"""Overscan (bias) subtraction and trimming of one raw CCD read-out.

The bias level is measured in the overscan strip named by ``BIASSEC`` line by line
(a serial overscan, the usual case, gives one level per image row; a parallel
overscan one level per column), as a sigma-clipped mean of the strip's pixels on that
line. The per-line levels are then smoothed: a running median over 5 lines first
(removes single lines hit by a cosmic ray or bleed), then a Savitzky-Golay filter of
order 2 over ``smooth`` lines with polynomial extrapolation at the ends, which keeps
linear and quadratic bias gradients exact up to the edges (a plain box or median filter
bends them there). The smoothed level is subtracted from every pixel of its line in
``DATASEC`` and the image is trimmed to ``DATASEC``; units stay ADU.

Cameras whose bias also jitters from line to line (same offset in data and overscan)
would keep that jitter after smoothing: the part of the line-to-line scatter of the
levels that exceeds the noise expected of a line mean is real, and that share of each
line's deviation from the smooth curve is put back (a Wiener weight; zero on a stable
bias, so nothing is lost there).

The overscan noise is the robust (MAD) standard deviation of the strip's pixels
about their line's smoothed level: the read noise in ADU as the camera really delivers
it, which synthesis needs to paint a realistic overscan strip.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from scipy import ndimage, signal

from mmx.errors import InputError

__all__ = ["Section", "parse_section", "OverscanResult", "subtract_overscan"]

_SECTION = re.compile(r"^\[\s*(\d+)\s*:\s*(\d+)\s*,\s*(\d+)\s*:\s*(\d+)\s*\]$")


@dataclass(frozen=True)
class Section:
    """A rectangle of a 2-D array in 0-based, end-exclusive numpy slices.

    Attributes
    ----------
    y0, y1, x0, x1 : int
        Rows ``y0:y1`` and columns ``x0:x1``.
    """

    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def slices(self) -> tuple[slice, slice]:
        """``(rows, columns)`` slices for indexing a numpy array."""
        return slice(self.y0, self.y1), slice(self.x0, self.x1)

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, columns)`` of the rectangle."""
        return self.y1 - self.y0, self.x1 - self.x0


def parse_section(
    text: str, *, shape: tuple[int, int] | None = None, what: str = "section"
) -> Section:
    """Parse an IRAF section ``[x1:x2,y1:y2]`` (1-based, inclusive) into a :class:`Section`.

    Parameters
    ----------
    text : str
        The header value, e.g. ``"[1:2048,1:4096]"``.
    shape : tuple of int, optional
        ``(rows, columns)`` of the array it applies to; the section must lie inside.
    what : str
        Name used in error messages (``"BIASSEC of raw.fits[1]"``).

    Raises
    ------
    InputError
        If the text is not an increasing ``[x1:x2,y1:y2]`` section inside ``shape``.
    """
    match = _SECTION.match(str(text).strip())
    if not match:
        raise InputError(f"{what} = {text!r}: expected an IRAF section '[x1:x2,y1:y2]'")
    x1, x2, y1, y2 = (int(v) for v in match.groups())
    if not (1 <= x1 <= x2 and 1 <= y1 <= y2):
        raise InputError(f"{what} = {text!r}: expected 1 <= x1 <= x2 and 1 <= y1 <= y2")
    if shape is not None and (y2 > shape[0] or x2 > shape[1]):
        raise InputError(f"{what} = {text!r} reaches outside the {shape[1]}x{shape[0]} "
                         "(columns x rows) image")
    return Section(y1 - 1, y2, x1 - 1, x2)


@dataclass
class OverscanResult:
    """Bias-subtracted, trimmed CCD data and what was measured on the overscan.

    Attributes
    ----------
    image : numpy.ndarray
        float32 ``DATASEC`` pixels minus the smoothed bias level [ADU].
    raw : numpy.ndarray
        float32 ``DATASEC`` pixels as read (bias included) [ADU], for the saturation test.
    level : numpy.ndarray
        Smoothed bias level of each data line (row or column) [ADU].
    bias : float
        Median bias level over the CCD [ADU].
    noise : float
        Robust standard deviation of the overscan pixels about their level [ADU].
    axis : int
        0 when the overscan gives one level per row (serial), 1 per column (parallel).
    """

    image: np.ndarray
    raw: np.ndarray
    level: np.ndarray
    bias: float
    noise: float
    axis: int


def _clipped_line_means(strip: np.ndarray, nsigma: float, n_iter: int) -> np.ndarray:
    """Sigma-clipped mean of each row of ``strip`` (rows = lines), vectorised."""
    values = strip.astype(np.float64)
    keep = np.isfinite(values)
    for _ in range(n_iter):
        masked = np.where(keep, values, np.nan)
        med = np.nanmedian(masked, axis=1, keepdims=True)
        mad = np.nanmedian(np.abs(masked - med), axis=1, keepdims=True)
        sig = np.maximum(1.4826 * mad, 0.5)  # integer ADU: MAD can be 0 on a quiet strip
        keep &= np.abs(values - med) <= nsigma * sig
    with np.errstate(invalid="ignore"):
        return np.nanmean(np.where(keep, values, np.nan), axis=1)


def _smooth(levels: np.ndarray, window: int) -> np.ndarray:
    levels = levels.copy()
    bad = ~np.isfinite(levels)
    if bad.all():
        raise InputError("overscan strip holds no finite pixel")
    if bad.any():
        idx = np.arange(levels.size)
        levels[bad] = np.interp(idx[bad], idx[~bad], levels[~bad])
    if levels.size >= 5:
        levels = ndimage.median_filter(levels, size=5, mode="nearest")
    window = min(window, levels.size if levels.size % 2 else levels.size - 1)
    if window >= 5:
        levels = signal.savgol_filter(levels, window, 2, mode="interp")
    return levels


def _add_jitter(lines: np.ndarray, smoothed: np.ndarray, line_var: float) -> np.ndarray:
    """Put back the part of the line-to-line scatter that is real bias jitter.

    The scatter of the line means about the smooth curve is the noise of a line mean
    (``line_var``) plus any real line-to-line bias jitter. The jitter's share of it
    (a Wiener weight) is restored: none on a stable bias, nearly all of it when the
    jitter dominates.
    """
    resid = lines - smoothed
    finite = np.isfinite(resid)
    if finite.sum() < 10:
        return smoothed
    spread = 1.4826 * np.median(np.abs(resid[finite] - np.median(resid[finite])))
    jitter_var = max(spread**2 - line_var, 0.0)
    weight = jitter_var / (jitter_var + line_var) if jitter_var > 0 else 0.0
    return smoothed + weight * np.where(finite, resid, 0.0)


def subtract_overscan(
    raw: np.ndarray,
    *,
    biassec: str,
    datasec: str,
    smooth: int = 51,
    nsigma: float = 3.0,
    n_iter: int = 3,
    name: str = "CCD",
) -> OverscanResult:
    """Subtract the line-by-line overscan level and trim to ``DATASEC``.

    Parameters
    ----------
    raw : numpy.ndarray
        Full raw read-out (data and overscan), ADU.
    biassec, datasec : str
        IRAF sections of the overscan strip and of the light-sensitive area.
    smooth : int
        Savitzky-Golay window of the level smoothing, in lines (odd; made odd if even).
    nsigma, n_iter : float, int
        Clipping width [sigma] and iterations for each line's overscan mean.
    name : str
        Where the data come from, for error messages.

    Returns
    -------
    OverscanResult

    Raises
    ------
    InputError
        If a section is malformed, or the overscan strip covers neither every row nor
        every column of ``DATASEC``.
    """
    raw = np.asarray(raw, dtype=np.float32)
    bsec = parse_section(biassec, shape=raw.shape, what=f"BIASSEC of {name}")
    dsec = parse_section(datasec, shape=raw.shape, what=f"DATASEC of {name}")
    if smooth < 1:
        raise InputError(f"overscan smoothing window must be >= 1 line, got {smooth}")
    smooth = smooth if smooth % 2 else smooth + 1
    data = raw[dsec.slices]
    if bsec.y0 <= dsec.y0 and bsec.y1 >= dsec.y1:  # serial overscan: one level per row
        axis = 0
        strip = raw[dsec.y0:dsec.y1, bsec.x0:bsec.x1]
    elif bsec.x0 <= dsec.x0 and bsec.x1 >= dsec.x1:  # parallel overscan: per column
        axis = 1
        strip = raw[bsec.y0:bsec.y1, dsec.x0:dsec.x1].T
    else:
        raise InputError(f"{name}: BIASSEC {biassec} covers neither all rows nor all columns "
                         f"of DATASEC {datasec}; expected a serial or parallel overscan strip")
    lines = _clipped_line_means(strip, nsigma, n_iter)
    smoothed = _smooth(lines, smooth)
    resid = strip - smoothed[:, None]
    resid = resid[np.isfinite(resid)]
    noise = float(1.4826 * np.median(np.abs(resid - np.median(resid)))) if resid.size else 0.0
    if noise <= 0 and resid.size:  # quantised quiet strip: fall back to the plain std
        noise = float(resid.std())
    level = _add_jitter(lines, smoothed, noise**2 / max(strip.shape[1], 1))
    shaped = level[:, None] if axis == 0 else level[None, :]
    image = (data - shaped).astype(np.float32)
    return OverscanResult(image=image, raw=data.copy(), level=level.astype(np.float64),
                          bias=float(np.median(level)), noise=noise, axis=axis)
