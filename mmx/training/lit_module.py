"""Training logic: the network of :mod:`mmx.model.nets`, the loss, the optimiser and the metrics.

Logged (per epoch): ``train/loss`` (with deep supervision), ``val/loss`` (final output
only, the checkpoint criterion), and on validation per class ``val/<CLS>.tpr``, ``.fpr``,
``.purity`` (at the default thresholds), ``.auc``, ``.tpr_at_fpr_1e-3``,
``.tpr_at_fpr_1e-4``, plus their ``val/mean.*`` over the classes present, and
``val/images``, the number of images they rest on (``train.limit_val_batches`` may take
a sample of the split, whose figures then differ from the whole split's); ``lr`` per step.

The learning-rate schedules run over the fit's *budget*: the larger of the fraction of
``max_steps`` (or of the steps ``max_epochs`` implies) done and the fraction of the
``max_time`` budget elapsed (Lightning's ``Timer``, validation included, restored on
resume). So a schedule also anneals a fit that only a time budget stops.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Timer

from mmx.errors import ConfigError
from mmx.model.nets import build_network, init_output_bias, prior_logits
from mmx.model.symmetry import average_over_symmetries, check_tta
from mmx.training.loss import build_loss, effective_priors, labels_to_targets
from mmx.training.metrics import ClassCurves, summarize

__all__ = ["MaskModule", "schedule_factor"]

_OPTIMIZERS = ("adam", "adamw")
_SCHEDULES = ("none", "cosine", "onecycle")


def schedule_factor(kind: str, progress: float, *, warmup: float = 0.05,
                    final: float = 0.01) -> float:
    """Learning-rate factor at ``progress`` (fraction of the budget done, 0 to 1).

    Parameters
    ----------
    kind : {"none", "cosine", "onecycle"}
        ``none``: 1. ``cosine``: ``(1 + cos(pi t)) / 2``, from 1 to 0. ``onecycle``: linear
        warm-up from ``final`` to 1 over the first ``warmup`` of the budget, then a cosine
        from 1 down to ``final``.
    progress : float
        Fraction of the budget done; clipped to [0, 1].
    warmup : float
        ``onecycle``: fraction of the budget spent warming up.
    final : float
        ``onecycle``: factor at the start and at the end.

    Returns
    -------
    float
        Factor on the base learning rate.
    """
    t = min(max(float(progress), 0.0), 1.0)
    if kind == "none":
        return 1.0
    if kind == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * t))
    if kind == "onecycle":
        if t < warmup:
            return final + (1.0 - final) * t / warmup
        u = (t - warmup) / max(1.0 - warmup, 1e-12)
        return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * u))
    raise ConfigError(f"lr_schedule must be one of {_SCHEDULES}, got {kind!r}")


class MaskModule(pl.LightningModule):
    """LightningModule training a contaminant-segmentation network.

    Parameters
    ----------
    priors : sequence of float
        Class fractions of non-ignored training pixels ``(C,)`` (``summary.json``'s
        ``class_fraction`` of the training split, in class order).
    architecture : str
        Name in :data:`mmx.model.nets.ARCHITECTURES`.
    arch_kwargs : dict, optional
        Arguments of the architecture.
    classes : sequence of str, optional
        Abbreviations of the output planes (default all of :data:`mmx.classes.CLASSES`).
    loss : {"balanced", "paper"}
        :func:`mmx.training.loss.build_loss`: per-class balanced BCE, or MaxiMask's pixel weights.
    balance_beta : float
        ``balanced``: exponent of the positive/negative weight ratio ``((1-p)/p) ** beta``.
    max_weight_ratio : float, optional
        ``balanced``: cap on the positive/negative weight ratio; ``paper``: cap on
        ``max(w)/w_c`` (``None``: no cap).
    focal_gamma : float
        ``balanced``: focal exponent (0: none).
    hard_negative_weight : float
        ``balanced``: factor on a class's negatives where another contaminant is (1: none).
    boundary_weight : float
        ``balanced``: factor on both weights of a class within 1 px of its edges (1: none).
    neighbourhood : int
        ``paper``: window of the pixel weights (3: the paper's rule; 1: own classes only).
    aux_weight : float
        Weight of the deep-supervision loss.
    init_bias : bool
        Start every output at ``logit`` of the priors the loss is calibrated to
        (:func:`mmx.model.nets.init_output_bias`) instead of 0 (p = 0.5).
    optimizer : {"adam", "adamw"}
        ``adam`` adds the L2 penalty to the gradient (the paper's L2 regularisation);
        ``adamw`` decouples it.
    lr : float
        Peak learning rate.
    weight_decay : float
        L2 / weight-decay strength.
    lr_schedule : {"none", "cosine", "onecycle"}
        :func:`schedule_factor` over the fit's budget (steps or time, see the module).
    warmup : float
        ``onecycle``: fraction of the budget spent warming up.
    channels_last : bool
        Keep the network's weights in channels-last memory format (faster convolutions
        on CPUs with oneDNN).
    metric_bins : int
        Logit-space bins of the validation ROC/purity curves.
    distill_weight : float
        ``balanced``: share of the teacher's soft targets (:meth:`set_teacher`) in the
        training targets (0: none).
    distill_tta : {"none", "flips", "dihedral"}
        Views of each training batch whose logits the teacher averages
        (:func:`mmx.model.symmetry.average_over_symmetries`): the teacher is the ensemble
        that test-time augmentation makes, and the student learns its answer in one pass.
    freeze_batchnorm : bool
        Keep every BatchNorm layer in eval mode during training: it normalises with the
        running statistics it started with (those of ``init_weights``) and does not update
        them (layers new to the network, such as a context or detail block, keep their
        initial ones); its scale and shift still learn. For fine-tuning on batches too small
        to give stable statistics (large crops, few per step).
    """

    def __init__(
        self,
        *,
        priors: Sequence[float],
        architecture: str = "unet",
        arch_kwargs: dict | None = None,
        classes: Sequence[str] | None = None,
        loss: str = "balanced",
        balance_beta: float = 1.0,
        max_weight_ratio: float | None = 1000.0,
        focal_gamma: float = 0.0,
        hard_negative_weight: float = 1.0,
        boundary_weight: float = 1.0,
        neighbourhood: int = 3,
        aux_weight: float = 0.5,
        init_bias: bool = True,
        optimizer: str = "adam",
        lr: float = 2e-3,
        weight_decay: float = 1e-5,
        lr_schedule: str = "onecycle",
        warmup: float = 0.05,
        channels_last: bool = False,
        metric_bins: int = 2000,
        distill_weight: float = 0.0,
        distill_tta: str = "flips",
        freeze_batchnorm: bool = False,
    ) -> None:
        super().__init__()
        check_tta(distill_tta)
        if optimizer not in _OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {_OPTIMIZERS}, got {optimizer!r}")
        if lr_schedule not in _SCHEDULES:
            raise ConfigError(f"lr_schedule must be one of {_SCHEDULES}, got {lr_schedule!r}")
        if not lr > 0 or weight_decay < 0:
            raise ConfigError(f"need lr > 0 and weight_decay >= 0, got {lr}, {weight_decay}")
        if not 0 <= warmup < 1:
            raise ConfigError(f"warmup must be a fraction in [0, 1), got {warmup}")
        from mmx.classes import ABBREVIATIONS

        self.classes = list(classes) if classes is not None else list(ABBREVIATIONS)
        if len(priors) != len(self.classes):
            raise ConfigError(f"got {len(priors)} class priors for {len(self.classes)} classes")
        self.save_hyperparameters(logger=False)
        self.net = build_network(architecture, n_classes=len(self.classes), **(arch_kwargs or {}))
        self.loss, calibrated = build_loss(
            loss, list(priors), classes=self.classes, aux_weight=aux_weight, beta=balance_beta,
            max_ratio=max_weight_ratio, focal_gamma=focal_gamma,
            hard_negative_weight=hard_negative_weight, boundary_weight=boundary_weight,
            neighbourhood=neighbourhood, distill_weight=distill_weight)
        self._teacher: list[torch.nn.Module] = []  # a list: not a submodule, not in the state dict
        if init_bias:
            init_output_bias(self.net, prior_logits(calibrated))
        # class pixels / valid pixels the fit has seen (crops differ from the split when
        # training focuses on rare classes): the priors the model ends up calibrated to
        n = len(self.classes)
        self.register_buffer("seen_class_pixels", torch.zeros(n, dtype=torch.float64))
        self.register_buffer("seen_valid_pixels", torch.zeros((), dtype=torch.float64))
        self._total_steps = 0.0  # the trainer's step budget, set by configure_optimizers
        self.val_curves = ClassCurves(n_classes=n, n_bins=metric_bins)
        self.test_curves = ClassCurves(n_classes=n, n_bins=metric_bins)

    def calibration_priors(self) -> dict[str, float]:
        """Class priors ``P_N(c)`` the network's probabilities refer to, by abbreviation.

        The class fractions of the pixels the fit has seen (the split's ``priors`` before
        any step), with their odds multiplied by the loss's positive/negative weight
        ratio (:func:`mmx.training.loss.effective_priors`; the ``paper`` loss: unchanged).
        """
        seen = float(self.seen_valid_pixels)
        p = (self.seen_class_pixels.cpu().numpy() / seen if seen > 0
             else np.asarray(self.hparams.priors, dtype=np.float64))
        if self.hparams.loss == "balanced":
            p = effective_priors(p, self.loss.pos_weights.cpu(), self.loss.neg_weights.cpu())
        return {c: float(v) for c, v in zip(self.classes, p, strict=True)}

    def set_teacher(self, net: torch.nn.Module) -> None:
        """Distil ``net`` (frozen, in eval mode, without its significance gate) into the network.

        Raises
        ------
        ConfigError
            If the loss gives the teacher no weight (``distill_weight`` 0).
        """
        if not getattr(self.loss, "distill_weight", 0.0) > 0:
            raise ConfigError("a teacher needs distill_weight > 0 and the balanced loss")
        net = net.eval().requires_grad_(False)
        if hasattr(net, "set_min_significance"):
            net.set_min_significance(None)  # the gate is not part of what training fits
        self._teacher = [net]

    def teacher_logits(self, images: torch.Tensor) -> torch.Tensor | None:
        """The teacher's logits of a batch, averaged over ``distill_tta``'s views (None: none)."""
        if not self._teacher:
            return None
        with torch.no_grad():
            return average_over_symmetries(self._teacher[0], images, self.hparams.distill_tta)

    def on_fit_start(self) -> None:
        """Move the weights to channels-last memory format when asked; the teacher along."""
        if self.hparams.channels_last:
            self.net.to(memory_format=torch.channels_last)
        for net in self._teacher:
            net.to(self.device)
            if self.hparams.channels_last:
                net.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, C, H, W)`` of normalised images ``(N, 1, H, W)``."""
        return self.net(x)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        """Training loss (with deep supervision) on one batch of crops."""
        if self.loss.aux_weight > 0:  # the auxiliary outputs cost as much as the rest
            logits, aux = self.net(batch["image"], return_aux=True)
        else:
            logits, aux = self.net(batch["image"]), []
        teacher = self.teacher_logits(batch["image"])  # only BalancedBCE takes one
        extra = {} if teacher is None else {"teacher_logits": teacher}
        loss = self.loss(logits, batch["labels"], batch["ignore"], aux, **extra)
        with torch.no_grad():
            valid = batch["ignore"] == 0
            targets = labels_to_targets(batch["labels"], n_classes=len(self.classes))
            self.seen_class_pixels += (targets * valid[:, None]).sum(dim=(0, 2, 3)).double()
            self.seen_valid_pixels += valid.sum().double()
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True,
                 batch_size=batch["image"].shape[0], sync_dist=True)
        return loss

    def _eval_step(self, batch: dict, split: str, curves: ClassCurves) -> torch.Tensor:
        logits = self.net(batch["image"])
        loss = self.loss(logits, batch["labels"], batch["ignore"])
        n = batch["image"].shape[0]
        self.log(f"{split}/loss", loss, on_step=False, on_epoch=True, prog_bar=True,
                 batch_size=n, sync_dist=True)
        # how many images the split's figures rest on (train.limit_val_batches may sample)
        self.log(f"{split}/images", float(n), on_step=False, on_epoch=True, reduce_fx="sum",
                 batch_size=n, sync_dist=True)
        curves.update(logits, batch["labels"], batch["ignore"])
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        """Loss (final output only) and curve statistics of one validation batch."""
        return self._eval_step(batch, "val", self.val_curves)

    def test_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        """Loss and curve statistics of one test batch."""
        return self._eval_step(batch, "test", self.test_curves)

    def _log_curves(self, split: str, curves: ClassCurves) -> None:
        flat = summarize(curves.compute(), classes=self.classes)
        self.log_dict({f"{split}/{k}": v for k, v in flat.items() if not k.endswith(".n_pos")},
                      on_step=False, on_epoch=True)
        curves.reset()

    def on_validation_epoch_end(self) -> None:
        """Log per-class TPR/FPR/purity/AUC/TPR@FPR of the epoch's validation."""
        self._log_curves("val", self.val_curves)

    def on_test_epoch_end(self) -> None:
        """Log per-class test figures."""
        self._log_curves("test", self.test_curves)

    def budget_progress(self) -> float:
        """Fraction of the fit's budget done: the larger of its step and time fractions."""
        trainer = self.trainer
        fractions = [0.0]
        total = self._total_steps
        if 0 < total <= 10**9:
            fractions.append(trainer.global_step / total)
        for cb in trainer.callbacks:
            if isinstance(cb, Timer) and cb._duration:  # Lightning's max_time
                fractions.append(cb.time_elapsed("train") / cb._duration)
        return min(max(fractions), 1.0)

    def _has_budget(self) -> bool:
        self._total_steps = float(self.trainer.estimated_stepping_batches)
        return (0 < self._total_steps <= 10**9) or any(isinstance(cb, Timer) and cb._duration
                                           for cb in self.trainer.callbacks)

    def configure_optimizers(self):
        """Adam (L2) or AdamW, with an optional schedule over the budget, stepped per batch."""
        cls = torch.optim.Adam if self.hparams.optimizer == "adam" else torch.optim.AdamW
        opt = cls(self.net.parameters(), lr=self.hparams.lr,
                  weight_decay=self.hparams.weight_decay)
        kind = self.hparams.lr_schedule
        if kind == "none":
            return opt
        if not self._has_budget():
            raise ConfigError(f"lr_schedule {kind!r} needs a budget: a finite max_steps or "
                              "max_epochs, or max_time")
        warmup = float(self.hparams.warmup)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda _: schedule_factor(kind, self.budget_progress(), warmup=warmup))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def on_train_batch_start(self, batch: dict, batch_idx: int) -> None:
        """Log the learning rate of the coming step; keep frozen BatchNorm layers in eval mode."""
        if self.hparams.freeze_batchnorm:  # the loops set train mode after each validation
            for m in self.net.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    m.eval()
        opt = self.optimizers(use_pl_optimizer=False)
        self.log("lr", opt.param_groups[0]["lr"], on_step=True, on_epoch=False)
