"""Package a trained model as mmx's shipped release model (``mmx/release/``).

Calibrates its thresholds on the validation split if it has none (also those of each
test-time augmentation, :mod:`mmx.model.symmetry`), scores it on the test split, and
writes it with those figures and the SHA-256 of its weights, so that ``mmx predict`` works
right after install and a test can check the file against its record.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from mmx.model.package import load_package, save_package, weights_sha256
from mmx.training.calibration import calibrate_thresholds
from mmx.training.evaluation import evaluate

__all__ = ["make_release"]


def make_release(model_dir: str | Path, *, val_dir: str | Path, test_dir: str | Path,
                 out: str | Path, eval_cfg: dict, log_to_mlflow: bool = False,
                 calibration: dict | None = None,
                 min_significance: dict | None = None,
                 tta_modes: tuple[str, ...] = ("flips", "dihedral")) -> Path:
    """Write the release package ``out`` from a trained package, with test figures.

    Thresholds are (re)calibrated on ``val_dir`` when the package has none or when
    ``calibration`` (keyword arguments of :func:`mmx.training.calibration.calibrate_thresholds`:
    ``rule``, ``target_fpr``, ``class_target_fpr``) is given. With ``log_to_mlflow`` the
    test figures and plots also go into the model's training run (found through its
    provenance), so the run shows what was released. ``min_significance``, when given,
    replaces the network's significance gate (:class:`mmx.model.nets.SegmentationNet`;
    ``{}``: none) before anything is calibrated or scored. The thresholds of each mode of
    ``tta_modes`` are calibrated the same way, when missing or recalibrated (``mmx predict
    --tta`` uses them).
    """
    package = load_package(model_dir)
    meta = package.meta
    if min_significance is not None:
        package.net.set_min_significance(min_significance)
        meta.arch_kwargs = {k: v for k, v in meta.arch_kwargs.items() if k != "min_significance"}
        if min_significance:
            meta.arch_kwargs["min_significance"] = dict(min_significance)
    recalibrate = calibration is not None
    settings = dict(batch_size=int(eval_cfg["batch_size"]), n_bins=int(eval_cfg["metric_bins"]),
                    **(calibration or {}))
    if not meta.thresholds or recalibrate:
        meta.thresholds = calibrate_thresholds(package.net, meta, val_dir, **settings)
    for mode in tta_modes:
        if mode not in meta.tta_thresholds or recalibrate:
            meta.tta_thresholds[mode] = calibrate_thresholds(package.net, meta, val_dir,
                                                             tta=mode, **settings)
    with tempfile.TemporaryDirectory(prefix="mmx-release-") as tmp:
        staged = save_package(package.net, meta, Path(tmp) / "model")
        scored = evaluate({**eval_cfg, "log_to_mlflow": log_to_mlflow}, model_dir=staged,
                          test_dir=test_dir, results_dir=Path(tmp) / "results")
    meta.metrics = scored["metrics"]
    meta.provenance = {**meta.provenance, "release": True}
    out = save_package(package.net, meta, out)
    (Path(out) / "RELEASE.json").write_text(
        json.dumps({"weights_sha256": weights_sha256(out)}, indent=2) + "\n")
    return Path(out)
