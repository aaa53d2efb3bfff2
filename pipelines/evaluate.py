"""Stage ``evaluate``: score the trained package on the held-out test split.

Whole test images (no crop), normalised as at inference, through the package's network.
Writes ``<results>/metrics.json`` (flat per-class figures, ``dvc metrics show``),
``<results>/plots/roc.csv`` and ``purity.csv`` (long format, ``dvc plots show``),
``roc.png`` and ``purity.png``; logs the figures (prefixed ``test.``) and PNGs into the
training run named in the package's provenance, and stores the figures in the package's
``metrics``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import torch

from pipelines.params import load_params, path

__all__ = ["operating_thresholds", "score_shards", "evaluate", "main"]

log = logging.getLogger("mmx.evaluate")


def operating_thresholds(package) -> list[float]:
    """Default thresholds as they act on the network's raw posteriors.

    ``mmx predict`` thresholds prior-corrected probabilities (default priors of the class
    table) at the model's calibrated thresholds, else the class table's; the correction is
    a logit shift, so on raw posteriors the same operating point is
    ``sigmoid(logit(threshold) - shift)``. Scoring with these makes the test figures at
    the default thresholds describe what users get.
    """
    from mmx.calibration import default_thresholds

    return default_thresholds(package.meta, package.meta.classes, raw=True).tolist()


def score_shards(package, shard_dir: str | Path, *, batch_size: int = 4,
                 n_bins: int = 2000, shift: np.ndarray | None = None) -> dict:
    """Run ``package``'s network over every image of a shard set; return curve statistics.

    Parameters
    ----------
    package : mmx.model_package.ModelPackage
        The model (eval mode) and its metadata (normalisation, classes).
    shard_dir : str or Path
        Shard set to score (whole images).
    batch_size : int
        Images per forward pass.
    n_bins : int
        Logit bins of the curves.
    shift : numpy.ndarray, optional
        Per-class logit shift (prior correction) added before scoring.

    Returns
    -------
    dict
        :meth:`mmx.metrics.ClassCurves.compute` output.
    """
    from mmx.metrics import ClassCurves
    from mmx.normalize import normalize_image
    from mmx.shards import ShardSet

    shards = ShardSet(shard_dir)
    mesh = int(package.meta.normalization.get("mesh", 64))
    curves = ClassCurves(n_classes=len(package.meta.classes), n_bins=n_bins,
                         thresholds=operating_thresholds(package))
    net = package.net.eval()
    with torch.inference_mode():
        for start in range(0, len(shards), batch_size):
            samples = [shards[i] for i in range(start, min(start + batch_size, len(shards)))]
            images = np.stack([normalize_image(s.image, mesh=mesh) for s in samples])
            logits = net(torch.from_numpy(images)[:, None])
            if shift is not None:
                logits = logits + torch.as_tensor(shift, dtype=logits.dtype)[None, :, None, None]
            curves.update(logits, torch.from_numpy(np.stack([s.labels for s in samples])
                                                   .astype(np.int32)),
                          torch.from_numpy(np.stack([s.ignore for s in samples])))
    return curves.compute()


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
        ``provenance["tracking_uri"]``, else :func:`mmx.tracking.default_tracking_uri`.

    Returns
    -------
    dict
        ``metrics`` (the flat figures) and ``run_id`` (the run they were logged to).
    """
    from mmx import tracking
    from mmx.curves import plot_purity, plot_roc, write_rows_csv
    from mmx.metrics import purity_rows, roc_rows, summarize
    from mmx.model_package import load_package

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
    tmp = results_dir / ".metrics.json.part"
    tmp.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, results_dir / "metrics.json")
    write_rows_csv(roc_rows(result, classes=classes), plots / "roc.csv",
                   fields=("class", "fpr", "tpr"))
    write_rows_csv(purity_rows(result, classes=classes), plots / "purity.csv",
                   fields=("class", "purity", "tpr"))
    plot_roc(result, plots / "roc.png", classes=classes)
    plot_purity(result, plots / "purity.png", classes=classes)

    run_id = package.meta.provenance.get("run_id")
    if cfg.get("log_to_mlflow", True) and run_id:
        import mlflow

        uri = (tracking_uri or package.meta.provenance.get("tracking_uri")
               or tracking.default_tracking_uri())
        client = mlflow.MlflowClient(tracking_uri=uri)
        now = int(time.time() * 1000)
        client.log_batch(run_id, metrics=[
            mlflow.entities.Metric(f"test.{k}", float(v), now, 0) for k, v in metrics.items()])
        for png in ("roc.png", "purity.png"):
            client.log_artifact(run_id, str(plots / png), artifact_path="plots")
        log.info("logged %d test figures and plots into run %s", len(metrics), run_id)
    means = {k: round(v, 4) for k, v in metrics.items() if k.startswith("mean.")}
    log.info("test figures: %s", means)
    return {"metrics": metrics, "run_id": run_id}


def main() -> None:
    """Run the stage with the project's ``params.yaml``."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    params = load_params()
    evaluate(params["evaluate"], model_dir=path("model"), test_dir=path("test"),
             results_dir=path("results"))


if __name__ == "__main__":
    main()
