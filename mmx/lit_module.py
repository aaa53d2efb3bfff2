"""Training logic: the network of :mod:`mmx.nets`, the loss, the optimiser and the metrics.

Logged (per epoch): ``train/loss`` (with deep supervision), ``val/loss`` (final output
only, the checkpoint criterion), and on validation per class ``val/<CLS>.tpr``, ``.fpr``,
``.purity`` (at the default thresholds), ``.auc``, ``.tpr_at_fpr_1e-3``,
``.tpr_at_fpr_1e-4``, plus their ``val/mean.*`` over the classes present.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytorch_lightning as pl
import torch

from mmx.errors import ConfigError
from mmx.loss import MaskLoss
from mmx.metrics import ClassCurves, summarize
from mmx.nets import build_network

__all__ = ["MaskModule"]

_OPTIMIZERS = ("adam", "adamw")
_SCHEDULES = ("none", "cosine")


class MaskModule(pl.LightningModule):
    """LightningModule training a contaminant-segmentation network.

    Parameters
    ----------
    class_weights : sequence of float
        Loss class weights ``(C,)`` (:func:`mmx.loss.class_weights` of the training priors).
    architecture : str
        Name in :data:`mmx.nets.ARCHITECTURES`.
    arch_kwargs : dict, optional
        Arguments of the architecture.
    classes : sequence of str, optional
        Abbreviations of the output planes (default all of :data:`mmx.classes.CLASSES`).
    aux_weight : float
        Weight of the deep-supervision loss.
    neighbourhood : int
        Window of the loss's pixel weights (3: the paper's rule; 1: own classes only).
    optimizer : {"adam", "adamw"}
        ``adam`` adds the L2 penalty to the gradient (the paper's L2 regularisation);
        ``adamw`` decouples it.
    lr : float
        Learning rate.
    weight_decay : float
        L2 / weight-decay strength.
    lr_schedule : {"none", "cosine"}
        ``cosine`` anneals to 0 over the trainer's estimated steps (needs ``max_steps``
        or ``max_epochs``; a time budget alone is not seen by the schedule).
    metric_bins : int
        Logit-space bins of the validation ROC/purity curves.
    """

    def __init__(
        self,
        *,
        class_weights: Sequence[float],
        architecture: str = "unet",
        arch_kwargs: dict | None = None,
        classes: Sequence[str] | None = None,
        aux_weight: float = 0.5,
        neighbourhood: int = 3,
        optimizer: str = "adam",
        lr: float = 2e-3,
        weight_decay: float = 1e-5,
        lr_schedule: str = "none",
        metric_bins: int = 2000,
    ) -> None:
        super().__init__()
        if optimizer not in _OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {_OPTIMIZERS}, got {optimizer!r}")
        if lr_schedule not in _SCHEDULES:
            raise ConfigError(f"lr_schedule must be one of {_SCHEDULES}, got {lr_schedule!r}")
        if not lr > 0 or weight_decay < 0:
            raise ConfigError(f"need lr > 0 and weight_decay >= 0, got {lr}, {weight_decay}")
        from mmx.classes import ABBREVIATIONS

        self.classes = list(classes) if classes is not None else list(ABBREVIATIONS)
        if len(class_weights) != len(self.classes):
            raise ConfigError(f"got {len(class_weights)} class weights for "
                              f"{len(self.classes)} classes")
        self.save_hyperparameters(logger=False)
        self.net = build_network(architecture, n_classes=len(self.classes), **(arch_kwargs or {}))
        self.loss = MaskLoss(torch.as_tensor(list(class_weights)), aux_weight=aux_weight,
                             neighbourhood=neighbourhood)
        self.val_curves = ClassCurves(n_classes=len(self.classes), n_bins=metric_bins)
        self.test_curves = ClassCurves(n_classes=len(self.classes), n_bins=metric_bins)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, C, H, W)`` of normalised images ``(N, 1, H, W)``."""
        return self.net(x)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        """Weighted BCE with deep supervision on one batch of crops."""
        logits, aux = self.net(batch["image"], return_aux=True)
        loss = self.loss(logits, batch["labels"], batch["ignore"], aux)
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True,
                 batch_size=batch["image"].shape[0], sync_dist=True)
        return loss

    def _eval_step(self, batch: dict, split: str, curves: ClassCurves) -> torch.Tensor:
        logits = self.net(batch["image"])
        loss = self.loss(logits, batch["labels"], batch["ignore"])
        self.log(f"{split}/loss", loss, on_step=False, on_epoch=True, prog_bar=True,
                 batch_size=batch["image"].shape[0], sync_dist=True)
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

    def configure_optimizers(self):
        """Adam (L2) or AdamW, with an optional cosine schedule."""
        cls = torch.optim.Adam if self.hparams.optimizer == "adam" else torch.optim.AdamW
        opt = cls(self.net.parameters(), lr=self.hparams.lr,
                  weight_decay=self.hparams.weight_decay)
        if self.hparams.lr_schedule == "none":
            return opt
        total = int(self.trainer.estimated_stepping_batches)
        if total <= 0 or total > 10**9:
            raise ConfigError("lr_schedule 'cosine' needs a finite max_steps or max_epochs, "
                              f"got an estimate of {total} steps")
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
