"""Fit the network on a training split, tracked in MLflow, and save it as a model package.

:func:`train` takes the ``train`` section of ``params.yaml`` (see its comments), writes the
model package, ``<results>/train_run.json`` (MLflow run id) and Lightning checkpoints in
``train.checkpoint_dir`` (``last.ckpt`` is resumed when ``train.resume``).
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch

from mmx.errors import ConfigError, ModelError
from mmx.training.config import TrainConfig

__all__ = ["train", "quiet_lightning"]

log = logging.getLogger("mmx.train")

_RUN_FILE = "run.json"  # in the checkpoint folder: the MLflow run a resumed fit continues


def quiet_lightning() -> None:
    """Silence Lightning's adverts ("Tip: ...") and the ``LeafSpec`` deprecation warning."""

    class _NoTips(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            msg = record.getMessage()
            return "Tip:" not in msg and "litlogger" not in msg.lower() and \
                "litmodels" not in msg.lower()

    for name in ("pytorch_lightning", "lightning", "lightning.pytorch", "lightning_fabric",
                 "pytorch_lightning.utilities.rank_zero", "pytorch_lightning.callbacks",
                 "pytorch_lightning.callbacks.model_checkpoint", "lightning.fabric"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _NoTips) for f in logger.filters):
            logger.addFilter(_NoTips())
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")


def _flatten(prefix: str, value: object, out: dict[str, object]) -> dict[str, object]:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = value
    return out


def _loss_weights(loss: torch.nn.Module) -> dict[str, float]:
    """The loss's class weights as flat MLflow parameters."""
    from mmx.classes import ABBREVIATIONS

    out: dict[str, float] = {}
    for name, key in (("pos_weights", "pos_weight"), ("neg_weights", "neg_weight"),
                      ("weights", "class_weight")):
        if hasattr(loss, name):
            values = getattr(loss, name).tolist()
            out.update({f"train.{key}.{a}": float(v)
                        for a, v in zip(ABBREVIATIONS, values, strict=True)})
    return out


def _max_time(minutes: float | None) -> _dt.timedelta | None:
    return None if minutes in (None, 0) else _dt.timedelta(minutes=float(minutes))


def _package_folder(path: str, root: Path) -> Path:
    folder = Path(path)
    return folder if folder.is_absolute() else root / folder


def _set_teacher(module, cfg: TrainConfig, root: Path) -> None:
    """Give ``module`` the network of the package ``cfg.distill_from`` as its teacher."""
    from mmx.classes import ABBREVIATIONS
    from mmx.model.package import load_package

    folder = _package_folder(cfg.distill_from, root)
    try:
        teacher = load_package(folder)
    except ModelError as exc:
        raise ConfigError(f"train.distill_from: {exc}") from None
    if list(teacher.meta.classes) != list(ABBREVIATIONS):
        raise ConfigError(f"train.distill_from: {folder} outputs classes "
                          f"{','.join(teacher.meta.classes)}, expected {','.join(ABBREVIATIONS)}")
    module.set_teacher(teacher.net)
    log.info("distilling %s (%s views, weight %g)", folder, cfg.distill_tta, cfg.distill_weight)


def _load_initial_weights(net: torch.nn.Module, cfg: TrainConfig, root: Path) -> None:
    """Start ``net`` from the weights of the package ``cfg.init_weights`` (fine-tuning).

    The package must hold the same network (architecture and its keyword arguments, its
    significance gate aside) with the same output classes in the same order; or the same
    U-Net without a bottleneck ``context`` or full-resolution ``detail`` block that ``net``
    adds (such a block starts as the identity, see :class:`mmx.model.nets.ContextBlock`).
    """
    from mmx.classes import ABBREVIATIONS
    from mmx.model.package import load_package

    folder = _package_folder(cfg.init_weights, root)
    start = load_package(folder)
    held = {k: v for k, v in start.meta.arch_kwargs.items() if k != "min_significance"}
    wanted = dict(cfg.arch_kwargs)
    added = [k for k in ("context", "detail") if wanted.get(k) and not held.get(k)]
    for k in added:
        wanted.pop(k)
        held.pop(k, None)
    if (start.meta.architecture, held) != (cfg.architecture, wanted):
        raise ConfigError(
            f"train.init_weights: {folder} holds {start.meta.architecture} "
            f"{start.meta.arch_kwargs}, expected {cfg.architecture} {cfg.arch_kwargs} "
            "(train.architecture, train.arch_kwargs)")
    if list(start.meta.classes) != list(ABBREVIATIONS):
        raise ConfigError(f"train.init_weights: {folder} outputs classes "
                          f"{','.join(start.meta.classes)}, expected {','.join(ABBREVIATIONS)}")
    keys = net.load_state_dict(start.net.state_dict(), strict=not added)
    if added and (keys.unexpected_keys or any(not k.startswith(tuple(f"{b}." for b in added))
                                              for k in keys.missing_keys)):
        raise ConfigError(f"train.init_weights: {folder} does not fit the network without "
                          f"its {' and '.join(added)} block (missing {keys.missing_keys}, "
                          f"unexpected {keys.unexpected_keys})")
    log.info("starting from the weights of %s%s", folder,
             f" ({' and '.join(added)} block new, starting as the identity)" if added else "")


def train(
    cfg: TrainConfig | Mapping,
    *,
    train_dir: str | Path,
    val_dir: str | Path,
    model_dir: str | Path,
    results_dir: str | Path,
    tracking_uri: str | None = None,
    all_params: dict | None = None,
    root: str | Path | None = None,
    run_name: str = "train",
) -> dict:
    """Train a model as ``cfg`` (the ``train`` section) says; save it as a package.

    Parameters
    ----------
    cfg : TrainConfig or mapping
        The ``train`` section of ``params.yaml`` (unknown keys are an error).
    train_dir, val_dir : str or Path
        Shard sets of the training and validation splits.
    model_dir : str or Path
        Folder of the model package written at the end.
    results_dir : str or Path
        Folder receiving ``train_run.json``.
    tracking_uri : str, optional
        MLflow store; default :func:`mmx.tracking.store.default_tracking_uri`.
    all_params : dict, optional
        Parameters logged to MLflow and stored in the package (default ``{"train": cfg}``).
    root : str or Path, optional
        Folder the relative ``checkpoint_dir`` lives in, and where provenance is read
        (git commit, ``data.dvc``); default the current folder.
    run_name : str
        Start of the MLflow run's name (followed by the network and the UTC start time).

    Returns
    -------
    dict
        ``run_id``, ``experiment_id``, ``model`` (package folder), ``best_checkpoint``,
        ``margin`` and ``global_step``.
    """
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import ModelCheckpoint
    from pytorch_lightning.loggers import MLFlowLogger
    from pytorch_lightning.utilities import rank_zero_only

    from mmx.classes import ABBREVIATIONS
    from mmx.io.shards import ShardSet
    from mmx.model.hardware import cpu_info, training_precision
    from mmx.model.nets import receptive_field_margin
    from mmx.model.package import ModelMeta, save_package
    from mmx.tracking import store
    from mmx.training.calibration import calibrate_thresholds
    from mmx.training.datamodule import ShardDataModule
    from mmx.training.lit_module import MaskModule

    quiet_lightning()
    root = Path(root) if root is not None else Path.cwd()
    cfg = TrainConfig.from_mapping(cfg)
    all_params = all_params if all_params is not None else {"train": cfg.as_dict()}
    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)
    seed = cfg.seed
    pl.seed_everything(seed, workers=True, verbose=False)  # complement: init and dropout
    torch.manual_seed(seed)

    priors = ShardSet(train_dir).class_fraction
    arch_kwargs = dict(cfg.arch_kwargs)
    if cfg.min_significance:  # an eval-time gate, not weights: stored with the network
        arch_kwargs["min_significance"] = dict(cfg.min_significance)
    module = MaskModule(
        priors=[float(priors[a]) for a in ABBREVIATIONS], architecture=cfg.architecture,
        arch_kwargs=arch_kwargs, loss=cfg.loss,
        balance_beta=cfg.balance_beta,
        max_weight_ratio=cfg.max_weight_ratio,
        focal_gamma=cfg.focal_gamma,
        hard_negative_weight=cfg.hard_negative_weight,
        boundary_weight=cfg.boundary_weight,
        neighbourhood=cfg.neighbourhood, aux_weight=cfg.aux_weight,
        init_bias=cfg.init_bias, optimizer=cfg.optimizer,
        lr=cfg.lr, weight_decay=cfg.weight_decay,
        lr_schedule=cfg.lr_schedule, warmup=cfg.warmup,
        channels_last=cfg.channels_last,
        metric_bins=cfg.metric_bins,
        distill_weight=cfg.distill_weight if cfg.distill_from else 0.0,
        distill_tta=cfg.distill_tta,
        freeze_batchnorm=cfg.freeze_batchnorm,
    )
    if cfg.init_weights:
        _load_initial_weights(module.net, cfg, root)
    if cfg.distill_from:
        _set_teacher(module, cfg, root)
    stride = int(getattr(module.net, "stride", 1))
    if cfg.tile % stride:
        raise ConfigError(f"train.tile must be a multiple of the network's stride {stride}, "
                          f"got {cfg.tile}")
    final = cfg.final_weights
    data = ShardDataModule(
        train_dir, val_dir, crop=cfg.crop, val_crop=cfg.val_crop,
        batch_size=cfg.batch_size, val_batch_size=cfg.val_batch_size,
        augment=cfg.augment, mesh=cfg.mesh, seed=seed,
        num_workers=cfg.num_workers, cache_mb=cfg.cache_mb,
        focus_classes=cfg.focus_classes,
        focus_fraction=cfg.focus_fraction,
    )

    ckpt_dir = root / cfg.checkpoint_dir
    last = ckpt_dir / "last.ckpt"
    resume = cfg.resume and last.is_file()
    run_id = None
    if resume and (ckpt_dir / _RUN_FILE).is_file():
        run_id = json.loads((ckpt_dir / _RUN_FILE).read_text()).get("run_id")
    uri = tracking_uri or store.default_tracking_uri(root)
    provenance = {"git_commit": store.git_commit(root), "data_hash": store.data_hash(root)}
    mlf = MLFlowLogger(experiment_name=store.EXPERIMENT_NAME, tracking_uri=uri,
                       artifact_location=store.artifact_root(uri), tags=provenance,
                       run_id=run_id, run_name=f"{run_name}-{cfg.architecture}-"
                       f"{_dt.datetime.now(_dt.UTC):%Y%m%d-%H%M}")
    precision = training_precision(cfg.precision, accelerator=cfg.accelerator)
    log.info("precision %s (train.precision: %s) on %s", precision, cfg.precision,
             cpu_info().describe())
    if rank_zero_only.rank == 0:
        store.mark_training_experiment(mlf.experiment, mlf.experiment_id)
    if run_id is None:  # a resumed run already holds its params (MLflow refuses changes)
        flat = _flatten("", all_params, {})
        flat.update({"resolved.precision": precision, "resolved.cpu": cpu_info().describe()})
        flat.update(_loss_weights(module.loss))
        flat.update({f"train.prior.{a}": float(p) for a, p in priors.items()})
        mlf.log_hyperparams(flat)
    if rank_zero_only.rank == 0:  # DDP re-runs this script in every process
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        if not resume:  # a fresh fit: stale checkpoints of an earlier run must not be resumed
            for stale in ckpt_dir.glob("*.ckpt"):
                stale.unlink()
        (ckpt_dir / _RUN_FILE).write_text(json.dumps({"run_id": mlf.run_id}))
    # this stage owns the folder (run.json, last.ckpt on resume): the warning is noise
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")

    if final == "best":  # saved after each validation, where val/loss exists
        checkpoint = ModelCheckpoint(dirpath=ckpt_dir, filename="best-{epoch:04d}-{step:07d}",
                                     monitor="val/loss", mode="min", save_top_k=1,
                                     save_last=True, auto_insert_metric_name=False,
                                     save_on_train_epoch_end=False)
    else:  # the schedule's end is what is kept: the latest epoch, whatever val/loss says
        checkpoint = ModelCheckpoint(dirpath=ckpt_dir, filename="epoch-{epoch:04d}-{step:07d}",
                                     monitor=None, save_top_k=1, save_last=True,
                                     auto_insert_metric_name=False,
                                     save_on_train_epoch_end=True)
    trainer = pl.Trainer(
        accelerator=cfg.accelerator, devices=cfg.devices, strategy=cfg.strategy,
        precision=precision, max_epochs=cfg.max_epochs,
        max_steps=cfg.max_steps, max_time=_max_time(cfg.max_time_min),
        limit_train_batches=cfg.limit_train_batches,
        limit_val_batches=cfg.limit_val_batches,
        check_val_every_n_epoch=cfg.val_every_n_epochs,
        log_every_n_steps=cfg.log_every_n_steps, logger=mlf, callbacks=[checkpoint],
        num_sanity_val_steps=0, enable_model_summary=False, default_root_dir=str(ckpt_dir),
        deterministic=False, enable_progress_bar=cfg.progress_bar,
        # across GPU processes BatchNorm sees the whole batch, as one process does (torch's
        # SyncBatchNorm has no CPU implementation: on CPU each rank normalises its own half)
        sync_batchnorm=str(cfg.strategy).startswith("ddp") and cfg.accelerator in ("gpu", "cuda"),
    )
    log.info("training %s (%d parameters) on %s, run %s", cfg.architecture,
             sum(p.numel() for p in module.net.parameters()), train_dir, mlf.run_id)
    trainer.fit(module, datamodule=data, ckpt_path=str(last) if resume else None)

    result = {"run_id": mlf.run_id, "experiment_id": mlf.experiment_id,
              "global_step": int(trainer.global_step),
              "best_checkpoint": checkpoint.best_model_path or None}
    log.info("fit ended after %d steps", trainer.global_step)
    if not trainer.is_global_zero:
        return result
    if final == "best" and checkpoint.best_model_path:
        state = torch.load(checkpoint.best_model_path, map_location="cpu", weights_only=False)
        module.load_state_dict(state["state_dict"])
        log.info("best checkpoint %s (val/loss %.5g)", checkpoint.best_model_path,
                 float(checkpoint.best_model_score))
    net = module.net.cpu().to(memory_format=torch.contiguous_format).eval()
    margin = receptive_field_margin(net)
    calibrated = module.calibration_priors()  # P_N(c) of the prior correction at inference
    tile = cfg.tile
    meta = ModelMeta(
        architecture=cfg.architecture, arch_kwargs=arch_kwargs,
        classes=list(ABBREVIATIONS), training_priors=calibrated,
        normalization={"mesh": cfg.mesh}, tile=tile, margin=int(margin),
        provenance={**provenance, "run_id": mlf.run_id, "experiment_id": mlf.experiment_id,
                    "tracking_uri": uri, "global_step": int(trainer.global_step),
                    "split_class_fraction": dict(priors),
                    "trained_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")},
        params=all_params,
    )
    meta.thresholds = calibrate_thresholds(
        net, meta, val_dir, rule=cfg.threshold_rule,
        target_fpr=cfg.target_fpr,
        class_target_fpr=cfg.class_target_fpr,
        batch_size=cfg.val_batch_size, n_bins=cfg.metric_bins)
    save_package(net, meta, model_dir)
    mlf.experiment.log_metric(mlf.run_id, "margin_px", float(margin))
    for abbr, value in meta.thresholds.items():
        mlf.experiment.log_metric(mlf.run_id, f"threshold.{abbr}", value)
    for abbr, value in calibrated.items():
        mlf.experiment.log_metric(mlf.run_id, f"calibration_prior.{abbr}", value)
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / "train_run.json").write_text(json.dumps(
        {"run_id": mlf.run_id, "experiment_id": mlf.experiment_id, "tracking_uri": uri},
        indent=2) + "\n")
    log.info("model package %s (margin %d px), run %s", model_dir, margin, mlf.run_id)
    result.update(model=str(model_dir), margin=int(margin))
    return result
