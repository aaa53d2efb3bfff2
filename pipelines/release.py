"""Make mmx's release model (``mmx/release/``): optionally fit it, then package it.

``python -m pipelines.release --fit --steps 8000 --minutes 100`` trains with the ``train``
section of params.yaml on the pipeline's synthesized splits (the same data path as the
default model), with a longer step budget and a wall-clock cap (and, if given, its own crop,
batch size, learning rate and starting weights), in its own checkpoint and model folders,
tracked in MLflow; then :func:`mmx.training.releasing.make_release` calibrates,
scores and writes the package. Without ``--fit`` an existing package (``--model``,
default ``paths.model``) is packaged; ``--recalibrate`` sets its thresholds anew from the
``train`` settings (``threshold_rule``, ``target_fpr``, ``class_target_fpr``) and gives it
the ``train.min_significance`` gate.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from mmx.tracking.registry import release_package_dir
from mmx.training.fit import train
from mmx.training.releasing import make_release
from pipelines import run_stage
from pipelines.params import ROOT, load_params, path, section

__all__ = ["main"]

log = logging.getLogger("mmx.release")


def _settings(parser: argparse.ArgumentParser, items: list[str], train: dict) -> dict:
    """``--set KEY=VALUE`` items as a dict of train settings (values parsed as YAML)."""
    import yaml

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in train:
            parser.error(f"--set {item!r}: expected KEY=VALUE with KEY a params.yaml train "
                         f"setting ({', '.join(sorted(train))})")
        out[key] = yaml.safe_load(value)
    return out


def main(argv: list[str] | None = None) -> None:
    """Fit (with ``--fit``) and write ``mmx/release`` (command-line entry)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=path("model"), help="model package")
    parser.add_argument("--val", type=Path, default=path("val"), help="validation shard set")
    parser.add_argument("--test", type=Path, default=path("test"), help="test shard set")
    parser.add_argument("--fit", action="store_true", help="train the release model first")
    parser.add_argument("--steps", type=int, default=8000, help="--fit: optimiser steps")
    parser.add_argument("--minutes", type=float, default=None,
                        help="--fit: wall-clock cap [min] (the schedule anneals within it)")
    parser.add_argument("--init", type=Path, default=None,
                        help="--fit: start from this package's weights (train.init_weights)")
    parser.add_argument("--crop", type=int, default=None,
                        help="--fit: training crop side [px] (default params.yaml train.crop)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="--fit: crops per step (default params.yaml train.batch_size)")
    parser.add_argument("--lr", type=float, default=None,
                        help="--fit: peak learning rate (default params.yaml train.lr)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="--fit: any other train setting, VALUE read as YAML (repeatable), "
                        "e.g. --set boundary_weight=5")
    parser.add_argument("--recalibrate", action="store_true",
                        help="recalibrate the thresholds (and set the significance gate) "
                        "with params.yaml train settings")
    parser.add_argument("--out", type=Path, default=release_package_dir(),
                        help="folder the release package is written to")
    args = parser.parse_args(argv)
    fit_only = {"--init": args.init, "--crop": args.crop, "--batch-size": args.batch_size,
                "--lr": args.lr, "--set": args.set or None}
    if not args.fit and any(v is not None for v in fit_only.values()):
        parser.error(f"{', '.join(k for k, v in fit_only.items() if v is not None)} "
                     "need --fit")
    model = args.model
    if args.fit:
        params = load_params()
        overrides = {"init_weights": str(args.init.resolve()) if args.init else None,
                     "crop": args.crop,
                     "batch_size": args.batch_size, "lr": args.lr}
        cfg = {**params["train"], "max_steps": args.steps, "max_time_min": args.minutes,
               "checkpoint_dir": "checkpoints/release", "progress_bar": False,
               **{k: v for k, v in overrides.items() if v is not None},
               **_settings(parser, args.set, params["train"])}
        model = ROOT / "models" / "release-fit"
        train(cfg, train_dir=path("train"), val_dir=args.val, model_dir=model,
              results_dir=ROOT / "results" / "release", root=ROOT, run_name="release",
              all_params={"paths": params["paths"], "train": cfg, "release": True})
    train_cfg = section("train")
    calibration = {"rule": train_cfg["threshold_rule"], "target_fpr": train_cfg["target_fpr"],
                   "class_target_fpr": train_cfg["class_target_fpr"]}
    out = make_release(model, val_dir=args.val, test_dir=args.test, out=args.out,
                       eval_cfg=section("evaluate"), log_to_mlflow=args.fit,
                       calibration=calibration if args.recalibrate else None,
                       min_significance=(dict(train_cfg.get("min_significance") or {})
                                         if args.recalibrate else None))
    size = sum(p.stat().st_size for p in out.iterdir()) / 1e6
    log.info("release model written to %s (%.1f MB)", out, size)


if __name__ == "__main__":
    run_stage(main, "release")
