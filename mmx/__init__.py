"""mmx: contaminant masks for astronomical images, and the MLOps system behind them.

The public API (:mod:`mmx.serving.api`) is loaded on first use, so ``import mmx`` stays light
(no torch, no astropy tables): ``from mmx import mask, Masker, clean_image``.
"""

__all__ = ["__version__", "Masker", "mask", "clean_image"]

__version__ = "0.1.0"

_API = frozenset({"Masker", "mask", "clean_image"})


def __getattr__(name: str):
    if name in _API:
        import importlib

        # importlib rather than ``from mmx import api``: the DVC stages import this package
        # but never use the API, so its modules are not part of their code dependencies
        # (tests/test_dvc_deps.py follows import statements).
        return getattr(importlib.import_module("mmx.serving.api"), name)
    raise AttributeError(f"module 'mmx' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _API)
