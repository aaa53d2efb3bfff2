"""Contaminant injectors, one module per family; each returns an :class:`Injection`.

Every injector changes pixels exactly where it sets truth (see
:mod:`mmx.synthesis.contaminants._core`).
"""

from mmx.synthesis.contaminants._core import Injection
from mmx.synthesis.contaminants.cosmic_rays import inject_cosmic_rays
from mmx.synthesis.contaminants.defects import (
    inject_dead_columns,
    inject_dead_pixels,
    inject_hot_columns,
    inject_hot_pixels,
)
from mmx.synthesis.contaminants.fringes import inject_fringes
from mmx.synthesis.contaminants.nebulosity import inject_nebulosity
from mmx.synthesis.contaminants.overscan import inject_overscan
from mmx.synthesis.contaminants.persistence import inject_persistence
from mmx.synthesis.contaminants.saturation import inject_saturated_stars, saturate
from mmx.synthesis.contaminants.spikes import inject_spikes
from mmx.synthesis.contaminants.trails import inject_trails

__all__ = [
    "Injection",
    "inject_cosmic_rays",
    "inject_hot_columns",
    "inject_dead_columns",
    "inject_hot_pixels",
    "inject_dead_pixels",
    "inject_persistence",
    "inject_trails",
    "inject_fringes",
    "inject_nebulosity",
    "inject_saturated_stars",
    "saturate",
    "inject_spikes",
    "inject_overscan",
]
