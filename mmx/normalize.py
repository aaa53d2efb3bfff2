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


def _mesh_stats(image: np.ndarray, mesh: int, n_clip: int, nsigma: float):
    h, w = image.shape
    ny, nx = max(1, round(h / mesh)), max(1, round(w / mesh))
    ys = np.linspace(0, h, ny + 1).astype(int)
    xs = np.linspace(0, w, nx + 1).astype(int)
    bkg = np.full((ny, nx), np.nan, dtype=np.float64)
    rms = np.full((ny, nx), np.nan, dtype=np.float64)
    for j in range(ny):
        for i in range(nx):
            v = image[ys[j]:ys[j + 1], xs[i]:xs[i + 1]].ravel()
            v = v[np.isfinite(v)]
            for _ in range(n_clip):
                if v.size < 8:
                    break
                med = np.median(v)
                sig = 1.4826 * np.median(np.abs(v - med))
                if sig <= 0:
                    break
                v = v[np.abs(v - med) < nsigma * sig]
            if v.size >= 8:
                med = np.median(v)
                # SExtractor's mode estimate, robust in crowded meshes
                mean = v.mean()
                skewed = abs(mean - med) / max(v.std(), 1e-12) >= 0.3
                bkg[j, i] = med if skewed else 2.5 * med - 1.5 * mean
                rms[j, i] = 1.4826 * np.median(np.abs(v - med))
    return bkg, rms, ys, xs


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
    out[:] = (1 - t) * rows[k] + t * rows[k + 1]
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
