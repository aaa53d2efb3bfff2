"""Contaminants already present in a raw CCD: saturation, bad lines and pixels, cosmic rays.

Every finder works on one bias-subtracted, trimmed CCD image in ADU and returns boolean
masks. :func:`detect_defects` runs them all and combines them into a :class:`Defects`
with one *cause* per pixel of unknown truth (first cause in :data:`CAUSES` wins), and
:func:`repair` replaces those pixels by the median of their good neighbours.

Saturated pixels and their bleed trails are *known* truth (class SAT): they are found,
labelled and kept as they are, never repaired nor ignored.

A single frame cannot tell a hot pixel from a one-pixel cosmic-ray hit: both are sharp
one-pixel spikes. Such spikes are counted as ``hot_pixel``; cosmic rays of two or more
pixels (and what astroscrappy finds that the hot-pixel test does not) as ``cosmic_ray``.
Both are ignored, so the split only affects the report.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from mmx.cleaning.config import CleanConfig
from mmx.sky.normalize import background_maps

__all__ = [
    "CAUSES",
    "Defects",
    "find_saturation",
    "find_bad_lines",
    "find_bad_pixels",
    "find_cosmic_rays",
    "detect_defects",
    "repair",
]

#: Causes of unknown truth, in order of precedence (a pixel counts under its first).
CAUSES: tuple[str, ...] = (
    "nonfinite", "dead_column", "hot_column", "dead_pixel", "hot_pixel", "cosmic_ray",
    "padding",
)  # "padding": mirrored margin of a frame smaller than a cutout (set by the cutting step)

_RING = np.array([[1, 1, 1], [1, 0, 1], [1, 1, 1]], dtype=bool)
_BOX = np.ones((3, 3), dtype=bool)


@dataclass
class Defects:
    """What :func:`detect_defects` found on one CCD.

    Attributes
    ----------
    saturated : numpy.ndarray of bool
        Saturated pixels and their bleed trails (class SAT; kept, not ignored).
    cause : numpy.ndarray of uint8
        0 for a good pixel, else ``1 + CAUSES.index(cause)`` for a pixel of unknown truth.
    sky, noise : numpy.ndarray
        Sky background and noise maps [ADU] estimated with defects masked.
    """

    saturated: np.ndarray
    cause: np.ndarray
    sky: np.ndarray
    noise: np.ndarray

    @property
    def ignore(self) -> np.ndarray:
        """Pixels of unknown truth (any cause)."""
        return self.cause > 0

    def counts(self, region: tuple[slice, slice] | None = None) -> dict[str, int]:
        """Ignored pixels by cause, over the whole CCD or a ``(rows, cols)`` region."""
        cause = self.cause if region is None else self.cause[region]
        hist = np.bincount(cause.ravel(), minlength=len(CAUSES) + 1)
        return {name: int(hist[i + 1]) for i, name in enumerate(CAUSES)}


def find_saturation(
    raw: np.ndarray, *, saturate: float, bias: float, bleed_fraction: float = 0.5
) -> np.ndarray:
    """Saturated pixels and the bleed trails attached to them along their columns.

    Parameters
    ----------
    raw : numpy.ndarray
        Trimmed data *before* bias subtraction [raw ADU], as ``SATURATE`` is defined.
    saturate : float
        ``SATURATE`` header value [raw ADU].
    bias : float
        Bias level [ADU]; with ``bleed_fraction`` it sets the bleed threshold.
    bleed_fraction : float
        A pixel vertically connected to a saturated one is bleed when it exceeds
        ``bias + bleed_fraction * (saturate - bias)``.

    Returns
    -------
    numpy.ndarray of bool
    """
    raw = np.asarray(raw)
    seed = raw >= saturate
    if not seed.any():
        return seed
    high = raw >= bias + bleed_fraction * (saturate - bias)
    column = np.array([[0, 1, 0], [0, 1, 0], [0, 1, 0]], dtype=bool)
    return ndimage.binary_propagation(seed, structure=column, mask=high | seed)


def _line_outliers(image: np.ndarray, noise: float, nsigma: float, block: int,
                   window: int) -> tuple[np.ndarray, np.ndarray]:
    """Hot/dead columns of ``image`` (NaN = excluded), per block of rows, then refined.

    A column flagged over a block is then followed row by row: its difference to the
    median of the columns 2 and 3 away on either side, smoothed by a running median of
    15 rows, must keep at least half the block's deviation. This finds where a partial
    column starts to within a few rows, also across block edges. Runs shorter than the
    15-row smoothing, or not overlapping the flagged block, are dropped.
    """
    ny, nx = image.shape
    hot = np.zeros(image.shape, dtype=bool)
    dead = np.zeros(image.shape, dtype=bool)
    n_blocks = max(1, round(ny / block))
    edges = np.linspace(0, ny, n_blocks + 1).astype(int)
    window = max(3, window | 1)
    profiles: dict[int, np.ndarray] = {}
    for y0, y1 in zip(edges[:-1], edges[1:], strict=True):
        chunk = image[y0:y1]
        good = np.isfinite(chunk).sum(axis=0) >= max(3, (y1 - y0) // 4)
        if good.sum() < window:
            continue
        with np.errstate(all="ignore"):
            med = np.nanmedian(np.where(good[None, :], chunk, 0.0), axis=0)
        trend = ndimage.median_filter(med, size=window, mode="nearest")
        resid = np.where(good, med - trend, 0.0)
        scale = 1.4826 * np.median(np.abs(resid[good]))
        floor = 1.2533 * noise / np.sqrt(y1 - y0)  # scatter of a median of pure noise
        scale = max(scale, floor, 1e-6)
        flagged = good & (np.abs(resid) > nsigma * scale)
        for x in np.nonzero(flagged)[0]:
            if x not in profiles:
                cols = [c for c in (x - 3, x - 2, x + 2, x + 3) if 0 <= c < nx]
                with warnings.catch_warnings():  # rows where every neighbour is excluded
                    warnings.simplefilter("ignore", RuntimeWarning)
                    ref = np.nanmedian(image[:, cols], axis=1)
                diff = np.nan_to_num(image[:, x] - ref, nan=0.0)
                profiles[x] = ndimage.median_filter(diff, size=15, mode="nearest")
            lo, hi = max(0, 2 * y0 - y1), min(ny, 2 * y1 - y0)  # the block and its neighbours
            target = hot if resid[x] > 0 else dead
            sign = 1.0 if resid[x] > 0 else -1.0
            seg = sign * profiles[x][lo:hi] > 0.5 * abs(resid[x])
            runs, n_runs = ndimage.label(seg)
            for k in range(1, n_runs + 1):  # keep long runs that overlap the flagged block
                idx = np.flatnonzero(runs == k) + lo
                if idx.size >= 15 and idx[-1] >= y0 and idx[0] < y1:
                    target[idx, x] = True
    return hot, dead


def find_bad_lines(
    image: np.ndarray,
    *,
    exclude: np.ndarray | None = None,
    noise: float,
    nsigma: float = 6.0,
    block: int = 128,
    window: int = 9,
) -> tuple[np.ndarray, np.ndarray]:
    """Hot and dead columns (and rows) from the statistics of their medians.

    Each column's median over a block of ``block`` rows is compared with the running
    median of ``window`` neighbouring columns' medians; a column whose deviation exceeds
    ``nsigma`` robust standard deviations of those deviations (never less than what pure
    noise gives) is hot (above) or dead (below) over that block. Rows are tested the same
    way over blocks of columns.

    Parameters
    ----------
    image : numpy.ndarray
        Bias-subtracted CCD image [ADU].
    exclude : numpy.ndarray of bool, optional
        Pixels kept out of the medians (saturation, non-finite).
    noise : float
        Per-pixel sky noise [ADU].
    nsigma, block, window : float, int, int
        As above.

    Returns
    -------
    hot, dead : numpy.ndarray of bool
    """
    data = np.asarray(image, dtype=np.float32)
    if exclude is not None:
        data = np.where(exclude, np.nan, data)
    hot_c, dead_c = _line_outliers(data, noise, nsigma, block, window)
    hot_r, dead_r = _line_outliers(data.T, noise, nsigma, block, window)
    return hot_c | hot_r.T, dead_c | dead_r.T


def find_bad_pixels(
    image: np.ndarray,
    *,
    sky: np.ndarray,
    read_noise: float,
    gain: float,
    exclude: np.ndarray | None = None,
    hp_nsigma: float = 8.0,
    hp_contrast: float = 0.2,
    dp_nsigma: float = 6.0,
    dp_fraction: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """Hot and dead single pixels against their 3x3 neighbourhood.

    Noise is local: ``sqrt(read_noise**2 + level / gain)`` [ADU] with ``level`` the 3x3
    median. A hot pixel exceeds the 3x3 median by ``hp_nsigma`` and each of its eight
    neighbours holds less than ``hp_contrast`` of its light above the sky (a star, even
    undersampled, spreads more than that into its neighbours; 2 sigma of slack allow for
    noise). A dead pixel lies
    ``dp_nsigma`` below the 3x3 median and holds less than ``dp_fraction`` of the
    median's light above the sky.

    Parameters
    ----------
    image : numpy.ndarray
        Bias-subtracted CCD image [ADU].
    sky : numpy.ndarray
        Sky background map [ADU].
    read_noise : float
        Read noise [ADU].
    gain : float
        Gain [e-/ADU].
    exclude : numpy.ndarray of bool, optional
        Pixels never flagged (saturation).

    Returns
    -------
    hot, dead : numpy.ndarray of bool
    """
    image = np.asarray(image, dtype=np.float32)
    filled = np.where(np.isfinite(image), image, sky)
    med = ndimage.median_filter(filled, size=3, mode="reflect")
    sigma = np.sqrt(read_noise**2 + np.maximum(med, 0.0) / max(gain, 1e-6))
    excess = filled - sky
    neighbour_max = ndimage.maximum_filter(excess, footprint=_RING, mode="reflect")
    # 2 sigma of slack so that noise in the neighbours does not hide a weak hot pixel
    hot = (filled - med > hp_nsigma * sigma) & (neighbour_max < hp_contrast * excess + 2 * sigma)
    dead = (filled - med < -dp_nsigma * sigma) & (excess < dp_fraction * (med - sky))
    if exclude is not None:
        hot &= ~exclude
        dead &= ~exclude
    return hot, dead


def find_cosmic_rays(
    image: np.ndarray,
    *,
    gain: float,
    read_noise: float,
    saturate: float,
    exclude: np.ndarray | None = None,
    sigclip: float = 5.0,
    sigfrac: float = 0.3,
    objlim: float = 5.0,
    niter: int = 4,
    dilate: int = 1,
) -> np.ndarray:
    """Cosmic rays found by L.A.Cosmic (``astroscrappy.detect_cosmics``).

    Parameters
    ----------
    image : numpy.ndarray
        Bias-subtracted image with its sky [ADU].
    gain : float
        [e-/ADU].
    read_noise : float
        [ADU] (converted to electrons for astroscrappy).
    saturate : float
        Saturation level above bias [ADU] (astroscrappy compares it in electrons, after
        multiplying the data by the gain, so it is passed as ``saturate * gain``).
    exclude : numpy.ndarray of bool, optional
        Pixels astroscrappy must not use (non-finite, bad columns, saturation).
    sigclip, sigfrac, objlim, niter
        astroscrappy's parameters.
    dilate : int
        Growth of the mask [px, 8-connected].

    Returns
    -------
    numpy.ndarray of bool
    """
    import astroscrappy

    data = np.ascontiguousarray(np.nan_to_num(image, nan=0.0), dtype=np.float32)
    mask = np.zeros(data.shape, dtype=bool) if exclude is None else np.asarray(exclude, bool)
    crmask, _ = astroscrappy.detect_cosmics(
        data, inmask=mask, sigclip=sigclip, sigfrac=sigfrac, objlim=objlim, gain=gain,
        readnoise=read_noise * gain, satlevel=saturate * gain, niter=niter, sepmed=True,
        cleantype="medmask", fsmode="median", verbose=False,
    )
    crmask = np.asarray(crmask, dtype=bool)
    if dilate > 0 and crmask.any():
        crmask = ndimage.binary_dilation(crmask, structure=_BOX, iterations=dilate)
    if exclude is not None:
        crmask &= ~mask
    return crmask


def detect_defects(
    image: np.ndarray,
    raw: np.ndarray,
    *,
    saturate: float,
    bias: float,
    gain: float,
    read_noise: float,
    config: CleanConfig | None = None,
) -> Defects:
    """Find every contaminant already in one bias-subtracted, trimmed CCD.

    Parameters
    ----------
    image : numpy.ndarray
        Bias-subtracted data [ADU].
    raw : numpy.ndarray
        The same pixels before bias subtraction [raw ADU].
    saturate : float
        ``SATURATE`` [raw ADU].
    bias : float
        Bias level [ADU].
    gain : float
        [e-/ADU].
    read_noise : float
        [ADU].
    config : CleanConfig, optional
        Thresholds; defaults when omitted.

    Returns
    -------
    Defects
    """
    cfg = config or CleanConfig()
    image = np.asarray(image, dtype=np.float32)
    nonfinite = ~np.isfinite(image)
    saturated = find_saturation(raw, saturate=saturate, bias=bias,
                                bleed_fraction=cfg.bleed_fraction) & ~nonfinite
    sat_zone = ndimage.binary_dilation(saturated, structure=_BOX, iterations=2)
    sky, noise = background_maps(np.where(nonfinite | sat_zone, np.nan, image), mesh=cfg.mesh)
    pixel_noise = float(np.median(noise))
    hot_col, dead_col = find_bad_lines(image, exclude=nonfinite | sat_zone, noise=pixel_noise,
                                       nsigma=cfg.line_nsigma, block=cfg.line_block,
                                       window=cfg.line_window)
    hot_col &= ~saturated
    dead_col &= ~saturated
    lines = hot_col | dead_col
    hot_px, dead_px = find_bad_pixels(image, sky=sky, read_noise=read_noise, gain=gain,
                                      exclude=sat_zone | nonfinite | lines,
                                      hp_nsigma=cfg.hp_nsigma, hp_contrast=cfg.hp_contrast,
                                      dp_nsigma=cfg.dp_nsigma, dp_fraction=cfg.dp_fraction)
    cr = find_cosmic_rays(image, gain=gain, read_noise=read_noise, saturate=saturate - bias,
                          exclude=nonfinite | lines | dead_px | saturated,
                          sigclip=cfg.cr_sigclip, sigfrac=cfg.cr_sigfrac,
                          objlim=cfg.cr_objlim, niter=cfg.cr_niter, dilate=cfg.cr_dilate)
    cause = np.zeros(image.shape, dtype=np.uint8)
    masks = {"nonfinite": nonfinite, "dead_column": dead_col, "hot_column": hot_col,
             "dead_pixel": dead_px, "hot_pixel": hot_px, "cosmic_ray": cr}
    for i in reversed(range(len(CAUSES))):  # first cause in CAUSES wins
        if CAUSES[i] in masks:
            cause[masks[CAUSES[i]]] = i + 1
    return Defects(saturated=saturated, cause=cause, sky=sky, noise=noise)


def repair(
    image: np.ndarray, bad: np.ndarray, *, radius: int = 2, max_rounds: int = 20
) -> np.ndarray:
    """Replace bad pixels by the median of the good pixels around them.

    Each round takes, for every bad pixel, the median of the good pixels in its
    ``(2 radius + 1)`` square; pixels with no good neighbour wait for the next round,
    where pixels repaired in earlier rounds count as good (the hole fills from its edge).

    Parameters
    ----------
    image : numpy.ndarray
        2-D image.
    bad : numpy.ndarray of bool
        Pixels to replace.
    radius : int
        Half-width of the neighbourhood [px].
    max_rounds : int
        Rounds before giving up; pixels still unfilled get the median of all good ones.

    Returns
    -------
    numpy.ndarray
        float32 copy of ``image``, changed only where ``bad``.
    """
    out = np.array(image, dtype=np.float32, copy=True)
    todo = np.asarray(bad, dtype=bool) | ~np.isfinite(out)
    if not todo.any():
        return out
    if todo.all():
        out[:] = 0.0
        return out
    ny, nx = out.shape
    offsets = np.arange(-radius, radius + 1)
    dy, dx = (a.ravel() for a in np.meshgrid(offsets, offsets, indexing="ij"))
    for _ in range(max_rounds):
        ys, xs = np.nonzero(todo)
        if ys.size == 0:
            break
        yy = ys[:, None] + dy[None, :]
        xx = xs[:, None] + dx[None, :]
        inside = (yy >= 0) & (yy < ny) & (xx >= 0) & (xx < nx)
        yy = np.clip(yy, 0, ny - 1)
        xx = np.clip(xx, 0, nx - 1)
        usable = inside & ~todo[yy, xx]
        values = np.where(usable, out[yy, xx], np.nan)
        has = usable.any(axis=1)
        if not has.any():
            break
        fill = np.nanmedian(values[has], axis=1)
        out[ys[has], xs[has]] = fill
        todo[ys[has], xs[has]] = False
    if todo.any():
        out[todo] = float(np.median(out[~todo]))
    return out
