"""Files for people and for DVC from :class:`mmx.training.metrics.ClassCurves` results.

Long-format CSV curves (one row per class and point, for ``dvc plots``) and PNG figures
of the per-class ROC (log FPR axis, where masks are used) and TPR-vs-purity curves.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mmx.classes import ABBREVIATIONS, by_abbr
from mmx.io.atomic import atomic_write
from mmx.io.display import save_png

__all__ = ["write_rows_csv", "plot_roc", "plot_roc_overview", "plot_purity"]


def write_rows_csv(rows: Sequence[dict], path: str | Path, *, fields: Sequence[str]) -> Path:
    """Write dict rows as CSV with header ``fields`` (atomically, via a temporary file)."""
    def write(tmp: Path) -> None:
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(fields), lineterminator="\n")
            writer.writeheader()
            for row in rows:
                writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v)
                                 for k, v in row.items()})

    return atomic_write(path, write)


def _grid(n: int):
    import matplotlib.pyplot as plt

    cols = 4
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.8 * rows), squeeze=False,
                             layout="constrained")
    return fig, axes.ravel()


def plot_roc(
    result: dict, path: str | Path, *, classes: Sequence[str] = ABBREVIATIONS,
    fpr_floor: float = 1e-6,
) -> Path:
    """Per-class ROC curves (TPR against log FPR) with the default-threshold point."""
    fig, axes = _grid(len(classes))
    for i, (ax, abbr) in enumerate(zip(axes, classes, strict=False)):
        fpr = result["roc_fpr"][i].cpu().numpy()
        tpr = result["roc_tpr"][i].cpu().numpy()
        ok = np.isfinite(fpr) & np.isfinite(tpr)
        ax.set_title(abbr, fontsize=10)
        if not ok.any():
            ax.text(0.5, 0.5, "absent from test set", ha="center", va="center",
                    transform=ax.transAxes, fontsize=8)
        else:
            ax.plot(np.maximum(fpr[ok], fpr_floor), tpr[ok], lw=1.2)
            f0, t0 = float(result["fpr"][i]), float(result["tpr"][i])
            if np.isfinite(f0) and np.isfinite(t0):
                ax.plot(max(f0, fpr_floor), t0, "o", ms=4, color="C3")
            auc = float(result["auc"][i])
            ax.text(0.97, 0.05, f"AUC {auc:.4f}", ha="right", transform=ax.transAxes, fontsize=8)
        ax.set_xscale("log")
        ax.set_xlim(fpr_floor, 1.0)
        ax.set_ylim(0.0, 1.02)
        ax.grid(alpha=0.3)
    for ax in axes[len(classes):]:
        ax.axis("off")
    fig.supxlabel("false-positive rate")
    fig.supylabel("true-positive rate")
    fig.suptitle("ROC per class (dot: default threshold)")
    return save_png(fig, path)


def plot_purity(result: dict, path: str | Path, *, classes: Sequence[str] = ABBREVIATIONS) -> Path:
    """Per-class TPR-vs-purity curves with the default-threshold point."""
    fig, axes = _grid(len(classes))
    for i, (ax, abbr) in enumerate(zip(axes, classes, strict=False)):
        pur = result["curve_purity"][i].cpu().numpy()
        tpr = result["roc_tpr"][i].cpu().numpy()
        ok = np.isfinite(pur) & np.isfinite(tpr)
        ax.set_title(abbr, fontsize=10)
        if not ok.any():
            ax.text(0.5, 0.5, "absent from test set", ha="center", va="center",
                    transform=ax.transAxes, fontsize=8)
        else:
            ax.plot(pur[ok], tpr[ok], lw=1.2)
            p0, t0 = float(result["purity"][i]), float(result["tpr"][i])
            if np.isfinite(p0) and np.isfinite(t0):
                ax.plot(p0, t0, "o", ms=4, color="C3")
        ax.set_xlim(0.0, 1.02)
        ax.set_ylim(0.0, 1.02)
        ax.grid(alpha=0.3)
    for ax in axes[len(classes):]:
        ax.axis("off")
    fig.supxlabel("purity")
    fig.supylabel("true-positive rate")
    fig.suptitle("TPR against purity per class (dot: default threshold)")
    return save_png(fig, path)


def plot_roc_overview(
    result: dict, path: str | Path, *, classes: Sequence[str] = ABBREVIATIONS,
    fpr_floor: float = 1e-6,
) -> Path:
    """All classes' ROC curves on one log-FPR axis, one colour per class, dots at defaults."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5.0), layout="constrained")
    for i, abbr in enumerate(classes):
        fpr = result["roc_fpr"][i].cpu().numpy()
        tpr = result["roc_tpr"][i].cpu().numpy()
        ok = np.isfinite(fpr) & np.isfinite(tpr)
        if not ok.any():
            continue
        colour = by_abbr(abbr).colour
        ax.plot(np.maximum(fpr[ok], fpr_floor), tpr[ok], lw=1.3, color=colour,
                label=f"{abbr} (AUC {float(result['auc'][i]):.3f})")
        f0, t0 = float(result["fpr"][i]), float(result["tpr"][i])
        if np.isfinite(f0) and np.isfinite(t0):
            ax.plot(max(f0, fpr_floor), t0, "o", ms=4, color=colour)
    for x in (1e-4, 1e-3):
        ax.axvline(x, color="0.6", lw=0.8, ls=":")
    ax.set_xscale("log")
    ax.set_xlim(fpr_floor, 1.0)
    ax.set_ylim(0.0, 1.02)
    ax.grid(alpha=0.3)
    ax.set_xlabel("false-positive rate")
    ax.set_ylabel("true-positive rate")
    ax.set_title("ROC, all classes (dots: default thresholds; dotted: FPR 1e-4, 1e-3)")
    ax.legend(fontsize=7, ncol=2, loc="lower right")
    return save_png(fig, path)
