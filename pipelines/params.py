"""Read sections of the project's ``params.yaml`` (the single source of paths and settings)."""

from __future__ import annotations

from pathlib import Path

import yaml

__all__ = ["ROOT", "load_params", "section", "path"]

ROOT = Path(__file__).resolve().parent.parent


def load_params(file: Path = ROOT / "params.yaml") -> dict:
    """The whole parameter file as a dict."""
    return yaml.safe_load(file.read_text())


def section(name: str) -> dict:
    """One top-level section of ``params.yaml``."""
    return dict(load_params()[name])


def path(key: str) -> Path:
    """A path from the ``paths`` section, absolute under the project root."""
    return ROOT / load_params()["paths"][key]
