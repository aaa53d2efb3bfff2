"""Settings of the ``clean`` stage, one field per key of the ``clean:`` section of params.yaml."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from mmx.errors import ConfigError
from mmx.io.config import from_section

__all__ = ["CleanConfig"]


@dataclass(frozen=True)
class CleanConfig:
    """Every setting of the clean stage, with its unit.

    Attributes
    ----------
    size : int
        Side of the square cutouts [px].
    stride : int
        Step between cutout origins [px]; ``size`` tiles without overlap.
    overscan_smooth : int
        Savitzky-Golay window for the line-by-line bias level [lines].
    bleed_fraction : float
        A pixel attached along its column to a saturated pixel is bleed (SAT) when its
        bias-subtracted value exceeds this fraction of the saturation level.
    line_nsigma : float
        Hot/dead column (or row) threshold: deviation of a column's median from its
        neighbours' [robust sigma of the column medians].
    line_block : int
        Column medians are taken over blocks of this many rows (finds partial columns) [px].
    line_window : int
        Number of neighbouring columns whose median trend a column is compared with [px].
    hp_nsigma : float
        Hot pixel: excess over the 3x3 median [local noise sigma].
    hp_contrast : float
        Hot pixel: every neighbour's excess over the sky must be below this fraction of
        the pixel's (a star's neighbours are not, since its PSF spreads light).
    dp_nsigma : float
        Dead pixel: deficit below the 3x3 median [local noise sigma].
    dp_fraction : float
        Dead pixel: its value above sky must be below this fraction of the 3x3 median's.
    cr_sigclip : float
        astroscrappy Laplacian-to-noise detection limit [sigma].
    cr_sigfrac : float
        astroscrappy limit for neighbours of a cosmic ray, as a fraction of ``cr_sigclip``.
    cr_objlim : float
        astroscrappy minimum contrast between Laplacian and fine-structure images
        (higher spares more star cores).
    cr_niter : int
        astroscrappy iterations.
    cr_dilate : int
        Growth of the cosmic-ray mask [px, 8-connected].
    cr_footprint_nsigma : float
        A real frame's cosmic-ray footprints keep the charge at least this many noise
        sigmas above the sky around them
        (:func:`~mmx.cleaning.cosmic_ray_footprints.cosmic_ray_charge`).
    repair_radius : int
        Half-width of the window of good neighbours whose median replaces a defect [px].
    max_ignored_fraction : float
        Reject a cutout when more of its pixels than this have unknown truth.
    max_saturated_fraction : float
        Reject a cutout when more of its pixels than this are saturated.
    assumed_noise_e : float
        Sky noise in electrons assumed for a sky-subtracted frame with no ``GAIN`` key, to
        set its gain (:mod:`mmx.cleaning.processed`) [e-].
    fwhm_default : float
        FWHM used when neither stars nor the header give one [px].
    min_stars : int
        Stars needed to trust a measured FWHM.
    mesh : int
        Mesh of the sky background/noise maps [px].
    bbg_smooth : float
        Gaussian sigma of the significance map of the BG/BBG rule [px].
    bbg_nsigma : float
        Extended light: smoothed significance above this [sigma of the smoothed map].
    bbg_min_area : int
        Smallest connected region of extended light kept as BBG [px].
    core_nsigma : float
        Object core: surface brightness (1-px Gaussian smoothing) above this [per-pixel
        sky noise sigma]; cores are neither BG nor BBG.
    shard_size : int
        Cutouts per shard file.
    workers : int
        Exposures cleaned in parallel processes; the result does not depend on it.
    """

    size: int = 400
    stride: int = 400
    overscan_smooth: int = 51
    bleed_fraction: float = 0.5
    line_nsigma: float = 6.0
    line_block: int = 64
    line_window: int = 9
    hp_nsigma: float = 8.0
    hp_contrast: float = 0.2
    dp_nsigma: float = 6.0
    dp_fraction: float = 0.5
    cr_sigclip: float = 5.0
    cr_sigfrac: float = 0.3
    cr_objlim: float = 5.0
    cr_niter: int = 4
    cr_dilate: int = 1
    cr_footprint_nsigma: float = 2.0
    repair_radius: int = 2
    max_ignored_fraction: float = 0.05
    max_saturated_fraction: float = 0.05
    assumed_noise_e: float = 20.0
    fwhm_default: float = 3.0
    min_stars: int = 3
    mesh: int = 64
    bbg_smooth: float = 2.0
    bbg_nsigma: float = 3.0
    bbg_min_area: int = 30
    core_nsigma: float = 10.0
    shard_size: int = 64
    workers: int = 1

    def __post_init__(self) -> None:
        positive = ("size", "stride", "overscan_smooth", "line_block", "line_window",
                    "cr_niter", "repair_radius", "mesh", "shard_size", "workers", "fwhm_default",
                    "assumed_noise_e",
                    "bbg_smooth", "hp_nsigma", "dp_nsigma", "cr_sigclip", "cr_objlim",
                    "line_nsigma", "bbg_nsigma", "core_nsigma", "cr_footprint_nsigma")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ConfigError(f"clean.{name} must be > 0, got {getattr(self, name)}")
        for name in ("bleed_fraction", "hp_contrast", "dp_fraction", "cr_sigfrac",
                     "max_ignored_fraction", "max_saturated_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"clean.{name} must be in [0, 1], got {value}")
        for name in ("cr_dilate", "min_stars", "bbg_min_area"):
            if getattr(self, name) < 0:
                raise ConfigError(f"clean.{name} must be >= 0, got {getattr(self, name)}")

    @classmethod
    def from_mapping(cls, values: Mapping[str, object] | None) -> CleanConfig:
        """Build from a params section; unknown keys are an error, missing keys default.

        Raises
        ------
        ConfigError
            On an unknown key or a value of the wrong type or range.
        """
        return from_section(cls, values, "clean")
