"""Side-by-side PNG previews of simulated raw CCDs next to real frames.

For eyeballing what the simulator still gets wrong: noise, PSF, source density and
saturation should be hard to tell apart from real survey data at the same stretch.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mmx.errors import InputError

__all__ = ["data_section", "parse_section", "preview_exposure"]


def parse_section(text: str) -> tuple[slice, slice]:
    """Turn an IRAF section ``[x1:x2,y1:y2]`` (1-based, inclusive) into numpy slices.

    Returns
    -------
    tuple of slice
        ``(rows, cols)`` to index a ``(ny, nx)`` array.

    Raises
    ------
    InputError
        If the text is not of that form.
    """
    try:
        xs, ys = str(text).strip().strip("[]").split(",")
        x1, x2 = (int(v) for v in xs.split(":"))
        y1, y2 = (int(v) for v in ys.split(":"))
    except ValueError:
        raise InputError(f"section {text!r} is not of the form [x1:x2,y1:y2]") from None
    return slice(y1 - 1, y2), slice(x1 - 1, x2)


def data_section(data: np.ndarray, header) -> np.ndarray:
    """The overscan-subtracted data section of a raw CCD (or ``data`` if no sections).

    The bias is the median of ``BIASSEC`` taken row by row.
    """
    data = np.asarray(data, dtype=np.float32)
    if "DATASEC" not in header:
        return data
    rows, cols = parse_section(header["DATASEC"])
    image = data[rows, cols]
    if "BIASSEC" in header:
        brows, bcols = parse_section(header["BIASSEC"])
        bias = np.median(data[brows, bcols], axis=1)
        image = image - bias[: image.shape[0], None]
    return image


def _crop(image: np.ndarray, size: int, centre: tuple[int, int] | None) -> np.ndarray:
    ny, nx = image.shape
    if centre is None:
        centre = (ny // 2, nx // 2)
    y0 = int(np.clip(centre[0] - size // 2, 0, max(ny - size, 0)))
    x0 = int(np.clip(centre[1] - size // 2, 0, max(nx - size, 0)))
    return image[y0:y0 + size, x0:x0 + size]


def _stretch(crop: np.ndarray) -> np.ndarray:
    """Asinh stretch from 5 sky sigmas below to 200 above the median sky.

    Tied to the sky rather than to percentiles, so that a frame full of saturated stars
    and an empty one show their sky and noise the same way.
    """
    from mmx.io.display import asinh_stretch

    finite = crop[np.isfinite(crop)]
    if finite.size:
        med = float(np.median(finite))
        sigma = max(1.4826 * float(np.median(np.abs(finite - med))), 1e-6)
        crop = np.clip(crop, med - 5.0 * sigma, med + 200.0 * sigma)
    return asinh_stretch(crop, low=0.0, high=100.0, softening=50.0)


def _brightest_saturated(image: np.ndarray, saturate: float | None) -> tuple[int, int] | None:
    if saturate is None:
        return None
    sat = image >= saturate
    if not sat.any():
        return None
    col_counts = sat.sum(axis=0)
    x = int(np.argmax(col_counts))
    ys = np.flatnonzero(sat[:, x])
    return int(np.median(ys)), x


def preview_exposure(
    path: str | Path, out: str | Path, *, hdu: int = 1, compare: Sequence[str | Path] = (),
    size: int = 512,
) -> Path:
    """Write a PNG: crops of one simulated CCD beside crops of real frames.

    Panels: the centre of the simulated CCD's data section (overscan subtracted), the
    region around its most bled saturated star when it has one, then the centre of
    each ``compare`` image, all asinh-stretched the same way
    (:func:`mmx.io.display.asinh_stretch` from -5 to +200 sky sigmas).

    Parameters
    ----------
    path
        A raw exposure written by :func:`mmx.surveys.simulate_survey` (or any FITS).
    out
        PNG to write.
    hdu
        Image HDU of ``path`` to show.
    compare
        Real frames to show alongside (first image HDU of each).
    size
        Side of each crop [px].

    Raises
    ------
    InputError
        If a file cannot be read or has no such HDU.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mmx.io.display import save_png
    from mmx.io.fitsio import InputSpec, read_images

    sim = read_images(InputSpec(Path(path), hdu))[0]
    image = data_section(sim.data, sim.header)
    panels = [(f"{Path(path).name}[{hdu}] {sim.name} (centre)", _crop(image, size, None))]
    saturate = sim.header.get("SATURATE")
    if saturate is not None and "BIASSEC" in sim.header:
        rows, cols = parse_section(sim.header["BIASSEC"])
        saturate = float(saturate) - float(np.median(sim.data[rows, cols]))
    star = _brightest_saturated(image, saturate)
    if star is not None:
        panels.append((f"{sim.name} around a saturated star", _crop(image, size, star)))
    for other in compare:
        real = read_images(other)[0]
        panels.append((f"{Path(other).name} (real)", _crop(real.data, size, None)))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 5.6), squeeze=False)
    for ax, (title, crop) in zip(axes[0], panels, strict=True):
        ax.imshow(_stretch(crop), origin="lower", cmap="gray", interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    header = sim.header
    band = header.get("BAND", header.get("FILTER", ""))
    fig.suptitle(f"{header.get('INSTRUME', '?')} {band} {header.get('EXPTIME', '?')} s, "
                 f"seeing {header.get('SEEING', '?')}\"", fontsize=11)
    return save_png(fig, out)
