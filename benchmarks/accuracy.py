"""Accuracy of mmx against MaxiMask, deepCR and astroscrappy, on the same frames, in one run.

1. Peers in their own environments under ``--envs`` (created and filled when absent):
   MaxiMask 1.4.1 (``pip install maximask``, TensorFlow), deepCR 0.3.1 (``pip install
   torch==2.13.0 deepcr matplotlib astropy``); astroscrappy runs in mmx's own venv. A peer
   that cannot be installed is skipped and the report says so (:func:`setup_tools`).
2. First, real skies held out from training (``benchmarks/real_skies.py``,
   :func:`benchmarks.real_skies.real_sky_section`): held-out real frames with injected
   contaminants (exact truth), the real labelled cases (WFPC2 against L.A.Cosmic, the
   clean DECam/Mosaic3 frames, the Dyer hot columns, the CTIO saturated star), hard
   negatives and absent classes. Skipped when the real frames are absent.
3. Second, in-distribution: mmx's held-out synthesized test set (``derived/test``, exact
   truth and ignore planes), made by the simulator mmx trains on. MaxiMask only processes
   images whose sides both exceed 400 px, so the 400x400 test cutouts are reassembled
   into larger frames (:func:`assemble_frames`): cutouts of one CCD go back to their own
   places on the detector, so each frame is a contiguous piece of a real CCD (sky, noise
   and stars continuous across cutout borders); cells of the bounding box with no test
   cutout are filled with sky noise and ignored. Every tool gets the same frames; ignored
   pixels are left out of every count. Per class: TPR at FPR = 1e-3 and 1e-4, AUC, and
   TPR/FPR/purity at each tool's default operating point.
4. Wall time, CPU time and peak memory of each tool on the same frames
   (:func:`toolrun.measure`).
5. Writes ``benchmarks/out/accuracy.md`` with tables and PNG figures beside it.

How each tool runs (its defaults, as users run it):

* mmx: ``mmx predict FRAMES --mode prob`` (default prior correction): float32
  probabilities per class; its default operating point is the model's stored thresholds,
  which ``mmx predict`` uses for binary masks.
* MaxiMask: ``maximask FRAMES --proba_thresh False`` (its default prior correction, float32
  probabilities); its default operating point is its own default thresholds (the class
  table) applied to those probabilities, exactly what it does when thresholding.
* deepCR: ``clean(image_in_electrons, binary=False)``, threshold 0.5 (its default); models
  ``ACS-WFC`` (deepCR's default) and ``decam`` (its ground-based model).
* astroscrappy (L.A.Cosmic): ``detect_cosmics`` with its defaults and the frame's gain,
  read noise and saturation: a binary mask, one operating point.

Run ``.venv/bin/python benchmarks/accuracy.py --help``; see ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import re
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(ROOT))

from benchmarks.toolrun import (  # noqa: E402
    DEEPCR_PACKAGES,
    MAXIMASK_PACKAGES,
    Peer,
    Usage,
    ensure_venv,
    maximask_command,
    measure,
    quiet_env,
)

__all__ = [
    "TestFrame",
    "Tool",
    "assemble_frames",
    "point_stats",
    "tpr_at_purity",
    "disagreement_windows",
    "saturation_plateau",
    "make_tools",
    "input_digests",
    "run_tool",
    "add_tool_arguments",
    "setup_tools",
    "main",
]

log = logging.getLogger("benchmarks.accuracy")

OUT = ROOT / "benchmarks" / "out"
#: key of a tool's command line in its ``*.inputs.json`` (beside the frames' SHA-256)
COMMAND_KEY = "command line"
REAL = ROOT / "../shared/real"  # params.yaml real.source (MMX_REAL_DIR or --real override it)
REAL = Path(os.environ.get("MMX_REAL_DIR") or REAL)
WFPC2 = "hst_wfpc2_u3060301m_wf3_F814W_MS1137.fits"
WFPC2_LAC = "hst_wfpc2_u3060301m_wf3_F814W_MS1137_lacosmic_iraf_mask.fits"
FPR_POINTS = (1e-3, 1e-4)


# ----------------------------------------------------------------------------- test frames
@dataclass
class TestFrame:
    """A test frame reassembled from cutouts, with its truth.

    Attributes
    ----------
    name : str
        File stem.
    image : numpy.ndarray
        float32 ``(H, W)``, ADU above bias.
    labels : numpy.ndarray
        uint16 truth bits (class ``k`` is bit ``1 << k``).
    ignore : numpy.ndarray
        uint8, 1 where truth is unknown (and in filler cells).
    members : list of int
        Indices of the cutouts used, in the shard set.
    record : dict
        ``instrument``, ``gain`` [e-/ADU], ``read_noise`` [ADU], ``saturate`` [ADU],
        ``contiguous`` (cutouts at their detector places), ``filler_cells``.
    """

    name: str
    image: np.ndarray
    labels: np.ndarray
    ignore: np.ndarray
    members: list[int]
    record: dict = field(default_factory=dict)


def _grid_cells(records: Sequence[dict], h: int, w: int) -> list[tuple[int, int]] | None:
    """Detector grid cell ``(row, col)`` of each cutout, or None if they do not tile a grid."""
    try:
        ys = [int(r["y0"]) for r in records]
        xs = [int(r["x0"]) for r in records]
    except (KeyError, TypeError, ValueError):
        return None
    y_min, x_min = min(ys), min(xs)
    if any((y - y_min) % h or (x - x_min) % w for y, x in zip(ys, xs, strict=True)):
        return None
    cells = [((y - y_min) // h, (x - x_min) // w) for y, x in zip(ys, xs, strict=True)]
    return cells if len(set(cells)) == len(cells) else None


def assemble_frames(
    samples: Sequence, *, rng: np.random.Generator, max_filler: float = 0.5
) -> list[TestFrame]:
    """Reassemble 2-D cutouts into frames whose sides both exceed one cutout's.

    Cutouts are grouped by ``(instrument, exposure, ccd)`` of their records. When a group's
    ``x0``/``y0`` put its cutouts on a grid of cutout-sized cells without collisions and
    at most ``max_filler`` of the bounding box is empty, each goes to its own place on the
    detector (a contiguous piece of the CCD); otherwise the group is packed row by row
    into a near-square grid. Empty cells, and an extra row or column where a group has a
    single row or column, are filled with Gaussian sky noise (the group's mean ``sky``
    and ``sky_noise``) and marked ignored: they count in no metric.

    Parameters
    ----------
    samples : sequence of mmx.io.shards.Sample
        Cutouts of one shape with truth bits, ignore plane and record.
    rng : numpy.random.Generator
        For the filler noise.
    max_filler : float
        Largest empty fraction of a detector-grid bounding box before falling back to
        packing.

    Returns
    -------
    list of TestFrame
        One frame per group, in the order groups first appear.

    Raises
    ------
    ValueError
        If the cutouts do not all have one 2-D shape.
    """
    if not len(samples):
        return []
    shape = np.shape(samples[0].image)
    if len(shape) != 2:
        raise ValueError(f"cutouts must be 2-D images, got shape {shape}")
    groups: dict[tuple, list[int]] = {}
    for i, s in enumerate(samples):
        if np.shape(s.image) != shape:
            raise ValueError(f"cutout {i} has shape {np.shape(s.image)}, expected {shape} "
                             "like the first one")
        rec = s.record or {}
        key = (rec.get("instrument", "?"), rec.get("exposure", "?"), rec.get("ccd", "?"))
        groups.setdefault(key, []).append(i)
    h, w = shape
    frames = []
    for key, members in groups.items():
        records = [samples[i].record or {} for i in members]
        cells = _grid_cells(records, h, w)
        contiguous = cells is not None
        if cells is not None:
            n_rows = max(r for r, _ in cells) + 1
            n_cols = max(c for _, c in cells) + 1
            if 1 - len(cells) / (max(n_rows, 2) * max(n_cols, 2)) > max_filler:
                cells, contiguous = None, False
        if cells is None:
            n_cols = max(2, math.ceil(math.sqrt(len(members))))
            cells = [(k // n_cols, k % n_cols) for k in range(len(members))]
        n_rows = max(2, max(r for r, _ in cells) + 1)
        n_cols = max(2, max(c for _, c in cells) + 1)
        sky = float(np.mean([r.get("sky", 0.0) for r in records]))
        noise = float(np.mean([r.get("sky_noise", 1.0) for r in records]))
        image = rng.normal(sky, noise, size=(n_rows * h, n_cols * w)).astype(np.float32)
        labels = np.zeros(image.shape, dtype=np.uint16)
        ignore = np.ones(image.shape, dtype=np.uint8)
        for (r, c), i in zip(cells, members, strict=True):
            sl = (slice(r * h, (r + 1) * h), slice(c * w, (c + 1) * w))
            image[sl] = samples[i].image
            labels[sl] = samples[i].labels
            ignore[sl] = samples[i].ignore
        # a file name every tool takes literally: no "[N]" (an HDU selector), no "/", no
        # ".fits" inside (MaxiMask names its output by replacing every ".fits")
        name = re.sub(r"[^A-Za-z0-9_-]+", "_", "-".join(str(k) for k in key))
        frames.append(TestFrame(
            name=name, image=image, labels=labels, ignore=ignore, members=list(members),
            record={
                "instrument": key[0], "exposure": key[1], "ccd": key[2],
                "gain": float(np.median([r.get("gain", 1.0) for r in records])),
                "read_noise": float(np.median([r.get("read_noise", 5.0) for r in records])),
                "saturate": float(np.median([r.get("saturate", 65535.0) for r in records])),
                "contiguous": contiguous, "filler_cells": n_rows * n_cols - len(members),
                "grid": [n_rows, n_cols],
            }))
    return frames


def _write_frame(path: Path, image: np.ndarray, **keys: object) -> Path:
    from astropy.io import fits

    header = fits.Header()
    for key, value in keys.items():
        header[key] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    fits.PrimaryHDU(np.asarray(image, dtype=np.float32), header).writeto(path, overwrite=True)
    return path


# ----------------------------------------------------------------------------- scoring
def point_stats(predicted: np.ndarray, truth: np.ndarray, valid: np.ndarray | None = None
                ) -> dict[str, float]:
    """TP, FP, FN, TN counts and TPR, FPR, purity of a binary prediction.

    Parameters
    ----------
    predicted, truth : numpy.ndarray
        Boolean maps of one shape.
    valid : numpy.ndarray, optional
        Pixels to count (default all).

    Returns
    -------
    dict
        ``tp``, ``fp``, ``fn``, ``tn``, ``tpr``, ``fpr``, ``purity`` (NaN when undefined).
    """
    predicted, truth = np.asarray(predicted, bool), np.asarray(truth, bool)
    if predicted.shape != truth.shape:
        raise ValueError(f"prediction shape {predicted.shape} differs from truth "
                         f"{truth.shape}")
    valid = np.ones(truth.shape, bool) if valid is None else np.asarray(valid, bool)
    p, t = predicted[valid], truth[valid]
    tp = int(np.count_nonzero(p & t))
    fp = int(np.count_nonzero(p & ~t))
    fn = int(np.count_nonzero(~p & t))
    tn = int(p.size - tp - fp - fn)
    nan = float("nan")
    return {"tp": tp, "fp": fp, "fn": fn, "tn": tn,
            "tpr": tp / (tp + fn) if tp + fn else nan,
            "fpr": fp / (fp + tn) if fp + tn else nan,
            "purity": tp / (tp + fp) if tp + fp else nan}


def tpr_at_purity(tpr: np.ndarray, purity: np.ndarray, level: float) -> float:
    """Largest TPR on a curve among points whose purity is at least ``level``.

    Parameters
    ----------
    tpr, purity : numpy.ndarray
        One curve (points in any order; NaN points are skipped).
    level : float
        Purity required, in [0, 1].

    Returns
    -------
    float
        0 when no point reaches ``level``; NaN when the curve has no finite point.
    """
    tpr, purity = np.asarray(tpr, float), np.asarray(purity, float)
    keep = np.isfinite(tpr) & np.isfinite(purity)
    if not keep.any():
        return float("nan")
    ok = keep & (purity >= level)
    return float(tpr[ok].max()) if ok.any() else 0.0


def _curves(n_classes: int, thresholds: Sequence[float]):
    from mmx.training.metrics import ClassCurves

    return ClassCurves(n_classes=n_classes, thresholds=list(thresholds),
                       fpr_points=FPR_POINTS)


def _update(curves, probs: np.ndarray, labels: np.ndarray, ignore: np.ndarray,
            *, rows: int = 256) -> None:
    """Add one image's probabilities ``(C, H, W)`` to ``curves`` in strips of ``rows``."""
    import torch

    for y in range(0, probs.shape[1], rows):
        p = torch.from_numpy(np.ascontiguousarray(probs[:, y:y + rows], dtype=np.float32))
        z = torch.logit(p).unsqueeze(0)  # 0 -> -inf, 1 -> +inf: the end bins
        curves.update(z, torch.from_numpy(labels[None, y:y + rows].astype(np.int32)),
                      torch.from_numpy(ignore[None, y:y + rows]))


def _result(curves) -> dict[str, np.ndarray]:
    # torchmetrics squeezes one-element results to 0-d: a one-class metric needs them 1-d
    return {k: np.atleast_1d(v.detach().cpu().numpy()) for k, v in curves.compute().items()}


# ----------------------------------------------------------------------------- tools
@dataclass
class Tool:
    """One tool as run here.

    Attributes
    ----------
    key : str
        Short name (folder names).
    label : str
        Name in the report.
    classes : tuple of str
        Classes it outputs, in plane order.
    thresholds : dict
        Its default probability threshold per class.
    binary : bool
        Outputs a binary mask only (one operating point).
    command : callable
        ``(frames_dir, frame_paths, out_dir) -> argv``.
    output : callable
        ``(frame_path, out_dir) -> output file``.
    available : bool
        False when its environment could not be set up.
    note : str
        Why it is skipped, or where it runs.
    """

    key: str
    label: str
    classes: tuple[str, ...]
    thresholds: dict[str, float]
    binary: bool
    command: Callable[[Path, list[Path], Path], list[str]]
    output: Callable[[Path, Path], Path]
    available: bool = True
    note: str = ""
    stage_inputs: bool = False  # the tool writes next to its inputs: give it copies


def _stem(path: Path) -> str:
    return path.name.removesuffix(".fits")


def _read_probs(tool: Tool, path: Path) -> tuple[np.ndarray, tuple[str, ...]]:
    """Probability planes ``(K, H, W)`` float32 of a tool's output and their classes."""
    from astropy.io import fits

    with fits.open(path) as hdul:
        hdu = hdul[0]
        data = np.asarray(hdu.data, dtype=np.float32)
        header = hdu.header
    if data.ndim == 2:
        data = data[None]
    if tool.key == "mmx":  # planes named PLANEk; the last is NODATA
        names = [str(header.get(f"PLANE{k + 1}", "")) for k in range(data.shape[0])]
        keep = [k for k, n in enumerate(names) if n in tool.classes]
        return data[keep], tuple(names[k] for k in keep)
    if data.shape[0] != len(tool.classes):
        raise ValueError(f"{path}: {data.shape[0]} planes, expected {len(tool.classes)} "
                         f"({', '.join(tool.classes)}) from {tool.label}")
    return data, tool.classes


def make_tools(*, model: str, peers: dict[str, Peer], maximask_batch: int = 8,
               tta: str = "none") -> list[Tool]:
    """The tools compared, with their default thresholds and command lines.

    ``tta`` is mmx's ``--tta`` (test-time augmentation); the peers run as they come.
    """
    from mmx.classes import ABBREVIATIONS, CLASSES
    from mmx.model.thresholds import default_thresholds
    from mmx.tracking.registry import resolve_model

    defaults = {c.abbr: c.threshold for c in CLASSES}
    # mmx's default operating point: the model's calibrated thresholds, as `mmx predict` uses
    meta = resolve_model(model).meta
    mmx_thresholds = {**defaults, **dict(zip(meta.classes, map(float, default_thresholds(
        meta, meta.classes, tta=tta)), strict=True))}
    runner = str(ROOT / "benchmarks" / "peer_runners.py")
    tools = [Tool(
        "mmx", "mmx", ABBREVIATIONS, mmx_thresholds, False,
        lambda d, fr, o: [sys.executable, "-m", "mmx", "predict", str(d), "--model", model,
                          "--mode", "prob", "--out-dir", str(o), "--overwrite", "--tta", tta],
        lambda f, o: o / f"{_stem(f)}.mask.fits",
        note=f"model {model}" + (f" with --tta {tta}" if tta != "none" else ""))]
    mm = peers["maximask"]
    tools.append(Tool(
        "maximask", "MaxiMask 1.4.1", ABBREVIATIONS, defaults, False,
        lambda d, fr, o: maximask_command(mm.python, o, probabilities=True,
                                          batch_size=maximask_batch),
        lambda f, o: o / f"{_stem(f)}.mask.fits", available=mm.ok, note=mm.note,
        stage_inputs=True))
    dc = peers["deepcr"]
    for model_name in ("ACS-WFC", "decam"):
        tools.append(Tool(
            f"deepcr-{model_name}", f"deepCR 0.3.1 {model_name}", ("CR",), {"CR": 0.5}, False,
            lambda d, fr, o, m=model_name: [str(dc.python), runner, "deepcr", "--model", m,
                                            "--out-dir", str(o), *map(str, fr)],
            lambda f, o, m=model_name: o / f"{_stem(f)}.deepcr-{m}.fits",
            available=dc.ok, note=dc.note))
    sc = peers["astroscrappy"]
    tools.append(Tool(
        "astroscrappy", "astroscrappy 1.3 (L.A.Cosmic)", ("CR",), {"CR": 0.5}, True,
        lambda d, fr, o: [str(sc.python), runner, "astroscrappy", "--out-dir", str(o),
                          *map(str, fr)],
        lambda f, o: o / f"{_stem(f)}.astroscrappy.fits", available=sc.ok, note=sc.note))
    return tools


def input_digests(frames: Sequence[Path]) -> dict[str, str]:
    """SHA-256 of each frame's bytes, by file name (what a tool's outputs were made from)."""
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in frames}


def run_tool(tool: Tool, frames: list[Path], work: Path, *, reuse: bool) -> Usage | None:
    """Run ``tool`` over ``frames`` (one process), or reuse earlier outputs with ``reuse``.

    Outputs are reused only when they were made from these very frames (same SHA-256) by
    the same command line: frames injected anew, after a change of the synthesis settings,
    or other tool options (a model, ``--tta``) are run again.
    """
    out = work / tool.key
    usage_file = work / f"{tool.key}.usage.json"
    inputs_file = work / f"{tool.key}.inputs.json"
    folder = out if tool.stage_inputs else frames[0].parent
    inputs = [out / f.name for f in frames] if tool.stage_inputs else frames
    command = [str(a) for a in tool.command(folder, inputs, out)]
    made = {**input_digests(frames), COMMAND_KEY: command}
    if reuse and usage_file.is_file() and all(tool.output(f, out).is_file() for f in frames):
        made_from = json.loads(inputs_file.read_text()) if inputs_file.is_file() else {}
        if made_from == made:
            log.info("%s: reusing outputs in %s", tool.label, out)
            return Usage(**json.loads(usage_file.read_text()))
        log.info("%s: earlier outputs were made from other frames or options: running again",
                 tool.label)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    if tool.stage_inputs:
        for f in frames:
            shutil.copy2(f, out / f.name)
    log.info("%s: %d frame(s) ...", tool.label, len(frames))
    usage = measure(command, env=quiet_env())
    missing = [str(tool.output(f, out)) for f in frames if not tool.output(f, out).is_file()]
    if missing:
        raise RuntimeError(f"{tool.label} wrote no output {', '.join(missing)}")
    usage_file.write_text(json.dumps(usage.__dict__))
    inputs_file.write_text(json.dumps(made, indent=1))
    log.info("%s: %.1f s wall, %.1f CPU-s, %.0f MB", tool.label, usage.wall, usage.cpu,
             usage.maxrss_mb)
    return usage


# ----------------------------------------------------------------------------- real frames
def disagreement_windows(a: np.ndarray, b: np.ndarray, *, size: int = 64, n: int = 4
                         ) -> list[tuple[int, int, int]]:
    """Non-overlapping ``size``-pixel windows where two masks disagree most.

    Parameters
    ----------
    a, b : numpy.ndarray
        Boolean masks of one shape.
    size : int
        Window side; candidates start every ``size // 2`` pixels.
    n : int
        Most windows returned.

    Returns
    -------
    list of (y, x, count)
        Window corners and their number of disagreeing pixels, largest first; windows
        with no disagreement are not returned.
    """
    d = np.asarray(a, bool) ^ np.asarray(b, bool)
    h, w = d.shape
    if h < size or w < size:
        raise ValueError(f"masks of shape {d.shape} are smaller than the window {size}")
    integral = np.pad(d.astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    step = max(1, size // 2)
    ys = list(range(0, h - size + 1, step))
    xs = list(range(0, w - size + 1, step))
    cand = []
    for y in ys:
        for x in xs:
            c = (integral[y + size, x + size] - integral[y, x + size]
                 - integral[y + size, x] + integral[y, x])
            cand.append((int(c), y, x))
    cand.sort(key=lambda t: (-t[0], t[1], t[2]))
    chosen: list[tuple[int, int, int]] = []
    for c, y, x in cand:
        if c == 0 or len(chosen) == n:
            break
        if all(abs(y - cy) >= size or abs(x - cx) >= size for cy, cx, _ in chosen):
            chosen.append((y, x, c))
    return chosen


def saturation_plateau(image: np.ndarray, *, fraction: float = 0.95) -> np.ndarray:
    """Pixels at or above ``fraction`` of the image maximum (the saturation plateau)."""
    image = np.asarray(image, dtype=np.float64)
    top = np.nanmax(image)
    if not np.isfinite(top) or top <= 0:
        raise ValueError(f"image maximum is {top}; expected a positive saturation plateau")
    return np.nan_to_num(image, nan=-np.inf) >= fraction * top


# ----------------------------------------------------------------------------- figures
_COLORS = {"mmx": "C0", "maximask": "C3", "deepcr-ACS-WFC": "C2", "deepcr-decam": "C4",
           "astroscrappy": "k"}


def _plot_roc(results: dict[str, dict], tools: list[Tool], path: Path, *,
              title: str = "ROC on the reassembled mmx test frames (in-distribution)") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mmx.classes import ABBREVIATIONS
    from mmx.io.display import save_png

    fig, axes = plt.subplots(4, 4, figsize=(14, 13))
    for ax, abbr in zip(axes.ravel(), ABBREVIATIONS, strict=False):
        for tool in tools:
            res = results.get(tool.key)
            if res is None or abbr not in tool.classes:
                continue
            k = tool.classes.index(abbr)
            if tool.binary:
                ax.plot(res["fpr"][k], res["tpr"][k], "o", color=_COLORS[tool.key],
                        label=tool.label)
                continue
            fpr, tpr = res["roc_fpr"][k], res["roc_tpr"][k]
            ok = np.isfinite(fpr) & np.isfinite(tpr) & (fpr > 0)
            ax.plot(fpr[ok], tpr[ok], color=_COLORS[tool.key], label=tool.label, lw=1.2)
            ax.plot(res["fpr"][k], res["tpr"][k], "x", color=_COLORS[tool.key], ms=7)
        ax.set_xscale("log")
        ax.set_xlim(1e-6, 1)
        ax.set_ylim(0, 1.02)
        ax.axvline(1e-3, color="0.8", lw=0.6)
        ax.axvline(1e-4, color="0.8", lw=0.6)
        ax.set_title(abbr)
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[len(ABBREVIATIONS):]:
        ax.axis("off")
    handles, labels = axes.ravel()[0].get_legend_handles_labels()
    axes.ravel()[-1].legend(handles, labels, loc="center")
    fig.suptitle(f"{title} (x: default operating point)")
    fig.supxlabel("FPR")
    fig.supylabel("TPR")
    return save_png(fig, path)


def _plot_purity(curves: dict[str, dict], points: dict[str, dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mmx.io.display import save_png

    fig, ax = plt.subplots(figsize=(6, 5))
    for key, res in curves.items():
        tpr, pur = res["roc_tpr"][0], res["curve_purity"][0]
        ok = np.isfinite(tpr) & np.isfinite(pur)
        ax.plot(pur[ok], tpr[ok], color=_COLORS[key], label=res["label"])
    for key, st in points.items():
        ax.plot(st["purity"], st["tpr"], "x" if key in curves else "o", color=_COLORS[key],
                ms=8, label=None if key in curves else st["label"])
    ax.set_xlabel("purity against L.A.Cosmic (IRAF)")
    ax.set_ylabel("TPR against L.A.Cosmic (IRAF)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    ax.set_title("HST WFPC2 WF3: cosmic rays vs the L.A.Cosmic mask (x, o: defaults)")
    return save_png(fig, path)


def _plot_disagreement(image: np.ndarray, ref: np.ndarray, pred: np.ndarray, label: str,
                       path: Path, *, size: int = 64, n: int = 4) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mmx.io.display import asinh_stretch, save_png

    windows = disagreement_windows(pred, ref, size=size, n=n)
    if not windows:
        return None
    fig, axes = plt.subplots(len(windows), 3, figsize=(9, 3 * len(windows)), squeeze=False)
    for row, (y, x, count) in zip(axes, windows, strict=True):
        sl = (slice(y, y + size), slice(x, x + size))
        cut = asinh_stretch(image[sl], low=1, high=99.5)
        both, only_ref, only_pred = ref[sl] & pred[sl], ref[sl] & ~pred[sl], pred[sl] & ~ref[sl]
        rgb = np.stack([cut] * 3, axis=-1)
        over = rgb.copy()
        over[only_pred] = (1.0, 0.1, 0.1)
        over[only_ref] = (0.2, 0.4, 1.0)
        over[both] = (1.0, 1.0, 0.2)
        row[0].imshow(cut, cmap="gray", origin="lower")
        row[0].set_ylabel(f"x {x}-{x + size - 1}, y {y}-{y + size - 1}\n{count} px differ",
                          fontsize=8)
        row[1].imshow(over, origin="lower")
        row[2].imshow(cut, cmap="gray", origin="lower")
        row[2].contour(ref[sl], levels=[0.5], colors="cyan", linewidths=0.6)
        row[2].contour(pred[sl], levels=[0.5], colors="red", linewidths=0.6)
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0][0].set_title("image (asinh)", fontsize=9)
    axes[0][1].set_title(f"yellow both, red {label} only,\nblue L.A.Cosmic only", fontsize=9)
    axes[0][2].set_title(f"contours: cyan L.A.Cosmic,\nred {label}", fontsize=9)
    fig.suptitle(f"WFPC2: where {label} disagrees most with L.A.Cosmic "
                 f"({size}x{size} px, 0-based pixels)")
    return save_png(fig, path, dpi=90)


def _plot_saturation(image: np.ndarray, plateau: np.ndarray, sat: dict[str, np.ndarray],
                     path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mmx.io.display import asinh_stretch, save_png

    ys, xs = np.nonzero(plateau)
    pad = 40
    y0, y1 = max(ys.min() - pad, 0), min(ys.max() + pad + 1, image.shape[0])
    x0, x1 = max(xs.min() - pad, 0), min(xs.max() + pad + 1, image.shape[1])
    sl = (slice(y0, y1), slice(x0, x1))
    cut = asinh_stretch(image[sl], low=1, high=99.9)
    fig, axes = plt.subplots(1, 1 + len(sat), figsize=(4 * (1 + len(sat)), 4.4), squeeze=False)
    axes = axes[0]
    axes[0].imshow(cut, cmap="gray", origin="lower")
    axes[0].contour(plateau[sl], levels=[0.5], colors="cyan", linewidths=0.7)
    axes[0].set_title("image; cyan: plateau (>= 95 % of max)", fontsize=8)
    for ax, (label, mask) in zip(axes[1:], sat.items(), strict=True):
        rgb = np.stack([cut] * 3, axis=-1)
        rgb[mask[sl] & plateau[sl]] = (1.0, 1.0, 0.2)
        rgb[mask[sl] & ~plateau[sl]] = (1.0, 0.1, 0.1)
        rgb[~mask[sl] & plateau[sl]] = (0.2, 0.4, 1.0)
        ax.imshow(rgb, origin="lower")
        ax.set_title(f"{label} SAT: yellow on plateau, red off, blue missed", fontsize=8)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"CTIO Mosaic2: saturated star and bleed, x {x0}-{x1 - 1}, y {y0}-{y1 - 1}")
    return save_png(fig, path, dpi=90)


# ----------------------------------------------------------------------------- model
def _random_model(folder: Path) -> Path:
    """A random-weight model of the default architecture of ``params.yaml`` (development)."""
    import torch
    import yaml

    from mmx.classes import CLASSES
    from mmx.model.nets import build_network, receptive_field_margin
    from mmx.model.package import ModelMeta, save_package

    cfg = yaml.safe_load((ROOT / "params.yaml").read_text())["train"]
    priors = {c.abbr: c.maximask_prior for c in CLASSES}
    summary = ROOT / "derived" / "train" / "summary.json"
    if summary.is_file():
        measured = json.loads(summary.read_text())["class_fraction"]
        priors.update({k: v for k, v in measured.items() if 0 < v < 1})
    torch.manual_seed(0)
    kwargs = dict(cfg.get("arch_kwargs") or {})
    net = build_network(cfg["architecture"], n_classes=len(CLASSES), **kwargs).eval()
    meta = ModelMeta(architecture=cfg["architecture"], arch_kwargs=kwargs,
                     training_priors=priors, normalization={"mesh": int(cfg["mesh"])},
                     tile=int(cfg["tile"]), margin=receptive_field_margin(net),
                     provenance={"note": "random weights: development of the benchmark only"})
    return save_package(net, meta, folder)


def _choose_model(spec: str | None, work: Path) -> tuple[str, str]:
    """The ``--model`` value for ``mmx predict`` and a description for the report."""
    if spec is None:
        default = ROOT / "models" / "mmx-model"
        if (default / "mmx_model.json").is_file():
            spec = str(default)
        else:
            folder = _random_model(work / "random-model")
            log.warning("no %s yet: using a RANDOM-WEIGHT model (%s); figures are meaningless "
                        "for mmx", default, folder)
            return str(folder), ("**random-weight model of the default architecture "
                                 "(no trained model existed): mmx figures are meaningless**")
    from mmx.tracking.registry import resolve_model

    package = resolve_model(spec)
    meta = package.meta
    reg = package.registry or {}
    prov = meta.provenance or {}
    what = f"`{spec}`: {meta.architecture} {meta.arch_kwargs}"
    if reg.get("version"):
        what += f", registry version {reg['version']}"
    if prov.get("git_commit"):
        what += f", git {str(prov['git_commit'])[:10]}"
    if prov.get("global_step"):
        what += f", {prov['global_step']} training steps"
    if prov.get("note"):
        what += f" ({prov['note']})"
    return spec, what


# ----------------------------------------------------------------------------- report helpers
def _f(v: float, fmt: str = ".3f") -> str:
    return "—" if v is None or not np.isfinite(v) else format(v, fmt)


def _e(v: float) -> str:
    return "—" if v is None or not np.isfinite(v) else f"{v:.1e}"


def _usage_rows(usages: list[tuple[str, str, int, float, Usage]]) -> list[str]:
    rows = ["| tool | frames | Mpix | wall s | CPU s | peak RSS MB | Mpix per CPU-s |",
            "|---|---|---|---|---|---|---|"]
    for label, what, n, mpix, u in usages:
        rows.append(f"| {label} | {what} ({n}) | {mpix:.2f} | {u.wall:.1f} | {u.cpu:.1f} | "
                    f"{u.maxrss_mb:.0f} | {mpix / u.cpu:.3f} |")
    return rows


# ----------------------------------------------------------------------------- main
def add_tool_arguments(parser: argparse.ArgumentParser) -> None:
    """The options shared by this benchmark and ``real_skies.py``: model, peers, frames."""
    parser.add_argument("--model", help="model folder or models:/NAME@ALIAS (default: "
                        "models/mmx-model; a random-weight model if it does not exist)")
    parser.add_argument("--envs", type=Path, default=ROOT / "benchmarks" / ".envs",
                        help="folder of the peers' venvs (created when absent)")
    parser.add_argument("--maximask-venv", type=Path,
                        help="an existing MaxiMask venv (default ENVS/maximask)")
    parser.add_argument("--deepcr-venv", type=Path,
                        help="an existing deepCR venv (default ENVS/deepcr)")
    parser.add_argument("--no-install", action="store_true",
                        help="never create venvs or pip install: skip missing peers")
    parser.add_argument("--real", type=Path, default=REAL,
                        help="folder of the real frames (default params.yaml real.source)")
    parser.add_argument("--draws", type=int, default=3,
                        help="injection draws per held-out real frame")
    parser.add_argument("--out", type=Path, default=OUT, help="report folder")
    parser.add_argument("--purity", default="0.8,0.9",
                        help="purities at which the WFPC2 TPR is compared")
    parser.add_argument("--maximask-batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=2020,
                        help="seed of the real-sky injections and of the filler noise")
    parser.add_argument("--reuse", action="store_true",
                        help="reuse tool outputs and timings of an earlier run (same frames)")
    parser.add_argument("--keep-work", action="store_true",
                        help="keep frames and tool outputs (OUT/*-work, ~1 GB)")
    parser.add_argument("--tta", choices=("none", "flips", "dihedral"), default="none",
                        help="mmx's test-time augmentation (mmx predict --tta)")


def setup_tools(args: argparse.Namespace, work: Path) -> tuple[list[Tool], str]:
    """Peers found or installed as ``args`` say, and every tool with its model's note.

    Returns
    -------
    (list of Tool, str)
        All tools (unavailable ones with ``available`` False and a note) and a markdown
        description of the mmx model.
    """
    peers = {
        "maximask": ensure_venv("MaxiMask", args.maximask_venv or args.envs / "maximask",
                                packages=MAXIMASK_PACKAGES, install=not args.no_install,
                                probe="import maximask_and_maxitrack.maximask, tensorflow"),
        "deepcr": ensure_venv("deepCR", args.deepcr_venv or args.envs / "deepcr",
                              packages=DEEPCR_PACKAGES, install=not args.no_install,
                              probe="from deepCR import deepCR; import astropy"),
    }
    try:
        import astroscrappy  # noqa: F401

        peers["astroscrappy"] = Peer("astroscrappy", Path(sys.executable),
                                     "astroscrappy: mmx's own venv")
    except ImportError:
        peers["astroscrappy"] = Peer("astroscrappy", None,
                                     "astroscrappy skipped: not importable in mmx's venv")
    model, model_what = _choose_model(args.model, work)
    tools = make_tools(model=model, peers=peers, maximask_batch=args.maximask_batch_size,
                       tta=args.tta)
    for t in tools:
        if not t.available:
            log.warning("%s", t.note)
    return tools, model_what


def main(argv: list[str] | None = None) -> int:
    """Command line of the benchmark."""
    from benchmarks.real_skies import real_sky_section
    from mmx.model.hardware import cpu_info

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_tool_arguments(parser)
    parser.add_argument("--test", type=Path, default=ROOT / "derived" / "test",
                        help="held-out test shard set of the simulator (in-distribution)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    purities = [float(p) for p in args.purity.split(",") if p.strip()]
    out = args.out
    work = out / "accuracy-work"
    work.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    tools, model_what = setup_tools(args, work)
    live = [t for t in tools if t.available]

    md: list[str] = [
        "# Accuracy: mmx against MaxiMask, deepCR and astroscrappy", "",
        f"Written by `benchmarks/accuracy.py` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on "
        f"{cpu_info().describe()}; load average {load_before[0]:.2f} at the start.", "",
        f"mmx model: {model_what}.", "",
        "Tools: " + "; ".join(dict.fromkeys(t.note for t in tools if t.note)) + ".", "",
        "First real frames held out from training (what users will see), then the "
        "simulator's own test split (in-distribution for mmx: it was trained on the same "
        "simulator, so those figures are an upper bound).", "",
    ]
    usages: list[tuple[str, str, int, float, Usage]] = []

    # ---- real skies held out from training: first
    real = real_sky_section(args.real, live, work, out, draws=args.draws, seed=args.seed,
                            purities=purities, reuse=args.reuse, usages=usages)
    md += ["#" + line if line.startswith("#") else line for line in real]

    # ---- synthesized test set: second, in-distribution
    from mmx.io.shards import ShardSet

    results: dict[str, dict] = {}
    try:
        test = ShardSet(args.test)
    except Exception as exc:  # noqa: BLE001 - any failure to open is reported and skipped
        log.warning("test set skipped: %s", exc)
        test = None
        md += ["## In-distribution: the simulator's own test split", "", f"Skipped: {exc}",
               ""]
    if test is not None:
        rng = np.random.default_rng(args.seed)
        frames = assemble_frames(list(test), rng=rng)
        fdir = work / "test" / "frames"
        shutil.rmtree(fdir, ignore_errors=True)
        paths = []
        for fr in frames:
            rec = fr.record
            paths.append(_write_frame(
                fdir / f"{fr.name}.fits", fr.image, INSTRUME=str(rec["instrument"]),
                GAIN=rec["gain"], RDNOISE=rec["read_noise"] * rec["gain"],
                SATURATE=rec["saturate"], BUNIT="ADU"))
        mpix = sum(fr.image.size for fr in frames) / 1e6
        for tool in live:
            u = run_tool(tool, paths, work / "test", reuse=args.reuse)
            usages.append((tool.label, "test frames", len(paths), mpix, u))
            curves = _curves(len(tool.classes), [tool.thresholds[a] for a in tool.classes])
            for fr, p in zip(frames, paths, strict=True):
                probs, names = _read_probs(tool, tool.output(p, work / "test" / tool.key))
                if names != tool.classes:
                    raise RuntimeError(f"{tool.label}: planes {names}, expected {tool.classes}")
                labels = fr.labels if len(names) > 1 else (fr.labels & 1)
                _update(curves, probs, labels, fr.ignore)
            results[tool.key] = _result(curves)
        md += _test_section(frames, test, tools, results, mpix)
        if results:
            roc = _plot_roc(results, live, out / "accuracy_roc.png")
            md += [f"![ROC per class]({roc.name})", ""]

    # ---- timings
    load_after = os.getloadavg()
    md += ["## Time and memory (same run, same frames)", "",
           "Each tool ran as its own process under a wrapper reading "
           "`getrusage(RUSAGE_CHILDREN)`: start-up, imports, model loading and FITS I/O "
           "included. MaxiMask's figures include writing 14 float32 probability planes, "
           "mmx's 15.", ""]
    md += _usage_rows(usages)
    md += ["", f"Load average {load_before[0]:.2f} before, {load_after[0]:.2f} after "
               f"(other jobs share the {os.cpu_count()} CPUs: times are comparable only "
               "within this run).", ""]
    report = out / "accuracy.md"
    report.write_text("\n".join(md) + "\n")
    log.info("wrote %s", report)
    print("\n".join(md))
    if not args.keep_work:
        for sub in ("test", "real"):
            shutil.rmtree(work / sub, ignore_errors=True)
    return 0


def _test_section(frames: list[TestFrame], test, tools: list[Tool], results: dict,
                  mpix: float) -> list[str]:
    from mmx.classes import ABBREVIATIONS

    n_cut = sum(len(f.members) for f in frames)
    where = test.folder.relative_to(ROOT) if test.folder.is_relative_to(ROOT) else test.folder
    lines = ["## In-distribution: the simulator's own held-out test split", "",
             f"`{where}`: "
             f"{len(test)} cutouts of {test.summary['shape'][0]}x{test.summary['shape'][1]} "
             "px, never used in training. MaxiMask only processes images whose sides both "
             "exceed 400 px, so the cutouts were put back at their places on their CCD "
             f"(`x0`, `y0` of their records): {len(frames)} frames, {mpix:.2f} Mpix, "
             f"{n_cut} cutouts:", ""]
    for f in frames:
        r = f.record
        lines.append(f"- `{f.name}`: {r['grid'][0]}x{r['grid'][1]} cells "
                     f"({f.image.shape[1]}x{f.image.shape[0]} px), {len(f.members)} cutouts"
                     + (", contiguous on the detector" if r["contiguous"] else ", packed")
                     + (f", {r['filler_cells']} empty cell(s) filled with sky noise and "
                        "ignored" if r["filler_cells"] else ""))
    lines += ["",
              "Why this is fair: every tool gets the same frames, the same pixels are scored "
              "(ignored pixels and filler cells are left out of every count), and each frame "
              "is a contiguous piece of one real (simulated) CCD, so sky, noise and stars "
              "are continuous across cutout borders and the background estimates of both "
              "CNNs see what they would see on a whole CCD. What is not natural: "
              "contaminants injected in one cutout stop at its border. The test cutouts "
              "come from mmx's own simulator, whose contaminant models mmx was trained on "
              "and MaxiMask was not: this measures how well each tool finds *these* "
              "contaminants; the real frames above are the check on real data.", "",
              "Operating points: mmx and MaxiMask with their default priors (the same table) "
              "and thresholds (MaxiMask's table; mmx's calibrated on its validation split); "
              "deepCR at threshold 0.5 (its default); astroscrappy with "
              "its defaults and each frame's gain, read noise and saturation level. TPR at "
              "FPR = 1e-3 / 1e-4 and AUC from 2000 logit bins "
              "(`mmx.training.metrics.ClassCurves`).",
              ""]
    probabilistic = [t for t in tools if t.key in results]
    multi = [t for t in probabilistic if len(t.classes) > 1]
    if multi:
        lines += ["### Ranking quality per class (threshold-free)", "",
                  "| class | positives | " + " | ".join(
                      f"{t.label} TPR@1e-3 | {t.label} TPR@1e-4 | {t.label} AUC"
                      for t in multi) + " |",
                  "|---|---|" + "---|---|---|" * len(multi)]
        for k, abbr in enumerate(ABBREVIATIONS):
            n_pos = results[multi[0].key]["n_pos"][k]
            cells = []
            for t in multi:
                res = results[t.key]
                cells += [_f(res["tpr_at_fpr_1e-3"][k]), _f(res["tpr_at_fpr_1e-4"][k]),
                          _f(res["auc"][k], ".4f")]
            lines.append(f"| {abbr} | {int(n_pos)} | " + " | ".join(cells) + " |")
        means = []
        for t in multi:
            res = results[t.key]
            means += [_f(np.nanmean(res["tpr_at_fpr_1e-3"])), _f(np.nanmean(
                res["tpr_at_fpr_1e-4"])), _f(np.nanmean(res["auc"]), ".4f")]
        lines += ["| **mean** | | " + " | ".join(f"**{m}**" for m in means) + " |", ""]
        lines += ["### At each tool's default operating point", "",
                  "| class | " + " | ".join(f"{t.label} TPR | FPR | purity" for t in multi)
                  + " |", "|---|" + "---|---|---|" * len(multi)]
        for k, abbr in enumerate(ABBREVIATIONS):
            cells = []
            for t in multi:
                res = results[t.key]
                cells += [_f(res["tpr"][k]), _e(res["fpr"][k]), _f(res["purity"][k])]
            lines.append(f"| {abbr} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["### Cosmic rays, all tools", "",
              "| tool | TPR@FPR=1e-3 | TPR@FPR=1e-4 | AUC | default: TPR | FPR | purity |",
              "|---|---|---|---|---|---|---|"]
    for t in probabilistic:
        res = results[t.key]
        k = t.classes.index("CR")
        if t.binary:
            lines.append(f"| {t.label} | — | — | — | {_f(res['tpr'][k])} | "
                         f"{_e(res['fpr'][k])} | {_f(res['purity'][k])} |")
        else:
            lines.append(f"| {t.label} | {_f(res['tpr_at_fpr_1e-3'][k])} | "
                         f"{_f(res['tpr_at_fpr_1e-4'][k])} | {_f(res['auc'][k], '.4f')} | "
                         f"{_f(res['tpr'][k])} | {_e(res['fpr'][k])} | "
                         f"{_f(res['purity'][k])} |")
    return lines + [""]


if __name__ == "__main__":
    sys.exit(main())
