"""One synthesized image: a random subset of contaminants injected into a clean cutout.

The chosen injectors run in a physical order (:data:`mmx.synthesis.config.INJECTORS`):
sky-like light first (nebulosity, fringes, persistence), then bright stars with spikes
and saturated stars, trails, cosmic rays and hot defects, then the full-well pass
(:func:`mmx.synthesis.contaminants.saturate`: anything now above the record's ``saturate``
bleeds and is labelled SAT), then the low-response defects and the overscan strip,
which replace what was there. Finally BG and BBG are relabelled on the new image with
the clean stage's rule (:func:`mmx.sky.background.label_background`), never on a pixel
that carries a contaminant. Each injector draws from its own child of the image's
stream, so turning one class off does not change the draws of the others.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mmx.classes import by_abbr, label_bit
from mmx.errors import ConfigError, InputError
from mmx.io.shards import Sample
from mmx.sky.background import label_background
from mmx.synthesis.config import INJECTORS, SynthesisConfig
from mmx.synthesis.contaminants import Injection, saturate

__all__ = ["synthesize_sample"]

_AFTER_SATURATION = ("DCL", "DP", "OV")


_BG, _BBG = label_bit("BG"), label_bit("BBG")


def _apply(inj: Injection, image: np.ndarray, labels: np.ndarray, ignore: np.ndarray
           ) -> np.ndarray:
    bit = np.uint16(label_bit(inj.abbr))
    if inj.replaces:
        labels[inj.truth] = bit
        ignore[inj.truth] = 0
    else:
        labels[inj.truth] |= bit
    return inj.image


def synthesize_sample(
    sample: Sample,
    *,
    rng: np.random.Generator,
    config: SynthesisConfig,
    classes: Sequence[str] | None = None,
    footprints: Sequence[np.ndarray] = (),
) -> Sample:
    """Inject a random subset of contaminants into one clean cutout.

    Parameters
    ----------
    sample : Sample
        A clean cutout (``image`` [ADU], ``labels`` with inherent SAT/BG/BBG, ``ignore``,
        ``record`` with ``saturate``, ``sky_noise``, ``fwhm``...); not modified.
    rng : numpy.random.Generator
        This image's stream; one child per injector is spawned from it.
    config : SynthesisConfig
        Probabilities and parameter ranges.
    classes : sequence of str, optional
        Inject exactly these classes instead of drawing them.
    footprints : sequence of numpy.ndarray
        Real cosmic-ray hits [e-] the CR injector may draw from (its ``real_share``).

    Returns
    -------
    Sample
        The new image, truth, ignore plane, and the record extended with ``injected``
        (classes) and ``injections`` (what each injector drew).

    Raises
    ------
    InputError
        If the record lacks the ``saturate`` level.
    """
    record = dict(sample.record)
    if not float(record.get("saturate") or 0) > 0:
        raise InputError(f"record of cutout {record.get('exposure')}/{record.get('ccd')} has "
                         f"no positive 'saturate' level, got {record.get('saturate')!r}")
    choose_rng, sat_rng, *streams = rng.spawn(2 + len(INJECTORS))
    if classes is None:
        if choose_rng.uniform() < config.clean_probability:
            chosen: list[str] = []
        else:
            draws = choose_rng.uniform(size=len(INJECTORS))
            chosen = [a for a, u in zip(INJECTORS, draws, strict=True)
                      if u < config.probability(a)]
    else:
        wanted = {by_abbr(a).abbr for a in classes}
        for abbr in sorted(wanted - set(INJECTORS)):
            raise ConfigError(f"class {abbr} cannot be injected; expected some of "
                              f"{', '.join(INJECTORS)}")
        chosen = [a for a in INJECTORS if a in wanted]
    image = np.array(sample.image, dtype=np.float32)
    labels = np.array(sample.labels, dtype=np.uint16)
    ignore = np.array(sample.ignore, dtype=np.uint8)
    infos: dict[str, dict] = {}
    saturated = False
    for (abbr, inject), stream in zip(INJECTORS.items(), streams, strict=True):
        if abbr in _AFTER_SATURATION and not saturated:
            sat_kw = dict(config.saturation)
            bleed = sat_rng.uniform() < float(sat_kw.pop("bleed_probability", 0.85))
            sat = saturate(image, level=float(record["saturate"]), rng=sat_rng, bleed=bleed,
                           **sat_kw)
            image = _apply(sat, image, labels, ignore)
            saturated = True
        if abbr in chosen:
            extra = {"footprints": footprints} if abbr == "CR" else {}
            inj = inject(image, record=record, rng=stream, **config.kwargs(abbr), **extra)
            image = _apply(inj, image, labels, ignore)
            infos[abbr] = inj.info or {}
    labels &= np.uint16(~(_BG | _BBG) & 0xFFFF)
    bbg, bg = label_background(image, contaminants=labels != 0, ignore=ignore != 0,
                               **config.background)
    labels[bbg] |= np.uint16(_BBG)
    labels[bg & (labels == 0)] |= np.uint16(_BG)
    record["injected"] = chosen
    record["injections"] = infos
    return Sample(image=image, labels=labels, ignore=ignore, record=record)
