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
