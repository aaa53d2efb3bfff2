"""Input normalisation shared by training and inference: sky background and noise maps.

As in MaxiMask (and SExtractor), the sky background and its noise are estimated on a
grid of square meshes with sigma clipping, smoothed with a 3x3 median over meshes and
interpolated back to full resolution; the network sees ``(image - background) / noise``,
so it works on ADU or electrons at any sky level. Non-finite pixels become 0 (= sky).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["DEFAULT_MESH", "background_maps", "normalize_image"]

DEFAULT_MESH = 64  #: mesh size in pixels for background/noise estimation


def _first_true(pred, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Per row, the smallest index in ``[lo, hi)`` where the monotone ``pred`` holds (else ``hi``).

    ``pred(rows, idx)`` is False then True along each row; a vectorised binary search.
    """
    lo, hi = lo.copy(), hi.copy()
    rows = np.arange(len(lo))
    while True:
        todo = lo < hi
        if not todo.any():
            return lo
        r = rows[todo]
        mid = (lo[todo] + hi[todo]) // 2
        p = pred(r, mid)
        lo[r] = np.where(p, lo[r], mid + 1)
        hi[r] = np.where(p, mid, hi[r])


def _sorted_median(s: np.ndarray, lo: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Per row, the median of ``s[row, lo:lo + n]`` (rows sorted ascending), as np.median.

    ``np.median`` of float32 values is the middle value, or the float32 mean
    ``(a + b) / 2`` of the two middle values: the same arithmetic, so the same bits.
    """
    rows = np.arange(s.shape[0])
    a = s[rows, lo + np.maximum(n - 1, 0) // 2]
    b = s[rows, lo + n // 2]
    return (a + b) / np.float32(2)


def _mad_median(s: np.ndarray, lo: np.ndarray, n: np.ndarray, med: np.ndarray) -> np.ndarray:
    """Per row, ``np.median(np.abs(v - med))`` for ``v = s[row, lo:lo + n]``, without sorting.

    The deviations left of the median, ``|s - med|`` read leftwards, and right of it,
    read rightwards, are two ascending runs (float32 rounding is monotone), so their
    middle order statistics come from a binary search over how many to take from each.
    """
    rows = np.arange(s.shape[0])
    end = lo + n
    m = _first_true(lambda r, i: s[r, i] >= med[r], lo, end)  # first right-hand index
    a, b = m - lo, end - m  # lengths of the left and right runs

    def kth(k):
        def left(r, j):  # j-th smallest left deviation
            return np.abs(s[r, m[r] - 1 - j] - med[r])

        def right(r, j):
            return np.abs(s[r, m[r] + j] - med[r])

        # i = how many of the k + 1 smallest come from the left run
        i = _first_true(lambda r, i: ~(left(r, i) < right(r, k[r] - i)),
                        np.maximum(0, k + 1 - b), np.minimum(k + 1, a))
        from_left = np.where(i > 0, left(rows, np.maximum(i - 1, 0)), -np.inf)
        from_right = np.where(k - i >= 0, right(rows, np.clip(k - i, 0, None)), -np.inf)
        return np.maximum(from_left, from_right).astype(np.float32)

    lo_k, hi_k = np.maximum(n - 1, 0) // 2, n // 2
    return (kth(lo_k) + kth(hi_k)) / np.float32(2)


def _mesh_stats(image: np.ndarray, mesh: int, n_clip: int, nsigma: float):
    """Clipped mode and MAD noise of every mesh, all meshes at once.

    The same numbers, bit for bit, as clipping each mesh in turn with ``np.median``
    (``tests/test_normalize.py`` keeps that loop as the reference): each mesh's finite
    pixels are sorted once; a clip keeps the values within ``nsigma`` MAD-sigmas of the
    median, which in sorted order is a contiguous run, so medians are read at its middle,
    the MAD by :func:`_mad_median` and the clipped run's ends by binary search. The mean
    and standard deviation of the kept pixels (for the mode estimate) are taken per mesh
    in the original pixel order, as the loop did, so their float32 rounding is the same.
    """
    h, w = image.shape
    ny, nx = max(1, round(h / mesh)), max(1, round(w / mesh))
    ys = np.linspace(0, h, ny + 1).astype(int)
    xs = np.linspace(0, w, nx + 1).astype(int)
    heights, widths = np.diff(ys), np.diff(xs)
    size = int(heights.max()) * int(widths.max())
    blocks = np.full((ny * nx, size), np.nan, dtype=np.float32)
    for j in range(ny):
        for i in range(nx):
            cell = image[ys[j]:ys[j + 1], xs[i]:xs[i + 1]]
            blocks[j * nx + i, :cell.size] = cell.ravel()
    blocks[~np.isfinite(blocks)] = np.nan  # Inf is no data too; NaN sorts last
    s = np.sort(blocks, axis=1)
    n = np.isfinite(s).sum(axis=1)
    lo = np.zeros_like(n)
    sig32 = np.float32(1.4826)
    active = np.ones(len(s), dtype=bool)
    for _ in range(n_clip):
        active &= n >= 8
        if not active.any():
            break
        med = _sorted_median(s, lo, n)
        sig = sig32 * _mad_median(s, lo, n, med)
        active &= sig > 0
        thr = np.float32(nsigma) * sig
        # kept: -thr < s - med < thr, i.e. |s - med| < thr, a run of the sorted values
        first = _first_true(lambda r, i, m=med, t=thr: (s[r, i] - m[r]) > -t[r], lo, lo + n)
        stop = _first_true(lambda r, i, m=med, t=thr: (s[r, i] - m[r]) >= t[r], first, lo + n)
        lo = np.where(active, first, lo)
        n = np.where(active, stop - first, n)
    bkg = np.full(ny * nx, np.nan, dtype=np.float64)
    rms = np.full(ny * nx, np.nan, dtype=np.float64)
    good = n >= 8
    if good.any():
        med = _sorted_median(s, lo, n)
        mad = _mad_median(s, lo, n, med)
        rows = np.arange(len(s))
        vmin, vmax = s[rows, lo], s[rows, np.maximum(lo + n - 1, 0)]
        for k in np.flatnonzero(good):
            v = blocks[k]
            v = v[(v >= vmin[k]) & (v <= vmax[k])]  # the kept pixels, in pixel order
            mean = v.mean()
            skewed = abs(mean - med[k]) / max(v.std(), 1e-12) >= 0.3
            bkg[k] = med[k] if skewed else 2.5 * med[k] - 1.5 * mean
            rms[k] = sig32 * mad[k]
    return bkg.reshape(ny, nx), rms.reshape(ny, nx), ys, xs


def _fill_and_smooth(grid: np.ndarray) -> np.ndarray:
    bad = ~np.isfinite(grid)
    if bad.all():
        return np.zeros_like(grid)
    if bad.any():
        idx = ndimage.distance_transform_edt(bad, return_distances=False, return_indices=True)
        grid = grid[tuple(idx)]
    return ndimage.median_filter(grid, size=3, mode="nearest")


def _upsample(grid: np.ndarray, ys: np.ndarray, xs: np.ndarray, shape) -> np.ndarray:
    yc = (ys[:-1] + ys[1:] - 1) / 2.0
    xc = (xs[:-1] + xs[1:] - 1) / 2.0
    rows = np.empty((grid.shape[0], shape[1]), dtype=np.float64)
    xfull = np.arange(shape[1])
    for j in range(grid.shape[0]):
        rows[j] = np.interp(xfull, xc, grid[j])
    yfull = np.arange(shape[0])
    out = np.empty(shape, dtype=np.float32)
    # interpolate along y column by column in chunks (vectorised via searchsorted weights)
    k = np.clip(np.searchsorted(yc, yfull) - 1, 0, max(len(yc) - 2, 0))
    if len(yc) == 1:
        out[:] = rows[0][None, :]
        return out
    t = np.clip((yfull - yc[k]) / (yc[k + 1] - yc[k]), 0.0, 1.0)[:, None]
    step = 128  # blocks of rows: the same float64 arithmetic, temporaries stay in cache
    for y0 in range(0, shape[0], step):
        kk, tt = k[y0:y0 + step], t[y0:y0 + step]
        out[y0:y0 + step] = (1 - tt) * rows[kk] + tt * rows[kk + 1]
    return out


def background_maps(
    image: np.ndarray, *, mesh: int = DEFAULT_MESH, n_clip: int = 3, nsigma: float = 3.0
) -> tuple[np.ndarray, np.ndarray]:
    """Estimate the sky background and noise maps of an image.

    Parameters
    ----------
    image : numpy.ndarray
        2-D image; NaN pixels are ignored.
    mesh : int
        Mesh size in pixels.
    n_clip, nsigma : int, float
        Iterations and width (in sigma) of the clipping.

    Returns
    -------
    background, noise : numpy.ndarray
        float32 maps of the image's shape; ``noise`` is strictly positive.
    """
    image = np.asarray(image, dtype=np.float32)
    bkg, rms, ys, xs = _mesh_stats(image, mesh, n_clip, nsigma)
    bkg = _fill_and_smooth(bkg)
    rms = _fill_and_smooth(rms)
    positive = rms[rms > 0]
    floor = positive.min() if positive.size else 1.0
    rms = np.maximum(rms, floor)
    return _upsample(bkg, ys, xs, image.shape), _upsample(rms, ys, xs, image.shape)


def normalize_image(image: np.ndarray, *, mesh: int = DEFAULT_MESH) -> np.ndarray:
    """Return ``(image - background) / noise`` as float32, non-finite pixels set to 0."""
    image = np.asarray(image, dtype=np.float32)
    bkg, rms = background_maps(image, mesh=mesh)
    out = (image - bkg) / rms
    out[~np.isfinite(out)] = 0.0
    return out.astype(np.float32, copy=False)
