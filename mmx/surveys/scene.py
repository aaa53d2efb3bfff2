"""The sky in front of the detector: PSF, star and galaxy catalogues, and their pixels.

Everything here is in electrons collected per pixel over the exposure, before the
detector's response, noise and defects (:mod:`mmx.surveys.detector`). Pixel ``(y, x)``
of a numpy array has its centre at coordinates ``(x, y)``.

Sources bright enough to matter in detail (high S/N) are drawn with GalSim into stamps
sized to where their light falls below the sky noise; the many faint ones are drawn
together with a vectorised numpy renderer (Moffat stars, Gaussian-approximated galaxies
convolved with the PSF), which is indistinguishable at their S/N and a hundred times
faster. Resolved galaxies carry star-forming knots, some of them along spiral arms
(:func:`_knot_positions`), and a CCD may hold a nearby galaxy larger than a training
cutout (:func:`large_galaxy_catalog`); a space telescope's PSF is an obscured Airy
pattern with its rings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

__all__ = [
    "Psf",
    "Catalog",
    "draw_seeing",
    "star_catalog",
    "galaxy_catalog",
    "large_galaxy_catalog",
    "render_sources",
]

_DEG2_PER_ARCSEC2 = 1.0 / 3600.0**2
_GALSIM_SNR = 25.0  # sources with a higher PSF-aperture S/N are drawn with GalSim
_FAINT_RADII = (4, 6, 9, 13, 18)  # stamp half-sizes of the vectorised renderer [px]
_MAX_STAMP_RADIUS = 700  # largest GalSim stamp half-size of a star [px]
_MAX_GALAXY_RADIUS = 2800  # largest GalSim stamp half-size of a galaxy [px]
_MAX_BULGE_HLR = 40.0  # largest bulge half-light radius [px]
_UNCONVOLVED_DISC = 20.0  # discs wider than this many PSF FWHM are drawn without the PSF
_HALO_FRACTION = 0.04  # share of a star's light in the wide PSF aureole
_HALO_SCALE = 4.0  # aureole FWHM / core FWHM
_HALO_BETA = 2.0  # aureole Moffat index (wings fall as r^-4)
_AIRY_FWHM = 1.028  # FWHM of an Airy pattern [lambda / D]
_KNOT_MIN_HLR = 1.5  # galaxies with a larger half-light radius [px] show knots and arms
_MAX_KNOTS = 300  # most knots per galaxy [count]


@dataclass(frozen=True)
class Psf:
    """The point-spread function of one exposure, in pixels.

    A Moffat core with a small ellipticity (or, for a space telescope, an obscured
    Airy pattern with its rings) plus a faint, wide Moffat aureole that shows only
    around bright stars.

    Attributes
    ----------
    fwhm : float
        Core FWHM [px].
    beta : float
        Core Moffat index.
    e1, e2 : float
        Core ellipticity components (distortion ``(a^2-b^2)/(a^2+b^2)``).
    obscuration : float or None
        Linear central obscuration of a diffraction-limited pupil: the core is then an
        Airy pattern of this FWHM integrated over the square pixels (GalSim-drawn stars;
        an undersampled Airy core drawn at pixel centres would be sharper than any star a
        CCD records); ``None``: Moffat.
    """

    fwhm: float
    beta: float
    e1: float = 0.0
    e2: float = 0.0
    obscuration: float | None = None

    @property
    def alpha(self) -> float:
        """Moffat scale radius of the core [px]."""
        return self.fwhm / (2.0 * math.sqrt(2.0 ** (1.0 / self.beta) - 1.0))

    def core(self):
        """GalSim profile of the unit-flux core (used to convolve galaxies)."""
        import galsim

        if self.obscuration is not None:  # sampled by pixels that integrate the light
            airy = galsim.Airy(lam_over_diam=self.fwhm / _AIRY_FWHM,
                               obscuration=self.obscuration)
            core = galsim.Convolve(airy, galsim.Pixel(1.0))
        else:
            core = galsim.Moffat(beta=self.beta, fwhm=self.fwhm)
        return core.shear(e1=self.e1, e2=self.e2)

    def star(self):
        """GalSim profile of a unit-flux star: core plus aureole."""
        import galsim

        halo = galsim.Moffat(beta=_HALO_BETA, fwhm=_HALO_SCALE * self.fwhm)
        return galsim.Add(self.core() * (1.0 - _HALO_FRACTION), halo * _HALO_FRACTION)

    def radius_to(self, flux: float, level: float) -> float:
        """Radius [px] beyond which a star of ``flux`` e- is fainter than ``level`` e-/px."""
        radius = 0.0
        core_beta = 1.5 if self.obscuration is not None else self.beta  # Airy wings: r^-3
        for frac, beta, fwhm in ((1.0 - _HALO_FRACTION, core_beta, self.fwhm),
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
    knots : numpy.ndarray
        Share of the disc's light in star-forming knots; 0 for stars.
    """

    x: np.ndarray
    y: np.ndarray
    mag: np.ndarray
    flux: np.ndarray
    hlr: np.ndarray
    q: np.ndarray
    beta: np.ndarray
    bulge: np.ndarray
    knots: np.ndarray

    def __len__(self) -> int:
        return len(self.x)

    def __add__(self, other: Catalog) -> Catalog:
        return Catalog(*(np.concatenate([getattr(self, f.name), getattr(other, f.name)])
                         for f in fields(self)))


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
    return Catalog(x, y, mag, zeros.copy(), zeros.copy(), ones, zeros.copy(), zeros.copy(),
                   zeros.copy())


def galaxy_catalog(
    shape: tuple[int, int], *, pixel_scale: float, density: float, colour: float,
    bright: float, faint: float, rng: np.random.Generator, margin: float = 20.0,
    knot_fraction: tuple[float, float] = (0.0, 0.4),
) -> Catalog:
    """Draw the galaxies of one CCD with realistic counts, sizes and shapes.

    Counts: ``N(<m_i) = density * 10^(0.3 (m_i - 23.5))`` per deg^2 (wide-field i-band
    counts, e.g. CFHTLenS/DES: ~4e4 deg^-2 at i < 23.5), with ``m_i = m - colour``.
    Sizes: log-normal half-light radius, median ``10^(0.15 - 0.12 (m_i - 20))`` arcsec
    (1.4" at i = 20, 0.5" at 24), 0.18 dex scatter. Shapes: exponential disc plus de
    Vaucouleurs bulge (bulge fraction ~ Beta(1.2, 3), larger for bright galaxies),
    disc ellipticity Rayleigh-distributed (sigma 0.3), random orientation; a uniform
    share ``knot_fraction`` of the disc's light in knots.

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
    knot_fraction
        Range of the share of disc light in star-forming knots [1].
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
    knots = rng.uniform(*knot_fraction, n) * (1.0 - bulge)
    return Catalog(x, y, mag, np.zeros(n), hlr, q, beta, bulge, knots)


def large_galaxy_catalog(
    shape: tuple[int, int], *, pixel_scale: float, mean: float, size: tuple[float, float],
    colour: float, rng: np.random.Generator,
) -> Catalog:
    """Draw nearby galaxies larger than a training cutout (Poisson count, mean ``mean``).

    Half-light radius log-uniform in ``size`` [arcsec]; mean surface brightness within
    it uniform in 20.5-23 i mag/arcsec^2 (bright spirals to low surface brightness
    discs), which sets the magnitude; centres anywhere on the CCD; late-type discs
    (bulge ~ 0.15 Beta(1.2, 3)) with 10-40 % of the disc's light in knots and arms.
    """
    n = int(rng.poisson(mean))
    ny, nx = shape
    x, y = rng.uniform(0, nx - 1, n), rng.uniform(0, ny - 1, n)
    hlr_arcsec = 10.0 ** rng.uniform(*np.log10(size), n)
    mu_e = rng.uniform(20.5, 23.0, n) + colour
    mag = mu_e - 2.5 * np.log10(2.0 * np.pi * hlr_arcsec**2)
    ell = np.minimum(np.abs(rng.rayleigh(0.3, n)), 0.85)
    q = np.sqrt((1.0 - ell) / (1.0 + ell))
    beta = rng.uniform(0.0, np.pi, n)
    bulge = 0.15 * rng.beta(1.2, 3.0, n)
    knots = rng.uniform(0.1, 0.4, n) * (1.0 - bulge)
    return Catalog(x, y, mag, np.zeros(n), hlr_arcsec / pixel_scale, q, beta, bulge, knots)


def _knot_positions(hlr: float, q: float, beta: float, n: int, rng: np.random.Generator
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Offsets [px] of ``n`` knots in a disc: a random share along 1-4 log-spiral arms.

    Radii follow the exponential disc's light (Gamma(2) in scale lengths, at most 4
    half-light radii); arm knots sit at ``theta = ln(r / r0) / tan(pitch)`` plus the
    arm's phase (pitch 10-35 deg), the others at random angles (clumpy irregulars).
    The disc is then inclined (axis ratio ``q``) and turned by ``beta``.
    """
    scale = hlr / 1.678
    r = np.minimum(rng.gamma(2.0, scale, n), 4.0 * hlr)
    arms = int(rng.integers(1, 5))
    pitch = np.radians(rng.uniform(10.0, 35.0))
    on_arm = rng.random(n) < rng.uniform(0.0, 1.0)
    theta = rng.uniform(0.0, 2.0 * np.pi, n)
    phase = 2.0 * np.pi * rng.integers(0, arms, n) / arms + rng.uniform(0.0, 2.0 * np.pi)
    spiral = np.log(np.maximum(r, 0.05 * hlr) / (0.3 * hlr)) / np.tan(pitch) + phase
    theta = np.where(on_arm, spiral + rng.normal(0.0, 0.15, n), theta)
    u, v = r * np.cos(theta), q * r * np.sin(theta)
    c, s = math.cos(beta), math.sin(beta)
    return c * u - s * v, s * u + c * v


def _galaxy_components(flux: float, hlr: float, q: float, beta: float, bulge: float):
    """The exponential disc and (when it holds >= 5 % of the light) the de Vaucouleurs bulge.

    The bulge's half-light radius is half the disc's, at most :data:`_MAX_BULGE_HLR`.
    """
    import galsim

    angle = beta * galsim.radians
    disc = galsim.Exponential(half_light_radius=hlr).shear(q=q, beta=angle)
    if bulge < 0.05:
        return [disc.withFlux(flux)]
    q_bulge = min(1.0, 0.5 + 0.5 * q)
    r_bulge = min(max(0.5 * hlr, 0.3), _MAX_BULGE_HLR)
    core = galsim.DeVaucouleurs(half_light_radius=r_bulge, trunc=16.0 * r_bulge)
    core = core.shear(q=q_bulge, beta=angle)
    return [disc.withFlux(flux * (1.0 - bulge)), core.withFlux(flux * bulge)]


def _draw_galsim(image: np.ndarray, profile, x: float, y: float, radius: int) -> None:
    import galsim

    ix, iy = int(round(x)), int(round(y))
    bounds = galsim.BoundsI(ix - radius, ix + radius, iy - radius, iy + radius)
    ny, nx = image.shape
    full = galsim.BoundsI(0, nx - 1, 0, ny - 1)
    overlap = bounds & full
    if not overlap.isDefined():
        return
    stamp = galsim.ImageD(overlap)
    profile.drawImage(image=stamp, method="no_pixel", center=galsim.PositionD(x, y))
    view = galsim.ImageD(image, xmin=0, ymin=0)
    view[overlap] += stamp


def _knots(galaxies: Catalog, i: int, flux: float, rng: np.random.Generator
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Centres [px], fluxes [e-] and Gaussian sigmas [px] of galaxy ``i``'s knots.

    One knot per 1.5 px of half-light radius (5 to :data:`_MAX_KNOTS`), fluxes from a
    Pareto law (a few bright HII regions, many faint ones), sigmas 0.5-5 % of the
    half-light radius (0.3 to 3 px: knots stay compact).
    """
    hlr = float(galaxies.hlr[i])
    n = int(np.clip(hlr / 1.5, 5, _MAX_KNOTS))
    dx, dy = _knot_positions(hlr, float(galaxies.q[i]), float(galaxies.beta[i]), n, rng)
    weights = rng.pareto(1.5, n) + 1.0
    sigma = np.clip(hlr * rng.uniform(0.005, 0.05, n), 0.3, 3.0)
    return galaxies.x[i] + dx, galaxies.y[i] + dy, flux * weights / weights.sum(), sigma


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
    rng: np.random.Generator,
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
    rng
        Random generator of the knots' positions, sizes and fluxes.

    Returns
    -------
    dict
        How many sources each renderer drew (``galsim_stars``, ``galsim_galaxies``,
        ``fast_stars``, ``fast_galaxies``) and how many galaxy ``knots``.
    """
    sigma_psf = psf.fwhm / 2.3548
    aperture_noise = sky_sigma * math.sqrt(4.0 * math.pi) * sigma_psf
    bright_limit = _GALSIM_SNR * aperture_noise
    level = 0.1 * sky_sigma
    shape = _psf_shape(psf)
    counts = dict.fromkeys(("galsim_stars", "galsim_galaxies", "fast_stars",
                            "fast_galaxies", "knots"), 0)

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
    knots = []
    for i in np.flatnonzero(bright):
        flux, hlr, q = float(galaxies.flux[i]), float(galaxies.hlr[i]), float(galaxies.q[i])
        knot_flux = flux * (1.0 - galaxies.bulge[i]) * galaxies.knots[i]
        if hlr < _KNOT_MIN_HLR:
            knot_flux = 0.0
        parts = _galaxy_components(flux - knot_flux, hlr, q, float(galaxies.beta[i]),
                                   float(galaxies.bulge[i]))
        # The disc falls to `level` at h ln(I0 / level), I0 its central surface brightness.
        h = hlr / 1.678
        extent = h * math.log(max(flux / (2.0 * math.pi * h * h * q * level), math.e))
        radius = int(min(max(4.0 * sigma_tot[i] + 2.0 * hlr, extent, 3.0 * psf.fwhm),
                         _MAX_GALAXY_RADIUS))
        if hlr > _UNCONVOLVED_DISC * psf.fwhm:  # the PSF changes nothing a pixel shows
            _draw_galsim(image, parts.pop(0), galaxies.x[i], galaxies.y[i], radius)
        if parts:
            _draw_galsim(image, galsim.Convolve(galsim.Add(parts), core), galaxies.x[i],
                         galaxies.y[i], radius)
        if knot_flux > 0.0:
            knots.append(_knots(galaxies, i, knot_flux, rng))
    counts["galsim_galaxies"] = int(bright.sum())
    if knots:
        kx, ky, kf, ks = (np.concatenate(a) for a in zip(*knots, strict=True))
        kcov = ks[:, None, None] ** 2 * np.eye(2) + shape * sigma_psf**2
        which = np.minimum(np.searchsorted(_FAINT_RADII, 3.0 * np.sqrt(ks**2 + sigma_psf**2)),
                           len(_FAINT_RADII) - 1)
        for k, rad in enumerate(_FAINT_RADII):
            sel = which == k
            _render_vectorised(image, kx[sel], ky[sel], kf[sel], kcov[sel], radius=rad,
                               moffat_beta=None)
        counts["knots"] = len(kx)
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
