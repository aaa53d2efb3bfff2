"""Train/validation/test splits of the clean cutouts, by field, and variants per cutout.

Cutouts are split into train/validation/test by *field* (``record["field"]`` if the
clean stage provides it, else the instrument and exposure), so no test image shares a
pointing with a training image; with too few fields the split falls back to CCDs,
then to cutouts (with a warning).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["SPLITS", "split_by_field", "variants_per_cutout"]

log = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "val", "test")


def split_by_field(records: Sequence[Mapping], *, fractions: Mapping[str, float],
                   rng: np.random.Generator) -> dict[str, list[int]]:
    """Assign cutouts to train/val/test, per instrument, sharing as little sky as possible.

    Every instrument contributes to every split. Within an instrument, whole fields
    (pointings) go to one split when there are at least as many fields as splits; else
    whole CCDs; else the instrument's cutouts, ordered by field, CCD and position, are cut
    into contiguous blocks, so test regions are spatially apart from training regions.

    Parameters
    ----------
    records : sequence of dict
        Clean records (``instrument``; ``field`` or ``exposure``; ``ccd``; ``y0``, ``x0``).
    fractions : dict
        Target fraction of cutouts per split.
    rng : numpy.random.Generator
        Shuffles the fields or CCDs.

    Returns
    -------
    dict
        Cutout indices per split (sorted).
    """
    wanted = [s for s in SPLITS if float(fractions[s]) > 0]
    total = sum(float(fractions[s]) for s in wanted)
    share = {s: float(fractions[s]) / total for s in wanted}
    by_instrument: dict[str, list[int]] = {}
    for i, rec in enumerate(records):
        by_instrument.setdefault(str(rec.get("instrument")), []).append(i)
    out: dict[str, list[int]] = {s: [] for s in SPLITS}
    for instrument in sorted(by_instrument):
        members = by_instrument[instrument]
        for split, local in _split_instrument([records[i] for i in members], wanted, share,
                                              rng, instrument).items():
            out[split].extend(members[j] for j in local)
    return {s: sorted(v) for s, v in out.items()}


def _field(rec: Mapping) -> object:
    return rec.get("field") or rec.get("exposure")


def _split_instrument(records, wanted, share, rng, instrument) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {s: [] for s in wanted}
    for key in (lambda r: _field(r), lambda r: (_field(r), r.get("ccd"))):
        groups: dict[object, list[int]] = {}
        for i, rec in enumerate(records):
            groups.setdefault(key(rec), []).append(i)
        if len(groups) >= len(wanted):
            order = sorted(groups, key=repr)
            order = [order[i] for i in rng.permutation(len(order))]
            target = {s: share[s] * len(records) for s in wanted}
            # the smallest splits first get one group each, then groups go where most is missing
            for n, g in enumerate(order):
                split = (sorted(wanted, key=lambda s: target[s])[n] if n < len(wanted)
                         else max(wanted, key=lambda s: target[s] - len(out[s])))
                out[split].extend(groups[g])
            return out
    log.warning("%s: fewer fields and CCDs than splits; splitting its cutouts into contiguous "
                "blocks (test regions share a CCD, not pixels, with training)", instrument)
    order = sorted(range(len(records)), key=lambda i: (repr(_field(records[i])),
                   repr(records[i].get("ccd")), records[i].get("y0", 0), records[i].get("x0", 0)))
    cuts = np.round(np.cumsum([share[s] for s in wanted]) * len(order)).astype(int)
    start = 0
    for split, stop in zip(wanted, cuts, strict=True):
        out[split] = order[start:stop]
        start = stop
    return out


def variants_per_cutout(records: Sequence[Mapping], indices: Sequence[int], *, base: int,
                        real_fraction: float) -> dict[int, int]:
    """Images to synthesize from each clean cutout of one split.

    Simulated cutouts get ``base`` each. Real ones (``origin: real``) get as many as make
    them ``real_fraction`` of the split's images (at least one each); with no simulated
    or no real cutout, or ``real_fraction`` 0, every cutout gets ``base``.
    """
    real = [i for i in indices if records[i].get("origin") == "real"]
    n_sim = len(indices) - len(real)
    n_real = base
    if real and n_sim and real_fraction > 0 and base > 0:
        n_real = max(1, round(real_fraction / (1.0 - real_fraction) * base * n_sim / len(real)))
    return {i: (n_real if records[i].get("origin") == "real" else base) for i in indices}
