"""Simulated raw survey exposures: configuration, per-CCD simulation and MEF files.

:func:`simulate_survey` reads the ``survey:`` section of ``params.yaml`` (the same keys
as :data:`DEFAULT_SURVEY`) and writes ``<out>/<instrument>/<instrument>_<k>.fits.fz``
files laid out as docs/architecture.md specifies. Every random draw comes from a
generator derived from ``(seed, instrument, exposure index[, CCD number])``, so a file
depends only on the seed, its own exposure's settings and the code: adding exposures,
CCDs or instruments never changes files already made, and the same inputs give the
same bytes (no clock, no host name, no checksum dates).
"""

from __future__ import annotations

import copy
import logging
import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mmx.errors import ConfigError, InputError
from mmx.parallel import available_cpus, process_pool
from mmx.surveys.detector import (
    DefectCounts,
    add_cosmic_rays,
    add_dead_defects,
    add_hot_defects,
    bleed,
    digitize,
    response_map,
)
from mmx.surveys.instruments import INSTRUMENTS, Band, Instrument, get_instrument
from mmx.surveys.scene import (
    Catalog,
    Psf,
    draw_seeing,
    galaxy_catalog,
    large_galaxy_catalog,
    render_sources,
    star_catalog,
)

__all__ = [
    "DEFAULT_SURVEY",
    "PROFILE_EXPOSURES",
    "ExposurePlan",
    "SurveyConfig",
    "SimulatedCCD",
    "survey_config",
    "plan_survey",
    "read_survey_params",
    "simulate_ccd",
    "simulate_exposure",
    "simulate_survey",
]

log = logging.getLogger(__name__)

#: Exposure lists of every instrument profile (filters, exposure times [s], stars per deg^2
#: brighter than 22 mag, cycled over exposures): the default survey's, and those
#: ``mmx surveys simulate --instruments`` uses for a camera the survey section leaves out.
PROFILE_EXPOSURES: dict = {
    "DECam": {"bands": ["r", "z", "g", "i"], "exptimes": [90, 60, 120, 90],
              "star_density": [30000, 3000, 300000, 10000]},
    "MegaCam": {"bands": ["g", "i", "r", "z"], "exptimes": [300, 200, 150, 400],
                "star_density": [3000, 30000, 1000]},
    "HSC": {"bands": ["i", "r", "z", "g"], "exptimes": [200, 150, 120, 150],
            "star_density": [10000, 100000, 3000]},
    "SpaceCam": {"bands": ["F814W", "F606W"], "exptimes": [500, 1200],
                 "star_density": [300000, 3000, 3000000]},
    "SmallScope": {"bands": ["R", "V", "I", "B"], "exptimes": [300, 180, 600, 300],
                   "star_density": [30000, 3000, 300000]},
}

#: Built-in survey, identical in meaning to the ``survey:`` section of params.yaml.
DEFAULT_SURVEY: dict = {
    "seed": 20250101,
    "exposures_per_instrument": 1,
    "ccds_per_exposure": 2,
    "ccd_shape": None,
    "mjd_start": 60676.0,
    "star_slope": 0.2,
    "star_bright": 9.5,
    "galaxy_density": 40000.0,
    "galaxy_bright": 15.0,
    "galaxy_knots": [0.0, 0.4],
    "large_galaxies": 0.3,
    "large_galaxy_size": [15.0, 90.0],
    "depth_margin": 1.5,
    "moon": [0.0, 1.0],
    "airmass": [1.0, 1.6],
    "cosmic_rays": True,
    "defects": {"hot_pixels": 30, "hot_columns": 1, "dead_pixels": 20, "dead_columns": 1},
    "exposures": {name: copy.deepcopy(PROFILE_EXPOSURES[name])
                  for name in ("DECam", "MegaCam", "HSC", "SpaceCam")},
}

# Typical (band - i) colour of faint field galaxies [mag], for their counts per band.
_GALAXY_COLOUR = {"u": 1.6, "g": 1.0, "r": 0.45, "i": 0.0, "z": -0.25, "Y": -0.4, "y": -0.4,
                  "B": 1.3, "V": 0.7, "R": 0.35, "I": 0.0}
_TOP_KEYS = frozenset(DEFAULT_SURVEY)
_EXPOSURE_KEYS = frozenset({"bands", "exptimes", "star_density"})


@dataclass(frozen=True)
class SurveyConfig:
    """A validated ``survey:`` section (see :data:`DEFAULT_SURVEY` and params.yaml)."""

    seed: int
    exposures_per_instrument: int
    ccds_per_exposure: int
    ccd_shape: tuple[int, int] | None
    mjd_start: float
    star_slope: float
    star_bright: float
    galaxy_density: float
    galaxy_bright: float
    galaxy_knots: tuple[float, float]
    large_galaxies: float
    large_galaxy_size: tuple[float, float]
    depth_margin: float
    moon: tuple[float, float]
    airmass: tuple[float, float]
    cosmic_rays: bool
    defects: DefectCounts
    exposures: Mapping[str, Mapping[str, tuple]]


@dataclass(frozen=True)
class ExposurePlan:
    """Everything that defines one exposure before its pixels are drawn.

    Attributes
    ----------
    instrument : Instrument
        Camera profile.
    index : int
        Exposure number within its instrument (0-based).
    name : str
        File stem, ``<instrument>_<index:04d>``.
    band : Band
        Filter.
    exptime : float
        Exposure time [s].
    star_density : float
        Stars per deg^2 brighter than 22 mag.
    ccds : tuple of int
        CCD numbers (1-based) simulated.
    mjd, airmass, seeing, moon, ra, dec, position_angle, spider_angle : float
        Drawn observing conditions: MJD, airmass, FWHM [arcsec], sky brightening [mag],
        pointing [deg], sky position angle of the CCD y axis [deg], angle of the first
        diffraction spike from the CCD x axis [deg].
    psf_e1, psf_e2 : float
        PSF ellipticity.
    seed : int
        Master seed.
    """

    instrument: Instrument
    index: int
    name: str
    band: Band
    exptime: float
    star_density: float
    ccds: tuple[int, ...]
    mjd: float
    airmass: float
    seeing: float
    moon: float
    ra: float
    dec: float
    position_angle: float
    spider_angle: float
    psf_e1: float
    psf_e2: float
    seed: int

    @property
    def zero_point(self) -> float:
        """Zero point at this airmass [AB mag for 1 e-/s]."""
        return self.band.zero_point - self.band.extinction * (self.airmass - 1.0)

    @property
    def sky_mag(self) -> float:
        """Sky brightness in this exposure [AB mag/arcsec^2]."""
        return self.band.sky - self.moon


@dataclass
class SimulatedCCD:
    """One simulated CCD: raw pixels, header, and the truth behind them.

    Attributes
    ----------
    data : numpy.ndarray
        Raw frame, uint16 ``(ny + overscan_rows, prescan + nx + overscan)``.
    header : astropy.io.fits.Header
        The extension header (without the compression keywords).
    stars, galaxies : Catalog
        Simulated sources, positions in data-section pixels.
    electrons : numpy.ndarray or None
        Data section in electrons after bleeding (kept only when asked for).
    stats : dict
        Numbers drawn: sky [e-/px], sources per renderer, defects, cosmic rays, bleeding
        columns.
    """

    data: np.ndarray
    header: object
    stars: Catalog
    galaxies: Catalog
    electrons: np.ndarray | None = None
    stats: dict = field(default_factory=dict)


def _is_int(value) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _number(cfg: Mapping, key: str, *, low: float | None = None, integer: bool = False,
            where: str = "survey") -> float:
    value = cfg[key]
    ok = _is_int(value) if integer else (
        isinstance(value, int | float | np.number) and not isinstance(value, bool))
    kind = "an integer" if integer else "a number"
    if not ok or not math.isfinite(float(value)):
        raise ConfigError(f"{where}.{key} must be {kind}, got {value!r}")
    if low is not None and value < low:
        raise ConfigError(f"{where}.{key} must be >= {low:g}, got {value!r}")
    return value


def _range(cfg: Mapping, key: str, *, low: float, high: float) -> tuple[float, float]:
    value = cfg[key]
    if (not isinstance(value, Sequence) or isinstance(value, str) or len(value) != 2
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
            or not low <= value[0] <= value[1] <= high):
        raise ConfigError(f"survey.{key} must be [min, max] with {low:g} <= min <= max <= "
                          f"{high:g}, got {value!r}")
    return float(value[0]), float(value[1])


def _cycled_list(cfg: Mapping, key: str, where: str) -> tuple:
    value = cfg.get(key)
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, Sequence) or isinstance(value, str) or not value:
        raise ConfigError(f"{where}.{key} must be a non-empty list, got {value!r}")
    return tuple(value)


def _exposures(raw) -> dict[str, dict[str, tuple]]:
    if not isinstance(raw, Mapping) or not raw:
        raise ConfigError("survey.exposures must map instrument names (DECam, MegaCam, HSC, ...) "
                          f"to their bands/exptimes/star_density lists, got {raw!r}")
    out: dict[str, dict[str, tuple]] = {}
    for name, spec in raw.items():
        inst = get_instrument(name)
        where = f"survey.exposures.{name}"
        if not isinstance(spec, Mapping):
            raise ConfigError(f"{where} must be a mapping with keys "
                              f"{', '.join(sorted(_EXPOSURE_KEYS))}, got {spec!r}")
        unknown = set(spec) - _EXPOSURE_KEYS
        missing = _EXPOSURE_KEYS - set(spec)
        if unknown or missing:
            raise ConfigError(f"{where} must have exactly the keys "
                              f"{', '.join(sorted(_EXPOSURE_KEYS))}; unknown: "
                              f"{sorted(unknown) or 'none'}, missing: {sorted(missing) or 'none'}")
        bands = _cycled_list(spec, "bands", where)
        for band in bands:
            inst.band(str(band))
        exptimes = _cycled_list(spec, "exptimes", where)
        densities = _cycled_list(spec, "star_density", where)
        for key, values in (("exptimes", exptimes), ("star_density", densities)):
            for v in values:
                if isinstance(v, bool) or not isinstance(v, int | float) or not v > 0 \
                        or not math.isfinite(v):
                    raise ConfigError(f"{where}.{key} must hold positive numbers, got {v!r}")
        out[inst.name] = {"bands": tuple(str(b) for b in bands),
                          "exptimes": tuple(float(v) for v in exptimes),
                          "star_density": tuple(float(v) for v in densities)}
    return out


def survey_config(config: Mapping | None = None) -> SurveyConfig:
    """Validate a ``survey:`` mapping; missing keys take :data:`DEFAULT_SURVEY` values.

    Raises
    ------
    ConfigError
        On an unknown key, an unknown instrument or band, or a value of the wrong type
        or out of range; the message names the key and what was expected.
    """
    config = {} if config is None else config
    if not isinstance(config, Mapping):
        raise ConfigError(f"the survey section must be a mapping of keys, got {config!r}")
    unknown = set(config) - _TOP_KEYS
    if unknown:
        raise ConfigError(f"unknown survey key(s) {', '.join(sorted(map(str, unknown)))}; "
                          f"expected some of {', '.join(sorted(_TOP_KEYS))}")
    cfg = {**DEFAULT_SURVEY, **config}
    seed = int(_number(cfg, "seed", low=0, integer=True))
    n_exp = int(_number(cfg, "exposures_per_instrument", low=0, integer=True))
    n_ccd = int(_number(cfg, "ccds_per_exposure", low=1, integer=True))
    shape = cfg["ccd_shape"]
    if shape is not None:
        if (not isinstance(shape, Sequence) or isinstance(shape, str) or len(shape) != 2
                or not all(_is_int(v) and v >= 16 for v in shape)):
            raise ConfigError("survey.ccd_shape must be null or [ny, nx], integers >= 16, "
                              f"got {shape!r}")
        shape = (int(shape[0]), int(shape[1]))
    defects = cfg["defects"]
    fields = set(DefectCounts.__dataclass_fields__)
    if not isinstance(defects, Mapping) or set(defects) - fields:
        raise ConfigError(f"survey.defects must be a mapping with keys among "
                          f"{', '.join(sorted(fields))}, got {defects!r}")
    defect_counts = DefectCounts(**{k: float(_number(defects, k, low=0, where="survey.defects"))
                                    for k in defects})
    if not isinstance(cfg["cosmic_rays"], bool):
        raise ConfigError(f"survey.cosmic_rays must be true or false, got {cfg['cosmic_rays']!r}")
    star_bright = float(_number(cfg, "star_bright"))
    galaxy_bright = float(_number(cfg, "galaxy_bright"))
    return SurveyConfig(
        seed=seed,
        exposures_per_instrument=n_exp,
        ccds_per_exposure=n_ccd,
        ccd_shape=shape,
        mjd_start=float(_number(cfg, "mjd_start", low=0)),
        star_slope=float(_number(cfg, "star_slope", low=0.01)),
        star_bright=star_bright,
        galaxy_density=float(_number(cfg, "galaxy_density", low=0)),
        galaxy_bright=galaxy_bright,
        galaxy_knots=_range(cfg, "galaxy_knots", low=0.0, high=1.0),
        large_galaxies=float(_number(cfg, "large_galaxies", low=0)),
        large_galaxy_size=_range(cfg, "large_galaxy_size", low=1.0, high=3600.0),
        depth_margin=float(_number(cfg, "depth_margin")),
        moon=_range(cfg, "moon", low=0.0, high=5.0),
        airmass=_range(cfg, "airmass", low=1.0, high=3.0),
        cosmic_rays=cfg["cosmic_rays"],
        defects=defect_counts,
        exposures=_exposures(cfg["exposures"]),
    )


def read_survey_params(path: str | Path) -> dict:
    """The ``survey:`` section of a params.yaml file, as a plain dict.

    An empty section (only comments) means the built-in survey, ``{}``.

    Raises
    ------
    InputError
        If the file is missing or not YAML.
    ConfigError
        If it has no ``survey`` section or the section is not a mapping.
    """
    import yaml

    path = Path(path)
    try:
        params = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise InputError(f"{path}: cannot read the parameter file ({exc})") from None
    if not isinstance(params, Mapping) or "survey" not in params:
        raise ConfigError(f"{path}: no 'survey:' section; expected the keys of "
                          "mmx.surveys.DEFAULT_SURVEY under it")
    section = params["survey"]
    if section is None:
        return {}
    if not isinstance(section, Mapping):
        raise ConfigError(f"{path}: 'survey:' must be a mapping of keys, got {section!r}")
    return dict(section)


def _stable_id(name: str) -> int:
    return zlib.crc32(name.encode("ascii"))


def _ccd_numbers(n: int, total: int, instrument: str) -> tuple[int, ...]:
    if n > total:
        raise ConfigError(f"survey.ccds_per_exposure is {n} but {instrument} has only "
                          f"{total} CCDs; expected 1 to {total}")
    return tuple(int((i + 0.5) * total / n) + 1 for i in range(n))


def plan_survey(config: SurveyConfig) -> list[ExposurePlan]:
    """The exposures ``config`` asks for, with their drawn observing conditions.

    Exposure ``k`` of an instrument takes item ``k % len`` of each of its lists, and
    its conditions come from a generator seeded by ``(seed, instrument, k)``.
    """
    plans = []
    for name, spec in config.exposures.items():
        inst = INSTRUMENTS[name]
        ccds = _ccd_numbers(config.ccds_per_exposure, inst.n_ccds, name)
        for k in range(config.exposures_per_instrument):
            rng = np.random.default_rng([config.seed, _stable_id(name), k])
            band = inst.band(spec["bands"][k % len(spec["bands"])])
            airmass = float(rng.uniform(*config.airmass))
            seeing = draw_seeing(inst.seeing_median, inst.seeing_sigma,
                                 wavelength=band.wavelength, airmass=airmass, rng=rng)
            pa = float(rng.uniform(0.0, 360.0)) if inst.rotates_pupil else 0.0
            spider = (inst.spider_angle + pa) % (360.0 / inst.n_spider_vanes)
            psf_e = min(float(rng.rayleigh(0.03)), 0.2)
            psf_angle = float(rng.uniform(0.0, np.pi))
            plans.append(ExposurePlan(
                instrument=inst, index=k, name=f"{name}_{k:04d}", band=band,
                exptime=spec["exptimes"][k % len(spec["exptimes"])],
                star_density=spec["star_density"][k % len(spec["star_density"])],
                ccds=ccds,
                mjd=round(config.mjd_start + k + float(rng.uniform(0.0, 0.35)), 6),
                airmass=round(airmass, 4), seeing=round(seeing, 4),
                moon=float(rng.uniform(*config.moon)),
                ra=float(rng.uniform(0.0, 360.0)),
                dec=float(np.degrees(np.arcsin(rng.uniform(-0.95, 0.6)))),
                position_angle=pa, spider_angle=round(spider, 3),
                psf_e1=psf_e * math.cos(2.0 * psf_angle),
                psf_e2=psf_e * math.sin(2.0 * psf_angle),
                seed=config.seed,
            ))
    return plans


def _layout(inst: Instrument, shape: tuple[int, int], ccdnum: int) -> tuple[float, float, float]:
    """Offset ``(y, x)`` [px] of a CCD's pixel (0, 0) from the optical axis; field radius.

    The CCDs sit on a rectangular grid in CCD-number order (a simplification of the real
    mosaics), separated by the camera's gaps.
    """
    ny, nx = shape
    gy, gx = inst.ccd_gap
    ncols = math.ceil(math.sqrt(inst.n_ccds * ny / nx))
    nrows = math.ceil(inst.n_ccds / ncols)
    row, col = divmod(ccdnum - 1, ncols)
    cy = (row - (nrows - 1) / 2.0) * (ny + gy)
    cx = (col - (ncols - 1) / 2.0) * (nx + gx)
    radius = 0.5 * math.hypot(nrows * (ny + gy), ncols * (nx + gx))
    return cy - (ny - 1) / 2.0, cx - (nx - 1) / 2.0, radius


def _sky_sigma(plan: ExposurePlan, sky: float) -> float:
    inst = plan.instrument
    return math.sqrt(sky + inst.read_noise**2)


def _depth(plan: ExposurePlan, sky: float, fwhm_px: float) -> float:
    """5-sigma point-source depth in a PSF-matched aperture [AB mag]."""
    noise = _sky_sigma(plan, sky) * math.sqrt(4.0 * math.pi) * fwhm_px / 2.3548
    return plan.zero_point + 2.5 * math.log10(plan.exptime / (5.0 * noise))


def _sky_electrons(plan: ExposurePlan) -> float:
    inst = plan.instrument
    return plan.exptime * 10.0 ** (0.4 * (plan.zero_point - plan.sky_mag)) * inst.pixel_scale**2


def _fmt_sec(x1: int, x2: int, y1: int, y2: int) -> str:
    return f"[{x1}:{x2},{y1}:{y2}]"


def _mmx_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mmx")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "unknown"


def _date_obs(mjd: float) -> str:
    from astropy.time import Time

    return Time(mjd, format="mjd", scale="utc").isot


def _common_keys(plan: ExposurePlan) -> list[tuple[str, object, str]]:
    inst = plan.instrument
    return [
        ("INSTRUME", inst.name, "instrument"),
        ("TELESCOP", inst.telescope, "telescope"),
        ("FILTER", plan.band.filter_name, "filter"),
        ("BAND", plan.band.name, "short filter name"),
        ("EXPTIME", plan.exptime, "[s] exposure time"),
        ("MJD-OBS", plan.mjd, "[d] MJD at exposure start"),
        ("DATE-OBS", _date_obs(plan.mjd), "UTC at exposure start (from MJD-OBS)"),
        ("AIRMASS", plan.airmass, "airmass"),
        ("PIXSCAL", inst.pixel_scale, "[arcsec/px] pixel scale"),
        ("SEEING", plan.seeing, "[arcsec] PSF FWHM"),
        ("NSPIDER", inst.n_spider_vanes, "spider vanes (diffraction spikes)"),
        ("SPIDANG", plan.spider_angle, "[deg] first spike from the CCD x axis"),
        ("MAGZERO", round(plan.zero_point, 4), "[AB mag] for 1 e-/s at this airmass"),
    ]


def _primary_header(plan: ExposurePlan, config: SurveyConfig):
    from astropy.io import fits

    hdr = fits.Header()
    for key, value, comment in _common_keys(plan):
        hdr[key] = (value, comment)
    hdr["EXPNUM"] = (plan.index, "exposure number within its instrument")
    hdr["RA"] = (round(plan.ra, 6), "[deg] pointing right ascension")
    hdr["DEC"] = (round(plan.dec, 6), "[deg] pointing declination")
    hdr["SKYMAG"] = (round(plan.sky_mag, 4), "[AB mag/arcsec2] sky brightness")
    hdr["STARDENS"] = (plan.star_density, "[deg-2] stars brighter than 22 mag")
    hdr["NCCDSIM"] = (len(plan.ccds), "CCDs simulated in this file")
    hdr["ORIGIN"] = ("mmx surveys simulate", "simulated raw exposure")
    hdr["MMXVERS"] = (_mmx_version(), "mmx version that simulated this file")
    hdr["MMXSEED"] = (plan.seed, "master seed of the simulated survey")
    hdr["MMXCCDSZ"] = (str(config.ccd_shape or "full"), "data-section size override")
    return hdr


def _ccd_header(plan: ExposurePlan, ccdnum: int, shape: tuple[int, int],
                offset: tuple[float, float]):
    from astropy.io import fits

    inst = plan.instrument
    ny, nx = shape
    hdr = fits.Header()
    hdr["EXTNAME"] = inst.ccd_name(ccdnum)
    hdr["CCDNUM"] = (ccdnum, "CCD number in the mosaic (1-based)")
    for key, value, comment in _common_keys(plan):
        hdr[key] = (value, comment)
    hdr["GAIN"] = (inst.gain, "[e-/ADU] gain")
    hdr["RDNOISE"] = (inst.read_noise, "[e-] read noise")
    hdr["SATURATE"] = (inst.saturate, "[ADU] raw saturation level, bias included")
    hdr["FULLWELL"] = (inst.full_well, "[e-] full-well capacity")
    p = inst.prescan
    hdr["DATASEC"] = (_fmt_sec(p + 1, p + nx, 1, ny), "data section")
    hdr["TRIMSEC"] = (_fmt_sec(p + 1, p + nx, 1, ny), "section to keep after trimming")
    hdr["BIASSEC"] = (_fmt_sec(p + nx + 1, p + nx + inst.overscan, 1, ny),
                      "serial overscan section")
    if p:
        hdr["PRESEC"] = (_fmt_sec(1, p, 1, ny), "serial prescan section")
    # TAN WCS: optical axis at (RA, DEC); CRPIX counts the raw frame's pixels.
    scale = inst.pixel_scale / 3600.0
    pa = math.radians(plan.position_angle)
    hdr["WCSAXES"] = 2
    hdr["CTYPE1"], hdr["CTYPE2"] = "RA---TAN", "DEC--TAN"
    hdr["CUNIT1"], hdr["CUNIT2"] = "deg", "deg"
    hdr["CRVAL1"], hdr["CRVAL2"] = round(plan.ra, 8), round(plan.dec, 8)
    hdr["CRPIX1"] = (round(p + 1.0 - offset[1], 3), "optical axis, raw-frame pixels")
    hdr["CRPIX2"] = round(1.0 - offset[0], 3)
    hdr["CD1_1"] = -scale * math.cos(pa)
    hdr["CD1_2"] = scale * math.sin(pa)
    hdr["CD2_1"] = scale * math.sin(pa)
    hdr["CD2_2"] = scale * math.cos(pa)
    hdr["RADESYS"] = "ICRS"
    hdr["EQUINOX"] = 2000.0
    return hdr


def simulate_ccd(plan: ExposurePlan, ccdnum: int, config: SurveyConfig, *,
                 keep_electrons: bool = False) -> SimulatedCCD:
    """Simulate one raw CCD of one exposure.

    Parameters
    ----------
    plan
        The exposure (from :func:`plan_survey`).
    ccdnum
        CCD number (1-based); seeds this CCD's generator.
    config
        Survey configuration (CCD size override, source populations, defects).
    keep_electrons
        Also return the data section in electrons after bleeding (for tests).
    """
    inst = plan.instrument
    shape = config.ccd_shape or inst.ccd_shape
    ny, nx = shape
    rng = np.random.default_rng([plan.seed, _stable_id(inst.name), plan.index, ccdnum])
    fwhm_px = plan.seeing / inst.pixel_scale
    psf = Psf(fwhm=fwhm_px, beta=inst.psf_beta, e1=plan.psf_e1, e2=plan.psf_e2,
              obscuration=inst.psf_obscuration)
    sky = _sky_electrons(plan)
    faint = _depth(plan, sky, fwhm_px) + config.depth_margin

    stars = star_catalog(shape, pixel_scale=inst.pixel_scale, density=plan.star_density,
                         slope=config.star_slope, bright=config.star_bright, faint=faint,
                         rng=rng)
    colour = _GALAXY_COLOUR.get(plan.band.name, 0.0)
    galaxies = galaxy_catalog(shape, pixel_scale=inst.pixel_scale,
                              density=config.galaxy_density, colour=colour,
                              bright=config.galaxy_bright, faint=faint, rng=rng,
                              knot_fraction=config.galaxy_knots)
    galaxies += large_galaxy_catalog(shape, pixel_scale=inst.pixel_scale,
                                     mean=config.large_galaxies,
                                     size=config.large_galaxy_size, colour=colour, rng=rng)
    for cat in (stars, galaxies):
        cat.flux = plan.exptime * 10.0 ** (0.4 * (plan.zero_point - cat.mag))

    # Sky with a gentle gradient (moon, twilight), then the sources.
    gy, gx = rng.uniform(-0.02, 0.02, 2)
    yy = np.linspace(-0.5, 0.5, ny)[:, None]
    xx = np.linspace(-0.5, 0.5, nx)[None, :]
    image = sky * (1.0 + gy * yy + gx * xx)  # (ny, nx) float64, writable
    rendered = render_sources(image, stars, galaxies, psf, sky_sigma=_sky_sigma(plan, sky),
                              rng=rng)

    oy, ox, radius = _layout(inst, shape, ccdnum)
    area_fraction = (ny * nx) / (inst.ccd_shape[0] * inst.ccd_shape[1])
    response = response_map(shape, pixel_rms=inst.flat_pixel_rms,
                            large_scale=inst.flat_large_scale, offset=(oy, ox),
                            field_radius=radius, rng=rng)
    dead = add_dead_defects(response, config.defects, area_fraction=area_fraction, rng=rng)
    image *= response
    del response
    electrons = rng.poisson(image).astype(np.float64)
    del image
    hot = add_hot_defects(electrons, config.defects, exptime=plan.exptime,
                          area_fraction=area_fraction, rng=rng)
    n_cr = 0
    if config.cosmic_rays:
        n_cr = add_cosmic_rays(electrons, rate=inst.cosmic_ray_rate, exptime=plan.exptime,
                               pixel_size=inst.pixel_size, thickness=inst.thickness, rng=rng)
    n_bleed = bleed(electrons, inst.full_well, up_fraction=float(rng.uniform(0.35, 0.65)))
    data = digitize(electrons, gain=inst.gain, read_noise=inst.read_noise, bias=inst.bias,
                    adc_max=inst.adc_max, prescan=inst.prescan, overscan=inst.overscan,
                    overscan_rows=inst.overscan_rows, rng=rng)
    header = _ccd_header(plan, ccdnum, shape, (oy, ox))
    stats = {"sky_e": sky, "depth": faint - config.depth_margin, **rendered, **dead, **hot,
             "cosmic_rays": n_cr, "bleeding_columns": n_bleed,
             "saturated_pixels": int((data[:ny, inst.prescan:inst.prescan + nx]
                                      >= inst.saturate).sum())}
    return SimulatedCCD(data, header, stars, galaxies,
                        electrons if keep_electrons else None, stats)


def _ccd_image(job: tuple[ExposurePlan, int, SurveyConfig]):
    """One CCD's raw image and header (a job of :func:`simulate_survey`'s pool)."""
    plan, ccdnum, config = job
    ccd = simulate_ccd(plan, ccdnum, config)
    log.debug("%s CCD %d: %s", plan.name, ccdnum, ccd.stats)
    return ccd.data, ccd.header


def _exposure_hdus(plan: ExposurePlan, config: SurveyConfig, ccds, progress=None):
    """The multi-extension HDU list of ``plan`` from its CCDs' ``(data, header)`` in order.

    The primary HDU is empty and carries the exposure keys; each CCD is a RICE
    tile-compressed uint16 image HDU.
    """
    from astropy.io import fits

    hdus = [fits.PrimaryHDU(header=_primary_header(plan, config))]
    for data, header in ccds:
        hdus.append(fits.CompImageHDU(data=data, header=header, compression_type="RICE_1"))
        if progress is not None:
            progress.update(1)
    return fits.HDUList(hdus)


def simulate_exposure(plan: ExposurePlan, config: SurveyConfig, *, progress=None):
    """Simulate every CCD of ``plan``; return the multi-extension HDU list."""
    ccds = (_ccd_image((plan, n, config)) for n in plan.ccds)
    return _exposure_hdus(plan, config, ccds, progress=progress)


def simulate_survey(
    config: Mapping | None, out_dir: str | Path, *, seed: int | None = None,
    overwrite: bool = False, progress: bool = True, workers: int | None = None,
) -> list[Path]:
    """Simulate the survey ``config`` describes into ``out_dir``; return the files written.

    Parameters
    ----------
    config
        The ``survey:`` section of params.yaml (missing keys take the defaults of
        :data:`DEFAULT_SURVEY`); ``None`` for the built-in survey.
    out_dir
        Root folder; files go to ``<out_dir>/<instrument>/<instrument>_<k>.fits.fz``.
    seed
        Overrides ``config["seed"]``.
    overwrite
        Replace existing files; without it an existing file is an error (checked for
        every file before any is simulated).
    progress
        Show a tqdm progress bar (per CCD) when the output is a terminal.
    workers
        CCDs simulated in parallel processes (default: the CPUs available; the files do
        not depend on it).

    Raises
    ------
    ConfigError
        On a bad configuration.
    InputError
        If a file exists and ``overwrite`` is false.
    """
    from tqdm import tqdm

    from mmx.io.fitsio import write_fits_atomic

    raw = dict(copy.deepcopy(config) if config is not None else {})
    if seed is not None:
        raw["seed"] = seed
    cfg = survey_config(raw)
    plans = plan_survey(cfg)
    out_dir = Path(out_dir)
    targets = [out_dir / p.instrument.name / f"{p.name}.fits.fz" for p in plans]
    if not overwrite:
        existing = [str(t) for t in targets if t.exists()]
        if existing:
            raise InputError(f"{existing[0]}: output exists ({len(existing)} file(s) in all); "
                             "pass --overwrite to replace")
    n_ccds = sum(len(p.ccds) for p in plans)
    log.info("simulating %d exposure(s), %d CCD(s) into %s (seed %d)",
             len(plans), n_ccds, out_dir, cfg.seed)
    written = []
    jobs = [(plan, n, cfg) for plan in plans for n in plan.ccds]
    n_workers = min(available_cpus() if workers is None else workers, len(jobs))
    with (tqdm(total=n_ccds, desc="simulate", unit="CCD", disable=None if progress else True)
          as bar, process_pool(n_workers) as pool):
        images = pool.map(_ccd_image, jobs) if pool else map(_ccd_image, jobs)
        for plan, target in zip(plans, targets, strict=True):
            ccds = (next(images) for _ in plan.ccds)
            hdul = _exposure_hdus(plan, cfg, ccds, progress=bar)
            written.append(write_fits_atomic(hdul, target, overwrite=overwrite))
            log.info("wrote %s (%s, %s band, %.0f s, seeing %.2f\")", target, plan.instrument.name,
                     plan.band.name, plan.exptime, plan.seeing)
    return written
