"""A model's default operating point: its thresholds, and the prior shift they are defined at.

Thresholds act on probabilities prior-corrected to the class table's default priors (as
``mmx predict`` sees them by default): a model's calibrated ones
(:mod:`mmx.training.calibration`, stored in its metadata), else the class table's.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["default_prior_shift", "default_thresholds"]


def default_prior_shift(training_priors: dict[str, float], classes: Sequence[str]) -> np.ndarray:
    """Logit shift from a model's training priors to the class table's default priors."""
    from mmx.classes import by_abbr
    from mmx.model.priors import prior_shift

    eps = 1e-7
    trained = np.clip([training_priors.get(a, 0.0) for a in classes], eps, 1 - eps)
    return prior_shift(trained, [by_abbr(a).prior for a in classes])


def default_thresholds(meta, classes: Sequence[str], *, raw: bool = False,
                       tta: str = "none") -> np.ndarray:
    """A model's default thresholds for ``classes``: calibrated ones, else the class table's.

    With ``raw`` they are moved to the network's raw posteriors (no prior correction), so
    they keep the operating point they have on probabilities corrected to default priors.
    With a test-time augmentation ``tta`` they are the ones calibrated with it
    (``meta.tta_thresholds``) where the model has them, else its plain ones: averaged views
    give less extreme probabilities, so there the mask is stricter (measured on the release:
    the CR false-positive rate of real skies halves, its TPR at the default point drops).
    """
    from mmx.classes import by_abbr

    calibrated = meta.tta_thresholds.get(tta) or meta.thresholds  # "none" is never a key
    thr = np.array([calibrated.get(a, by_abbr(a).threshold) for a in classes])
    if not raw:
        return thr
    z = np.log(thr / (1 - thr)) - default_prior_shift(meta.training_priors, classes)
    return (1.0 / (1.0 + np.exp(-z))).clip(1e-7, 1 - 1e-7)
