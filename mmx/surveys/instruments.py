"""Instrument profiles of the wide-field survey cameras mmx simulates.

One frozen :class:`Instrument` per camera and one :class:`Band` per filter, gathered in
the :data:`INSTRUMENTS` registry. Values are typical published ones, rounded; the
sources are named next to each profile. Where a camera reads a CCD through several
amplifiers, the profile keeps one amplifier per CCD with the camera's total prescan
and overscan widths: one ``BIASSEC`` and one ``DATASEC`` per HDU, as the data contract
(docs/architecture.md) asks.

Conventions: sizes in pixels, ``(ny, nx)`` order as numpy indexes arrays; zero points
are AB magnitudes giving 1 e-/s at airmass 1; sky brightness is dark-time zenith sky in
AB mag/arcsec^2; seeing is the delivered FWHM in the r band at airmass 1 (arcsec).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from mmx.errors import ConfigError

__all__ = ["Band", "Instrument", "INSTRUMENTS", "get_instrument", "profile_table"]


@dataclass(frozen=True)
class Band:
    """Photometric properties of one filter on one camera.

    Attributes
    ----------
    name : str
        Short filter name used in configuration (``g``, ``r``, ``i``...).
    filter_name : str
        Name the camera writes in ``FILTER``.
    zero_point : float
        AB magnitude of a source giving 1 e-/s, at airmass 1 [mag].
    sky : float
        Dark-sky brightness at zenith [AB mag/arcsec^2].
    extinction : float
        Atmospheric extinction coefficient [mag/airmass].
    wavelength : float
        Effective wavelength [nm] (scales the seeing as lambda^-0.2).
    """

    name: str
    filter_name: str
    zero_point: float
    sky: float
    extinction: float
    wavelength: float


@dataclass(frozen=True)
class Instrument:
    """A survey camera and its telescope, as the simulator needs them.

    Attributes
    ----------
    name : str
        Registry key and ``INSTRUME`` value.
    telescope : str
        ``TELESCOP`` value.
    mirror_diameter : float
        Primary mirror diameter [m] (informative).
    pixel_scale : float
        Plate scale at the detector [arcsec/px].
    pixel_size : float
        Physical pixel pitch [um] (sets the cosmic-ray hit rate per pixel).
    thickness : float
        Depleted silicon thickness [um] (sets cosmic-ray track lengths).
    ccd_shape : tuple of int
        Data-section size ``(ny, nx)`` of one CCD [px].
    n_ccds : int
        Science CCDs per exposure.
    prescan : int
        Serial prescan columns before the data section [px].
    overscan : int
        Serial overscan columns after the data section (the ``BIASSEC``) [px].
    overscan_rows : int
        Parallel overscan rows after the data section [px].
    gain : float
        Conversion gain [e-/ADU].
    read_noise : float
        Read noise [e-].
    bias : float
        Bias (overscan) level [ADU].
    full_well : float
        Pixel full-well capacity [e-]; charge beyond it bleeds along the column.
    adc_max : int
        Largest value the ADC writes [ADU].
    bands : Mapping[str, Band]
        Filters by short name.
    seeing_median : float
        Median delivered FWHM at 620 nm, airmass 1 [arcsec].
    seeing_sigma : float
        Log-normal scatter of the seeing [dex].
    psf_beta : float
        Moffat index of the PSF core.
    psf_obscuration : float or None
        Central obscuration of a diffraction-limited (space) pupil: the PSF core is an
        Airy pattern with rings; ``None`` (ground): a Moffat core.
    flat_pixel_rms : float
        Pixel-to-pixel response non-uniformity (fractional rms).
    flat_large_scale : float
        Amplitude of the large-scale response/illumination variation (fraction).
    cosmic_ray_rate : float
        Cosmic-ray events per cm^2 per second at the site.
    n_spider_vanes : int
        Secondary-mirror / prime-focus-cage support vanes (4 vanes: a 4-armed spike).
    spider_angle : float
        Angle of the first diffraction spike from the CCD x axis [deg].
    rotates_pupil : bool
        True on an alt-az telescope with an instrument rotator: the spikes turn with
        respect to the CCD from one exposure to the next.
    ccd_gap : tuple of int
        Gaps between neighbouring CCDs in the focal plane ``(gap_y, gap_x)`` [px].
    site_altitude : float
        Observatory altitude [m] (informative).
    """

    name: str
    telescope: str
    mirror_diameter: float
    pixel_scale: float
    pixel_size: float
    thickness: float
    ccd_shape: tuple[int, int]
    n_ccds: int
    prescan: int
    overscan: int
    overscan_rows: int
    gain: float
    read_noise: float
    bias: float
    full_well: float
    adc_max: int
    bands: Mapping[str, Band]
    seeing_median: float
    seeing_sigma: float
    psf_beta: float
    flat_pixel_rms: float
    flat_large_scale: float
    cosmic_ray_rate: float
    n_spider_vanes: int
    spider_angle: float
    rotates_pupil: bool
    ccd_gap: tuple[int, int] = field(default=(100, 100))
    site_altitude: float = 0.0
    psf_obscuration: float | None = None

    def __reduce__(self):
        """Pickle support (for process pools): the band table as a plain dict."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        values["bands"] = dict(self.bands)
        return _instrument_from_fields, (values,)

    @property
    def saturate(self) -> int:
        """Raw level [ADU, bias included] above which a pixel is saturated.

        The smaller of the full well seen through the gain and the ADC's largest code,
        lowered by a margin of five read-noise sigmas so that every pixel at full well
        is above it.
        """
        margin = 5.0 * self.read_noise / self.gain
        return int(min(self.bias + self.full_well / self.gain, self.adc_max) - margin)

    def ccd_name(self, ccdnum: int) -> str:
        """``EXTNAME`` of CCD number ``ccdnum`` (1-based) in the camera's own style."""
        if self.name == "DECam":  # S1..S31 then N1..N31, as DECam's CCDNUM 1-62 run
            half = self.n_ccds // 2
            return f"S{ccdnum}" if ccdnum <= half else f"N{ccdnum - half}"
        if self.name == "MegaCam":  # ccd00..ccd39
            return f"ccd{ccdnum - 1:02d}"
        return f"ccd{ccdnum - 1:03d}"  # HSC detector ids 0..103

    def band(self, name: str) -> Band:
        """The filter called ``name``.

        Raises
        ------
        ConfigError
            If this camera has no such filter.
        """
        try:
            return self.bands[name]
        except KeyError:
            raise ConfigError(
                f"{self.name} has no band {name!r}; expected one of {', '.join(self.bands)}"
            ) from None


def _bands(*bands: Band) -> Mapping[str, Band]:
    return MappingProxyType({b.name: b for b in bands})


def _instrument_from_fields(values: dict) -> Instrument:
    """An :class:`Instrument` rebuilt from its pickled fields (read-only band table)."""
    return Instrument(**{**values, "bands": MappingProxyType(values["bands"])})


# DECam on the CTIO Blanco 4 m (Flaugher et al. 2015, AJ 150, 150; DECam Data Handbook;
# NOIRLab DECam exposure-time calculator). 62 LBNL 2k x 4k fully depleted CCDs, 250 um
# thick, 15 um pixels, 0.263"/px; gain ~4 e-/ADU, read noise ~7 e-, full well ~150 ke-.
# Raw CCDs have 2048x4096 data pixels read by two amplifiers, each with 6 prescan and 50
# overscan columns, plus 50 parallel-overscan rows. Zero points: DES single-epoch values
# (~31.5 mag for 90 s, i.e. ~26.6 for 1 e-/s). Sky: CTIO dark sky (DECam ETC). Median
# seeing ~0.9-1.0" (DES Y1-Y3). Prime-focus cage on 4 vanes; spike angle on the CCDs
# assumed (equatorial mount: it does not change between exposures).
_DECAM = Instrument(
    name="DECam",
    telescope="CTIO 4.0-m telescope",
    mirror_diameter=4.0,
    pixel_scale=0.263,
    pixel_size=15.0,
    thickness=250.0,
    ccd_shape=(4096, 2048),
    n_ccds=62,
    prescan=12,
    overscan=100,
    overscan_rows=50,
    gain=4.0,
    read_noise=7.0,
    bias=2200.0,
    full_well=150_000.0,
    adc_max=65535,
    bands=_bands(
        Band("g", "g DECam SDSS c0001 4720.0 1520.0", 26.45, 22.0, 0.18, 475.0),
        Band("r", "r DECam SDSS c0002 6415.0 1480.0", 26.65, 21.2, 0.10, 640.0),
        Band("i", "i DECam SDSS c0003 7835.0 1470.0", 26.45, 20.5, 0.07, 780.0),
        Band("z", "z DECam SDSS c0004 9260.0 1520.0", 26.05, 19.6, 0.06, 920.0),
        Band("Y", "Y DECam c0005 10095.0 1130.0", 24.95, 18.6, 0.06, 990.0),
    ),
    seeing_median=0.95,
    seeing_sigma=0.08,
    psf_beta=3.0,
    flat_pixel_rms=0.006,
    flat_large_scale=0.04,
    cosmic_ray_rate=0.03,
    n_spider_vanes=4,
    spider_angle=45.0,
    rotates_pupil=False,
    ccd_gap=(120, 120),
    site_altitude=2207.0,
)

# CFHT MegaCam on MegaPrime, CFHT 3.6 m (Boulade et al. 2003, SPIE 4841; CFHT MegaCam
# web pages). 36 + 4 e2v CCD42-90 2048x4612 CCDs (40 since 2015), 13.5 um pixels,
# 0.187"/px; gain ~1.6 e-/ADU, read noise ~5 e-; the 16-bit ADC saturates (~105 ke-)
# before the ~200 ke- full well, so bright stars clip flat without bleeding until much
# brighter. Raw CCDs are 2112x4644: 32 prescan and 32 overscan columns and 32 rows.
# Zero points: Elixir/MegaPipe (~26.2-26.6 mag for 1 ADU/s, +0.5 for e-). Maunakea dark
# sky; median seeing ~0.7" (i). Prime-focus upper end on 4 vanes; spike angle assumed
# aligned with the CCD axes (equatorial mount).
_MEGACAM = Instrument(
    name="MegaCam",
    telescope="CFHT 3.6m",
    mirror_diameter=3.58,
    pixel_scale=0.187,
    pixel_size=13.5,
    thickness=40.0,
    ccd_shape=(4612, 2048),
    n_ccds=40,
    prescan=32,
    overscan=32,
    overscan_rows=32,
    gain=1.6,
    read_noise=5.0,
    bias=1000.0,
    full_well=200_000.0,
    adc_max=65535,
    bands=_bands(
        Band("u", "u.MP9302", 25.75, 22.7, 0.35, 375.0),
        Band("g", "g.MP9402", 27.10, 22.0, 0.15, 487.0),
        Band("r", "r.MP9602", 26.70, 21.2, 0.10, 628.0),
        Band("i", "i.MP9703", 26.55, 20.4, 0.04, 770.0),
        Band("z", "z.MP9901", 25.50, 19.5, 0.03, 890.0),
    ),
    seeing_median=0.72,
    seeing_sigma=0.08,
    psf_beta=3.0,
    flat_pixel_rms=0.008,
    flat_large_scale=0.06,
    cosmic_ray_rate=0.05,
    n_spider_vanes=4,
    spider_angle=0.0,
    rotates_pupil=False,
    ccd_gap=(80, 80),
    site_altitude=4204.0,
)

# Subaru Hyper Suprime-Cam (Miyazaki et al. 2018, PASJ 70, S1; Aihara et al. 2018,
# PASJ 70, S4 and S8). 104 science Hamamatsu 2048x4176 fully depleted CCDs, 200 um thick,
# 15 um pixels, 0.168"/px; gain ~3 e-/ADU, read noise ~4.5 e-, full well ~150 ke-. Four
# amplifiers per CCD, each with 8 prescan and 16 overscan columns (96 in all; we keep
# 32 + 64) and parallel overscan rows. Zero points from HSC-SSP (8.2 m aperture: ~1.6 mag
# deeper than a 4 m). Maunakea sky; median seeing ~0.6-0.7" (HSC-SSP i band 0.6").
# Alt-az telescope with an instrument rotator: the 4-vane spikes turn on the CCDs.
_HSC = Instrument(
    name="HSC",
    telescope="Subaru",
    mirror_diameter=8.2,
    pixel_scale=0.168,
    pixel_size=15.0,
    thickness=200.0,
    ccd_shape=(4176, 2048),
    n_ccds=104,
    prescan=32,
    overscan=64,
    overscan_rows=64,
    gain=3.0,
    read_noise=4.5,
    bias=1200.0,
    full_well=150_000.0,
    adc_max=65535,
    bands=_bands(
        Band("g", "HSC-G", 28.60, 22.0, 0.15, 480.0),
        Band("r", "HSC-R2", 28.60, 21.2, 0.10, 620.0),
        Band("i", "HSC-I2", 28.45, 20.4, 0.04, 770.0),
        Band("z", "HSC-Z", 27.75, 19.5, 0.03, 890.0),
        Band("y", "HSC-Y", 27.10, 18.5, 0.03, 1000.0),
    ),
    seeing_median=0.68,
    seeing_sigma=0.08,
    psf_beta=3.0,
    flat_pixel_rms=0.005,
    flat_large_scale=0.05,
    cosmic_ray_rate=0.05,
    n_spider_vanes=4,
    spider_angle=0.0,
    rotates_pupil=True,
    ccd_gap=(80, 80),
    site_altitude=4139.0,
)

# A space imager in the manner of HST WFPC2's Wide Field cameras (Holtzman et al. 1995,
# PASP 107, 156; WFPC2 Instrument Handbook): 2.4 m aperture, 0.1"/px, so the diffraction-
# limited PSF (FWHM ~0.08-0.13" from 600 to 900 nm) is *undersampled*, ~1 px: the hardest
# case for telling a cosmic ray from a star. Thin (~15 um) front-illuminated CCDs, 15 um
# pixels; gain 7 e-/ADU, read noise 5 e-, a 12-bit ADC (4095), low-Earth-orbit cosmic-ray
# rate ~1.5 /cm^2/s. The CCD here is 2048 x 2048 (WFPC2's are 800 x 800) so the simulated
# survey holds as many undersampled cutouts as ground-based ones. Zero points: WFPC2
# F606W/F814W photometric zero points for 1 e-/s (~24.7/23.9 AB after the gain). Sky:
# zodiacal light, faint. No atmosphere: "seeing" is the diffraction core, with a small
# scatter for focus breathing; the simulator's airmass term broadens it a little, which
# only widens the range of PSFs drawn. 4-vane spider.
_SPACE = Instrument(
    name="SpaceCam",
    telescope="2.4-m space telescope",
    mirror_diameter=2.4,
    pixel_scale=0.1,
    pixel_size=15.0,
    thickness=15.0,
    ccd_shape=(2048, 2048),
    n_ccds=4,
    prescan=0,
    overscan=14,
    overscan_rows=0,
    gain=7.0,
    read_noise=5.0,
    bias=310.0,
    full_well=53_000.0,
    adc_max=4095,
    bands=_bands(
        Band("F606W", "F606W", 24.75, 22.9, 0.0, 600.0),
        Band("F814W", "F814W", 23.95, 22.6, 0.0, 800.0),
    ),
    seeing_median=0.105,
    seeing_sigma=0.08,
    psf_beta=2.5,
    flat_pixel_rms=0.004,
    flat_large_scale=0.02,
    cosmic_ray_rate=1.5,
    n_spider_vanes=4,
    spider_angle=45.0,
    rotates_pupil=True,
    ccd_gap=(40, 40),
    site_altitude=540_000.0,
    psf_obscuration=0.33,
)

# A 1-m-class observatory imager, the camera most astronomers outside the big surveys
# use, in the manner of the university and amateur-professional CCD cameras (Kodak/e2v
# 2k x 2k sensors on 0.6-1.3 m telescopes; cf. the NTT EMMI, CTIO and SBIG frames of the
# real set): 0.5"/px under ~1" seeing puts the PSF FWHM at 2-3.5 px, between the survey
# cameras (4-6 px) and the space imager (~1 px), where a compact cosmic ray and a star
# core are hardest to tell apart on the ground. Thin (~20 um) CCDs, 13.5 um pixels;
# gain 1.4 e-/ADU, read noise 9 e-, a 16-bit ADC that clips before the ~100 ke- full well.
# Johnson-Cousins filters; zero points for 1 e-/s scaled from a 4 m by aperture and a
# lower throughput (~3.3 mag); a moderately dark site (V sky 21.4). Two CCDs side by
# side; equatorial mount, 4-vane spider along the CCD axes.
_SMALL = Instrument(
    name="SmallScope",
    telescope="1.0-m observatory telescope",
    mirror_diameter=1.0,
    pixel_scale=0.5,
    pixel_size=13.5,
    thickness=20.0,
    ccd_shape=(2048, 2048),
    n_ccds=2,
    prescan=20,
    overscan=50,
    overscan_rows=0,
    gain=1.4,
    read_noise=9.0,
    bias=1100.0,
    full_well=100_000.0,
    adc_max=65535,
    bands=_bands(
        Band("B", "Bessell B", 23.0, 22.3, 0.25, 440.0),
        Band("V", "Bessell V", 23.4, 21.4, 0.15, 550.0),
        Band("R", "Cousins R", 23.5, 20.8, 0.10, 650.0),
        Band("I", "Cousins I", 22.9, 19.9, 0.07, 800.0),
    ),
    seeing_median=1.0,
    seeing_sigma=0.1,
    psf_beta=2.5,
    flat_pixel_rms=0.01,
    flat_large_scale=0.08,
    cosmic_ray_rate=0.03,
    n_spider_vanes=4,
    spider_angle=0.0,
    rotates_pupil=False,
    ccd_gap=(60, 60),
    site_altitude=2000.0,
)

INSTRUMENTS: Mapping[str, Instrument] = MappingProxyType(
    {i.name: i for i in (_DECAM, _MEGACAM, _HSC, _SPACE, _SMALL)}
)


def get_instrument(name: str) -> Instrument:
    """Return the profile called ``name`` (case-insensitive).

    Raises
    ------
    ConfigError
        If no profile has that name.
    """
    for key, inst in INSTRUMENTS.items():
        if key.lower() == str(name).strip().lower():
            return inst
    raise ConfigError(
        f"unknown instrument {name!r}; expected one of {', '.join(INSTRUMENTS)}"
    )


def profile_table() -> list[str]:
    """Lines of a plain-text table of every profile (for ``mmx surveys profiles``)."""
    head = (f"{'name':<10} {'telescope':<27} {'scale':>5} {'CCD ny x nx':>11} {'nCCD':>4} "
            f"{'gain':>4} {'RN':>4} {'bias':>5} {'fullwell':>8} {'SATUR':>5} {'seeing':>6} "
            f"{'spikes':>6}  bands")
    lines = [head]
    for inst in INSTRUMENTS.values():
        ny, nx = inst.ccd_shape
        bands = " ".join(
            f"{b.name}(ZP {b.zero_point:.2f}, sky {b.sky:.1f})" for b in inst.bands.values()
        )
        lines.append(
            f"{inst.name:<10} {inst.telescope:<27} {inst.pixel_scale:>5.3f} "
            f"{f'{ny}x{nx}':>11} {inst.n_ccds:>4} {inst.gain:>4.1f} {inst.read_noise:>4.1f} "
            f"{inst.bias:>5.0f} {inst.full_well:>8.0f} {inst.saturate:>5d} "
            f"{inst.seeing_median:>5.2f}\" {inst.n_spider_vanes:>2}@{inst.spider_angle:>3.0f}"
            f"  {bands}"
        )
    lines.append("units: scale arcsec/px; gain e-/ADU; RN e-; bias and SATUR raw ADU; "
                 "full well e-; ZP AB mag for 1 e-/s; sky AB mag/arcsec^2")
    return lines
