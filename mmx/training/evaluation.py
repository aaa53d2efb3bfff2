"""Score a model package on the held-out test split: metrics, curves, plots, MLflow.

Whole test images (no crop), normalised as at inference, through the package's network.
Writes ``<results>/metrics.json`` (flat per-class figures, ``dvc metrics show``),
``<results>/plots/roc.csv`` and ``purity.csv`` (long format, ``dvc plots show``),
``roc.png`` and ``purity.png``; logs the figures (prefixed ``test.``) and PNGs into the
training run named in the package's provenance.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import torch

from mmx.io.atomic import atomic_write_text
from mmx.training.scoring import score_shards

__all__ = ["SUMMARY_KEYS", "evaluate", "summary"]

#: The few test figures of ``summary.json``: what `dvc metrics show/diff` and `dvc exp show`
#: print (the per-class figures stay in ``metrics.json``).
SUMMARY_KEYS = ("mean.tpr_at_fpr_1e-3", "mean.tpr_at_fpr_1e-4", "mean.auc", "mean.tpr",
                "mean.fpr", "mean.purity", "CR.tpr_at_fpr_1e-3")


def summary(metrics: dict[str, float]) -> dict[str, float]:
    """The :data:`SUMMARY_KEYS` of a flat metrics dict, rounded to 4 significant digits."""
    return {k: float(f"{metrics[k]:.4g}") for k in SUMMARY_KEYS if k in metrics}

log = logging.getLogger("mmx.evaluate")


def evaluate(
    cfg: dict,
    *,
    model_dir: str | Path,
    test_dir: str | Path,
    results_dir: str | Path,
    tracking_uri: str | None = None,
) -> dict:
    """Score the package in ``model_dir`` on ``test_dir``; write metrics, curves and plots.

    Parameters
    ----------
    cfg : dict
        The ``evaluate`` section of ``params.yaml``.
    model_dir, test_dir, results_dir : str or Path
        Model package, test shard set, output folder.
    tracking_uri : str, optional
        MLflow store holding the training run; default the package's own
        ``provenance["tracking_uri"]``, else :func:`mmx.tracking.store.default_tracking_uri`.

    Returns
    -------
    dict
        ``metrics`` (the flat figures) and ``run_id`` (the run they were logged to).
    """
    from mmx.model.package import load_package
    from mmx.tracking import store
    from mmx.training.curves import plot_purity, plot_roc, plot_roc_overview, write_rows_csv
    from mmx.training.metrics import purity_rows, roc_rows, summarize

    if int(cfg.get("num_threads", 0)) > 0:
        torch.set_num_threads(int(cfg["num_threads"]))
    package = load_package(model_dir)
    classes = package.meta.classes
    result = score_shards(package, test_dir, batch_size=int(cfg["batch_size"]),
                          n_bins=int(cfg["metric_bins"]))
    metrics = summarize(result, classes=classes)

    results_dir = Path(results_dir)
    plots = results_dir / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    for name, figures in (("metrics.json", metrics), ("summary.json", summary(metrics))):
        atomic_write_text(results_dir / name, json.dumps(figures, indent=2, sort_keys=True) + "\n")
    write_rows_csv(roc_rows(result, classes=classes), plots / "roc.csv",
                   fields=("class", "fpr", "tpr"))
    write_rows_csv(purity_rows(result, classes=classes), plots / "purity.csv",
                   fields=("class", "purity", "tpr"))
    plot_roc(result, plots / "roc.png", classes=classes)
    plot_purity(result, plots / "purity.png", classes=classes)
    plot_roc_overview(result, plots / "roc_all.png", classes=classes)

    run_id = package.meta.provenance.get("run_id")
    if cfg.get("log_to_mlflow", True) and run_id:
        import mlflow

        uri = (tracking_uri or package.meta.provenance.get("tracking_uri")
               or store.default_tracking_uri())
        client = mlflow.MlflowClient(tracking_uri=uri)
        now = int(time.time() * 1000)
        client.log_batch(run_id, metrics=[
            mlflow.entities.Metric(f"test.{k}", float(v), now, 0) for k, v in metrics.items()])
        for png in ("roc.png", "purity.png", "roc_all.png"):
            client.log_artifact(run_id, str(plots / png), artifact_path="plots")
        log.info("logged %d test figures and plots into run %s", len(metrics), run_id)
    means = {k: round(v, 4) for k, v in metrics.items() if k.startswith("mean.")}
    log.info("test figures: %s", means)
    return {"metrics": metrics, "run_id": run_id}
