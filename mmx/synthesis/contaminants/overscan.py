"""Overscan (OV): a strip of bias-only pixels along one edge of the cutout.

Model: a cutout taken at a CCD edge can include the serial prescan/overscan (left or
right) or the parallel overscan (top or bottom): pixels read out without any exposed
charge, so after bias subtraction they hold 0 ADU plus read noise. The noise is the
record's ``overscan_noise`` (measured in the real overscan by the clean stage; the
read noise otherwise) and the level a small residual of the bias fit (``offset``,
in units of that noise) with a faint line-to-line ripple (bias jitter). The strip is
``width`` px wide (prescans of 6-50 px, e.g. DECam 6 + 50, MegaCam 32, are typical).
Overscan pixels *replace* the sky: earlier labels and the ignore flag of the strip
no longer apply.
"""

from __future__ import annotations

import numpy as np

from mmx.synthesis.contaminants._core import Injection, _noise, _replace, _uniform

__all__ = ["inject_overscan"]


def inject_overscan(
    image: np.ndarray,
    *,
    record: dict,
    rng: np.random.Generator,
    width: list[float] = (6.0, 60.0),
    offset: list[float] = (-0.5, 0.5),
    ripple: list[float] = (0.0, 0.3),
) -> Injection:
    """Replace a strip along one random edge of the cutout by overscan pixels.

    Parameters
    ----------
    image : numpy.ndarray
        Cutout [ADU], not modified.
    record : dict
        Its record: ``overscan_noise`` [ADU] (else ``read_noise``).
    rng : numpy.random.Generator
        Source of every random draw.
    width : [float, float]
        Strip width [px], uniform.
    offset : [float, float]
        Residual bias level [units of the overscan noise].
    ripple : [float, float]
        Rms of the line-to-line bias jitter [units of the overscan noise].

    Returns
    -------
    Injection
        ``truth`` = the strip (``replaces`` is set).
    """
    ny, nx = image.shape
    sigma = float(record.get("overscan_noise") or record.get("read_noise") or _noise(record))
    edge = int(rng.integers(0, 4))  # 0 left, 1 right, 2 bottom, 3 top
    across = nx if edge < 2 else ny
    w = int(round(_uniform(rng, width, "OV width", low=1.0)))
    w = min(max(w, 1), across)
    level = _uniform(rng, offset, "OV offset") * sigma
    jitter = _uniform(rng, ripple, "OV ripple", low=0.0) * sigma
    keep = np.zeros(image.shape, dtype=bool)
    strip = [np.s_[:, :w], np.s_[:, nx - w:], np.s_[:w, :], np.s_[ny - w:, :]][edge]
    keep[strip] = True
    # serial overscan (left/right) jitters per row, parallel overscan per column
    lines = level + jitter * rng.standard_normal((ny, 1) if edge < 2 else (1, nx))
    values = lines + sigma * rng.standard_normal(image.shape)
    return _replace("OV", image, values, keep, replaces=True,
                    info={"edge": ["left", "right", "bottom", "top"][edge], "width": w})
