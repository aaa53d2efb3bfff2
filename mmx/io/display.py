"""Pictures for people: asinh-stretched images and PNG files (matplotlib, no screen needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["asinh_stretch", "save_png"]


def asinh_stretch(
    image: np.ndarray, *, low: float = 0.5, high: float = 99.8, softening: float = 10.0
) -> np.ndarray:
    """Map an image to [0, 1] with an asinh stretch between two percentiles.

    Parameters
    ----------
    image : numpy.ndarray
        2-D image; non-finite pixels map to 0.
    low, high : float
        Percentiles (of finite pixels) mapped to 0 and 1 before the stretch.
    softening : float
        Strength of the asinh compression (larger shows fainter structure).
    """
    image = np.asarray(image, dtype=np.float64)
    finite = np.isfinite(image)
    if not finite.any():
        return np.zeros(image.shape, dtype=np.float32)
    lo, hi = np.percentile(image[finite], [low, high])
    scaled = np.clip((np.where(finite, image, lo) - lo) / max(hi - lo, 1e-12), 0.0, 1.0)
    return (np.arcsinh(softening * scaled) / np.arcsinh(softening)).astype(np.float32)


def save_png(figure, path: str | Path, *, dpi: int = 100) -> Path:
    """Save a matplotlib figure to ``path`` through a temporary file, then close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part.png")
    try:
        figure.savefig(tmp, dpi=dpi, bbox_inches="tight")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
        plt.close(figure)
    return path
