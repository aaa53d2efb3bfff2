"""The single table of the 14 contaminant classes; everything else derives from it.

Order, bits, default priors and thresholds are MaxiMask's (Paillassa, Bertin & Bouy 2020),
so that pipelines that store MaxiMask flags can switch over unchanged. ``maximask_prior``
is MaxiMask's own training proportion P_N(c); an mmx model carries its own measured
proportions and uses these only for comparison.

Two bit conventions exist and must not be confused:

* ``ContaminantClass.bit`` is the *output* bit of the MaxiMask-compatible bit mask
  (BG has bit 0: background is "no flag").
* :func:`label_bit` (``1 << index``) is the *internal* truth encoding used in training
  shards, where every class, BG included, has its own bit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from mmx.errors import ConfigError

__all__ = [
    "ContaminantClass",
    "CLASSES",
    "N_CLASSES",
    "ABBREVIATIONS",
    "by_abbr",
    "label_bit",
    "parse_class_list",
    "parse_class_values",
    "planes_to_bitmask",
    "labels_to_planes",
    "planes_to_labels",
    "BITMASK_DTYPE",
]

#: type of a MaxiMask bit mask, as MaxiMask writes it: its 13 bits (and mmx's NODATA, 8192)
#: fit in 16 bits, half the size of int32
BITMASK_DTYPE = np.dtype(np.int16)


@dataclass(frozen=True)
class ContaminantClass:
    """One contaminant class.

    Attributes
    ----------
    index : int
        Position in every per-class array (network output plane, metrics row).
    abbr : str
        Short name used in options and params (``CR``, ``TRL``...).
    name : str
        Human-readable description.
    bit : int
        Value of this class in the MaxiMask-compatible output bit mask (0 for BG).
    prior : float
        Default expected proportion P(c) in science images, for prior correction.
    threshold : float
        Default probability threshold for binary masks.
    maximask_prior : float
        MaxiMask's training proportion P_N(c), for reference only.
    colour : str
        Its colour in every picture (mask previews, truth previews, curves): Trubetskoy's
        20 distinct colours, none white (SAT sits on white star cores), NEB and BBG far
        apart.
    """

    index: int
    abbr: str
    name: str
    bit: int
    prior: float
    threshold: float
    maximask_prior: float
    colour: str


CLASSES: tuple[ContaminantClass, ...] = (
    ContaminantClass(0, "CR", "cosmic rays", 1, 5e-4, 0.43, 0.010, "#e6194b"),
    ContaminantClass(1, "HCL", "hot columns/lines", 2, 1e-5, 0.60, 0.009, "#f58231"),
    ContaminantClass(2, "DCL", "dead columns/lines/clusters", 4, 1e-4, 0.74, 0.036, "#9a6324"),
    ContaminantClass(3, "HP", "hot pixels", 8, 1e-6, 0.43, 0.001, "#ffe119"),
    ContaminantClass(4, "DP", "dead pixels", 16, 1e-6, 0.99, 0.001, "#911eb4"),
    ContaminantClass(5, "P", "persistence", 32, 1e-3, 0.65, 0.010, "#f032e6"),
    ContaminantClass(6, "TRL", "satellite/plane trails", 64, 1e-3, 0.28, 0.103, "#3cb44b"),
    ContaminantClass(7, "FR", "residual fringing", 128, 1e-3, 0.76, 0.126, "#469990"),
    ContaminantClass(8, "NEB", "nebulosity", 256, 1e-3, 0.56, 0.171, "#4363d8"),
    ContaminantClass(9, "SAT", "saturated pixels", 512, 1e-3, 0.81, 0.002, "#42d4f4"),
    ContaminantClass(10, "SP", "diffraction spikes", 1024, 5e-3, 0.54, 0.044, "#bfef45"),
    ContaminantClass(11, "OV", "overscan", 2048, 5e-3, 0.55, 0.118, "#a9a9a9"),
    ContaminantClass(12, "BBG", "bright background", 4096, 0.1, 0.44, 0.126, "#808000"),
    ContaminantClass(13, "BG", "background", 0, 0.9, 0.27, 0.395, "#404040"),
)

N_CLASSES: int = len(CLASSES)
ABBREVIATIONS: tuple[str, ...] = tuple(c.abbr for c in CLASSES)
_BY_ABBR: dict[str, ContaminantClass] = {c.abbr: c for c in CLASSES}


def by_abbr(abbr: str) -> ContaminantClass:
    """Return the class called ``abbr`` (case-insensitive).

    Raises
    ------
    ConfigError
        If no class has that abbreviation.
    """
    key = abbr.strip().upper()
    try:
        return _BY_ABBR[key]
    except KeyError:
        raise ConfigError(
            f"unknown contaminant class {abbr!r}; expected one of {', '.join(ABBREVIATIONS)}"
        ) from None


def label_bit(abbr: str) -> int:
    """Internal truth bit of a class (``1 << index``), as stored in training shards."""
    return 1 << by_abbr(abbr).index


def parse_class_list(text: str | Iterable[str] | None) -> tuple[ContaminantClass, ...]:
    """Parse ``"CR,TRL"`` (or a list of abbreviations) into classes in table order.

    ``None`` or an empty selection means all classes.
    """
    if text is None:
        return CLASSES
    items = text.split(",") if isinstance(text, str) else list(text)
    items = [s for s in (i.strip() for i in items) if s]
    if not items:
        return CLASSES
    chosen = {by_abbr(s).index for s in items}
    return tuple(c for c in CLASSES if c.index in chosen)


def parse_class_values(
    items: Iterable[str] | Mapping[str, float] | None,
    *,
    what: str,
    low: float = 0.0,
    high: float = 1.0,
    open_low: bool = False,
    open_high: bool = False,
) -> dict[str, float]:
    """Parse ``["CR=5e-4", "TRL=1e-3"]`` (or a mapping) into ``{abbr: value}``.

    Parameters
    ----------
    items
        ``CLS=VALUE`` strings or a mapping from abbreviation to value.
    what
        What the values are ("prior", "threshold"), for error messages.
    low, high
        Allowed range; ``open_low``/``open_high`` exclude the end point.

    Raises
    ------
    ConfigError
        On an unknown class, a value that is not a number, or one out of range.
    """
    pairs: list[tuple[str, object]]
    if items is None:
        return {}
    if isinstance(items, Mapping):
        pairs = list(items.items())
    else:
        pairs = []
        for item in items:
            key, sep, value = item.partition("=")
            if not sep:
                raise ConfigError(f"{what} {item!r} must be written CLASS=VALUE, e.g. CR=0.5")
            pairs.append((key, value))
    out: dict[str, float] = {}
    for key, raw in pairs:
        cls = by_abbr(str(key))
        try:
            value = float(raw)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ConfigError(f"{what} for {cls.abbr} must be a number, got {raw!r}") from None
        below = value <= low if open_low else value < low
        above = value >= high if open_high else value > high
        if not np.isfinite(value) or below or above:
            lo, hi = ("(" if open_low else "["), (")" if open_high else "]")
            raise ConfigError(
                f"{what} for {cls.abbr} must be in {lo}{low:g}, {high:g}{hi}, got {raw}"
            )
        out[cls.abbr] = value
    return out


def planes_to_bitmask(
    planes: np.ndarray, classes: Sequence[ContaminantClass] = CLASSES
) -> np.ndarray:
    """Combine binary planes ``(C, H, W)`` into one MaxiMask-compatible int16 bit mask."""
    if planes.shape[0] != len(classes):
        raise ConfigError(f"got {planes.shape[0]} planes for {len(classes)} classes")
    out = np.zeros(planes.shape[1:], dtype=BITMASK_DTYPE)
    for plane, cls in zip(planes, classes, strict=True):
        if cls.bit:
            out[plane.astype(bool)] |= BITMASK_DTYPE.type(cls.bit)
    return out


def labels_to_planes(labels: np.ndarray) -> np.ndarray:
    """Unpack internal truth bits ``(..., H, W)`` into boolean planes ``(..., C, H, W)``."""
    labels = np.asarray(labels)
    bits = (1 << np.arange(N_CLASSES)).astype(labels.dtype)
    return (labels[..., None, :, :] & bits[:, None, None]) != 0


def planes_to_labels(planes: np.ndarray) -> np.ndarray:
    """Pack boolean planes ``(..., C, H, W)`` into internal truth bits (uint16)."""
    planes = np.asarray(planes, dtype=bool)
    if planes.shape[-3] != N_CLASSES:
        raise ConfigError(f"expected {N_CLASSES} planes, got {planes.shape[-3]}")
    bits = (1 << np.arange(N_CLASSES)).astype(np.uint16)
    return np.bitwise_or.reduce(planes * bits[:, None, None], axis=-3).astype(np.uint16)
