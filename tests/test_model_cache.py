"""The registry's serving path: alias read without MLflow, verified cache, alias moves."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mmx.classes import ABBREVIATIONS
from mmx.errors import ModelError
from mmx.model.nets import build_network
from mmx.model.package import ModelMeta, save_package
from mmx.tracking import model_cache, registry
from mmx.tracking.registry import promote, register_package, resolve_model


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("MMX_CACHE_DIR", str(folder))
    return folder


def _package(tmp_path, name, seed):
    torch.manual_seed(seed)
    net = build_network("unet", n_classes=14, widths=[4, 8])
    meta = ModelMeta(architecture="unet", arch_kwargs={"widths": [4, 8]},
                     training_priors=dict.fromkeys(ABBREVIATIONS, 0.01), tile=64, margin=8)
    return save_package(net, meta, tmp_path / name), net


def _same(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture
def store(tmp_path, cache):
    """A sqlite store with two versions, v1 @production."""
    uri = os.environ["MLFLOW_TRACKING_URI"]
    (f1, n1), (f2, n2) = _package(tmp_path, "m1", 0), _package(tmp_path, "m2", 1)
    register_package(f1, tracking_uri=uri)
    register_package(f2, tracking_uri=uri)
    promote("mmx", 1, tracking_uri=uri)
    return uri, n1, n2


def test_alias_is_read_from_sqlite_and_follows_moves(store, cache):
    uri, net1, net2 = store
    got = resolve_model("models:/mmx@production", tracking_uri=uri)
    assert _same(got.net, net1) and got.registry["version"] == 1
    assert Path(got.registry["cache"]).parent == cache / "packages"
    promote("mmx", 2, tracking_uri=uri)  # the alias moves: the next call sees it
    got = resolve_model("models:/mmx@production", tracking_uri=uri)
    assert _same(got.net, net2) and got.registry["version"] == 2
    assert _same(resolve_model(None, tracking_uri=uri).net, net2)
    assert _same(resolve_model("models:/mmx/1", tracking_uri=uri).net, net1)
    assert len(list((cache / "packages").iterdir())) == 2


def test_cached_weights_are_verified(store, cache):
    uri, net1, _ = store
    folder = Path(resolve_model("models:/mmx@production", tracking_uri=uri).registry["cache"])
    state = torch.load(folder / "weights.pt", weights_only=True)
    state[next(iter(state))].add_(1.0)  # a corrupted (or tampered) copy
    torch.save(state, folder / "weights.pt")
    assert _same(resolve_model("models:/mmx@production", tracking_uri=uri).net, net1)


def test_a_rebuilt_store_is_not_served_from_a_stale_entry(store, cache):
    uri, net1, _ = store
    resolve_model("models:/mmx@production", tracking_uri=uri)
    record = registry._read_version_sqlite(uri, "mmx", None, "production")
    assert model_cache.lookup(record) is not None
    other = model_cache.CacheRecord(uri, "mmx", 1, "another-run", record.storage_location)
    assert model_cache.lookup(other) is None


def test_remote_artifacts_are_fetched_through_mlflow_once(store, cache, monkeypatch):
    uri, net1, _ = store
    monkeypatch.setattr(registry, "_local_artifacts", lambda location: None)
    assert _same(resolve_model("models:/mmx@production", tracking_uri=uri).net, net1)
    calls = []
    monkeypatch.setattr(registry, "_fetch_into_cache", lambda *a: calls.append(a))
    assert _same(resolve_model("models:/mmx@production", tracking_uri=uri).net, net1)
    assert calls == []  # the second call is a cache hit


def test_unknown_alias_names_what_exists(store):
    uri, _, _ = store
    with pytest.raises(ModelError, match=r"models:/mmx@nope: not found .*v2; v1 @production"):
        resolve_model("models:/mmx@nope", tracking_uri=uri)
    with pytest.raises(ModelError, match="not found"):
        resolve_model("models:/mmx/7", tracking_uri=uri)


def test_serving_from_the_registry_does_not_import_mlflow(store, cache, tmp_path):
    """``mmx predict`` through the production alias: a mask, and MLflow never imported."""
    import numpy as np
    from astropy.io import fits

    uri, _, _ = store
    image = tmp_path / "small.fits"
    fits.PrimaryHDU(np.random.default_rng(0).normal(100, 5, (64, 64)).astype("f4")).writeto(image)
    code = ("import sys; from typer.testing import CliRunner; from mmx.cli.app import app; "
            f"r = CliRunner().invoke(app, ['predict', {str(image)!r}, '--overwrite']); "
            "print(r.exit_code, 'mlflow' in sys.modules)")
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MMX_CACHE_DIR": str(cache)}
    for _ in range(2):  # first call fills the cache from the local artifacts, second hits it
        out = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path,
                             capture_output=True, text=True, check=True).stdout
        assert out.split()[-2:] == ["0", "False"]
    header = fits.getheader(tmp_path / "small.mask.fits")
    assert header["MMXMVER"] == "1" and header["MMXALIAS"] == "production"
