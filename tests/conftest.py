"""Shared fixtures: seeded generators, the real validation frames, an isolated environment."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

REAL_DIR = Path(__file__).resolve().parents[2] / "shared" / "real"


@pytest.fixture
def rng() -> np.random.Generator:
    """A fixed-seed generator, so a test never fails on a rare fluke."""
    return np.random.default_rng(12345)


@pytest.fixture
def real_dir() -> Path:
    """``../shared/real`` (real frames for validation); the test is skipped without it."""
    if not REAL_DIR.is_dir():
        pytest.skip(f"real frames not available at {REAL_DIR}")
    return REAL_DIR


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path):
    """No test may touch the MLflow store or model cache of the project or user; no analytics."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    monkeypatch.setenv("MMX_CACHE_DIR", str(tmp_path / "mmx-cache"))
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")


@pytest.fixture(scope="session")
def tiny_package(tmp_path_factory):
    """``tiny_package(seed)``: folder of a random-weight two-level U-Net package (fast; its
    masks mean nothing, which is all batch, fault and streaming tests need)."""

    def make(seed: int) -> Path:
        import torch

        from mmx.classes import CLASSES
        from mmx.model import nets
        from mmx.model.package import ModelMeta, save_package

        torch.manual_seed(seed)
        kwargs = {"widths": [4, 8], "convs_per_level": 1}
        net = nets.build_network("unet", n_classes=len(CLASSES), **kwargs).eval()
        meta = ModelMeta(architecture="unet", arch_kwargs=kwargs, tile=48,
                         margin=nets.receptive_field_margin(net),
                         training_priors={c.abbr: c.maximask_prior for c in CLASSES})
        return save_package(net, meta, tmp_path_factory.mktemp("model") / "tiny")

    return make
