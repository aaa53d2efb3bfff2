"""A PNG for a person: the image (asinh stretch) beside the same with its masks in colour.

The raw panel shows what the overlay hides.
Large images are reduced by an integer factor for display: the image by block mean (no-data
pixels left out), the masks by block maximum, so a one-pixel cosmic ray stays visible.
The legend gives each class's name and the fraction of pixels it flags.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from mmx.classes import by_abbr
from mmx.io.display import asinh_stretch, save_png

__all__ = ["NODATA_COLOR", "render_preview"]

NODATA_COLOR = "#000000"  #: colour of pixels with no valid input value
_ALPHA = 0.65


def _factor(shape: tuple[int, int], max_side: int) -> int:
    return max(1, -(-max(shape) // max_side))


def _reduce_mean(image: np.ndarray, f: int) -> np.ndarray:
    if f == 1:
        return image.astype(np.float64)
    h, w = (image.shape[0] // f) * f, (image.shape[1] // f) * f
    h, w = max(h, f), max(w, f)
    block = np.full((h, w), np.nan)
    sub = image[:h, :w]
    block[: sub.shape[0], : sub.shape[1]] = sub
    block = block.reshape(h // f, f, w // f, f)
    finite = np.isfinite(block)
    count = finite.sum(axis=(1, 3))
    total = np.where(finite, block, 0.0).sum(axis=(1, 3))
    out = np.full(count.shape, np.nan)
    np.divide(total, count, out=out, where=count > 0)
    return out


def _reduce_max(mask: np.ndarray, f: int) -> np.ndarray:
    if f == 1:
        return mask.astype(bool)
    h, w = (mask.shape[0] // f) * f, (mask.shape[1] // f) * f
    h, w = max(h, f), max(w, f)
    block = np.zeros((h, w), dtype=bool)
    sub = mask[:h, :w]
    block[: sub.shape[0], : sub.shape[1]] = sub
    return np.asarray(block.reshape(h // f, f, w // f, f).any(axis=(1, 3)))


def render_preview(
    image: np.ndarray,
    masks: Mapping[str, np.ndarray],
    path: str | Path,
    *,
    nodata: np.ndarray | None = None,
    title: str = "",
    max_side: int = 1200,
    dpi: int = 100,
) -> Path:
    """Write a PNG of ``image`` as it is (left) and with ``masks`` overlaid (right), with a legend.

    Parameters
    ----------
    image : numpy.ndarray
        2-D image in any units (NaN = no data).
    masks : mapping
        ``{abbr: bool array}`` of the image's shape, e.g.
        :meth:`mmx.serving.masks.MaskWriter.binary_planes`. BG is not drawn (it is the sky).
    path : str or Path
        PNG to write (atomically).
    nodata : numpy.ndarray, optional
        Pixels with no valid value, drawn in black.
    title : str
        Title above the image.
    max_side : int
        Longest side of each displayed panel in pixels; larger images are reduced.
    dpi : int
        Resolution of the PNG.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib import colors
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    image = np.asarray(image, dtype=np.float32)
    f = _factor(image.shape, max_side)
    shown = asinh_stretch(_reduce_mean(image, f))
    rgb = np.repeat(shown[..., None], 3, axis=2).astype(np.float32)
    handles = []
    clean = []
    n_pix = image.size
    for abbr, mask in masks.items():
        cls = by_abbr(abbr)
        if cls.abbr == "BG":
            continue
        mask = np.asarray(mask, dtype=bool)
        n_set = int(mask.sum())
        if not n_set:
            clean.append(cls.abbr)
            continue
        rgb_colour = colors.to_rgb(cls.colour)
        colour = np.array(rgb_colour, dtype=np.float32)
        small = _reduce_max(mask, f)
        rgb[small] = (1 - _ALPHA) * rgb[small] + _ALPHA * colour
        handles.append(Patch(facecolor=rgb_colour, edgecolor="grey",
                             label=f"{cls.abbr}: {cls.name} ({n_set / n_pix:.3%})"))
    if clean:
        handles.append(Patch(facecolor="none", edgecolor="none",
                             label=f"none flagged: {', '.join(clean)}"))
    if nodata is not None and np.any(nodata):
        rgb[_reduce_max(nodata, f)] = colors.to_rgb(NODATA_COLOR)
        handles.append(Patch(facecolor=NODATA_COLOR, edgecolor="grey",
                             label=f"no data ({np.mean(nodata):.3%})"))
    h, w = rgb.shape[:2]
    fig = Figure(figsize=(max(8.0, 2 * w / dpi), max(3.0, h / dpi)))
    raw, ax = fig.add_axes((0.0, 0.0, 0.49, 0.94)), fig.add_axes((0.51, 0.0, 0.49, 0.94))
    raw.imshow(shown, origin="lower", interpolation="nearest", cmap="gray", vmin=0.0, vmax=1.0)
    ax.imshow(rgb, origin="lower", interpolation="nearest")
    scale = f", shown reduced {f}x" if f > 1 else ""
    raw.set_title(f"{title} (image{scale})", fontsize=9)
    ax.set_title("masks", fontsize=9)
    for a in (raw, ax):
        a.set_axis_off()
    if handles:  # outside the image, on the right; the saved bounding box includes it
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8,
                  frameon=False)
    return save_png(fig, path, dpi=dpi)
