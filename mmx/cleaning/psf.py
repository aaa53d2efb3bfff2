"""PSF width of a CCD, measured on its bright unsaturated stars."""

from __future__ import annotations

import numpy as np
from scipy import ndimage, optimize

__all__ = ["measure_fwhm"]


def _gauss_residual(p, yy, xx, stamp):
    amp, yc, xc, sigma = p
    model = amp * np.exp(-((yy - yc) ** 2 + (xx - xc) ** 2) / (2.0 * sigma**2))
    return (model - stamp).ravel()


def measure_fwhm(
    image: np.ndarray,
    *,
    sky: np.ndarray,
    noise: np.ndarray,
    exclude: np.ndarray,
    saturate: float,
    min_snr: float = 30.0,
    max_stars: int = 40,
    radius: int = 10,
) -> tuple[float | None, int]:
    """Median FWHM of bright, unsaturated point-like sources, from circular Gaussian fits.

    The sky map is subtracted first and the fit has no constant term, so that a PSF's
    wings are not absorbed into a pedestal (which made Moffat PSFs look too narrow).

    Parameters
    ----------
    image : numpy.ndarray
        Bias-subtracted image [ADU].
    sky, noise : numpy.ndarray
        Sky and noise maps [ADU].
    exclude : numpy.ndarray of bool
        Pixels no stamp may touch (defects, saturation).
    saturate : float
        Saturation above bias [ADU]; peaks above half of it are skipped (non-linear).
    min_snr : float
        Minimum peak above sky [noise sigma].
    max_stars : int
        Brightest sources fitted.
    radius : int
        Half-width of the fitted stamp [px].

    Returns
    -------
    fwhm, n : float or None, int
        Median FWHM [px] (``None`` without a good fit) and the number of good fits.
    """
    resid = np.nan_to_num(image - sky, nan=0.0)
    smooth = ndimage.gaussian_filter(resid, 1.0)
    size = 2 * radius + 1
    peaks = (smooth == ndimage.maximum_filter(smooth, size=size)) & (resid > min_snr * noise)
    peaks &= image < 0.5 * saturate
    peaks &= ~ndimage.binary_dilation(exclude, iterations=radius + 1)
    peaks[:radius + 1] = peaks[-radius - 1:] = False
    peaks[:, :radius + 1] = peaks[:, -radius - 1:] = False
    ys, xs = np.nonzero(peaks)
    order = np.argsort(resid[ys, xs])[::-1][:max_stars]
    yy, xx = np.mgrid[-radius:radius + 1, -radius:radius + 1].astype(np.float64)
    fwhms = []
    for y, x in zip(ys[order], xs[order], strict=True):
        stamp = resid[y - radius:y + radius + 1, x - radius:x + radius + 1].astype(np.float64)
        p0 = (stamp[radius, radius], 0.0, 0.0, 1.5)
        try:
            fit = optimize.least_squares(
                _gauss_residual, p0, args=(yy, xx, stamp),
                bounds=([0, -2, -2, 0.3], [np.inf, 2, 2, radius]))
        except ValueError:
            continue
        sigma = fit.x[3]
        if fit.success and 0.3 < sigma < radius - 0.5:
            fwhms.append(2.3548 * sigma)
    if not fwhms:
        return None, 0
    return float(np.median(fwhms)), len(fwhms)
