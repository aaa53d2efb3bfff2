"""The rule that labels background (BG) and bright background (BBG) pixels.

Both classes are inherent to the data: they are measured on the image, not injected.
The clean stage applies the rule to every cutout, and synthesis applies it again after
injecting contaminants (passing the injected pixels as ``contaminants``), so that both
shard sets follow exactly the same definition.

The rule
--------
1. Pixels that are ``contaminants`` (any other class), ``ignore`` (unknown truth) or not
   finite are *masked*: they take no part in any estimate below.
2. Sky level and sky noise maps come from :func:`mmx.sky.normalize.background_maps`
   (``mesh`` px meshes, 3-sigma clipping): the same estimate the network's input
   normalisation uses.
3. The residual ``image - sky`` is smoothed with a Gaussian of sigma ``smooth`` px
   (normalised convolution: masked pixels have zero weight), and divided by the noise
   of the smoothed map (``noise / (2 sqrt(pi) smooth)`` for white noise). Pixels above
   ``nsigma`` in this significance map, in connected regions of at least ``min_area``
   px, hold *light above the sky*: faint objects, galaxy outskirts, halos of bright
   stars.
4. *Object cores* are pixels whose surface brightness above the sky, after a 1-px
   Gaussian smoothing (against single noisy pixels), exceeds ``core_nsigma`` times the
   per-pixel sky noise, grown by 1 px: the bright, compact parts of stars and galaxies.
5. **BBG** = light above the sky, not core, not masked.
   **BG** = not light above the sky, not core, not masked: plain sky.
   Cores and masked pixels are neither (a core is an astrophysical source, which no
   class names; a contaminant pixel carries its own class).

Thresholds are in units of the local noise, so the rule adapts to the depth of each
image; BG and BBG never overlap.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from mmx.errors import InputError
from mmx.sky.normalize import background_maps

__all__ = ["label_background"]


def _masked_smooth(values: np.ndarray, weight: np.ndarray, sigma: float) -> np.ndarray:
    num = ndimage.gaussian_filter(values * weight, sigma, mode="nearest")
    den = ndimage.gaussian_filter(weight, sigma, mode="nearest")
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(den > 1e-3, num / np.maximum(den, 1e-3), 0.0)
    return out


def _drop_small(mask: np.ndarray, min_area: int) -> np.ndarray:
    if min_area <= 1 or not mask.any():
        return mask
    lab, n = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    sizes = np.bincount(lab.ravel(), minlength=n + 1)
    keep = sizes >= min_area
    keep[0] = False
    return keep[lab]


def label_background(
    image: np.ndarray,
    *,
    contaminants: np.ndarray | None = None,
    ignore: np.ndarray | None = None,
    mesh: int = 64,
    smooth: float = 2.0,
    nsigma: float = 3.0,
    min_area: int = 30,
    core_nsigma: float = 10.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Label bright-background (BBG) and background (BG) pixels of one image.

    Parameters
    ----------
    image : numpy.ndarray
        2-D image in ADU (or any linear unit), sky not subtracted or subtracted.
    contaminants : numpy.ndarray of bool, optional
        Pixels carrying another class (saturation, injected cosmic rays, trails...):
        masked from the estimates and labelled neither BG nor BBG.
    ignore : numpy.ndarray of bool, optional
        Pixels of unknown truth: masked and labelled neither.
    mesh : int
        Mesh of the sky background/noise maps [px].
    smooth : float
        Gaussian sigma of the significance map [px].
    nsigma : float
        Threshold on the smoothed significance for light above the sky [sigma].
    min_area : int
        Smallest connected region of light above the sky kept as BBG [px].
    core_nsigma : float
        Surface brightness (1-px smoothing) above which a pixel is an object core
        [per-pixel sky noise sigma].

    Returns
    -------
    bbg_mask, bg_mask : numpy.ndarray of bool
        Disjoint masks of the image's shape.

    Raises
    ------
    InputError
        If the image is not 2-D or a mask has another shape.
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 2:
        raise InputError(f"label_background needs a 2-D image, got shape {image.shape}")
    masked = ~np.isfinite(image)
    for name, extra in (("contaminants", contaminants), ("ignore", ignore)):
        if extra is not None:
            extra = np.asarray(extra, dtype=bool)
            if extra.shape != image.shape:
                raise InputError(f"label_background: {name} mask has shape {extra.shape}, "
                                 f"expected the image's {image.shape}")
            masked |= extra
    if masked.all():
        empty = np.zeros(image.shape, dtype=bool)
        return empty, empty.copy()
    sky, noise = background_maps(np.where(masked, np.nan, image), mesh=mesh)
    weight = (~masked).astype(np.float32)
    resid = np.where(masked, 0.0, image - sky).astype(np.float32)
    smooth_noise = noise / (2.0 * np.sqrt(np.pi) * smooth)
    light = _masked_smooth(resid, weight, smooth) / smooth_noise > nsigma
    light = _drop_small(light & ~masked, min_area)
    core = _masked_smooth(resid, weight, 1.0) / noise > core_nsigma
    core = ndimage.binary_dilation(core, structure=np.ones((3, 3), dtype=bool))
    bbg = light & ~core & ~masked
    bg = ~light & ~core & ~masked
    return bbg, bg
