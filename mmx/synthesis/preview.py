"""The synthesis preview: one example image per class, its truth and a zoom."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from scipy import ndimage

from mmx.classes import CLASSES, by_abbr
from mmx.io.shards import Sample

__all__ = ["save_preview"]

def _class_colours() -> np.ndarray:
    from matplotlib.colors import to_rgb

    return np.array([to_rgb(c.colour) for c in CLASSES])


def _truth_rgb(labels: np.ndarray) -> np.ndarray:
    colours = _class_colours()
    rgb = np.ones(labels.shape + (3,))
    # common classes first, so rarer ones are drawn on top
    for cls in sorted(CLASSES, key=lambda c: -c.maximask_prior):
        rgb[(labels & (1 << cls.index)) != 0] = colours[cls.index]
    return rgb


def save_preview(examples: Mapping[str, Sample], path: str | Path, *, zoom: int = 64) -> Path:
    """Write a PNG: per class, an example image, its truth, and a zoom on the class.

    Parameters
    ----------
    examples : dict
        Class abbreviation -> a synthesized sample showing it.
    path : str or Path
        PNG file to write.
    zoom : int
        Side of the zoomed crop [px].

    Returns
    -------
    Path
        The written file.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    from mmx.io.display import asinh_stretch, save_png

    items = list(examples.items())
    ncol = 2
    nrow = max(1, (len(items) + ncol - 1) // ncol)
    fig, axes = plt.subplots(nrow, 4 * ncol, figsize=(4 * ncol * 2.0, nrow * 2.15),
                             squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for k, (abbr, s) in enumerate(items):
        row, col = divmod(k, ncol)
        bit = 1 << by_abbr(abbr).index
        comp, n = ndimage.label((s.labels & bit) != 0, structure=np.ones((3, 3)))
        if n:
            biggest = int(np.argmax(np.bincount(comp.ravel())[1:])) + 1
            ys, xs = np.nonzero(comp == biggest)
            j = int(np.argmin(np.hypot(ys - ys.mean(), xs - xs.mean())))
            cy, cx = int(ys[j]), int(xs[j])
        else:
            cy, cx = s.image.shape[0] // 2, s.image.shape[1] // 2
        h = zoom // 2
        y0 = int(np.clip(cy - h, 0, max(s.image.shape[0] - zoom, 0)))
        x0 = int(np.clip(cx - h, 0, max(s.image.shape[1] - zoom, 0)))
        crop = np.s_[y0:y0 + zoom, x0:x0 + zoom]
        rgb = _truth_rgb(s.labels)
        shown = asinh_stretch(s.image)
        panels = [(shown, "gray"), (rgb, None), (shown[crop], "gray"), (rgb[crop], None)]
        for i, (data, cmap) in enumerate(panels):
            ax = axes[row, 4 * col + i]
            ax.imshow(data, cmap=cmap, origin="lower", interpolation="nearest", vmin=0, vmax=1)
        axes[row, 4 * col].set_title(f"{abbr}: " + "+".join(s.record.get("injected", [])),
                                     fontsize=7, loc="left")
        axes[row, 4 * col + 2].set_title(f"zoom {zoom}px", fontsize=7, loc="left")
        axes[row, 4 * col].add_patch(plt.Rectangle((x0, y0), zoom, zoom, fill=False,
                                                   color="yellow", lw=0.6))
    colours = _class_colours()
    handles = [Patch(color=colours[c.index], label=c.abbr) for c in CLASSES]
    handles.append(Patch(facecolor="white", edgecolor="black", label="no class (object core)"))
    fig.subplots_adjust(wspace=0.04, hspace=0.18, top=0.95, bottom=0.05, left=0.01,
                        right=0.99)
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=7,
               frameon=False, bbox_to_anchor=(0.5, 0.0))
    fig.suptitle("mmx synthesis, one training example per class: image (asinh) | truth | "
                 "zoom (yellow box) | zoom truth", fontsize=9)
    return save_png(fig, path, dpi=80)
