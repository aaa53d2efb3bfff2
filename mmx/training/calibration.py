"""Per-model decision thresholds, chosen on the validation split.

MaxiMask's default thresholds were tuned for MaxiMask's network; another network's
probabilities (after the same prior correction) need their own. For each class we take,
on the validation split, with probabilities prior-corrected to the class table's default
priors (exactly as ``mmx predict`` sees them by default), either

- ``fpr`` (the default): the lowest threshold whose false-positive rate on the pixels
  without that class stays at or below a target (1e-4 by default). This is what keeps a
  mask usable on real frames: F1 on the simulator picked thresholds that flagged CR on
  0.9 % of clean real pixels;
- ``f1``: the threshold that maximises F1 (harmonic mean of TPR and purity).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mmx.errors import ConfigError
from mmx.model.thresholds import default_prior_shift

log = logging.getLogger(__name__)

__all__ = ["THRESHOLD_RULES", "calibrate_thresholds", "f1_thresholds", "fpr_thresholds"]

#: Ways :func:`calibrate_thresholds` picks a threshold per class.
THRESHOLD_RULES = ("fpr", "f1")


def f1_thresholds(result: dict, *, classes: Sequence[str]) -> dict[str, float]:
    """F1-best probability threshold per class of a :class:`~mmx.training.metrics.ClassCurves`.

    Classes without positive pixels get no entry (the class table's default applies).
    Thresholds are bin edges of the curves, in the probability space the curves were
    computed in.
    """
    thresholds = np.asarray(result["thresholds"].cpu(), dtype=np.float64)
    tpr = np.atleast_2d(np.asarray(result["roc_tpr"].cpu(), dtype=np.float64))
    purity = np.atleast_2d(np.asarray(result["curve_purity"].cpu(), dtype=np.float64))
    out: dict[str, float] = {}
    for abbr, r, p in zip(classes, tpr, purity, strict=True):
        f1 = np.where((r + p) > 0, 2 * r * p / np.where((r + p) > 0, r + p, 1.0), np.nan)
        f1[:1] = np.nan  # threshold 1: nothing flagged
        if np.all(~np.isfinite(f1)):
            continue
        out[abbr] = float(np.clip(thresholds[int(np.nanargmax(f1))], 1e-6, 1 - 1e-6))
    return out


def fpr_thresholds(result: dict, *, classes: Sequence[str],
                   target_fpr: float | dict[str, float] = 1e-4) -> dict[str, float]:
    """Lowest threshold per class whose false-positive rate is at most ``target_fpr``.

    ``target_fpr`` is one rate for every class or a mapping class -> rate (classes missing
    from the mapping are skipped). Needs only negative pixels, so a class absent from the
    validation split still gets a threshold. Thresholds are bin edges of the curves.
    """
    thresholds = np.asarray(result["thresholds"].cpu(), dtype=np.float64)
    fpr = np.atleast_2d(np.asarray(result["roc_fpr"].cpu(), dtype=np.float64))
    out: dict[str, float] = {}
    for abbr, f in zip(classes, fpr, strict=True):
        target = target_fpr.get(abbr) if isinstance(target_fpr, dict) else target_fpr
        if target is None or not np.isfinite(f).any():
            continue
        ok = np.nonzero(np.nan_to_num(f, nan=np.inf) <= float(target))[0]
        k = int(ok[-1]) if ok.size else 0  # curves run from threshold 1 down to 0
        out[abbr] = float(np.clip(thresholds[max(k, 1)], 1e-6, 1 - 1e-6))
    return out


def calibrate_thresholds(net, meta, val_dir: str | Path, *, rule: str = "fpr",
                         target_fpr: float = 1e-4,
                         class_target_fpr: dict[str, float] | None = None,
                         batch_size: int = 4, n_bins: int = 2000,
                         tta: str = "none") -> dict[str, float]:
    """Thresholds for ``net`` on the validation shard set ``val_dir``, at the default priors.

    Parameters
    ----------
    net : torch.nn.Module
        The network (eval mode).
    meta : mmx.model.package.ModelMeta
        Its metadata (classes, training priors, normalisation).
    val_dir : str or Path
        Validation shard set.
    rule : {"fpr", "f1"}
        See the module docstring.
    target_fpr : float
        ``fpr`` rule: false-positive rate on the validation pixels without the class.
    class_target_fpr : dict, optional
        ``fpr`` rule: rates for some classes instead of ``target_fpr`` (e.g. BG, BBG).
    batch_size, n_bins : int
        Scoring settings.
    tta : {"none", "flips", "dihedral"}
        Test-time augmentation the thresholds are for (:mod:`mmx.model.symmetry`).

    Raises
    ------
    ConfigError
        On an unknown rule or a rate outside (0, 1).
    """
    from mmx.model.package import ModelPackage
    from mmx.training.scoring import score_shards

    if rule not in THRESHOLD_RULES:
        raise ConfigError(f"threshold rule must be one of {', '.join(THRESHOLD_RULES)}, "
                          f"got {rule!r}")
    rates = {a: float(target_fpr) for a in meta.classes}
    rates.update({a: float(v) for a, v in (class_target_fpr or {}).items() if a in rates})
    for abbr, rate in rates.items():
        if not 0.0 < rate < 1.0:
            raise ConfigError(f"target false-positive rate for {abbr} must be in (0, 1), "
                              f"got {rate}")
    package = ModelPackage(net=net, meta=meta)
    result = score_shards(package, val_dir, batch_size=batch_size, n_bins=n_bins,
                          shift=default_prior_shift(meta.training_priors, meta.classes),
                          tta=tta)
    if rule == "f1":
        thresholds = f1_thresholds(result, classes=meta.classes)
    else:
        thresholds = fpr_thresholds(result, classes=meta.classes, target_fpr=rates)
    log.info("%s thresholds%s calibrated on %s: %s", rule,
             "" if tta == "none" else f" (tta {tta})", val_dir,
             ", ".join(f"{a}={t:.3g}" for a, t in thresholds.items()))
    return thresholds
