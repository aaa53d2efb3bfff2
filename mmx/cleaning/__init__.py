"""Raw exposures to clean labelled cutouts: overscan, defects, repair, cutouts (stage ``clean``)."""

from mmx.cleaning.config import CleanConfig
from mmx.cleaning.defects import (
    CAUSES,
    Defects,
    detect_defects,
    find_bad_lines,
    find_bad_pixels,
    find_cosmic_rays,
    find_saturation,
    repair,
)
from mmx.cleaning.overscan import OverscanResult, Section, parse_section, subtract_overscan
from mmx.cleaning.psf import measure_fwhm
from mmx.cleaning.stage import (
    REJECT_REASONS,
    CleanCCD,
    CutoutResult,
    clean_ccd,
    clean_exposure,
    cut_ccd,
    find_exposures,
    grid_origins,
    run_clean,
)

__all__ = [
    "CAUSES",
    "REJECT_REASONS",
    "CleanCCD",
    "CleanConfig",
    "CutoutResult",
    "Defects",
    "OverscanResult",
    "Section",
    "clean_ccd",
    "clean_exposure",
    "cut_ccd",
    "detect_defects",
    "find_bad_lines",
    "find_bad_pixels",
    "find_cosmic_rays",
    "find_exposures",
    "find_saturation",
    "grid_origins",
    "measure_fwhm",
    "parse_section",
    "repair",
    "run_clean",
    "subtract_overscan",
]
