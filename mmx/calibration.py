"""Per-model decision thresholds, chosen on the validation split.

MaxiMask's default thresholds were tuned for MaxiMask's network; another network's
probabilities (after the same prior correction) need their own. For each class we take
the threshold that maximises F1 (harmonic mean of TPR and purity) on the validation
split, with probabilities prior-corrected to the class table's default priors, i.e.
exactly as ``mmx predict`` sees them by default.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["default_prior_shift", "default_thresholds", "f1_thresholds"]


def default_prior_shift(training_priors: dict[str, float], classes: Sequence[str]) -> np.ndarray:
    """Logit shift from a model's training priors to the class table's default priors."""
    from mmx.classes import by_abbr
    from mmx.priors import prior_shift

    eps = 1e-7
    trained = np.clip([training_priors.get(a, 0.0) for a in classes], eps, 1 - eps)
    return prior_shift(trained, [by_abbr(a).prior for a in classes])


def default_thresholds(meta, classes: Sequence[str], *, raw: bool = False) -> np.ndarray:
    """A model's default thresholds for ``classes``: calibrated ones, else the class table's.

    With ``raw`` they are moved to the network's raw posteriors (no prior correction), so
    they keep the operating point they have on probabilities corrected to default priors.
    """
    from mmx.classes import by_abbr

    thr = np.array([meta.thresholds.get(a, by_abbr(a).threshold) for a in classes])
    if not raw:
        return thr
    z = np.log(thr / (1 - thr)) - default_prior_shift(meta.training_priors, classes)
    return (1.0 / (1.0 + np.exp(-z))).clip(1e-7, 1 - 1e-7)


def f1_thresholds(result: dict, *, classes: Sequence[str]) -> dict[str, float]:
    """F1-best probability threshold per class from :meth:`mmx.metrics.ClassCurves.compute`.

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
