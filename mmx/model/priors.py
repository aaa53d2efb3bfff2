"""Bayesian prior correction of the network's per-class probabilities.

A network trained with binary cross-entropy outputs posteriors ``P_N(c|x)`` under the class
proportions of its training set, ``P_N(c)``. For images where class ``c`` is expected with
proportion ``P(c)`` instead, Paillassa, Bertin & Bouy (2020, eq. in section 4) give::

    P(c|x) = P_N(c|x) / (P_N(c|x) + [P_N(c) / (1 - P_N(c))] [(1 - P(c)) / P(c)] (1 - P_N(c|x)))

In odds this is ``odds(P(c|x)) = odds(P_N(c|x)) * odds(P(c)) / odds(P_N(c))``, i.e. a
constant shift of the logit::

    logit P(c|x) = logit P_N(c|x) + log(P(c) / (1 - P(c))) - log(P_N(c) / (1 - P_N(c)))

mmx applies the shift to the network's logits before the sigmoid: one addition per pixel,
exact at probabilities 0 and 1 (no division by zero, no ``inf/inf``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike

from mmx.classes import by_abbr
from mmx.errors import ConfigError

__all__ = ["logit", "prior_shift", "correct_logits", "correct_probabilities", "resolve_priors"]


def logit(p: float | np.ndarray) -> float | np.ndarray:
    """``log(p / (1 - p))``, with ``-inf`` at 0 and ``+inf`` at 1.

    Parameters
    ----------
    p : float or numpy.ndarray
        Probabilities in [0, 1].
    """
    with np.errstate(divide="ignore"):
        out = np.log(p) - np.log1p(-np.asarray(p, dtype=np.float64))
    return float(out) if np.ndim(out) == 0 else out


def prior_shift(training_prior: ArrayLike, prior: ArrayLike) -> np.ndarray:
    """Logit shift that turns posteriors under ``training_prior`` into ones under ``prior``.

    Parameters
    ----------
    training_prior : float or array
        Class proportion(s) ``P_N(c)`` of the training set, in (0, 1).
    prior : float or array
        Expected class proportion(s) ``P(c)`` in the images to mask, in (0, 1).

    Returns
    -------
    numpy.ndarray
        ``logit(prior) - logit(training_prior)`` (float64), 0 where they are equal.

    Raises
    ------
    ConfigError
        If a proportion is not strictly between 0 and 1.
    """
    pn = np.asarray(training_prior, dtype=np.float64)
    p = np.asarray(prior, dtype=np.float64)
    for name, values in (("training prior", pn), ("prior", p)):
        bad = ~((values > 0) & (values < 1))
        if np.any(bad):
            raise ConfigError(f"{name} must be in (0, 1), got {values[bad].ravel()[0]!r}")
    return np.asarray(logit(p) - logit(pn), dtype=np.float64)


def correct_logits(logits, shift, *, axis: int = 1):
    """Add the per-class logit shift to network logits (in place for torch/numpy arrays).

    Parameters
    ----------
    logits : torch.Tensor or numpy.ndarray
        Logits with the class axis at ``axis`` (``(N, C, H, W)`` by default).
    shift : sequence of float
        One shift per class (:func:`prior_shift`), same order as the class axis.
    axis : int
        Class axis of ``logits``.

    Returns
    -------
    Same type as ``logits``
        ``logits`` itself, shifted.
    """
    shift = np.asarray(shift, dtype=np.float64)
    if logits.shape[axis] != shift.size:
        raise ConfigError(f"got {shift.size} prior shifts for {logits.shape[axis]} class planes")
    view = [1] * logits.ndim
    view[axis] = shift.size
    if isinstance(logits, np.ndarray):
        logits += shift.astype(logits.dtype).reshape(view)
        return logits
    import torch

    logits += torch.as_tensor(shift, dtype=logits.dtype, device=logits.device).reshape(view)
    return logits


def correct_probabilities(
    probabilities: float | np.ndarray, training_prior: float, prior: float
) -> np.ndarray:
    """Apply the paper's prior correction to probabilities (float64, vectorised).

    Computed in logit space, so that 0 stays 0, 1 stays 1 and nothing overflows.

    Parameters
    ----------
    probabilities : float or numpy.ndarray
        Posteriors ``P_N(c|x)`` in [0, 1].
    training_prior, prior : float
        ``P_N(c)`` and ``P(c)``, each in (0, 1).

    Returns
    -------
    numpy.ndarray
        ``P(c|x)``, same shape as ``probabilities``.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    z = np.asarray(logit(p), dtype=np.float64) + float(prior_shift(training_prior, prior))
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-z))


def resolve_priors(
    classes: Sequence[str],
    training_priors: Mapping[str, float],
    *,
    priors: Mapping[str, float] | None = None,
    apply: bool = True,
) -> tuple[dict[str, float], dict[str, float], np.ndarray]:
    """Decide the prior of each output class and its logit shift.

    The expected proportion of a class is the user's value if given, else the class
    table's default (:attr:`mmx.classes.ContaminantClass.prior`).

    Parameters
    ----------
    classes : sequence of str
        Abbreviations of the classes to correct, in output order.
    training_priors : mapping
        The model's ``P_N(c)``.
    priors : mapping, optional
        User-given ``P(c)`` (already range-checked, e.g. by
        :func:`mmx.classes.parse_class_values`).
    apply : bool
        False disables the correction (``--no-prior``); user priors are then an error.

    Returns
    -------
    training, used : dict
        ``P_N(c)`` and ``P(c)`` per class (``used`` equals ``training`` when not applied).
    shift : numpy.ndarray
        Logit shift per class, float64, in ``classes`` order.

    Raises
    ------
    ConfigError
        If priors are given with ``apply=False``, a prior names a class not in ``classes``,
        or the model lacks a valid training prior for a class to correct.
    """
    priors = dict(priors or {})
    wanted = set(classes)
    for abbr in priors:
        if abbr not in wanted:
            raise ConfigError(f"prior given for {abbr}, which is not among the output classes "
                              f"({', '.join(classes)})")
    if priors and not apply:
        raise ConfigError(f"priors given ({', '.join(priors)}) together with --no-prior; "
                          "drop one of them")
    training: dict[str, float] = {}
    used: dict[str, float] = {}
    for abbr in classes:
        pn = training_priors.get(abbr)
        if apply:
            if pn is None or not (0.0 < float(pn) < 1.0) or math.isnan(float(pn)):
                raise ConfigError(f"the model has no usable training prior for {abbr} "
                                  f"(got {pn!r}, expected a value in (0, 1)); pass --no-prior")
            training[abbr] = float(pn)
            used[abbr] = float(priors.get(abbr, by_abbr(abbr).prior))
        else:
            training[abbr] = float(pn) if pn is not None else float("nan")
            used[abbr] = training[abbr]
    if not apply:
        return training, used, np.zeros(len(classes), dtype=np.float64)
    shift = prior_shift([training[a] for a in classes], [used[a] for a in classes])
    return training, used, np.atleast_1d(shift)
