"""Survey-scale batches: bad entries, reruns, resume, HDU names, output clashes, Dask.

The Dask tests use real clusters: a ``LocalCluster`` of worker processes, and the command
line against a ``dask scheduler`` and a ``dask worker`` started as processes on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from typer.testing import CliRunner

from mmx.errors import ConfigError

torch = pytest.importorskip("torch")

from mmx.cli.app import app  # noqa: E402
from mmx.model.package import load_package  # noqa: E402
from mmx.serving.inference import Predictor  # noqa: E402
from mmx.serving.predict import options_fingerprint, predict_files  # noqa: E402

runner = CliRunner()
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def model_dir(tiny_package):
    """A tiny random-weight U-Net package."""
    return tiny_package(2)


@pytest.fixture(scope="module")
def predictor(model_dir):
    return Predictor(load_package(model_dir), classes=["CR", "HCL"], precision="float32",
                     threads=1)


def _frame(path: Path, rng: np.random.Generator, *, shape=(40, 56), aux: bool = False) -> Path:
    sci = (100 + rng.normal(0, 5, shape)).astype(np.float32)
    hdus = [fits.PrimaryHDU(), fits.ImageHDU(sci, name="SCI")]
    if aux:
        hdus += [fits.ImageHDU((sci > 105).astype(np.int16), name="DQ"),
                 fits.ImageHDU(np.full(shape, 5, np.float32), name="ERR"),
                 fits.ImageHDU(np.full(shape, 25, np.float32), name="VAR_POISSON")]
    path.parent.mkdir(parents=True, exist_ok=True)
    fits.HDUList(hdus).writeto(path)
    return path


@pytest.fixture
def night(tmp_path, rng):
    return [_frame(tmp_path / "night" / f"exp{i}.fits", rng) for i in range(4)]


def _cli(args):
    return runner.invoke(app, ["predict", *map(str, args)])


def _log(folder: Path) -> list[dict]:
    lines = []
    for path in sorted(folder.glob("mmx-predict-*.jsonl")):
        lines += [json.loads(x) for x in path.read_text().splitlines()]
    return lines


def test_list_with_missing_and_bad_entries_processes_the_rest(model_dir, night, tmp_path):
    listing = tmp_path / "night.list"
    listing.write_text(f"night/{night[0].name}\nmissing.fits\nnight/{night[1].name}[NOPE]\n"
                       f"night/{night[2].name}[SCI]\nnight/{night[3].name}[1]\n")
    res = _cli([listing, "--model", model_dir, "--classes", "CR", "--out-dir", tmp_path / "o"])
    assert res.exit_code == 1
    errors = [x for x in res.stderr.splitlines() if x.startswith("mmx: error: ")]
    assert any("missing.fits: no such file" in x for x in errors)
    assert any("exp1.fits[NOPE]: no HDU named NOPE; the file has 0, SCI,1" in x for x in errors)
    assert "2 of 5 input(s) failed; 3 mask file(s) written" in errors[-1]
    assert sorted(p.name for p in (tmp_path / "o").glob("*.fits")) == [
        "exp0.mask.fits", "exp2.SCI.mask.fits", "exp3.hdu1.mask.fits"]
    log = _log(tmp_path / "o")
    assert [r["status"] for r in log].count("ok") == 3 and len(log) == 5
    assert {"input", "output", "status", "seconds", "error"} <= set(log[0])


def test_folder_twice_never_masks_its_masks_and_resumes(model_dir, night, tmp_path):
    folder = night[0].parent
    res = _cli([folder, "--model", model_dir, "--classes", "CR"])
    assert res.exit_code == 0, res.output
    masks = sorted(folder.glob("*.mask.fits"))
    assert len(masks) == 4
    stamps = {p: (p.stat().st_mtime_ns, p.stat().st_ino) for p in masks}
    again = _cli([folder, "--model", model_dir, "--classes", "CR", "--skip-existing"])
    assert again.exit_code == 0, again.output
    assert "0 mask file(s), 4 skipped as already done" in again.stderr
    assert not list(folder.glob("*.mask.mask.fits"))
    assert {p: (p.stat().st_mtime_ns, p.stat().st_ino) for p in masks} == stamps
    # other options: the existing masks are not the ones asked for
    other = _cli([folder, "--model", model_dir, "--classes", "CR", "--threshold", "CR=0.2",
                  "--skip-existing"])
    assert other.exit_code == 1
    assert "exp0.mask.fits: output exists but was made with another model or options" in \
        other.stderr
    # a mask named as input is refused, by name
    own = _cli([masks[0], "--model", model_dir])
    assert own.exit_code == 1 and "is an mmx mask" in own.stderr


def test_fingerprint_follows_what_changes_the_mask(model_dir, predictor):
    fp = options_fingerprint(predictor, mode="bitmask")
    assert fp == options_fingerprint(predictor, mode="bitmask", thresholds={})
    assert fp != options_fingerprint(predictor, mode="binary")
    assert fp != options_fingerprint(predictor, mode="bitmask", thresholds={"CR": 0.3})
    assert fp != options_fingerprint(predictor, mode="bitmask", aux=True)
    other = Predictor(load_package(model_dir), classes=["CR"], precision="float32", threads=1)
    assert fp != options_fingerprint(other, mode="bitmask")
    sky = Predictor(load_package(model_dir), classes=["CR", "HCL"], precision="float32",
                    threads=1, padding="zero")
    assert fp != options_fingerprint(sky, mode="bitmask")
    views = Predictor(load_package(model_dir), classes=["CR", "HCL"], precision="float32",
                      threads=1, tta="flips")
    assert fp != options_fingerprint(views, mode="bitmask")


def test_aux_planes_are_copied_unless_selected(predictor, tmp_path, rng):
    path = _frame(tmp_path / "cal.fits", rng, aux=True)
    report = predict_files([path], predictor, out_dir=tmp_path / "o", log_path=False)
    assert report.failed == []
    with fits.open(path) as src, fits.open(report.outputs[0]) as out:
        assert [h.name for h in out] == ["PRIMARY", "SCI", "DQ", "ERR", "VAR_POISSON"]
        assert out["SCI"].data.dtype.kind == "i" and "MMXFPRNT" in out["SCI"].header
        for name in ("DQ", "ERR", "VAR_POISSON"):  # copied as they are, no provenance
            np.testing.assert_array_equal(out[name].data, src[name].data)
            assert "MMXMODE" not in out[name].header
    report = predict_files([f"{path}[DQ]"], predictor, out_dir=tmp_path / "o", log_path=False)
    assert report.outputs[0].name == "cal.DQ.mask.fits"
    with fits.open(report.outputs[0]) as out:
        assert out[1].header["MMXHDU"] == 2  # masked, because it was asked for
    report = predict_files([path], predictor, out_dir=tmp_path / "all", aux=True,
                           log_path=False)
    with fits.open(report.outputs[0]) as out:
        assert all("MMXMODE" in out[n].header for n in ("SCI", "DQ", "ERR", "VAR_POISSON"))


def test_output_clash_is_refused_before_anything_runs(predictor, tmp_path, rng):
    a = _frame(tmp_path / "a" / "x.fits", rng)
    b = _frame(tmp_path / "b" / "x.fits.gz", rng)
    with pytest.raises(ConfigError, match=r"a/x.fits, .*b/x.fits.gz would all write .*x.mask"):
        predict_files([a, b], predictor, out_dir=tmp_path / "o", overwrite=True)
    assert not (tmp_path / "o").exists()
    report = predict_files([a, a, tmp_path / "a"], predictor, out_dir=tmp_path / "o",
                           log_path=False)  # one input named three ways runs once
    assert len(report.results) == 1 and report.results[0].ok


def test_local_cluster_writes_the_same_masks(predictor, night, tmp_path):
    from mmx.serving.distributed import local_cluster

    here = predict_files(night, predictor, out_dir=tmp_path / "here", mode="prob",
                         log_path=False)
    seen = []
    with local_cluster(2, threads=1) as executor:
        there = predict_files(night + [tmp_path / "nope.fits"], predictor, mode="prob",
                              out_dir=tmp_path / "there", executor=executor,
                              on_result=lambda r, i, n: seen.append((r.status, i, n)))
    assert [r.status for r in there.results] == ["ok"] * 4 + ["failed"]
    assert sorted(seen)[-1][1:] == (5, 5)
    for a, b in zip(here.outputs, there.outputs, strict=True):
        with fits.open(a) as x, fits.open(b) as y:
            np.testing.assert_array_equal(x[1].data, y[1].data)
            assert x[1].header["MMXFPRNT"] == y[1].header["MMXFPRNT"]
    assert not list((tmp_path / "there").glob(".*.part"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def dask_cluster(tmp_path):
    """A `dask scheduler` and one `dask worker` process on 127.0.0.1, from this venv."""
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
    logs = tmp_path / "dask-logs"
    logs.mkdir()
    handles = [open(logs / name, "w") for name in ("scheduler.log", "worker.log")]  # noqa: SIM115
    procs = [subprocess.Popen([BIN / "dask", "scheduler", "--host", "127.0.0.1", "--port",
                               str(port), "--no-dashboard"], env=env, stdout=handles[0],
                              stderr=subprocess.STDOUT)]
    procs.append(subprocess.Popen([BIN / "dask", "worker", address, "--nthreads", "1",
                                   "--nworkers", "1", "--no-dashboard", "--host", "127.0.0.1"],
                                  env=env, stdout=handles[1], stderr=subprocess.STDOUT))
    try:
        yield address
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in reversed(procs):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for handle in handles:
            handle.close()


def _mmx(*args, **kw):
    return subprocess.run([BIN / "mmx", "predict", *map(str, args)], capture_output=True,
                          text=True, timeout=180, **kw)


def test_cli_against_a_real_dask_scheduler(model_dir, night, tmp_path, dask_cluster):
    local = _mmx(night[0].parent, "--model", model_dir, "--out-dir", tmp_path / "here")
    assert local.returncode == 0, local.stderr
    res = _mmx(night[0].parent, "--model", model_dir, "--out-dir", tmp_path / "there",
               "--scheduler", dask_cluster)
    assert res.returncode == 0, res.stderr
    assert "wrote 4 mask file(s), 0 skipped" in res.stderr
    for name in (f"exp{i}.mask.fits" for i in range(4)):
        with fits.open(tmp_path / "here" / name) as a, fits.open(tmp_path / "there" / name) as b:
            np.testing.assert_array_equal(a[1].data, b[1].data)
    again = _mmx(night[0].parent, "--model", model_dir, "--out-dir", tmp_path / "there",
                 "--scheduler", dask_cluster, "--skip-existing")
    assert again.returncode == 0 and "0 mask file(s), 4 skipped" in again.stderr


def test_cli_unreachable_scheduler_is_one_error(model_dir, night):
    res = _mmx(night[0], "--model", model_dir, "--scheduler",
               f"tcp://127.0.0.1:{_free_port()}", env={**os.environ,
                                                       "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT":
                                                       "2s"})
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert lines == [x for x in lines if x.startswith("mmx: error: cannot reach the Dask")]
    assert len(lines) == 1


def test_killed_run_resumes_without_redoing(model_dir, tmp_path, rng):
    folder = tmp_path / "many"
    for i in range(24):
        _frame(folder / f"f{i:02d}.fits", rng, shape=(300, 300))
    args = [folder, "--model", model_dir, "--classes", "CR", "--threads", "1"]
    proc = subprocess.Popen([BIN / "mmx", "predict", *map(str, args)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while len(list(folder.glob("*.mask.fits"))) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = {p.name: p.stat().st_mtime_ns for p in folder.glob("*.mask.fits")}
    assert 3 <= len(first) < 24, "the run finished before it could be killed"
    res = _mmx(*args, "--skip-existing")
    assert res.returncode == 0, res.stderr
    assert f"wrote {24 - len(first)} mask file(s), {len(first)} skipped" in res.stderr
    after = {p.name: p.stat().st_mtime_ns for p in folder.glob("*.mask.fits")}
    assert len(after) == 24 and all(after[n] == t for n, t in first.items())
    assert not list(folder.glob(".*.part"))  # a write cut by SIGKILL was swept on rewrite


def test_sigterm_leaves_nothing_partial(model_dir, tmp_path, rng):
    folder = tmp_path / "many"
    for i in range(24):
        _frame(folder / f"f{i:02d}.fits", rng, shape=(300, 300))
    proc = subprocess.Popen([BIN / "mmx", "predict", folder, "--model", model_dir, "--classes",
                             "CR", "--threads", "1"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while len(list(folder.glob("*.mask.fits"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "mmx: error: interrupted (SIGTERM)" in err and "Traceback" not in err
    assert not list(folder.glob(".*.part"))
    for mask in folder.glob("*.mask.fits"):  # every mask there is complete
        with fits.open(mask) as hdul:
            assert hdul[1].data.shape == (300, 300)
    shutil.rmtree(folder)


def test_no_log_when_nothing_could_run(model_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = _cli([tmp_path / "absent.fits", "--model", model_dir])
    assert res.exit_code == 1 and "absent.fits: no such file" in res.stderr
    assert not list(tmp_path.glob("*.jsonl"))


def test_dask_workers_rebuild_the_clients_arithmetic_path(model_dir, tmp_path, monkeypatch):
    """A worker runs the runtime, precision and tile the client resolved, not its own auto."""
    from mmx.model.package import package_payload
    from mmx.serving import runtimes
    from mmx.serving.distributed import PredictorSettings, _worker_predictor

    if not runtimes.onnxruntime_available():
        pytest.skip("onnxruntime not installed")
    monkeypatch.setenv("MMX_CACHE_DIR", str(tmp_path))
    client = Predictor(load_package(model_dir), runtime="onnxruntime", precision="float32",
                       threads=1, padding="zero", tta="dihedral")
    settings = PredictorSettings.of(client, threads=1)
    assert (settings.runtime, settings.precision, settings.padding, settings.tta) == \
        ("onnxruntime", "float32", "zero", "dihedral")
    worker = _worker_predictor(package_payload(client.package), settings, "k", {})
    assert worker.runtime.name == "onnxruntime/float32+dihedral"
    assert worker.settings.tile == client.settings.tile
    assert (worker.settings.padding, worker.settings.tta) == ("zero", "dihedral")
