"""The release model shipped inside mmx: it loads, matches its record, and serves by default."""

import json
import math
import os
import shutil
import subprocess
import sys

import numpy as np

from mmx.classes import ABBREVIATIONS, label_bit
from mmx.io.shards import Sample, ShardWriter
from mmx.model.nets import build_network
from mmx.model.package import ModelMeta, load_package, save_package, weights_sha256
from mmx.tracking.registry import list_versions, release_package_dir, resolve_model
from mmx.training.releasing import make_release
from pipelines.run_all import ensure_release_registered


def test_shipped_release_matches_its_record():
    folder = release_package_dir()
    package = load_package(folder)  # builds the architecture and loads the weights
    meta = package.meta
    record = json.loads((folder / "RELEASE.json").read_text())
    assert weights_sha256(folder) == record["weights_sha256"]
    assert (folder / "weights.pt").stat().st_size < 5e6  # small enough for git
    assert tuple(meta.classes) == ABBREVIATIONS
    assert all(0 < meta.training_priors[c] < 1 for c in ABBREVIATIONS)
    assert meta.provenance["release"] and meta.provenance["git_commit"] != "unknown"
    assert meta.provenance["data_hash"] != "unknown"
    assert meta.params["train"]["architecture"] == meta.architecture
    for key in ("mean.auc", "mean.tpr_at_fpr_1e-3", "CR.tpr_at_fpr_1e-3"):
        assert math.isfinite(meta.metrics[key])
    for mode in ("flips", "dihedral"):  # mmx predict --tta has its own operating point
        assert set(meta.tta_thresholds[mode]) == set(meta.thresholds)


def test_empty_registry_falls_back_to_release():
    package = resolve_model(None)  # conftest points MLflow at an empty temporary store
    assert package.source == "mmx release model"


def test_main_job_registers_release_once_as_production():
    ensure_release_registered()
    ensure_release_registered()
    (version,) = list_versions("mmx")
    assert version.aliases == ("production",) and version.tags["source"] == "mmx release"


def _release_copy(folder, cr_threshold: float):
    """The shipped release with another CR threshold: a new release, same weights."""
    shutil.copytree(release_package_dir(), folder)
    meta = json.loads((folder / "mmx_model.json").read_text())
    meta["thresholds"]["CR"] = cr_threshold
    (folder / "mmx_model.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
    return folder


def test_a_new_release_replaces_an_older_one_in_production_not_a_users_model(
        tmp_path, monkeypatch):
    from mmx.tracking import registry

    ensure_release_registered()
    second = _release_copy(tmp_path / "r2", 0.05)
    monkeypatch.setattr(registry, "release_package_dir", lambda: second)
    ensure_release_registered()  # same weights, new thresholds: a new version, in production
    ensure_release_registered()
    new, old = list_versions("mmx")
    assert (new.version, new.aliases, old.aliases) == (2, ("production",), ())
    assert resolve_model("models:/mmx@production").meta.thresholds["CR"] == 0.05
    own = registry.register_package(_release_copy(tmp_path / "own", 0.2), name="mmx",
                                    tags={"source": "pipeline"})
    registry.promote("mmx", own.version, alias="production")  # the user's model
    third = _release_copy(tmp_path / "r3", 0.06)
    monkeypatch.setattr(registry, "release_package_dir", lambda: third)
    ensure_release_registered()
    newest, users = list_versions("mmx")[:2]
    assert (newest.version, newest.aliases, users.aliases) == (4, (), ("production",))


def _tiny_set(folder, rng):
    with ShardWriter(folder) as writer:
        for _ in range(3):
            image = rng.normal(100.0, 5.0, (48, 48)).astype(np.float32)
            labels = np.full((48, 48), label_bit("BG"), dtype=np.uint16)
            ys, xs = rng.integers(0, 48, 10), rng.integers(0, 48, 10)
            image[ys, xs] += 500.0
            labels[ys, xs] = label_bit("CR")
            writer.add(Sample(image, labels, np.zeros((48, 48), np.uint8)))
    return folder


def test_make_release_calibrates_scores_and_records(tmp_path, rng):
    net = build_network("unet", n_classes=14, widths=[4, 8])
    meta = ModelMeta(architecture="unet", arch_kwargs={"widths": [4, 8]},
                     training_priors=dict.fromkeys(ABBREVIATIONS, 0.05), tile=64, margin=8)
    model = save_package(net, meta, tmp_path / "model")
    out = make_release(model, val_dir=_tiny_set(tmp_path / "val", rng),
                       test_dir=_tiny_set(tmp_path / "test", rng), out=tmp_path / "release",
                       eval_cfg={"batch_size": 2, "metric_bins": 100, "num_threads": 1})
    released = load_package(out).meta
    assert "CR" in released.thresholds and "CR.auc" in released.metrics
    assert set(released.tta_thresholds) == {"flips", "dihedral"}
    assert all(0 < t < 1 for mode in released.tta_thresholds.values() for t in mode.values())
    # a Predictor with --tta uses its mode's thresholds; a model without them, the plain ones
    from mmx.serving.inference import Predictor

    flips = Predictor(load_package(out), classes=["CR"], precision="float32", tta="flips")
    assert flips.default_thresholds() == {"CR": released.tta_thresholds["flips"]["CR"]}
    released.tta_thresholds = {}
    save_package(load_package(out).net, released, tmp_path / "plain")
    plain = Predictor(load_package(tmp_path / "plain"), classes=["CR"], precision="float32",
                      tta="flips")
    assert plain.default_thresholds() == {"CR": released.thresholds["CR"]}
    assert released.provenance["release"] is True
    assert json.loads((out / "RELEASE.json").read_text())["weights_sha256"] == weights_sha256(out)


def test_make_release_sets_the_significance_gate_without_touching_weights(tmp_path, rng):
    net = build_network("unet", n_classes=14, widths=[4, 8])
    meta = ModelMeta(architecture="unet", arch_kwargs={"widths": [4, 8]},
                     training_priors=dict.fromkeys(ABBREVIATIONS, 0.05), tile=64, margin=8)
    model = save_package(net, meta, tmp_path / "model")
    val, test = _tiny_set(tmp_path / "val", rng), _tiny_set(tmp_path / "test", rng)
    kwargs = {"val_dir": val, "test_dir": test,
              "eval_cfg": {"batch_size": 2, "metric_bins": 100, "num_threads": 1},
              "calibration": {"rule": "fpr", "target_fpr": 1e-3}}
    gated = make_release(model, out=tmp_path / "gated", min_significance={"CR": 2.0}, **kwargs)
    package = load_package(gated)
    assert package.meta.arch_kwargs == {"widths": [4, 8], "min_significance": {"CR": 2.0}}
    assert package.net.min_significance == {"CR": 2.0}
    assert weights_sha256(gated) == weights_sha256(model)
    ungated = make_release(gated, out=tmp_path / "ungated", min_significance={}, **kwargs)
    assert load_package(ungated).meta.arch_kwargs == {"widths": [4, 8]}


def test_release_script_reports_bad_settings_in_one_line(tmp_path):
    out = tmp_path / "never-written"
    run = subprocess.run(
        [sys.executable, "-m", "pipelines.release", "--fit", "--steps", "1", "--minutes", "1",
         "--set", "freeze_batchnorm=true", "--out", str(out)],
        capture_output=True, text=True, cwd=tmp_path,
        env={**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'db.sqlite'}",
             "PYTHONPATH": str(release_package_dir().parents[1])})
    assert run.returncode == 1
    (line,) = run.stderr.strip().splitlines()
    assert "mmx.release: train.freeze_batchnorm: true keeps the BatchNorm statistics" in line
    assert not out.exists()
