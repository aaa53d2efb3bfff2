"""Settings of the synthesize stage, checked against the injectors' signatures."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from mmx.errors import ConfigError
from mmx.io.config import from_section
from mmx.sky.background import label_background
from mmx.synthesis.contaminants import (
    Injection,
    inject_cosmic_rays,
    inject_dead_columns,
    inject_dead_pixels,
    inject_fringes,
    inject_hot_columns,
    inject_hot_pixels,
    inject_nebulosity,
    inject_overscan,
    inject_persistence,
    inject_saturated_stars,
    inject_spikes,
    inject_trails,
    saturate,
)
from mmx.synthesis.splits import SPLITS

__all__ = ["INJECTORS", "SynthesisConfig"]

#: Injectors in the order they are applied; the full-well pass runs between the two groups.
INJECTORS: dict[str, Callable[..., Injection]] = {
    "NEB": inject_nebulosity,
    "FR": inject_fringes,
    "P": inject_persistence,
    "SP": inject_spikes,
    "SAT": inject_saturated_stars,
    "TRL": inject_trails,
    "CR": inject_cosmic_rays,
    "HCL": inject_hot_columns,
    "HP": inject_hot_pixels,
    "DCL": inject_dead_columns,
    "DP": inject_dead_pixels,
    "OV": inject_overscan,
}


@dataclass
class SynthesisConfig:
    """Every setting of the synthesize stage (the ``synthesize:`` section of params.yaml).

    Attributes
    ----------
    seed : int
        Master seed; each split, cutout and variant derives its own stream from it.
    split_fractions : dict
        Fraction of fields for ``train``, ``val`` and ``test`` (normalised).
    variants : dict
        Synthesized images per clean cutout, per split.
    clean_probability : float
        Probability that an image gets no injected contaminant at all.
    real_fraction : float
        Share of each split's images drawn on real skies (clean cutouts whose record has
        ``origin: real``), when the split has both real and simulated cutouts; reached by
        giving each real cutout more variants (:func:`~mmx.synthesis.splits.variants_per_cutout`).
    contaminants : dict
        Per class abbreviation: ``probability`` (that an image gets it) and the
        keyword arguments of its injector (parameter ranges).
    saturation : dict
        ``bleed_probability`` and ``asymmetry`` of the final full-well pass.
    background : dict
        Keyword arguments of :func:`mmx.sky.background.label_background`.
    shard_size : int
        Images per shard file.
    """

    seed: int = 2020
    split_fractions: dict = field(default_factory=lambda: {"train": 0.7, "val": 0.15,
                                                           "test": 0.15})
    variants: dict = field(default_factory=lambda: {"train": 2, "val": 1, "test": 1})
    clean_probability: float = 0.05
    real_fraction: float = 0.0
    contaminants: dict = field(default_factory=dict)
    saturation: dict = field(default_factory=lambda: {"bleed_probability": 0.85,
                                                      "asymmetry": [0.3, 0.7]})
    background: dict = field(default_factory=dict)
    shard_size: int = 64

    def __post_init__(self) -> None:
        for name in ("split_fractions", "variants"):
            value = getattr(self, name)
            if not isinstance(value, Mapping) or set(value) != set(SPLITS):
                raise ConfigError(f"synthesize.{name} must map each of {', '.join(SPLITS)} "
                                  f"to a number, got {value!r}")
        if any(float(v) < 0 for v in self.split_fractions.values()) or not sum(
                float(v) for v in self.split_fractions.values()) > 0:
            raise ConfigError("synthesize.split_fractions must be >= 0 with a positive sum, "
                              f"got {self.split_fractions}")
        for split, n in self.variants.items():
            if int(n) != n or int(n) < 0:
                raise ConfigError(f"synthesize.variants.{split} must be a whole number >= 0, "
                                  f"got {n!r}")
        if not 0.0 <= float(self.clean_probability) <= 1.0:
            raise ConfigError("synthesize.clean_probability must be in [0, 1], "
                              f"got {self.clean_probability}")
        if not 0.0 <= float(self.real_fraction) < 1.0:
            raise ConfigError("synthesize.real_fraction must be in [0, 1), "
                              f"got {self.real_fraction}")
        if int(self.shard_size) < 1:
            raise ConfigError(f"synthesize.shard_size must be >= 1, got {self.shard_size}")
        for abbr, settings in self.contaminants.items():
            if abbr not in INJECTORS:
                raise ConfigError(f"synthesize.contaminants: {abbr!r} has no injector; "
                                  f"expected some of {', '.join(INJECTORS)}")
            settings = dict(settings or {})
            p = settings.pop("probability", 0.0)
            if not 0.0 <= float(p) <= 1.0:
                raise ConfigError(f"synthesize.contaminants.{abbr}.probability must be in "
                                  f"[0, 1], got {p}")
            _check_kwargs(INJECTORS[abbr], settings, f"synthesize.contaminants.{abbr}")
        _check_kwargs(saturate, dict(self.saturation), "synthesize.saturation",
                      allowed_extra=("bleed_probability",))
        _check_kwargs(label_background, dict(self.background), "synthesize.background")

    @classmethod
    def from_mapping(cls, values: Mapping[str, object] | None) -> SynthesisConfig:
        """Build from the params section; unknown keys are an error.

        Raises
        ------
        ConfigError
            On an unknown key or an invalid value.
        """
        return from_section(cls, values, "synthesize")

    def probability(self, abbr: str) -> float:
        """Probability that an image gets class ``abbr`` injected."""
        return float(dict(self.contaminants.get(abbr) or {}).get("probability", 0.0))

    def kwargs(self, abbr: str) -> dict:
        """Keyword arguments of the injector of ``abbr``."""
        settings = dict(self.contaminants.get(abbr) or {})
        settings.pop("probability", None)
        return settings


def _check_kwargs(func: Callable, kwargs: dict, where: str, *,
                  allowed_extra: Sequence[str] = ()) -> None:
    params = inspect.signature(func).parameters
    allowed = {k for k, p in params.items()
               if p.kind is p.KEYWORD_ONLY} - {"record", "rng", "footprints"}
    allowed |= set(allowed_extra)
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown setting(s) {', '.join(unknown)}; expected some "
                          f"of {', '.join(sorted(allowed))}")
