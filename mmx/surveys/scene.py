"""The sky in front of the detector: PSF, star and galaxy catalogues, and their pixels.

Everything here is in electrons collected per pixel over the exposure, before the
detector's response, noise and defects (:mod:`mmx.surveys.detector`). Pixel ``(y, x)``
of a numpy array has its centre at coordinates ``(x, y)``.

Sources bright enough to matter in detail (high S/N) are drawn with GalSim into stamps
sized to where their light falls below the sky noise; the many faint ones are drawn
together with a vectorised numpy renderer (Moffat stars, Gaussian-approximated galaxies
convolved with the PSF), which is indistinguishable at their S/N and a hundred times
faster.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Psf",
    "Catalog",
    "draw_seeing",
    "star_catalog",
    "galaxy_catalog",
    "render_sources",
]

_DEG2_PER_ARCSEC2 = 1.0 / 3600.0**2
_GALSIM_SNR = 25.0  # sources with a higher PSF-aperture S/N are drawn with GalSim
_FAINT_RADII = (4, 6, 9, 13, 18)  # stamp half-sizes of the vectorised renderer [px]
_MAX_STAMP_RADIUS = 700  # largest GalSim stamp half-size [px]
_HALO_FRACTION = 0.04  # share of a star's light in the wide PSF aureole
_HALO_SCALE = 4.0  # aureole FWHM / core FWHM
_HALO_BETA = 2.0  # aureole Moffat index (wings fall as r^-4)


@dataclass(frozen=True)
class Psf:
    """The point-spread function of one exposure, in pixels.

    A Moffat core with a small ellipticity plus a faint, wide Moffat aureole that
    shows only around bright stars.

    Attributes
    ----------
    fwhm : float
        Core FWHM [px].
    beta : float
        Core Moffat index.
    e1, e2 : float
        Core ellipticity components (distortion ``(a^2-b^2)/(a^2+b^2)``).
    """

    fwhm: float
    beta: float
    e1: float = 0.0
    e2: float = 0.0

    @property
    def alpha(self) -> float:
        """Moffat scale radius of the core [px]."""
        return self.fwhm / (2.0 * math.sqrt(2.0 ** (1.0 / self.beta) - 1.0))

    def core(self):
        """GalSim profile of the unit-flux core (used to convolve galaxies)."""
        import galsim

        return galsim.Moffat(beta=self.beta, fwhm=self.fwhm).shear(e1=self.e1, e2=self.e2)

    def star(self):
        """GalSim profile of a unit-flux star: core plus aureole."""
        import galsim

        halo = galsim.Moffat(beta=_HALO_BETA, fwhm=_HALO_SCALE * self.fwhm)
        return galsim.Add(self.core() * (1.0 - _HALO_FRACTION), halo * _HALO_FRACTION)

    def radius_to(self, flux: float, level: float) -> float:
        """Radius [px] beyond which a star of ``flux`` e- is fainter than ``level`` e-/px."""
        radius = 0.0
        for frac, beta, fwhm in ((1.0 - _HALO_FRACTION, self.beta, self.fwhm),
                                 (_HALO_FRACTION, _HALO_BETA, _HALO_SCALE * self.fwhm)):
            alpha = fwhm / (2.0 * math.sqrt(2.0 ** (1.0 / beta) - 1.0))
            peak = frac * flux * (beta - 1.0) / (math.pi * alpha**2)
            if peak > level:
                radius = max(radius, alpha * math.sqrt((peak / level) ** (1.0 / beta) - 1.0))
        return radius


@dataclass
class Catalog:
    """Sources of one CCD, positions in pixel coordinates of the data section.

    Attributes
    ----------
    x, y : numpy.ndarray
        Centres [px] (pixel ``(j, i)`` has its centre at ``x=i, y=j``).
    mag : numpy.ndarray
        AB magnitudes in the exposure's band, above the atmosphere.
    flux : numpy.ndarray
        Collected electrons over the exposure (before the flat field).
    hlr : numpy.ndarray
        Half-light radius [px]; 0 for stars.
    q : numpy.ndarray
        Axis ratio b/a; 1 for stars.
    beta : numpy.ndarray
        Position angle of the major axis from the x axis [rad].
    bulge : numpy.ndarray
        Bulge-to-total flux ratio; 0 for stars.
    """

    x: np.ndarray
    y: np.ndarray
    mag: np.ndarray
    flux: np.ndarray
    hlr: np.ndarray
    q: np.ndarray
    beta: np.ndarray
    bulge: np.ndarray

    def __len__(self) -> int:
        return len(self.x)


def draw_seeing(
    median: float, sigma_dex: float, *, wavelength: float, airmass: float,
    rng: np.random.Generator,
) -> float:
    """Draw one exposure's delivered FWHM [arcsec].

    Log-normal around ``median`` (quoted at 620 nm, airmass 1), scaled as
    ``lambda^-0.2 * airmass^0.6`` (Kolmogorov turbulence).
    """
    fwhm = median * 10.0 ** (sigma_dex * rng.standard_normal())
    return float(fwhm * (wavelength / 620.0) ** -0.2 * airmass**0.6)


def _power_law_mags(n: int, bright: float, faint: float, slope: float,
                    rng: np.random.Generator) -> np.ndarray:
    """Magnitudes with cumulative counts N(<m) proportional to 10^(slope m)."""
    lo, hi = 10.0 ** (slope * bright), 10.0 ** (slope * faint)
    return np.log10(lo + rng.random(n) * (hi - lo)) / slope


def _positions(n: int, shape: tuple[int, int], margin: float,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    ny, nx = shape
    x = rng.uniform(-margin, nx - 1 + margin, n)
    y = rng.uniform(-margin, ny - 1 + margin, n)
    return x, y


def _area_deg2(shape: tuple[int, int], margin: float, pixel_scale: float) -> float:
    ny, nx = shape
    return (nx + 2 * margin) * (ny + 2 * margin) * pixel_scale**2 * _DEG2_PER_ARCSEC2


def star_catalog(
    shape: tuple[int, int], *, pixel_scale: float, density: float, slope: float,
    bright: float, faint: float, rng: np.random.Generator, margin: float = 20.0,
) -> Catalog:
    """Draw the stars of one CCD.

    Parameters
    ----------
    shape
        Data-section size ``(ny, nx)`` [px].
    pixel_scale
        [arcsec/px].
    density
        Stars per deg^2 brighter than magnitude 22 in the band: ~3e3 at high
        Galactic latitude, ~3e4 at |b| ~ 10 deg, ~3e5 in crowded fields.
    slope
        ``d log10 N(<m) / dm`` of the cumulative counts.
    bright, faint
        Magnitude range drawn.
    rng
        Random generator.
    margin
        Stars are placed this far [px] beyond the edges too, so edges see their light.
    """
    area = _area_deg2(shape, margin, pixel_scale)
    expected = area * density * (10.0 ** (slope * (faint - 22.0))
                                 - 10.0 ** (slope * (bright - 22.0)))
    n = int(rng.poisson(expected))
    x, y = _positions(n, shape, margin, rng)
    mag = _power_law_mags(n, bright, faint, slope, rng)
    zeros, ones = np.zeros(n), np.ones(n)
    return Catalog(x, y, mag, zeros.copy(), zeros.copy(), ones, zeros.copy(), zeros.copy())


def galaxy_catalog(
    shape: tuple[int, int], *, pixel_scale: float, density: float, colour: float,
    bright: float, faint: float, rng: np.random.Generator, margin: float = 20.0,
) -> Catalog:
    """Draw the galaxies of one CCD with realistic counts, sizes and shapes.

    Counts: ``N(<m_i) = density * 10^(0.3 (m_i - 23.5))`` per deg^2 (wide-field i-band
    counts, e.g. CFHTLenS/DES: ~4e4 deg^-2 at i < 23.5), with ``m_i = m - colour``.
    Sizes: log-normal half-light radius, median ``10^(0.15 - 0.12 (m_i - 20))`` arcsec
    (1.4" at i = 20, 0.5" at 24), 0.18 dex scatter. Shapes: exponential disc plus de
    Vaucouleurs bulge (bulge fraction ~ Beta(1.2, 3), larger for bright galaxies),
    disc ellipticity Rayleigh-distributed (sigma 0.3), random orientation.

    Parameters
    ----------
    shape
        Data-section size ``(ny, nx)`` [px].
    pixel_scale
        [arcsec/px].
    density
        Galaxies per deg^2 brighter than i = 23.5.
    colour
        Typical ``band - i`` colour of faint galaxies [mag].
    bright, faint
        Magnitude range drawn, in the exposure's band.
    rng
        Random generator.
    margin
        Placement margin beyond the edges [px].
    """
    area = _area_deg2(shape, margin, pixel_scale)
    slope = 0.3
    ref = 23.5 + colour
    expected = area * density * (10.0 ** (slope * (faint - ref)) - 10.0 ** (slope * (bright - ref)))
    n = int(rng.poisson(expected))
    x, y = _positions(n, shape, margin, rng)
    mag = _power_law_mags(n, bright, faint, slope, rng)
    m_i = mag - colour
    hlr_arcsec = 10.0 ** (0.15 - 0.12 * (m_i - 20.0) + 0.18 * rng.standard_normal(n))
    hlr = np.clip(hlr_arcsec, 0.08, 30.0) / pixel_scale
    ell = np.minimum(np.abs(rng.rayleigh(0.3, n)), 0.85)
    q = np.sqrt((1.0 - ell) / (1.0 + ell))
    beta = rng.uniform(0.0, np.pi, n)
    bulge = rng.beta(1.2, 3.0, n) * np.clip(1.3 - 0.05 * (m_i - 18.0), 0.3, 1.3)
    bulge = np.clip(bulge, 0.0, 1.0)
    return Catalog(x, y, mag, np.zeros(n), hlr, q, beta, bulge)


def _galaxy_profile(flux: float, hlr: float, q: float, beta: float, bulge: float):
    import galsim

    angle = beta * galsim.radians
    disc = galsim.Exponential(half_light_radius=hlr).shear(q=q, beta=angle)
    if bulge < 0.05:
        return disc.withFlux(flux)
    q_bulge = min(1.0, 0.5 + 0.5 * q)
    core = galsim.DeVaucouleurs(half_light_radius=max(0.5 * hlr, 0.3), trunc=8.0 * hlr)
    core = core.shear(q=q_bulge, beta=angle)
    return galsim.Add(disc * (1.0 - bulge), core * bulge).withFlux(flux)


def _draw_galsim(image: np.ndarray, profile, x: float, y: float, radius: int) -> None:
    import galsim

    ix, iy = int(round(x)), int(round(y))
    bounds = galsim.BoundsI(ix - radius, ix + radius, iy - radius, iy + radius)
    ny, nx = image.shape
    full = galsim.BoundsI(0, nx - 1, 0, ny - 1)
    overlap = bounds & full
    if not overlap.isDefined():
        return
    stamp = galsim.ImageD(bounds)
    profile.drawImage(image=stamp, method="no_pixel", center=galsim.PositionD(x, y))
    view = galsim.ImageD(image, xmin=0, ymin=0)
    view[overlap] += stamp[overlap]


def _render_vectorised(image: np.ndarray, x: np.ndarray, y: np.ndarray, flux: np.ndarray,
                       cov: np.ndarray, *, radius: int, moffat_beta: float | None) -> None:
    """Add many small sources at once.

    ``cov`` holds per-source 2x2 shape matrices ``(n, 2, 2)`` [px^2]: the covariance of
    a Gaussian, or ``alpha^2`` times the shape of a Moffat of index ``moffat_beta``.
    Each stamp is normalised to its flux (the flux beyond the stamp is negligible at
    these radii and S/N).
    """
    if len(x) == 0:
        return
    ny, nx = image.shape
    offsets = np.arange(-radius, radius + 1)
    ix, iy = np.rint(x).astype(np.int64), np.rint(y).astype(np.int64)
    dx = offsets[None, None, :] + (ix - x)[:, None, None]  # (n, 1, w)
    dy = offsets[None, :, None] + (iy - y)[:, None, None]  # (n, w, 1)
    inv = np.linalg.inv(cov)
    quad = inv[:, 0, 0, None, None] * dx**2 + 2.0 * inv[:, 0, 1, None, None] * dx * dy \
        + inv[:, 1, 1, None, None] * dy**2
    if moffat_beta is None:
        prof = np.exp(-0.5 * quad)
    else:
        prof = (1.0 + quad) ** -moffat_beta
    prof *= (flux / prof.sum(axis=(1, 2)))[:, None, None]
    px = ix[:, None, None] + offsets[None, None, :]
    py = iy[:, None, None] + offsets[None, :, None]
    px, py = np.broadcast_to(px, prof.shape), np.broadcast_to(py, prof.shape)
    inside = (px >= 0) & (px < nx) & (py >= 0) & (py < ny)
    index = py[inside] * nx + px[inside]
    image += np.bincount(index, weights=prof[inside], minlength=ny * nx).reshape(ny, nx)


def _psf_shape(psf: Psf) -> np.ndarray:
    """Shape matrix of the PSF core with its ellipticity, unit determinant."""
    e = math.hypot(psf.e1, psf.e2)
    if e == 0.0:
        return np.eye(2)
    angle = 0.5 * math.atan2(psf.e2, psf.e1)
    a2 = math.sqrt((1.0 + e) / (1.0 - e))  # a^2/b^2 = (1+e)/(1-e) and a^2 b^2 = 1
    b2 = 1.0 / a2
    c, s = math.cos(angle), math.sin(angle)
    rot = np.array([[c, -s], [s, c]])
    return rot @ np.diag([a2, b2]) @ rot.T


def render_sources(
    image: np.ndarray, stars: Catalog, galaxies: Catalog, psf: Psf, *, sky_sigma: float,
) -> dict[str, int]:
    """Add the light of ``stars`` and ``galaxies`` [e-] to ``image`` in place.

    Parameters
    ----------
    image
        Float64 data-section array in electrons.
    stars, galaxies
        Catalogues with ``flux`` filled in [e-].
    psf
        The exposure's PSF.
    sky_sigma
        Sky noise per pixel [e-]: sets which sources GalSim draws and how far stamps
        reach (to a tenth of it).

    Returns
    -------
    dict
        How many sources each renderer drew (``galsim_stars``, ``galsim_galaxies``,
        ``fast_stars``, ``fast_galaxies``).
    """
    sigma_psf = psf.fwhm / 2.3548
    aperture_noise = sky_sigma * math.sqrt(4.0 * math.pi) * sigma_psf
    bright_limit = _GALSIM_SNR * aperture_noise
    level = 0.1 * sky_sigma
    shape = _psf_shape(psf)
    counts = dict.fromkeys(("galsim_stars", "galsim_galaxies", "fast_stars",
                            "fast_galaxies"), 0)

    # Stars: GalSim for the bright ones, in stamps reaching 1/10 of the sky noise.
    star_profile = psf.star()
    bright = stars.flux > bright_limit
    for x, y, flux in zip(stars.x[bright], stars.y[bright], stars.flux[bright], strict=True):
        radius = int(min(max(psf.radius_to(flux, level), 3.0 * psf.fwhm), _MAX_STAMP_RADIUS))
        _draw_galsim(image, star_profile.withFlux(float(flux)), x, y, radius)
    counts["galsim_stars"] = int(bright.sum())
    faint = ~bright
    radius = _FAINT_RADII[min(np.searchsorted(_FAINT_RADII, 2.5 * psf.fwhm),
                              len(_FAINT_RADII) - 1)]
    cov = np.broadcast_to(shape * psf.alpha**2, (int(faint.sum()), 2, 2))
    _render_vectorised(image, stars.x[faint], stars.y[faint], stars.flux[faint], cov,
                       radius=radius, moffat_beta=psf.beta)
    counts["fast_stars"] = int(faint.sum())

    # Galaxies: GalSim for bright or large ones; Gaussians convolved with the PSF for the rest.
    import galsim

    core = psf.core()
    sigma_gal = galaxies.hlr / 1.1774  # Gaussian with the same half-light radius
    sigma_tot = np.sqrt(sigma_gal**2 + sigma_psf**2)
    big = 3.0 * sigma_tot > _FAINT_RADII[-1]
    bright = (galaxies.flux > bright_limit * sigma_tot / sigma_psf) | big
    for i in np.flatnonzero(bright):
        gal = _galaxy_profile(float(galaxies.flux[i]), float(galaxies.hlr[i]),
                              float(galaxies.q[i]), float(galaxies.beta[i]),
                              float(galaxies.bulge[i]))
        radius = int(min(max(4.0 * sigma_tot[i] + 2.0 * galaxies.hlr[i], 3.0 * psf.fwhm),
                         _MAX_STAMP_RADIUS))
        _draw_galsim(image, galsim.Convolve(gal, core), galaxies.x[i], galaxies.y[i], radius)
    counts["galsim_galaxies"] = int(bright.sum())
    faint_idx = np.flatnonzero(~bright)
    if len(faint_idx):
        q, beta, sg = galaxies.q[faint_idx], galaxies.beta[faint_idx], sigma_gal[faint_idx]
        c, s = np.cos(beta), np.sin(beta)
        a2, b2 = sg**2 / q, sg**2 * q  # same area as the circular Gaussian
        gcov = np.empty((len(faint_idx), 2, 2))
        gcov[:, 0, 0] = a2 * c**2 + b2 * s**2
        gcov[:, 1, 1] = a2 * s**2 + b2 * c**2
        gcov[:, 0, 1] = gcov[:, 1, 0] = (a2 - b2) * c * s
        gcov += shape * sigma_psf**2
        need = 3.0 * sigma_tot[faint_idx]
        which = np.searchsorted(_FAINT_RADII, need)
        for k, rad in enumerate(_FAINT_RADII):
            sel = which == k
            if sel.any():
                idx = faint_idx[sel]
                _render_vectorised(image, galaxies.x[idx], galaxies.y[idx],
                                   galaxies.flux[idx], gcov[sel], radius=rad,
                                   moffat_beta=None)
    counts["fast_galaxies"] = len(faint_idx)
    return counts
