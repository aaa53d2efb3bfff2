"""Settings of the ``train`` stage: the ``train:`` section of params.yaml, typed.

The comments of params.yaml give each key's meaning and unit; the defaults here are the
only ones (params.yaml sets every key explicitly).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from mmx.errors import ConfigError
from mmx.io.config import from_section

__all__ = ["TrainConfig"]


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a fit (see params.yaml ``train:`` for meanings and units)."""

    architecture: str = "unet"
    arch_kwargs: dict = field(default_factory=dict)
    min_significance: dict = field(default_factory=dict)
    seed: int = 1
    crop: int = 128
    focus_classes: list = field(default_factory=list)
    focus_fraction: float = 0.0
    val_crop: int | None = None
    augment: bool = True
    mesh: int = 64
    cache_mb: float = 0.0
    batch_size: int = 16
    val_batch_size: int = 4
    num_workers: int = 0
    num_threads: int = 0
    loss: str = "balanced"
    balance_beta: float = 1.0
    max_weight_ratio: float | None = 1000.0
    focal_gamma: float = 0.0
    hard_negative_weight: float = 1.0
    boundary_weight: float = 1.0
    neighbourhood: int = 1
    aux_weight: float = 0.0
    init_bias: bool = True
    optimizer: str = "adam"
    lr: float = 3e-3
    lr_schedule: str = "onecycle"
    warmup: float = 0.05
    weight_decay: float = 1e-5
    metric_bins: int = 2000
    threshold_rule: str = "fpr"
    target_fpr: float = 1e-4
    class_target_fpr: dict = field(default_factory=dict)
    max_epochs: int = 1000
    max_steps: int = -1
    max_time_min: float | None = None
    limit_train_batches: int | float = 1.0
    limit_val_batches: int | float = 1.0
    val_every_n_epochs: int = 1
    final_weights: str = "last"
    log_every_n_steps: int = 10
    accelerator: str = "cpu"
    devices: int | str | list = 1
    strategy: str = "auto"
    precision: str = "auto"
    channels_last: bool = False
    progress_bar: bool = True
    checkpoint_dir: str = "checkpoints"
    resume: bool = False
    init_weights: str | None = None
    distill_from: str | None = None
    distill_weight: float = 0.5
    distill_tta: str = "flips"
    freeze_batchnorm: bool = False
    tile: int = 512

    def __post_init__(self) -> None:
        if self.final_weights not in ("best", "last"):
            raise ConfigError(f"train.final_weights must be 'best' or 'last', "
                              f"got {self.final_weights!r}")
        if self.optimizer not in ("adam", "adamw"):
            raise ConfigError(f"train.optimizer must be 'adam' or 'adamw', got {self.optimizer!r}")
        for name in ("crop", "batch_size", "val_batch_size", "mesh", "metric_bins", "tile"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 < self.target_fpr < 1.0:
            raise ConfigError(f"train.target_fpr must be in (0, 1), got {self.target_fpr}")
        if self.freeze_batchnorm and not self.init_weights:
            raise ConfigError("train.freeze_batchnorm: true keeps the BatchNorm statistics of "
                              "train.init_weights, which is null: name the package to fine-tune "
                              "(e.g. mmx/release) or set freeze_batchnorm: false")
        if self.distill_from and not 0.0 < self.distill_weight <= 1.0:
            raise ConfigError(f"train.distill_weight must be in (0, 1] with distill_from, "
                              f"got {self.distill_weight}")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | TrainConfig | None) -> TrainConfig:
        """From the params section (or a TrainConfig); unknown keys are an error."""
        if isinstance(values, TrainConfig):
            return values
        return from_section(cls, values, "train")

    def as_dict(self) -> dict:
        """Plain dict of every setting (for MLflow and the model package)."""
        return asdict(self)
