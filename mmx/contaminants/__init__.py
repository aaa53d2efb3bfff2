"""Contaminant injectors, one module per family; each returns an :class:`Injection`.

Every injector changes pixels exactly where it sets truth (see :mod:`mmx.contaminants._core`).
"""

from mmx.contaminants._core import Injection
from mmx.contaminants.background import label_background
from mmx.contaminants.cosmic_rays import inject_cosmic_rays
from mmx.contaminants.defects import (
    inject_dead_columns,
    inject_dead_pixels,
    inject_hot_columns,
    inject_hot_pixels,
)
from mmx.contaminants.fringes import inject_fringes
from mmx.contaminants.nebulosity import inject_nebulosity
from mmx.contaminants.overscan import inject_overscan
from mmx.contaminants.persistence import inject_persistence
from mmx.contaminants.saturation import inject_saturated_stars, saturate
from mmx.contaminants.spikes import inject_spikes
from mmx.contaminants.trails import inject_trails

__all__ = [
    "Injection",
    "label_background",
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
