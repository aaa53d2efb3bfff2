"""Training losses: per-class sigmoid BCE, balanced per class (default) or as in MaxiMask.

For logits ``z`` and 0/1 truth planes ``y`` of shape ``(N, C, H, W)`` and the valid
(non-ignored) pixels ``V``, both losses are sums over classes of weighted binary
cross-entropies, averaged over the valid pixels::

    L = sum_{p in V} sum_c [w+_c y_cp BCE(z_cp, 1) + w-_c (1 - y_cp) BCE(z_cp, 0)] / |V|

``balance`` (the default, :class:`BalancedBCE`): per-class positive/negative weights
    Each class has its own pair of weights, from its fraction ``p_c`` of non-ignored
    training pixels. Positives of class ``c`` weigh ``r_c`` times its negatives, with
    ``r_c = min(((1 - p_c) / p_c) ** beta, max_ratio)`` (``beta = 1``: both sides weigh
    the same in total; ``beta = 0``: plain BCE), and the pair is scaled so that a pixel
    weighs 1 on average (``p_c w+_c + (1 - p_c) w-_c = 1``). So every class contributes on
    the same scale, and a false positive of a rare class on a background pixel costs as
    much as one on a rare pixel of another class. Optional focal factor ``(1 - p_t) **
    gamma`` (Lin et al. 2017). Its minimiser is the posterior under the training priors
    with their odds multiplied by ``r_c`` (:func:`effective_priors`): the model package
    stores those, so the Bayesian prior correction of :mod:`mmx.model.priors` stays exact.
    Optional **hard negatives** (``hard_negative_weight`` h > 1): a negative of contaminant
    ``c`` that is a positive of another contaminant (not BG/BBG) weighs ``h w-_c``. On held-out
    real skies most false cosmic rays were injected hot columns, and most false trails
    nebulosity: with uniform negatives those few pixels barely count against the rest of
    the sky. The optimum becomes ``w+ q / (w+ q + w- (1 - q) (1 + (h - 1) s))``, with ``s``
    the chance that a pixel without ``c`` holds another contaminant: the probabilities stay
    calibrated where no other contaminant is likely (most of the sky) and are lowered where
    one is. The thresholds, calibrated on validation pixels, absorb it.
    Optional **boundary weight** (``boundary_weight`` b > 1): on both sides of a
    contaminant's edge (pixels whose 3x3 neighbourhood holds positives and negatives of
    ``c``) both weights of ``c`` are multiplied by b. The optimum is unchanged (positive and
    negative weights scale together); the fit spends more of its effort where a mask's
    edge is decided: the outer rows of cosmic-ray tracks against their 1-px halos.
``paper`` (:class:`MaskLoss`): MaxiMask's rule (Paillassa, Bertin & Bouy 2020)
    One weight per pixel shared by all 14 BCE terms: the *largest* class weight
    ``w_c = 1 / (p_c * sum_c' 1/p_c')`` over the classes present at the pixel and its 8
    neighbours (``w+_c = w-_c = w_p``). A class absent from the training split (``p_c =
    0``) gets the largest weight of the present classes. Options beyond the paper:
    ``max_ratio`` caps ``max(w) / w_c``; ``neighbourhood=1`` uses the pixel's own classes.
    On our split (hot pixels 7000 times rarer than background) and a 5-minute CPU budget
    this rule gave a useless model (test mean TPR at FPR 1e-3 of 0.03; 0.001 for CR): a
    rare-class pixel's weight multiplies the BCE of all 14 classes, so a single rare pixel
    dominates the gradient of classes it has nothing to do with, while the negatives of
    the rare classes on ordinary sky barely count.

Common to both:

* **Ignored pixels** (``ignore = 1``) contribute nothing, to the sum nor to ``|V|``.
* **Deep supervision**: ``total = L(logits) + aux_weight * mean_k L(aux_k)``.
* L2 regularisation is the optimiser's weight decay (see :mod:`mmx.training.lit_module`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from mmx.classes import ABBREVIATIONS, N_CLASSES
from mmx.errors import ConfigError

__all__ = [
    "LOSSES",
    "class_fractions",
    "class_weights",
    "balanced_weights",
    "effective_priors",
    "labels_to_targets",
    "pixel_weights",
    "weighted_bce",
    "MaskLoss",
    "BalancedBCE",
    "build_loss",
]

LOSSES: tuple[str, ...] = ("balanced", "paper")  #: names accepted by :func:`build_loss`
#: classes that are not contaminants: their positives are never hard negatives of another class
NOT_CONTAMINANTS: tuple[str, ...] = ("BG", "BBG")


def class_fractions(
    fractions: Mapping[str, float] | Sequence[float], *, classes: Sequence[str] = ABBREVIATIONS
) -> np.ndarray:
    """Class fractions as a float64 array in the order of ``classes``, validated.

    Parameters
    ----------
    fractions : mapping or sequence of float
        ``p_c`` by abbreviation (``summary.json``'s ``class_fraction``) or in class order.
    classes : sequence of str
        Abbreviations, in output-plane order.

    Raises
    ------
    ConfigError
        If a fraction is missing, not finite or outside [0, 1].
    """
    if isinstance(fractions, Mapping):
        missing = [c for c in classes if c not in fractions]
        if missing:
            raise ConfigError(f"class fractions lack {', '.join(missing)}; expected one per "
                              f"class of {', '.join(classes)}")
        p = np.array([float(fractions[c]) for c in classes], dtype=np.float64)
    else:
        p = np.asarray(fractions, dtype=np.float64)
        if p.shape != (len(classes),):
            raise ConfigError(f"expected {len(classes)} class fractions, got shape {p.shape}")
    if not np.all(np.isfinite(p)) or np.any(p < 0) or np.any(p > 1):
        raise ConfigError(f"class fractions must be in [0, 1], got {p.tolist()}")
    return p


def class_weights(
    fractions: Mapping[str, float] | Sequence[float],
    *,
    classes: Sequence[str] = ABBREVIATIONS,
    max_ratio: float | None = None,
) -> torch.Tensor:
    """MaxiMask's class weights ``w_c = 1 / (p_c * sum_c' 1/p_c')``.

    Parameters
    ----------
    fractions : mapping or sequence of float
        Class fractions ``p_c`` by abbreviation (``summary.json``'s ``class_fraction``)
        or in the order of ``classes``.
    classes : sequence of str
        Abbreviations of the output planes, in order.
    max_ratio : float, optional
        If given, weights are raised to at least ``max(w) / max_ratio``: a tempering of
        the paper's rule for splits where a class is 10^4 times rarer than background
        (then background pixels barely count and false positives go unpunished).

    Returns
    -------
    torch.Tensor
        float32 weights ``(C,)``; absent classes (``p_c = 0``) get the largest weight.

    Raises
    ------
    ConfigError
        If a fraction is missing, negative or not finite, or all are zero.
    """
    p = class_fractions(fractions, classes=classes)
    present = p > 0
    if not present.any():
        raise ConfigError("all class fractions are 0: the training split has no labelled pixel")
    inv = np.zeros_like(p)
    inv[present] = 1.0 / p[present]
    w = np.where(present, inv / inv.sum(), 0.0)
    w[~present] = w[present].max()
    if max_ratio is not None:
        if not max_ratio >= 1:
            raise ConfigError(f"max_ratio of class weights must be >= 1 or null, got {max_ratio}")
        w = np.maximum(w, w.max() / float(max_ratio))
    return torch.as_tensor(w, dtype=torch.float32)


def labels_to_targets(labels: torch.Tensor, *, n_classes: int = N_CLASSES) -> torch.Tensor:
    """Truth bits ``(N, H, W)`` (class ``k`` = bit ``1 << k``) as float planes ``(N, C, H, W)``."""
    labels = labels.to(torch.int32)
    bits = (1 << torch.arange(n_classes, device=labels.device, dtype=torch.int32))
    return ((labels.unsqueeze(1) & bits[None, :, None, None]) != 0).float()


def pixel_weights(
    targets: torch.Tensor, valid: torch.Tensor, weights: torch.Tensor, *, neighbourhood: int = 3
) -> torch.Tensor:
    """Per-pixel weights: the largest class weight present in each 3x3 neighbourhood.

    Parameters
    ----------
    targets : torch.Tensor
        Truth planes ``(N, C, H, W)``, 0/1.
    valid : torch.Tensor
        ``(N, H, W)`` boolean, False where the truth is ignored.
    weights : torch.Tensor
        Class weights ``(C,)`` from :func:`class_weights`.
    neighbourhood : int
        Side of the square neighbourhood (odd): 3 is the paper's pixel and its 8
        neighbours, 1 the pixel's own classes only.

    Returns
    -------
    torch.Tensor
        ``(N, H, W)`` weights (arbitrary at invalid pixels, which the loss drops).
    """
    if neighbourhood < 1 or neighbourhood % 2 == 0:
        raise ConfigError("neighbourhood must be an odd number of pixels >= 1, got "
                          f"{neighbourhood}")
    present = targets * valid.unsqueeze(1).to(targets.dtype)
    if neighbourhood > 1:  # dilation: a class present anywhere in the window counts
        present = F.max_pool2d(present, kernel_size=neighbourhood, stride=1,
                               padding=neighbourhood // 2)
    w = weights.to(targets.dtype)[None, :, None, None]
    best = (present * w).amax(dim=1)
    return torch.where(present.amax(dim=1) > 0, best, weights.min().to(targets.dtype))


def weighted_bce(
    logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """``sum_valid w_p * sum_c BCE / n_valid`` for logits and targets ``(N, C, H, W)``.

    ``weights`` are the pixel weights ``(N, H, W)`` of :func:`pixel_weights`. With no valid
    pixel the loss is 0 (still connected to ``logits``' graph).
    """
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none").sum(dim=1)
    valid_f = valid.to(bce.dtype)
    n_valid = valid_f.sum()
    total = (bce * weights * valid_f).sum()
    return total / n_valid.clamp_min(1.0)


class MaskLoss(nn.Module):
    """The full training loss: weighted BCE on the logits plus deep supervision.

    Parameters
    ----------
    weights : torch.Tensor or sequence of float
        Class weights ``(C,)`` (:func:`class_weights`).
    aux_weight : float
        Factor on the mean loss of the auxiliary outputs (0 disables deep supervision).
    neighbourhood : int
        Window of :func:`pixel_weights` (3: the paper's 8 neighbours; 1: own classes).
    """

    def __init__(self, weights: torch.Tensor | Sequence[float], *, aux_weight: float = 0.5,
                 neighbourhood: int = 3):
        super().__init__()
        if aux_weight < 0:
            raise ConfigError(f"aux_weight must be >= 0, got {aux_weight}")
        self.register_buffer("weights", torch.as_tensor(weights, dtype=torch.float32).clone())
        self.aux_weight = float(aux_weight)
        self.neighbourhood = int(neighbourhood)

    def forward(
        self,
        logits: torch.Tensor,
        labels: torch.Tensor,
        ignore: torch.Tensor,
        aux: Sequence[torch.Tensor] = (),
    ) -> torch.Tensor:
        """Loss of ``logits`` ``(N, C, H, W)`` against truth bits and ignore ``(N, H, W)``."""
        targets = labels_to_targets(labels, n_classes=logits.shape[1]).to(logits.dtype)
        valid = ignore == 0
        w = pixel_weights(targets, valid, self.weights, neighbourhood=self.neighbourhood)
        loss = weighted_bce(logits, targets, valid, w)
        if aux and self.aux_weight > 0:
            aux_loss = sum(weighted_bce(a, targets, valid, w) for a in aux) / len(aux)
            loss = loss + self.aux_weight * aux_loss
        return loss


def balanced_weights(
    fractions: Mapping[str, float] | Sequence[float],
    *,
    classes: Sequence[str] = ABBREVIATIONS,
    beta: float = 1.0,
    max_ratio: float | None = 1000.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class weights of positives and negatives for :class:`BalancedBCE`.

    Positives of class ``c`` weigh ``r_c = min(((1 - p_c) / p_c) ** beta, max_ratio)``
    times its negatives, and ``p_c w+_c + (1 - p_c) w-_c = 1`` (a pixel weighs 1 on
    average). ``r_c`` may be below 1 for a class covering more than half of the pixels.

    Parameters
    ----------
    fractions : mapping or sequence of float
        Class fractions ``p_c`` of non-ignored training pixels (by abbreviation or in the
        order of ``classes``).
    classes : sequence of str
        Abbreviations of the output planes, in order.
    beta : float
        Balancing exponent, >= 0: 1 gives each class's positives and negatives the same
        total weight, 0 is plain BCE (all weights 1).
    max_ratio : float, optional
        Cap on ``r_c`` (and floor at ``1 / max_ratio``), >= 1; ``None`` for no cap.
        A class absent from the training split (``p_c = 0``) gets the cap (uncapped: 1).

    Returns
    -------
    (torch.Tensor, torch.Tensor)
        float32 ``w+`` and ``w-``, each ``(C,)``.

    Raises
    ------
    ConfigError
        On bad fractions, ``beta < 0`` or ``max_ratio < 1``.
    """
    p = class_fractions(fractions, classes=classes)
    if not (np.isfinite(beta) and beta >= 0):
        raise ConfigError(f"balance exponent beta must be >= 0, got {beta}")
    if max_ratio is not None and not max_ratio >= 1:
        raise ConfigError(f"max_ratio of positive to negative weight must be >= 1 or null, "
                          f"got {max_ratio}")
    inner = (p > 0) & (p < 1)
    odds = np.ones_like(p)
    odds[inner] = (1.0 - p[inner]) / p[inner]
    with np.errstate(over="ignore"):
        r = odds**beta
    if max_ratio is not None:
        r = np.clip(r, 1.0 / float(max_ratio), float(max_ratio))
        r[p == 0] = float(max_ratio) if beta > 0 else 1.0
    neg = 1.0 / (p * r + (1.0 - p))
    pos = r * neg
    return torch.as_tensor(pos, dtype=torch.float32), torch.as_tensor(neg, dtype=torch.float32)


def effective_priors(
    fractions: Sequence[float] | np.ndarray | torch.Tensor,
    pos_weights: Sequence[float] | torch.Tensor,
    neg_weights: Sequence[float] | torch.Tensor,
) -> np.ndarray:
    """Priors under which a model trained with per-class weights outputs posteriors.

    Minimising ``w+ y BCE(z, 1) + w- (1 - y) BCE(z, 0)`` gives ``sigmoid(z) = w+ q /
    (w+ q + w- (1 - q))`` with ``q`` the true posterior: the prior odds are multiplied by
    ``w+ / w-``. These are the ``P_N(c)`` of :mod:`mmx.model.priors`' correction.

    Parameters
    ----------
    fractions : array-like
        Class fractions ``p_c`` the network saw, ``(C,)``.
    pos_weights, neg_weights : array-like
        ``w+`` and ``w-`` ``(C,)`` of :func:`balanced_weights`.

    Returns
    -------
    numpy.ndarray
        float64 ``(C,)``: ``r p / (r p + 1 - p)`` with ``r = w+ / w-``.
    """
    p = np.asarray(fractions, dtype=np.float64)
    r = np.asarray(pos_weights, dtype=np.float64) / np.asarray(neg_weights, dtype=np.float64)
    return r * p / (r * p + 1.0 - p)


class BalancedBCE(nn.Module):
    """Sum over classes of BCE with per-class positive/negative weights, deep supervision.

    Parameters
    ----------
    pos_weights, neg_weights : torch.Tensor or sequence of float
        ``w+`` and ``w-`` per class ``(C,)`` (:func:`balanced_weights`).
    aux_weight : float
        Factor on the mean loss of the auxiliary outputs (0 disables deep supervision).
    focal_gamma : float
        Exponent of the focal factor ``(1 - p_t) ** gamma``, >= 0 (0: none).
    hard_negative_weight : float
        Factor ``h >= 1`` on the negative weight of class ``c`` at pixels that hold another
        contaminant (1: none).
    boundary_weight : float
        Factor ``b >= 1`` on both weights of contaminant ``c`` within 1 px of its edges
        (1: none).
    classes : sequence of str, optional
        Abbreviations of the output planes, which say which of them are contaminants
        (None: every plane is one).
    distill_weight : float
        Share ``a`` in [0, 1] of a teacher's soft targets when :meth:`forward` gets
        ``teacher_logits`` (knowledge distillation): the target is ``(1 - a) y + a t``
        with ``t = sigmoid(teacher_logit - log(w+ / w-))``, the pixel's own weights. A
        teacher trained with these weights has its logits where their loss is lowest, so
        ``t`` is the target whose weighted loss is lowest at the teacher's logit: the
        weights are not applied twice.
    """

    def __init__(self, pos_weights: torch.Tensor | Sequence[float],
                 neg_weights: torch.Tensor | Sequence[float], *, aux_weight: float = 0.5,
                 focal_gamma: float = 0.0, hard_negative_weight: float = 1.0,
                 boundary_weight: float = 1.0, classes: Sequence[str] | None = None,
                 distill_weight: float = 0.0):
        super().__init__()
        if not 0.0 <= distill_weight <= 1.0:
            raise ConfigError(f"distill_weight must be in [0, 1], got {distill_weight}")
        if distill_weight > 0 and focal_gamma != 0:
            raise ConfigError(f"distill_weight {distill_weight} needs focal_gamma 0, got "
                              f"{focal_gamma}: the focal term takes hard targets only")
        if aux_weight < 0:
            raise ConfigError(f"aux_weight must be >= 0, got {aux_weight}")
        if not focal_gamma >= 0:
            raise ConfigError(f"focal_gamma must be >= 0, got {focal_gamma}")
        if not hard_negative_weight >= 1:
            raise ConfigError(f"hard_negative_weight must be >= 1, got {hard_negative_weight}")
        if not boundary_weight >= 1:
            raise ConfigError(f"boundary_weight must be >= 1, got {boundary_weight}")
        pos = torch.as_tensor(pos_weights, dtype=torch.float32).clone()
        neg = torch.as_tensor(neg_weights, dtype=torch.float32).clone()
        if pos.shape != neg.shape or pos.ndim != 1 or not bool((neg > 0).all()):
            raise ConfigError(f"need positive weights of one shape (C,), got {pos.tolist()} "
                              f"and {neg.tolist()}")
        if classes is not None and len(classes) != pos.shape[0]:
            raise ConfigError(f"got {pos.shape[0]} class weights for {len(classes)} classes")
        self.register_buffer("pos_weights", pos)
        self.register_buffer("neg_weights", neg)
        self.register_buffer("contaminant", torch.tensor(
            [c not in NOT_CONTAMINANTS for c in classes] if classes is not None
            else [True] * pos.shape[0], dtype=torch.float32))
        self.aux_weight = float(aux_weight)
        self.focal_gamma = float(focal_gamma)
        self.hard_negative_weight = float(hard_negative_weight)
        self.boundary_weight = float(boundary_weight)
        self.distill_weight = float(distill_weight)

    def _boundary_factor(self, targets: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)``: b within 1 px of a contaminant's edge (either side), else 1."""
        t = torch.where(valid[:, None], targets, 0.0)
        grown = F.max_pool2d(t, 3, stride=1, padding=1)
        shrunk = -F.max_pool2d(-torch.where(valid[:, None], targets, 1.0), 3, stride=1,
                               padding=1)
        edge = (grown > shrunk) & (self.contaminant[None, :, None, None] > 0)
        return 1.0 + (self.boundary_weight - 1.0) * edge.to(targets.dtype)

    def _hard_negative_factor(self, targets: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)``: h where contaminant c is absent but another one present, else 1."""
        is_contaminant = self.contaminant.to(targets.dtype)[None, :, None, None]
        own = targets * is_contaminant
        others = own.sum(dim=1, keepdim=True) - own  # contaminants present besides class c
        hard = (others > 0) & (targets == 0) & (is_contaminant > 0)
        return 1.0 + (self.hard_negative_weight - 1.0) * hard.to(targets.dtype)

    def _one(self, logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor,
             pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        if self.focal_gamma == 0:  # one fused op: neg * (pos/neg * y log s + (1-y) log(1-s))
            bce = F.binary_cross_entropy_with_logits(logits, targets, weight=neg,
                                                     pos_weight=pos / neg, reduction="none")
        else:
            bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
            focal = (1.0 - torch.exp(-bce)).pow(self.focal_gamma)
            bce = bce * focal * torch.where(targets > 0, pos, neg)
        valid_f = valid.to(bce.dtype)
        return (bce.sum(dim=1) * valid_f).sum() / valid_f.sum().clamp_min(1.0)

    def forward(
        self,
        logits: torch.Tensor,
        labels: torch.Tensor,
        ignore: torch.Tensor,
        aux: Sequence[torch.Tensor] = (),
        teacher_logits: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Loss of ``logits`` ``(N, C, H, W)`` against truth bits and ignore ``(N, H, W)``.

        With ``teacher_logits`` ``(N, C, H, W)`` the targets mix in the teacher's soft ones
        (``distill_weight``, see the class docstring).
        """
        logits = logits.float()
        targets = labels_to_targets(labels, n_classes=logits.shape[1])
        valid = ignore == 0
        pos = self.pos_weights[None, :, None, None]
        neg = self.neg_weights[None, :, None, None]
        if self.hard_negative_weight > 1:  # factor 1 on positives: only their negatives grow
            neg = neg * self._hard_negative_factor(targets)
        if self.boundary_weight > 1:  # both sides: the optimum stays where it was
            edge = self._boundary_factor(targets, valid)
            pos, neg = pos * edge, neg * edge
        if teacher_logits is not None and self.distill_weight > 0:
            soft = torch.sigmoid(teacher_logits.float() - torch.log(pos / neg))
            targets = torch.lerp(targets, soft, self.distill_weight)
        loss = self._one(logits, targets, valid, pos, neg)
        if aux and self.aux_weight > 0:
            aux_loss = sum(self._one(a.float(), targets, valid, pos, neg) for a in aux) / len(aux)
            loss = loss + self.aux_weight * aux_loss
        return loss


def build_loss(
    kind: str,
    fractions: Mapping[str, float] | Sequence[float],
    *,
    classes: Sequence[str] = ABBREVIATIONS,
    aux_weight: float = 0.5,
    beta: float = 1.0,
    max_ratio: float | None = 1000.0,
    focal_gamma: float = 0.0,
    hard_negative_weight: float = 1.0,
    boundary_weight: float = 1.0,
    neighbourhood: int = 3,
    distill_weight: float = 0.0,
) -> tuple[nn.Module, np.ndarray]:
    """The training loss named ``kind`` and the priors its minimiser is calibrated to.

    Parameters
    ----------
    kind : {"balanced", "paper"}
        :class:`BalancedBCE` with :func:`balanced_weights`, or MaxiMask's
        :class:`MaskLoss` with :func:`class_weights`.
    fractions : mapping or sequence of float
        Class fractions of the training split.
    classes : sequence of str
        Abbreviations of the output planes, in order.
    aux_weight : float
        Deep-supervision factor.
    beta, focal_gamma, hard_negative_weight, boundary_weight : float
        ``balanced`` only: balancing exponent, focal exponent, factor on the negatives of a
        class where another contaminant is, factor at a class's edges (:class:`BalancedBCE`).
    max_ratio : float, optional
        ``balanced``: cap on ``w+/w-``; ``paper``: cap on ``max(w)/w_c``.
    neighbourhood : int
        ``paper`` only: window of :func:`pixel_weights`.
    distill_weight : float
        ``balanced`` only: share of a teacher's soft targets (:class:`BalancedBCE`).

    Returns
    -------
    (torch.nn.Module, numpy.ndarray)
        The loss and the priors ``(C,)`` of its optimum (:func:`effective_priors`; for
        ``paper``, whose pixel weights mix classes, the fractions themselves).

    Raises
    ------
    ConfigError
        On an unknown ``kind`` or bad settings.
    """
    p = class_fractions(fractions, classes=classes)
    if kind == "balanced":
        pos, neg = balanced_weights(p, classes=classes, beta=beta, max_ratio=max_ratio)
        loss = BalancedBCE(pos, neg, aux_weight=aux_weight, focal_gamma=focal_gamma,
                           hard_negative_weight=hard_negative_weight,
                           boundary_weight=boundary_weight, classes=classes,
                           distill_weight=distill_weight)
        return loss, effective_priors(p, pos, neg)
    if kind == "paper":
        for name, value, neutral in (("hard_negative_weight", hard_negative_weight, 1),
                                     ("boundary_weight", boundary_weight, 1),
                                     ("distill_weight", distill_weight, 0)):
            if value != neutral:
                raise ConfigError(f"{name} {value} needs the balanced loss; the paper's "
                                  "pixel weights have no per-class negatives")
        w = class_weights(p, classes=classes, max_ratio=max_ratio)
        return MaskLoss(w, aux_weight=aux_weight, neighbourhood=neighbourhood), p
    raise ConfigError(f"unknown loss {kind!r}; expected one of {', '.join(LOSSES)}")
