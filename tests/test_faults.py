"""Faults of the machine and of the MLOps side: clear errors, nothing partial, batches go on.

Machine: no space left (a real per-process file-size limit, and a write patched to fail
part-way), a read-only or vanished output folder, an unreadable input. MLOps: damaged or
replaced weights, a pickle that would run code, broken metadata, a registry alias whose
version was deleted, missing registry artifacts, a corrupt sqlite store.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from typer.testing import CliRunner

from mmx.classes import ABBREVIATIONS, CLASSES
from mmx.errors import ModelError

torch = pytest.importorskip("torch")
nets = pytest.importorskip("mmx.model.nets")

import mmx.io.fitsio  # noqa: E402
from mmx.cli.app import app  # noqa: E402
from mmx.model.package import ModelMeta, load_package, save_package  # noqa: E402
from mmx.serving.inference import Predictor  # noqa: E402
from mmx.serving.predict import predict_files  # noqa: E402

runner = CliRunner()
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def model_dir(tiny_package):
    """A tiny random-weight U-Net package."""
    return tiny_package(4)


@pytest.fixture(scope="module")
def predictor(model_dir):
    return Predictor(load_package(model_dir), classes=["CR"], precision="float32", threads=1)


def _frames(folder: Path, rng: np.random.Generator, shapes) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, shape in enumerate(shapes):
        path = folder / f"f{i}.fits"
        fits.PrimaryHDU((100 + rng.normal(0, 5, shape)).astype(np.float32)).writeto(path)
        paths.append(path)
    return paths


def _no_partial(folder: Path) -> bool:
    return not list(folder.glob(".*.part")) if folder.exists() else True


# ------------------------------------------------------------------ machine faults


def test_disk_full_part_way_fails_cleanly_then_recovers(predictor, tmp_path, rng, monkeypatch):
    inputs = _frames(tmp_path / "in", rng, [(30, 40)] * 3)
    out = tmp_path / "out"

    def full(fd):
        os.write(fd, b"\0" * 4096)  # a part of the file reached the disk, then no space
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(mmx.io.fitsio.os, "fsync", full)
    report = predict_files(inputs, predictor, out_dir=out, log_path=False)
    assert len(report.failed) == 3  # every file tried, each a clear error
    assert "f0.mask.fits: cannot write (No space left on device; free space" in \
        report.failed[0].error
    assert list(out.iterdir()) == []
    monkeypatch.undo()
    report = predict_files(inputs, predictor, out_dir=out, log_path=False)
    assert len(report.outputs) == 3 and _no_partial(out)


def test_real_file_size_limit(model_dir, tmp_path, rng):
    """A process-wide RLIMIT_FSIZE: writes past it fail with EFBIG, as on a full disk."""
    small, big = _frames(tmp_path / "in", rng, [(20, 20), (400, 400)])
    out = tmp_path / "out"

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a kill
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))

    res = subprocess.run([BIN / "mmx", "predict", small, big, "--model", model_dir,
                          "--out-dir", out, "--log", tmp_path / "run.jsonl"],
                         capture_output=True, text=True, timeout=120, preexec_fn=limit)
    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stderr
    assert "f1.mask.fits: cannot write (" in res.stderr  # EFBIG, or astropy's short write
    assert "File too large" in res.stderr or "device may be full" in res.stderr
    assert "1 of 2 input(s) failed; 1 mask file(s) written" in res.stderr
    assert sorted(p.name for p in out.iterdir()) == ["f0.mask.fits"]
    status = [json.loads(x)["status"] for x in (tmp_path / "run.jsonl").read_text().splitlines()]
    assert sorted(status) == ["failed", "ok"]


def test_read_only_output_folder(predictor, tmp_path, rng, monkeypatch):
    inputs = _frames(tmp_path / "in", rng, [(30, 40)] * 2)

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(mmx.io.fitsio.tempfile, "mkstemp", read_only)
    report = predict_files(inputs, predictor, out_dir=tmp_path / "out", log_path=False)
    assert [r.status for r in report.results] == ["failed", "failed"]
    assert "Read-only file system; the file system is read-only; choose another --out-dir" in \
        report.results[0].error


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads and writes through permissions")
def test_permission_denied_folder_and_input(predictor, tmp_path, rng):
    a, b = _frames(tmp_path / "in", rng, [(30, 40)] * 2)
    a.chmod(0)
    report = predict_files([a, b], predictor, out_dir=tmp_path / "out", log_path=False)
    assert "f0.fits: cannot read (Permission denied" in report.results[0].error
    assert report.results[1].ok
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    report = predict_files([b], predictor, out_dir=locked, log_path=False)
    assert "cannot write (Permission denied; check the permissions" in report.results[0].error


def test_permission_denied_input(predictor, tmp_path, rng, monkeypatch):
    a, b = _frames(tmp_path / "in", rng, [(30, 40)] * 2)
    real_open = mmx.io.fitsio.fits.open

    def guarded(path, *args, **kwargs):
        if Path(path) == a:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(mmx.io.fitsio.fits, "open", guarded)
    report = predict_files([a, b], predictor, out_dir=tmp_path / "out", log_path=False)
    assert report.results[0].error == (f"{a}: cannot read (Permission denied; check the "
                                       "permissions); expected a readable FITS file")
    assert report.results[1].ok


def test_output_folder_vanishing_mid_batch(predictor, tmp_path, rng):
    inputs = _frames(tmp_path / "in", rng, [(30, 40)] * 3)
    out = tmp_path / "out"

    def vanish(result, done, total):
        if done == 1:
            shutil.rmtree(out)

    report = predict_files(inputs, predictor, out_dir=out, on_result=vanish, log_path=False)
    assert all(r.ok for r in report.results)
    assert sorted(p.name for p in out.iterdir()) == ["f1.mask.fits", "f2.mask.fits"]


def test_stale_part_of_a_killed_process_is_swept(predictor, tmp_path, rng):
    (a,) = _frames(tmp_path / "in", rng, [(30, 40)])
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    import socket

    stale = out / f".f0.mask.fits.{socket.gethostname()}-{dead.pid}.abc123.part"
    stale.write_bytes(b"half a file")
    alive = out / f".f0.mask.fits.{socket.gethostname()}-{os.getppid()}.abc123.part"
    alive.write_bytes(b"another run, still going")
    report = predict_files([a], predictor, out_dir=out, log_path=False)
    assert report.results[0].ok and not stale.exists() and alive.exists()


# ------------------------------------------------------------------ model and registry faults


def test_weights_not_matching_their_hash(model_dir, tmp_path):
    folder = shutil.copytree(model_dir, tmp_path / "m")
    other = nets.build_network("unet", n_classes=len(CLASSES), widths=[4, 8],
                               convs_per_level=1)
    torch.save(other.state_dict(), folder / "weights.pt")  # loads fine, but is not the model
    with pytest.raises(ModelError, match=r"weights.pt: SHA-256 .* does not match the .* "
                                         r"recorded in mmx_model.json; the weights are damaged"):
        load_package(folder)
    res = runner.invoke(app, ["predict", str(tmp_path), "--model", str(folder)])
    assert res.exit_code == 1 and len(res.stderr.strip().splitlines()) == 1


class _Payload:
    def __reduce__(self):
        return (Path.touch, (Path(os.environ["MMX_TEST_MARKER"]),))


def test_loading_never_runs_code_from_the_package(model_dir, tmp_path, monkeypatch):
    marker = tmp_path / "code-ran"
    monkeypatch.setenv("MMX_TEST_MARKER", str(marker))
    folder = shutil.copytree(model_dir, tmp_path / "m")
    with open(folder / "weights.pt", "wb") as handle:
        pickle.dump({"x": _Payload()}, handle)
    (folder / "model.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    meta = json.loads((folder / "mmx_model.json").read_text())
    meta["weights_sha256"] = ""  # as a package written before hashes were recorded
    (folder / "mmx_model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="not a plain tensor state dict .*never code"):
        load_package(folder)
    lazy = load_package(folder, lazy=True)  # as `mmx predict` loads: the weights read later
    with pytest.raises(ModelError, match="not a plain tensor state dict .*never code"):
        _ = lazy.net
    assert not marker.exists()


@pytest.mark.parametrize(("text", "message"), [
    ("{not json", "cannot read model metadata"),
    ("[1, 2]", "expected a JSON object, got list"),
    ('{"architecture": "unet", "arch_kwargs": {}, "evil": 1}', "unknown key"),
    ('{"architecture": "transformer", "arch_kwargs": {}}', "unknown architecture"),
    ('{"arch_kwargs": {}}', "incomplete model metadata"),
])
def test_broken_metadata(model_dir, tmp_path, text, message):
    folder = shutil.copytree(model_dir, tmp_path / "m")
    (folder / "mmx_model.json").write_text(text)
    with pytest.raises(ModelError, match=message):
        load_package(folder)


def _registered(tmp_path):
    from mmx.tracking.registry import promote, register_package

    uri = os.environ["MLFLOW_TRACKING_URI"]
    torch.manual_seed(0)
    net = nets.build_network("unet", n_classes=14, widths=[4, 8])
    meta = ModelMeta(architecture="unet", arch_kwargs={"widths": [4, 8]},
                     training_priors=dict.fromkeys(ABBREVIATIONS, 0.01), tile=64, margin=8)
    version = register_package(save_package(net, meta, tmp_path / "pkg"), tracking_uri=uri)
    promote("mmx", version.version, tracking_uri=uri)
    return uri


def _one_error(args) -> str:
    res = runner.invoke(app, ["predict", *map(str, args)])
    assert res.exit_code == 1, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mmx: error: "), res.stderr
    return lines[0]


def test_alias_of_a_deleted_version(tmp_path, rng):
    from mlflow import MlflowClient

    uri = _registered(tmp_path)
    MlflowClient(tracking_uri=uri).delete_model_version("mmx", "1")
    (frame,) = _frames(tmp_path / "in", rng, [(20, 20)])
    line = _one_error([frame, "--model", "models:/mmx@production"])
    assert "models:/mmx@production: not found" in line


def test_missing_registry_artifacts(tmp_path, rng):
    uri = _registered(tmp_path)
    shutil.rmtree(Path(uri.removeprefix("sqlite:///")).parent / "artifacts")
    (frame,) = _frames(tmp_path / "in", rng, [(20, 20)])
    line = _one_error([frame, "--model", "models:/mmx@production"])
    assert "models:/mmx@production: version 1" in line


def test_corrupt_sqlite_store(tmp_path, rng):
    uri = _registered(tmp_path)
    db = Path(uri.removeprefix("sqlite:///"))
    db.write_bytes(b"this is not an sqlite database" * 100)
    (frame,) = _frames(tmp_path / "in", rng, [(20, 20)])
    line = _one_error([frame, "--model", "models:/mmx@production"])
    assert f"cannot read the model registry at {uri}" in line
    assert not list(frame.parent.glob("*.mask.fits"))


@pytest.mark.parametrize("damage", ["not sqlite", "table dropped"])
def test_damaged_store_is_an_error_not_a_silent_fallback(tmp_path, rng, damage):
    """Plain ``mmx predict`` (no --model) never quietly masks with the release model instead."""
    import sqlite3

    from mmx.tracking.registry import release_package_dir

    uri = _registered(tmp_path)
    db = Path(uri.removeprefix("sqlite:///"))
    if damage == "not sqlite":
        db.write_bytes(b"this is not an sqlite database" * 100)
    else:  # opens, then MLflow's query fails, as on a damaged or half-migrated store
        con = sqlite3.connect(db)
        con.execute("DROP TABLE registered_model_aliases")
        con.commit()
        con.close()
    (frame,) = _frames(tmp_path / "in", rng, [(20, 20)])
    line = _one_error([frame])
    assert f"cannot read the model registry at {uri}" in line
    assert f"--model {release_package_dir()})" in line  # how to choose the release model
    assert not list(frame.parent.glob("*.mask.fits"))
