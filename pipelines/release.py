"""Ship a trained model as mmx's release model (``mmx/release/``).

Takes a model package (by default the pipeline's ``paths.model``), calibrates its
thresholds on the validation split if it has none, scores it on the test split, and
writes it into the package folder ``mmx/release`` with those figures and the SHA-256
of its weights, so that ``mmx predict`` works right after install and a test can check
the file against its record. The README states the command that made the shipped one.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from pathlib import Path

from mmx.calibration import calibrate_thresholds
from mmx.evaluation import evaluate
from mmx.model_package import load_package, save_package, weights_sha256
from mmx.registry import release_package_dir
from pipelines.params import path, section

__all__ = ["make_release", "main"]

log = logging.getLogger("mmx.release")


def make_release(model_dir: str | Path, *, val_dir: str | Path, test_dir: str | Path,
                 out: str | Path, eval_cfg: dict) -> Path:
    """Write the release package ``out`` from a trained package, with test figures."""
    package = load_package(model_dir)
    meta = package.meta
    if not meta.thresholds:
        meta.thresholds = calibrate_thresholds(package.net, meta, val_dir,
                                               batch_size=int(eval_cfg["batch_size"]),
                                               n_bins=int(eval_cfg["metric_bins"]))
    with tempfile.TemporaryDirectory(prefix="mmx-release-") as tmp:
        staged = save_package(package.net, meta, Path(tmp) / "model")
        scored = evaluate({**eval_cfg, "log_to_mlflow": False}, model_dir=staged,
                          test_dir=test_dir, results_dir=Path(tmp) / "results")
    meta.metrics = scored["metrics"]
    meta.provenance = {**meta.provenance, "release": True}
    out = save_package(package.net, meta, out)
    (Path(out) / "RELEASE.json").write_text(
        json.dumps({"weights_sha256": weights_sha256(out)}, indent=2) + "\n")
    return Path(out)


def main(argv: list[str] | None = None) -> None:
    """Write ``mmx/release`` from a trained package (command-line entry)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=path("model"), help="model package")
    parser.add_argument("--val", type=Path, default=path("val"), help="validation shard set")
    parser.add_argument("--test", type=Path, default=path("test"), help="test shard set")
    args = parser.parse_args(argv)
    out = make_release(args.model, val_dir=args.val, test_dir=args.test,
                       out=release_package_dir(), eval_cfg=section("evaluate"))
    size = sum(p.stat().st_size for p in out.iterdir()) / 1e6
    log.info("release model written to %s (%.1f MB)", out, size)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    main()
