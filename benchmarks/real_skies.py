"""The real-sky benchmark: mmx, MaxiMask, deepCR and astroscrappy on held-out real frames.

Only frames listed in ``params.yaml`` ``real.holdout`` are scored; a frame listed in
``real.train`` is refused (:func:`check_scored`). Frames are read from ``real.source``
(``../shared/real``) or ``--real DIR``; without them the benchmark says so and stops.
Every tool runs once, as its own process, over one folder holding every frame below
(:func:`benchmarks.accuracy.run_tool`), at its own defaults (see ``accuracy.py``: mmx's
default operating point is the model's stored thresholds, ``mmx predict --mode prob``).
MaxiMask only processes images whose sides both exceed 400 px: smaller frames are
mirror-padded to 416 px (:func:`pad_frame`) for every tool and the padding is cut off
every output before anything is counted.

1. **Held-out real skies with injected contaminants (exact truth).** Each held-out sky
   frame (:data:`SKY_FRAMES`) is cleaned with :func:`mmx.cleaning.stage.clean_ccd` as the
   clean stage cleans a training frame: the contaminants already in it are repaired and
   their pixels join an *ignore* plane (with, where the frame has them, the L.A.Cosmic
   mask, the located hot columns, and flat plateaus of identical values), which no count
   includes. Contaminants are then injected with :func:`mmx.synthesis.injection.synthesize_sample`
   and the ``synthesize`` section of params.yaml, ``--draws`` times per frame, each draw
   from ``numpy.random.default_rng(SeedSequence([seed, frame_index, draw]))``
   (:func:`inject`). Per class, pooled over frames and draws: TPR at FPR 1e-3 and 1e-4,
   AUC, and TPR / FPR / purity at each tool's default point.
2. **Real labelled cases** on the frames as they are: HST WFPC2 MS1137 cosmic rays against
   IRAF L.A.Cosmic; DECam N6 r and Mosaic3 CCD3, whose DQ planes are all 0 (every CR, HP,
   TRL, NEB, FR, P, SP flag is false); the Dyer R and I hot columns, located from the data
   (:func:`locate_hot_columns`); the CTIO saturated star.
3. **Hard negatives**: CR and HP flags on star cores, compact knots on extended light and
   noise peaks of MS1137 and the clean DECam/Mosaic3 frames (:func:`find_peaks`).
4. **Absent classes** on the clean frames (target <= 1 % of pixels), and the default
   mask's false-positive rate per class on section 1 (target <= 1e-3).

Run ``.venv/bin/python benchmarks/real_skies.py --help``; ``benchmarks/accuracy.py`` runs
the same section first in its report. See ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(ROOT))

from benchmarks.accuracy import (  # noqa: E402
    WFPC2,
    WFPC2_LAC,
    Tool,
    _curves,
    _e,
    _f,
    _plot_disagreement,
    _plot_purity,
    _plot_roc,
    _plot_saturation,
    _read_probs,
    _result,
    _update,
    _usage_rows,
    _write_frame,
    add_tool_arguments,
    point_stats,
    run_tool,
    saturation_plateau,
    setup_tools,
    tpr_at_purity,
)
from benchmarks.toolrun import Usage  # noqa: E402

__all__ = [
    "SKY_FRAMES",
    "MIN_SIDE",
    "RealSplit",
    "read_split",
    "check_scored",
    "pad_frame",
    "flat_plateaus",
    "frame_sample",
    "inject",
    "prepare",
    "prepare_real_cosmic_rays",
    "transplant_cosmic_rays",
    "locate_hot_columns",
    "find_peaks",
    "flag_fractions",
    "threshold_at_fpr",
    "false_positive_sources",
    "cr_feature_kinds",
    "cr_misses",
    "real_sky_section",
    "main",
]

log = logging.getLogger("benchmarks.real_skies")

OUT = ROOT / "benchmarks" / "out"
MIN_SIDE = 416  #: frames are mirror-padded to at least this side (MaxiMask needs > 400 px)
DECAM_R = "decam_r_c4d_171113_060340_N6_ooi_cut375x280.fits"
MOSAIC3 = "kpno4m-mosaic3_zd_k4m_160319_075112_CCD3_ooi_cut208x204.fits"
CTIO = "ctio4m_mosaic2_I_420s_cutout.fits"
DYER_R = "dyer-sbig-stl1001e_R_V448Cyg_1024.fits"
DYER_I = "dyer-sbig-stl1001e_I_V448Cyg_1024.fits"
EMMI = "eso-ntt-emmi_R_NA36_sum3_1024x1024.fits"
#: held-out sky frames scored here, ``file -> short key``; the position is the frame index
#: of the injection seeds (GMOS, a spectrum, and the LSST lab flat are not skies)
SKY_FRAMES: dict[str, str] = {WFPC2: "ms1137", DECAM_R: "decam_r", MOSAIC3: "mosaic3",
                              CTIO: "ctio", DYER_R: "dyer_r", DYER_I: "dyer_i", EMMI: "emmi"}
#: data-quality planes of the frames that have one (all 0: nothing flagged)
DQ: dict[str, str] = {DECAM_R: "decam_r_c4d_171113_060340_N6_ood-DQ.fits",
                      MOSAIC3: "kpno4m-mosaic3_zd_k4m_160319_075112_CCD3_ood-DQ.fits"}
CLEAN_FRAMES = (DECAM_R, MOSAIC3)
#: documented positions of the real hot-column segments [0-based x]; the segments
#: themselves are located from the data within ``HOT_COLUMN_WINDOW`` px of these
HOT_COLUMNS: dict[str, int] = {DYER_R: 850, DYER_I: 165}
HOT_COLUMN_WINDOW = 30
#: header keys the frames lack and their instruments' handbooks give (WFPC2: ATODGAIN 7)
KNOWN_KEYS: dict[str, dict[str, float]] = {WFPC2: {"GAIN": 7.0, "RDNOISE": 5.2,
                                                   "SATURATE": 4095.0}}
#: the classes that cannot be on the clean frames: every flag is a false positive
ABSENT = ("CR", "HP", "TRL", "NEB", "FR", "P", "SP")
ISSUE_CLASSES = ("CR", "HCL", "DCL", "HP", "DP", "TRL", "SAT", "OV")
ABSENT_TARGET, FPR_TARGET = 0.01, 1e-3
#: share of MS1137's real cosmic rays transplanted per draw, the draws' stream number, and
#: the excess over the sky [MS1137 noise sigmas] below which a footprint pixel is left behind
REAL_CR_KEEP, REAL_CR_STREAM, REAL_CR_NSIGMA = 0.5, 1, 2.0


# ----------------------------------------------------------------------------- the split
@dataclass(frozen=True)
class RealSplit:
    """File names (no folder) of the real frames that train and that are held out."""

    train: tuple[str, ...]
    holdout: tuple[str, ...]


def read_split(params: str | Path | dict = ROOT / "params.yaml") -> RealSplit:
    """The ``real.train`` / ``real.holdout`` split (file names only) of params.

    Parameters
    ----------
    params : str, pathlib.Path or dict
        A params file, or its content already loaded.

    Raises
    ------
    mmx.errors.ConfigError
        If there is no ``real.holdout`` list.
    """
    import yaml

    from mmx.errors import ConfigError

    if not isinstance(params, dict):
        params = yaml.safe_load(Path(params).read_text()) or {}
    real = params.get("real") or {}
    if "holdout" not in real:
        raise ConfigError("params have no real.holdout list; the real-sky benchmark scores "
                          "only frames held out from training")
    return RealSplit(train=tuple(Path(str(t)).name for t in real.get("train") or ()),
                     holdout=tuple(Path(str(h)).name for h in real["holdout"] or ()))


def check_scored(names: Sequence[str], split: RealSplit) -> None:
    """Refuse to score a frame that trains, or one the split does not hold out.

    Raises
    ------
    mmx.errors.ConfigError
        Naming the frame and the list it is in (or is missing from).
    """
    from mmx.errors import ConfigError

    for name in names:
        name = Path(name).name
        if name in split.train:
            raise ConfigError(f"{name} is in params.yaml real.train: a frame that trains is "
                              "never scored")
        if name not in split.holdout:
            raise ConfigError(f"{name} is not in params.yaml real.holdout; the real-sky "
                              f"benchmark scores only {', '.join(split.holdout)}")


# ----------------------------------------------------------------------------- frames
def pad_frame(image: np.ndarray, *, min_side: int = MIN_SIDE
              ) -> tuple[np.ndarray, tuple[slice, slice]]:
    """Mirror-pad each axis shorter than ``min_side`` up to it, evenly on both sides.

    Parameters
    ----------
    image : numpy.ndarray
        2-D frame.
    min_side : int
        Smallest side wanted [px].

    Returns
    -------
    padded : numpy.ndarray
        The frame, or a mirrored copy grown to ``min_side`` along its short axes.
    region : (slice, slice)
        Where the original frame lies in ``padded``: crop every output with it so that
        the padding counts nowhere.
    """
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"pad_frame needs a 2-D image, got shape {image.shape}")
    pads = [((min_side - n) // 2, min_side - n - (min_side - n) // 2) if n < min_side
            else (0, 0) for n in image.shape]
    region = tuple(slice(before, before + n) for (before, _), n in zip(pads, image.shape,
                                                                        strict=True))
    if pads == [(0, 0), (0, 0)]:
        return image, region  # type: ignore[return-value]
    return np.pad(image, pads, mode="symmetric"), region  # type: ignore[return-value]


def flat_plateaus(image: np.ndarray, *, sky: np.ndarray, noise: np.ndarray,
                  nsigma: float = 5.0, min_area: int = 4) -> np.ndarray:
    """Regions of identical values well above the sky (replaced cores, clipped stars).

    A pixel is on a plateau when its 3x3 neighbourhood holds one value, more than
    ``nsigma`` noise above the sky; plateaus of fewer than ``min_area`` pixels are
    dropped, the rest grown by one pixel.
    """
    image = np.asarray(image, dtype=np.float64)
    flat = ndimage.maximum_filter(image, 3) == ndimage.minimum_filter(image, 3)
    flat &= image > sky + nsigma * noise
    lab, n = ndimage.label(flat, structure=np.ones((3, 3)))
    if n == 0:
        return flat
    sizes = ndimage.sum_labels(flat, lab, index=np.arange(1, n + 1))
    keep = np.isin(lab, 1 + np.flatnonzero(sizes >= min_area))
    return ndimage.binary_dilation(keep, np.ones((3, 3), bool))


def frame_sample(ccd, *, config, record: dict, ignore: np.ndarray | None = None):
    """A whole cleaned frame as one clean :class:`~mmx.io.shards.Sample`.

    Labelled as the clean stage labels a cutout: SAT from the cleaning, BG/BBG by its
    rule, repaired pixels ignored.

    Parameters
    ----------
    ccd : mmx.cleaning.stage.CleanCCD
        Output of :func:`~mmx.cleaning.stage.clean_ccd`.
    config : mmx.cleaning.config.CleanConfig
        The clean stage's settings (BG/BBG rule).
    record : dict
        Keys added to the record (``instrument``, ``exposure``).
    ignore : numpy.ndarray of bool, optional
        More pixels of unknown truth (a reference CR mask, located hot columns).
    """
    from mmx.classes import label_bit
    from mmx.io.shards import Sample
    from mmx.sky.background import label_background

    skip = ccd.cause > 0
    if ignore is not None:
        skip = skip | np.asarray(ignore, bool)
    bbg, bg = label_background(ccd.image, contaminants=ccd.saturated, ignore=skip,
                               mesh=config.mesh, smooth=config.bbg_smooth,
                               nsigma=config.bbg_nsigma, min_area=config.bbg_min_area,
                               core_nsigma=config.core_nsigma)
    labels = np.zeros(ccd.image.shape, dtype=np.uint16)
    labels[ccd.saturated] |= np.uint16(label_bit("SAT"))
    labels[bbg] |= np.uint16(label_bit("BBG"))
    labels[bg] |= np.uint16(label_bit("BG"))
    meta = ccd.meta
    rec = {**record, **{k: meta[k] for k in (
        "ccd", "band", "exptime", "gain", "read_noise", "saturate", "bias", "fwhm",
        "pixel_scale", "spider_angle", "overscan_noise", "layout")},
        "x0": 0, "y0": 0, "sky": float(np.median(ccd.sky)),
        "sky_noise": float(np.median(ccd.noise)), "origin": "real"}
    return Sample(image=np.array(ccd.image, dtype=np.float32), labels=labels,
                  ignore=skip.astype(np.uint8), record=rec)


def inject(sample, *, config, seed: int, frame_index: int, draw: int):
    """Contaminants injected into a clean frame, from a stream fixed by its three numbers.

    The stream is ``numpy.random.default_rng(SeedSequence([seed, frame_index, draw]))``:
    one draw of one frame never depends on the others, nor on the order they run in.
    """
    from mmx.synthesis.injection import synthesize_sample

    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(frame_index),
                                                        int(draw)]))
    return synthesize_sample(sample, rng=rng, config=config)


# ----------------------------------------------------------------------------- real cosmic rays
def transplant_cosmic_rays(sample, charge: np.ndarray, *, rng: np.random.Generator,
                           keep: float = 0.5, wing_cut: float = 0.5):
    """Real cosmic-ray footprints (``charge`` [e-], another frame's) added to a clean sample.

    Each 8-connected footprint is kept with probability ``keep``; the kept layer is
    rotated by a random multiple of 90 degrees, maybe mirrored, tiled to cover the sample
    and cut at a random offset, converted to the sample's ADU by its gain, and added
    (clipped at its ``saturate`` level). Truth: CR where the added charge is at least
    ``wing_cut`` sky sigmas (the simulator's own labelling rule); other labels and the
    ignore plane are the sample's.
    """
    from mmx.classes import label_bit
    from mmx.io.shards import Sample

    record = dict(sample.record)
    lab, n = ndimage.label(np.asarray(charge) > 0, np.ones((3, 3), bool))
    kept = np.concatenate([[False], rng.uniform(size=n) < keep])
    layer = np.where(kept[lab], charge, 0.0)
    layer = np.rot90(layer, int(rng.integers(4)))
    if rng.uniform() < 0.5:
        layer = layer[:, ::-1]
    ny, nx = sample.image.shape
    reps = (ny // layer.shape[0] + 2, nx // layer.shape[1] + 2)
    y0, x0 = (int(rng.integers(s)) for s in layer.shape)
    delta = np.tile(layer, reps)[y0:y0 + ny, x0:x0 + nx] / float(record["gain"])
    truth = delta >= wing_cut * float(record["sky_noise"])
    image = np.minimum(sample.image + delta, float(record["saturate"])).astype(np.float32)
    labels = np.array(sample.labels, dtype=np.uint16)
    labels[truth] |= np.uint16(label_bit("CR"))
    record["injected"] = ["CR"]
    return Sample(image=image, labels=labels, ignore=np.array(sample.ignore, np.uint8),
                  record=record)


# ----------------------------------------------------------------------------- hot columns
def _column_significance(image: np.ndarray, *, block: int, window: int, clip: float,
                         noise: float) -> np.ndarray:
    """Significance of each column's excess, per block of rows.

    A column's star-clipped mean minus the running median of ``window`` columns each
    side (the column and its two neighbours left out), in units of the robust scatter of
    that difference.
    """
    ny, nx = image.shape
    nb = ny // block
    blocks = image[:nb * block].reshape(nb, block, nx)
    med = np.median(blocks, axis=1)
    mean = np.nanmean(np.where(blocks <= med[:, None, :] + clip * noise, blocks, np.nan),
                      axis=1)
    footprint = np.ones((1, 2 * window + 1), bool)
    footprint[0, window - 1:window + 2] = False
    dev = mean - ndimage.median_filter(mean, footprint=footprint, mode="reflect")
    scatter = 1.4826 * np.median(np.abs(dev - np.median(dev)))
    return dev / (scatter if scatter > 0 else 1.0)


def locate_hot_columns(
    image: np.ndarray,
    *,
    block: int = 64,
    nsigma: float = 3.0,
    min_blocks: int = 4,
    window: int = 10,
    clip: float = 5.0,
    slopes: Sequence[float] = tuple(np.linspace(-0.04, 0.04, 33)),
    edge: int = 8,
) -> tuple[np.ndarray, float]:
    """Segments of columns brighter than their neighbours, straight or slightly tilted.

    The frame is sheared by each trial ``slope`` (columns drift across a registered
    stack: x shifts by ``slope`` px per row). In each sheared frame a column's
    star-clipped mean over ``block`` rows is compared with the running median of the
    ``window`` columns either side (the column and its two neighbours excluded); cells
    more than ``nsigma`` robust sigma above it that run over at least ``min_blocks``
    consecutive blocks are a segment. The slope with the largest summed significance of
    segments wins. Columns within ``edge`` px of the frame's sides (plus the shear) are
    never searched: the noisy edge columns of small cameras are not hot columns.

    Parameters
    ----------
    image : numpy.ndarray
        2-D frame.

    Returns
    -------
    mask : numpy.ndarray of bool
        Pixels of the segments (one column wide per detected column, rows in blocks).
    slope : float
        The winning shear [px per row] (0 when nothing was found).
    """
    image = np.asarray(image, dtype=np.float64)
    ny, nx = image.shape
    med = float(np.median(image))
    noise = 1.4826 * float(np.median(np.abs(image - med))) or 1.0
    rows = np.arange(ny)
    best: tuple[float, float, np.ndarray, np.ndarray] | None = None
    for slope in slopes:
        shift = np.round(slope * (rows - ny / 2)).astype(int)
        cols = np.clip(np.arange(nx)[None, :] + shift[:, None], 0, nx - 1)
        sig = _column_significance(image[rows[:, None], cols], block=block, window=window,
                                   clip=clip, noise=noise)
        hot = sig > nsigma
        margin = edge + int(np.abs(shift).max())
        hot[:, :margin] = False
        hot[:, nx - margin:] = False
        lab, n = ndimage.label(hot, structure=[[0, 1, 0], [0, 1, 0], [0, 1, 0]])
        keep = np.zeros_like(hot)
        for i, sl in enumerate(ndimage.find_objects(lab), 1):
            if sl[0].stop - sl[0].start >= min_blocks:
                keep |= lab == i
        score = float(sig[keep].sum())
        if best is None or score > best[0]:
            best = (score, float(slope), keep, cols)
    assert best is not None
    score, slope, keep, cols = best
    mask = np.zeros(image.shape, bool)
    if score <= 0:
        return mask, 0.0
    nb = ny // block
    sheared = np.zeros(image.shape, bool)
    sheared[:nb * block] = np.repeat(keep, block, axis=0)
    yy, xx = np.nonzero(sheared)
    mask[yy, cols[yy, xx]] = True
    return mask, slope


# ----------------------------------------------------------------------------- hard negatives
def find_peaks(
    image: np.ndarray,
    *,
    sky: np.ndarray,
    noise: np.ndarray,
    exclude: np.ndarray | None = None,
    nsigma: float = 20.0,
    noise_range: tuple[float, float] = (4.0, 6.0),
    ring: tuple[float, float] = (6.0, 10.0),
    knot_ratio: float = 0.05,
    border: int = 10,
) -> dict[str, np.ndarray]:
    """Local maxima that a cosmic-ray or hot-pixel finder must leave alone.

    A peak is a pixel that is the maximum of its 3x3 neighbourhood, at least ``border``
    px from the frame's sides, not within 2 px of an ``exclude`` pixel (a reference CR
    mask, saturation). Its excess ``e`` is its value above the sky map in units of the
    noise map; ``r`` is the median excess on the ring ``ring`` [px] around it.

    * ``star``: ``e > nsigma`` and ``r < knot_ratio * e``: an isolated compact source,
      whose light falls off like a PSF.
    * ``knot``: ``e > nsigma`` and ``r >= knot_ratio * e``: a compact peak sitting on
      extended light (galaxy knots, HII regions, nuclei, crowded stars).
    * ``noise``: ``noise_range[0] < e <= noise_range[1]`` and ``r < 1``: a noise peak
      (or faint source) on empty sky.

    Returns
    -------
    dict
        ``star``, ``knot``, ``noise``: ``(n, 2)`` int arrays of ``(y, x)``.
    """
    image = np.asarray(image, dtype=np.float64)
    excess = (image - sky) / np.maximum(noise, 1e-12)
    peak = image == ndimage.maximum_filter(image, 3, mode="nearest")
    peak[:border] = peak[-border:] = False
    peak[:, :border] = peak[:, -border:] = False
    if exclude is not None:
        peak &= ~ndimage.binary_dilation(np.asarray(exclude, bool), iterations=2)
    lo, hi = noise_range
    peak &= excess > lo
    ys, xs = np.nonzero(peak)
    yy, xx = np.mgrid[-int(ring[1]):int(ring[1]) + 1, -int(ring[1]):int(ring[1]) + 1]
    r = np.hypot(yy, xx)
    on_ring = (r >= ring[0]) & (r <= ring[1])
    dy, dx = yy[on_ring], xx[on_ring]
    h, w = image.shape
    level = np.array([np.median(excess[np.clip(y + dy, 0, h - 1), np.clip(x + dx, 0, w - 1)])
                      for y, x in zip(ys, xs, strict=True)]) if ys.size else np.zeros(0)
    e = excess[ys, xs]
    bright = e > nsigma
    out = {"star": bright & (level < knot_ratio * e), "knot": bright & (level >= knot_ratio * e),
           "noise": (e <= hi) & (level < 1.0)}
    return {k: np.stack([ys[m], xs[m]], axis=1) for k, m in out.items()}


def flag_fractions(masks: dict[str, np.ndarray], region: np.ndarray | None = None
                   ) -> dict[str, float]:
    """Fraction of pixels (of ``region``, default all) each class's binary mask flags."""
    out = {}
    for abbr, mask in masks.items():
        sel = mask if region is None else mask[region]
        out[abbr] = float(np.count_nonzero(sel)) / max(sel.size, 1)
    return out


# ----------------------------------------------------------------------------- preparation
@dataclass
class Frame:
    """One held-out real frame: as observed, cleaned, and what the tools get."""

    name: str
    key: str
    index: int
    image: np.ndarray
    header: dict
    ccd: object
    ignore: np.ndarray  # extra unknown-truth pixels beyond the cleaning's (section 1)
    notes: list[str] = field(default_factory=list)
    hot_columns: np.ndarray | None = None
    hot_slope: float = 0.0
    dq: np.ndarray | None = None
    lacosmic: np.ndarray | None = None


@dataclass
class Job:
    """A frame as written for the tools: file, crop back to the frame, truth if injected."""

    frame: Frame
    path: Path
    region: tuple[slice, slice]
    draw: int | None = None
    labels: np.ndarray | None = None
    ignore: np.ndarray | None = None
    injected: list[str] = field(default_factory=list)
    signal: np.ndarray | None = None  # injected light over the clean frame [sky-noise sigma]


def _params() -> dict:
    import yaml

    return yaml.safe_load((ROOT / "params.yaml").read_text())


def _synthesis_config(params: dict):
    from mmx.cleaning.config import CleanConfig
    from mmx.synthesis.config import SynthesisConfig

    clean = CleanConfig.from_mapping(params.get("clean"))
    settings = dict(params.get("synthesize") or {})
    settings.setdefault("background", {  # as pipelines/synthesize.py: the clean stage's rule
        "mesh": clean.mesh, "smooth": clean.bbg_smooth, "nsigma": clean.bbg_nsigma,
        "min_area": clean.bbg_min_area, "core_nsigma": clean.core_nsigma})
    return clean, SynthesisConfig.from_mapping(settings)


def _load(real: Path, name: str, index: int, clean_config) -> Frame:
    from astropy.io import fits

    from mmx.cleaning.stage import _sky_planes, clean_ccd, merge_headers
    from mmx.io.fitsio import open_fits

    path = real / name
    with open_fits(path) as hdul:
        primary = hdul[0].header.copy()
        where, header, data = next(iter(_sky_planes(path, hdul)))
    header = merge_headers(primary, header)
    for key, value in KNOWN_KEYS.get(name, {}).items():
        header.setdefault(key, value)
    ccd = clean_ccd(data, header, config=clean_config, name=where)
    frame = Frame(name=name, key=SKY_FRAMES[name], index=index,
                  image=np.nan_to_num(data, nan=0.0), header=dict(header), ccd=ccd,
                  ignore=np.zeros(data.shape, bool))
    plateau = flat_plateaus(ccd.image, sky=ccd.sky, noise=ccd.noise) & ~ccd.saturated
    if plateau.any():
        frame.ignore |= plateau
        frame.notes.append(f"{int(plateau.sum())} px on flat plateaus of identical values")
    if name == WFPC2 and (real / WFPC2_LAC).is_file():
        frame.lacosmic = np.asarray(fits.getdata(real / WFPC2_LAC)) > 0
        frame.ignore |= ndimage.binary_dilation(frame.lacosmic, np.ones((3, 3), bool))
        frame.notes.append("L.A.Cosmic mask (grown by 1 px)")
    if name in DQ and (real / DQ[name]).is_file():
        with fits.open(real / DQ[name]) as hdul:
            frame.dq = next(np.asarray(h.data) for h in hdul if h.data is not None)
        frame.ignore |= frame.dq > 0
        frame.notes.append(f"DQ plane ({int((frame.dq > 0).sum())} px flagged)")
    if name in HOT_COLUMNS:
        mask, slope = locate_hot_columns(frame.image)
        near = np.zeros(mask.shape, bool)
        x = HOT_COLUMNS[name]
        near[:, max(x - HOT_COLUMN_WINDOW, 0):x + HOT_COLUMN_WINDOW + 1] = True
        frame.hot_columns, frame.hot_slope = mask & near, slope
        frame.ignore |= ndimage.binary_dilation(mask, np.ones((1, 3), bool))
        frame.notes.append(f"located hot-column segments ({int(mask.sum())} px, grown by "
                           "1 px sideways)")
    return frame


def _tool_header(frame: Frame) -> dict[str, float]:
    """GAIN [e-/ADU], RDNOISE [e-], SATURATE [ADU] for the tools that read them.

    The frame's own (or its handbook's) when it has them, else the cleaning's estimates.
    """
    meta = frame.ccd.meta
    gain = float(frame.header.get("GAIN") or meta["gain"])
    rn = frame.header.get("RDNOISE")
    rn = float(rn) if isinstance(rn, int | float) else meta["read_noise"] * gain
    return {"GAIN": gain, "RDNOISE": rn, "SATURATE": meta["saturate"] + meta["bias"]}


def prepare(real: Path, folder: Path, *, names: Sequence[str], draws: int, seed: int,
            params: dict) -> tuple[list[Frame], list[Job]]:
    """Clean the frames, inject ``draws`` times each, write every frame the tools get."""
    clean_config, synth = _synthesis_config(params)
    shutil.rmtree(folder, ignore_errors=True)
    frames, jobs = [], []
    for name in names:
        index = list(SKY_FRAMES).index(name)
        log.info("cleaning %s", name)
        frame = _load(real, name, index, clean_config)
        frames.append(frame)
        keys = _tool_header(frame)
        padded, region = pad_frame(frame.image)
        jobs.append(Job(frame, _write_frame(folder / f"{frame.key}.fits", padded, **keys),
                        region))
        sample = frame_sample(frame.ccd, config=clean_config, ignore=frame.ignore,
                              record={"instrument": frame.key, "exposure": frame.key})
        for draw in range(draws):
            s = inject(sample, config=synth, seed=seed, frame_index=index, draw=draw)
            image = s.image + np.float32(frame.ccd.meta["bias"])
            padded, region = pad_frame(image)
            jobs.append(Job(frame, _write_frame(folder / f"{frame.key}.d{draw}.fits", padded,
                                                **keys),
                            region, draw=draw, labels=s.labels, ignore=s.ignore,
                            injected=list(s.record["injected"]),
                            signal=(s.image - sample.image) / np.maximum(frame.ccd.noise,
                                                                         1e-12)))
    return frames, jobs


def prepare_real_cosmic_rays(frames: Sequence[Frame], folder: Path, *, draws: int, seed: int,
                             params: dict, keep: float = REAL_CR_KEEP) -> list[Job]:
    """MS1137's real cosmic rays transplanted onto the other held-out skies, ``draws`` each.

    The footprints are :func:`mmx.cleaning.cosmic_ray_footprints.cosmic_ray_charge` under
    the L.A.Cosmic mask; each draw is :func:`transplant_cosmic_rays` from
    ``default_rng(SeedSequence([seed, frame_index, draw, REAL_CR_STREAM]))``. No job when
    MS1137 or its mask is absent.
    """
    from mmx.cleaning.cosmic_ray_footprints import cosmic_ray_charge

    source = next((f for f in frames if f.name == WFPC2 and f.lacosmic is not None), None)
    if source is None:
        return []
    clean_config, synth = _synthesis_config(params)
    wing_cut = float(synth.contaminants["CR"].get("wing_cut", 0.5))
    charge = cosmic_ray_charge(source.image, source.lacosmic, noise=source.ccd.noise,
                               gain=_tool_header(source)["GAIN"], nsigma=REAL_CR_NSIGMA)
    jobs = []
    for frame in frames:
        if frame is source:
            continue
        sample = frame_sample(frame.ccd, config=clean_config, ignore=frame.ignore,
                              record={"instrument": frame.key, "exposure": frame.key})
        for draw in range(draws):
            rng = np.random.default_rng(np.random.SeedSequence(
                [int(seed), frame.index, draw, REAL_CR_STREAM]))
            s = transplant_cosmic_rays(sample, charge, rng=rng, keep=keep, wing_cut=wing_cut)
            padded, region = pad_frame(s.image + np.float32(frame.ccd.meta["bias"]))
            path = _write_frame(folder / f"{frame.key}.rcr{draw}.fits", padded,
                                **_tool_header(frame))
            jobs.append(Job(frame, path, region, draw=draw, labels=s.labels, ignore=s.ignore,
                            injected=["CR (MS1137)"]))
    return jobs


# ----------------------------------------------------------------------------- scoring
def _outputs(tool: Tool, job: Job, work: Path) -> dict[str, np.ndarray]:
    """The tool's probability planes for a job, cropped to the frame, by class."""
    probs, names = _read_probs(tool, tool.output(job.path, work / tool.key))
    if tuple(names) != tool.classes:
        raise RuntimeError(f"{tool.label}: planes {names}, expected {tool.classes}")
    ys, xs = job.region
    return {abbr: probs[k, ys, xs] for k, abbr in enumerate(names)}


def _masks(tool: Tool, planes: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {abbr: p >= tool.thresholds[abbr] for abbr, p in planes.items()}


def _injected_results(tools: list[Tool], jobs: list[Job], work: Path) -> dict[str, dict]:
    results = {}
    for tool in tools:
        curves = _curves(len(tool.classes), [tool.thresholds[a] for a in tool.classes])
        for job in jobs:
            if job.draw is None:
                continue
            planes = _outputs(tool, job, work)
            probs = np.stack([planes[a] for a in tool.classes])
            labels = job.labels if len(tool.classes) > 1 else (job.labels & 1)
            _update(curves, probs, labels, job.ignore)
        results[tool.key] = _result(curves)
    return results


def _mean(values: np.ndarray, index: Sequence[int]) -> float:
    sel = np.asarray(values, float)[list(index)]
    return float(np.nanmean(sel)) if np.isfinite(sel).any() else float("nan")


def _section1(tools: list[Tool], frames: list[Frame], jobs: list[Job], results: dict,
              draws: int, seed: int) -> list[str]:
    from mmx.classes import ABBREVIATIONS

    injected = [j for j in jobs if j.draw is not None]
    mpix = sum(j.labels.size for j in injected) / 1e6
    lines = ["## 1. Held-out real skies with injected contaminants (exact truth)", "",
             f"{len(frames)} held-out sky frames x {draws} draws = {len(injected)} images, "
             f"{mpix:.2f} Mpix scored. Each frame was cleaned by `clean_ccd` (the clean "
             "stage's code and params.yaml `clean:` settings); its pre-existing defects and "
             "cosmic rays are repaired and ignored, with the extra unknown-truth pixels "
             "listed below. Contaminants were injected by `synthesize_sample` with "
             "params.yaml `synthesize:` (the training distribution's own models and "
             f"probabilities), stream `default_rng(SeedSequence([{seed}, frame_index, "
             "draw]))`. Frames smaller than "
             f"{MIN_SIDE} px were mirror-padded for every tool; the padding is cut off every "
             "output before counting.", "",
             "| frame | index | size | ignored px (cleaning + extra) | extra ignored | "
             "classes injected per draw |", "|---|---|---|---|---|---|"]
    for fr in frames:
        mine = [j for j in injected if j.frame is fr]
        ign = int(np.count_nonzero(mine[0].ignore)) if mine else 0
        lines.append(f"| `{fr.key}` ({fr.name}) | {fr.index} | {fr.image.shape[1]}x"
                     f"{fr.image.shape[0]} | {ign} ({ign / fr.image.size:.1%}) | "
                     f"{'; '.join(fr.notes) or '—'} | "
                     + " / ".join(",".join(j.injected) or "none" for j in mine) + " |")
    lines.append("")
    multi = [t for t in tools if t.key in results and len(t.classes) > 1]
    if multi:
        ref = results[multi[0].key]
        lines += ["### Per class: TPR at FPR 1e-3 / 1e-4, AUC", "",
                  "| class | positives | " + " | ".join(
                      f"{t.label} TPR@1e-3 | TPR@1e-4 | AUC" for t in multi) + " |",
                  "|---|---|" + "---|---|---|" * len(multi)]
        for k, abbr in enumerate(ABBREVIATIONS):
            cells = []
            for t in multi:
                r = results[t.key]
                cells += [_f(r["tpr_at_fpr_1e-3"][k]), _f(r["tpr_at_fpr_1e-4"][k]),
                          _f(r["auc"][k], ".4f")]
            lines.append(f"| {abbr} | {int(ref['n_pos'][k])} | " + " | ".join(cells) + " |")
        issue = [ABBREVIATIONS.index(a) for a in ISSUE_CLASSES]
        for label, idx in (("mean, 14 classes", range(len(ABBREVIATIONS))),
                           (f"mean, {', '.join(ISSUE_CLASSES)}", issue)):
            cells = []
            for t in multi:
                r = results[t.key]
                cells += [_f(_mean(r["tpr_at_fpr_1e-3"], idx)),
                          _f(_mean(r["tpr_at_fpr_1e-4"], idx)), _f(_mean(r["auc"], idx), ".4f")]
            lines.append(f"| **{label}** | | " + " | ".join(f"**{c}**" for c in cells) + " |")
        lines += ["", "### Per class at each tool's default operating point: TPR / FPR / purity",
                  "", "| class | " + " | ".join(f"{t.label} TPR | FPR | purity" for t in multi)
                  + " |", "|---|" + "---|---|---|" * len(multi)]
        for k, abbr in enumerate(ABBREVIATIONS):
            cells = []
            for t in multi:
                r = results[t.key]
                cells += [_f(r["tpr"][k]), _e(r["fpr"][k]), _f(r["purity"][k])]
            lines.append(f"| {abbr} | " + " | ".join(cells) + " |")
        cells = []
        for t in multi:
            r = results[t.key]
            cells += [_f(np.nanmean(r["tpr"])), _e(np.nanmean(r["fpr"])),
                      _f(np.nanmean(r["purity"]))]
        lines += ["| **mean** | " + " | ".join(f"**{c}**" for c in cells) + " |", ""]
    lines += ["### Cosmic rays, all tools", "",
              "| tool | TPR@FPR=1e-3 | TPR@FPR=1e-4 | AUC | default: TPR | FPR | purity |",
              "|---|---|---|---|---|---|---|"]
    for t in tools:
        if t.key not in results:
            continue
        r, k = results[t.key], t.classes.index("CR")
        if t.binary:
            lines.append(f"| {t.label} | — | — | — | {_f(r['tpr'][k])} | {_e(r['fpr'][k])} | "
                         f"{_f(r['purity'][k])} |")
        else:
            lines.append(f"| {t.label} | {_f(r['tpr_at_fpr_1e-3'][k])} | "
                         f"{_f(r['tpr_at_fpr_1e-4'][k])} | {_f(r['auc'][k], '.4f')} | "
                         f"{_f(r['tpr'][k])} | {_e(r['fpr'][k])} | {_f(r['purity'][k])} |")
    return lines + [""]


def _real_cr_section(tools: list[Tool], jobs: list[Job], work: Path, draws: int, seed: int
                     ) -> list[str]:
    """Section 1b: CR scores on the skies carrying MS1137's real cosmic rays."""
    lines = ["## 1b. Real cosmic rays transplanted onto the other held-out skies", "",
             f"The cosmic rays of MS1137 (WFPC2, gain {KNOWN_KEYS[WFPC2]['GAIN']:g} e-/DN; "
             "within the L.A.Cosmic mask grown by 1 px, the excess over the sky around it "
             f"where it is at least {REAL_CR_NSIGMA:g} of that frame's noise sigmas: "
             "`cosmic_ray_charge`) added in electrons to the "
             f"other held-out sky frames ({len(jobs)} images: {draws} draws each of "
             + ", ".join(dict.fromkeys(f"`{j.frame.key}`" for j in jobs)) + "), each draw "
             f"keeping {REAL_CR_KEEP:.0%} of the footprints, rotated, mirrored and tiled "
             f"(`transplant_cosmic_rays`, stream `default_rng(SeedSequence([{seed}, "
             f"frame_index, draw, {REAL_CR_STREAM}]))`). Truth: CR where the added charge is "
             "at least the simulator's `wing_cut` in sky sigmas. Real footprint shapes, "
             "not mmx's model of them; but of one thin CCD (WFPC2), and only where "
             "L.A.Cosmic found them. Nothing else injected.", "",
             "| tool | CR px | TPR@FPR=1e-3 | TPR@FPR=1e-4 | AUC | default: TPR | FPR | "
             "purity |", "|---|---|---|---|---|---|---|---|"]
    for tool in tools:
        if "CR" not in tool.classes:
            continue
        curves = _curves(1, [tool.thresholds["CR"]])
        for job in jobs:
            cr = _outputs(tool, job, work)["CR"]
            _update(curves, cr[None], job.labels & np.uint16(1), job.ignore)
        r = _result(curves)
        ranked = ("—", "—", "—") if tool.binary else (
            _f(r["tpr_at_fpr_1e-3"][0]), _f(r["tpr_at_fpr_1e-4"][0]), _f(r["auc"][0], ".4f"))
        lines.append(f"| {tool.label} | {int(r['n_pos'][0])} | " + " | ".join(ranked)
                     + f" | {_f(r['tpr'][0])} | {_e(r['fpr'][0])} | {_f(r['purity'][0])} |")
    return lines + [""]


#: classes whose false positives at FPR 1e-3 are traced to what the pixels truly are
FP_SOURCE_CLASSES = ("CR", "HCL", "HP", "TRL", "SP")


def threshold_at_fpr(planes: Sequence[dict[str, np.ndarray]], labels: Sequence[np.ndarray],
                     ignores: Sequence[np.ndarray], abbr: str, *, fpr: float = 1e-3
                     ) -> tuple[float, int]:
    """The exact threshold of class ``abbr`` at false-positive rate ``fpr``, and the negatives.

    The ``ceil(fpr * negatives)``-th highest probability among the pixels without
    ``abbr`` (ignored ones left out) over all images; NaN when there is no negative.
    """
    from mmx.classes import ABBREVIATIONS

    bit = ABBREVIATIONS.index(abbr)
    negatives = [p[abbr][((lab >> bit) & 1 == 0) & (ign == 0)]
                 for p, lab, ign in zip(planes, labels, ignores, strict=True)]
    total = sum(n.size for n in negatives)
    if total == 0:
        return float("nan"), 0
    k = max(1, int(np.ceil(fpr * total)))
    top = np.concatenate([np.partition(n, n.size - min(k, n.size))[n.size - min(k, n.size):]
                          for n in negatives if n.size])
    return float(np.sort(top)[-k]), total


#: bins of the injected signal of a missed cosmic-ray pixel [sky-noise sigma]
MISS_SIGNAL_BINS = (2.0, 5.0, 20.0)
#: cosmic-ray features: a spot spans at most this many px; a track is aligned when its
#: axis is within this many degrees of a row or column (and it spans >= ALIGNED_MIN px)
SPOT_EXTENT, ALIGNED_DEG, ALIGNED_MIN = 4, 5.0, 8


def cr_feature_kinds(cr: np.ndarray) -> np.ndarray:
    """Each cosmic-ray pixel's feature: 1 spot, 2 track aligned with rows or columns, 3 other.

    Features are 8-connected groups of CR pixels; the axis of a track is the principal
    axis of its pixels. 0 outside cosmic rays.
    """
    from scipy import ndimage

    kinds = np.zeros(cr.shape, np.uint8)
    groups, _ = ndimage.label(cr, np.ones((3, 3), bool))
    for i, box in enumerate(ndimage.find_objects(groups), 1):
        own = groups[box] == i
        if max(own.shape) <= SPOT_EXTENT:
            kinds[box][own] = 1
            continue
        ys, xs = np.nonzero(own)
        _, vectors = np.linalg.eigh(np.cov(np.vstack([ys, xs]).astype(float)))
        angle = np.degrees(np.arctan2(vectors[0, 1], vectors[1, 1])) % 90.0
        aligned = min(angle, 90.0 - angle) <= ALIGNED_DEG and max(own.shape) >= ALIGNED_MIN
        kinds[box][own] = 2 if aligned else 3
    return kinds


def cr_misses(planes: Sequence[dict[str, np.ndarray]], labels: Sequence[np.ndarray],
              ignores: Sequence[np.ndarray], signals: Sequence[np.ndarray], *,
              fpr: float = 1e-3) -> tuple[float, dict[str, tuple[int, int]]]:
    """Which cosmic-ray pixels a tool misses at false-positive rate ``fpr``.

    Returns the threshold (:func:`threshold_at_fpr`) and, for all CR pixels and per group
    of them (by injected ``signals`` in :data:`MISS_SIGNAL_BINS`, and by
    :func:`cr_feature_kinds`), ``(missed, pixels)``; ignored pixels are left out.
    """
    from mmx.classes import label_bit

    bit = label_bit("CR")
    threshold, _ = threshold_at_fpr(planes, labels, ignores, "CR", fpr=fpr)
    edges = (-np.inf, *MISS_SIGNAL_BINS, np.inf)
    bins = [f"< {hi:g}" if lo == -np.inf else f">= {lo:g}" if hi == np.inf else f"{lo:g}-{hi:g}"
            for lo, hi in zip(edges[:-1], edges[1:], strict=True)]
    names = ["all", *bins, "spots", "aligned tracks", "other tracks"]
    counts = dict.fromkeys(names, (0, 0))
    for p, lab, ign, sig in zip(planes, labels, ignores, signals, strict=True):
        cr = ((lab & bit) != 0) & (ign == 0)
        missed = cr & ~(p["CR"] >= threshold)
        groups = [cr] + [(sig >= lo) & (sig < hi) for lo, hi in zip(edges[:-1], edges[1:],
                                                                      strict=True)]
        kinds = cr_feature_kinds((lab & bit) != 0)
        groups += [kinds == k for k in (1, 2, 3)]
        for name, group in zip(names, groups, strict=True):
            m, n = counts[name]
            counts[name] = (m + int(np.count_nonzero(missed & group)),
                            n + int(np.count_nonzero(cr & group)))
    return threshold, counts


def false_positive_sources(planes: Sequence[dict[str, np.ndarray]], labels: Sequence[np.ndarray],
                           ignores: Sequence[np.ndarray], abbr: str, *, fpr: float = 1e-3
                           ) -> tuple[float, int, int, dict[str, int]]:
    """What the false positives of class ``abbr`` at false-positive rate ``fpr`` truly are.

    The threshold is exact: the ``ceil(fpr * negatives)``-th highest probability among the
    pixels without ``abbr`` (ignored ones left out) over all images. Each false positive
    is counted under every other class its truth carries, and under ``"sky"`` when it
    carries none but BG/BBG (real sky: stars, galaxies, or a real defect the cleaning
    missed).

    Returns
    -------
    threshold, false positives, negatives, counts by source
        Ties at the threshold all count, so false positives / negatives can exceed
        ``fpr`` (by the number of tied pixels).
    """
    from mmx.classes import ABBREVIATIONS

    bit = ABBREVIATIONS.index(abbr)
    threshold, total = threshold_at_fpr(planes, labels, ignores, abbr, fpr=fpr)
    if total == 0:
        return float("nan"), 0, 0, {}
    sky_bits = (1 << ABBREVIATIONS.index("BG")) | (1 << ABBREVIATIONS.index("BBG"))
    counts: dict[str, int] = {}
    n_fp = 0
    for p, lab, ign in zip(planes, labels, ignores, strict=True):
        fp = ((lab >> bit) & 1 == 0) & (ign == 0) & (p[abbr] >= threshold)
        truth = lab[fp]
        n_fp += int(truth.size)
        plain = (truth.astype(np.int64) & ~sky_bits) == 0
        counts["sky"] = counts.get("sky", 0) + int(np.count_nonzero(plain))
        for j, other in enumerate(ABBREVIATIONS):
            if other not in ("BG", "BBG") and j != bit:
                n = int(np.count_nonzero((truth >> j) & 1))
                if n:
                    counts[other] = counts.get(other, 0) + n
    return threshold, n_fp, total, counts


def _fp_sources_lines(tools: list[Tool], jobs: list[Job], work: Path) -> list[str]:
    injected = [j for j in jobs if j.draw is not None]
    multi = [t for t in tools if len(t.classes) > 1 and t.available]
    if not injected or not multi:
        return []
    lines = ["### Where the false positives at FPR 1e-3 come from", "",
             "At each tool's threshold for FPR = 1e-3 (exact, over all pixels without the "
             "class), the false-positive pixels by what they truly are: an injected "
             "contaminant of another class, or real sky (`sky`: stars, galaxies, or a real "
             "defect the cleaning left). A pixel can count under two classes.", "",
             "| class | tool | threshold | false positives (rate) | sources (share of them) |",
             "|---|---|---|---|---|"]
    outputs = {t.key: [{a: np.array(p[a]) for a in FP_SOURCE_CLASSES if a in p}  # copies:
                       for p in (_outputs(t, j, work) for j in injected)]  # the rest is freed
               for t in multi}
    labels = [j.labels for j in injected]
    ignores = [j.ignore for j in injected]
    for abbr in FP_SOURCE_CLASSES:
        for t in (t for t in multi if abbr in t.classes):
            thr, n_fp, n_neg, counts = false_positive_sources(outputs[t.key], labels, ignores,
                                                              abbr)
            ranked = sorted(counts.items(), key=lambda kv: -kv[1])
            text = ", ".join(f"{src} {n / max(n_fp, 1):.0%}" for src, n in ranked[:4]
                             if n / max(n_fp, 1) >= 0.01)
            lines.append(f"| {abbr} | {t.label} | {thr:.3g} | {n_fp} "
                         f"({n_fp / max(n_neg, 1):.1e}) | {text or '—'} |")
    return lines + [""]


def _cr_misses_lines(tools: list[Tool], jobs: list[Job], work: Path) -> list[str]:
    injected = [j for j in jobs if j.draw is not None and j.signal is not None]
    ranked = [t for t in tools if "CR" in t.classes and t.available and not t.binary]
    if not injected or not ranked:
        return []
    lines = ["### Which cosmic rays are missed at FPR 1e-3", "",
             "At each tool's threshold for FPR = 1e-3 on CR (as above), the share of the "
             "injected CR pixels it misses, by the pixel's injected signal (sky-noise sigma) "
             f"and by the feature it belongs to: spots (at most {SPOT_EXTENT} px across), "
             f"tracks within {ALIGNED_DEG:g} degrees of a row or column (at least "
             f"{ALIGNED_MIN} px long: they look like partial hot columns), other tracks "
             "and worms. Missed / CR pixels of the group.", ""]
    header = None
    for t in ranked:
        planes = [{"CR": np.array(_outputs(t, j, work)["CR"])} for j in injected]
        thr, counts = cr_misses(planes, [j.labels for j in injected],
                                [j.ignore for j in injected], [j.signal for j in injected])
        if header is None:
            header = ["| tool | threshold | " + " | ".join(
                f"{k} sigma" if k[0] in "<>0123456789" else k for k in counts) + " |",
                "|---|---|" + "---|" * len(counts)]
            lines += header
        lines.append(f"| {t.label} | {thr:.3g} | " + " | ".join(
            f"{m / n:.1%} of {n}" if n else "—" for m, n in counts.values()) + " |")
    return lines + [""]


def _wfpc2(tools: list[Tool], job: Job, work: Path, out: Path, purities: list[float]
           ) -> tuple[list[str], dict[str, np.ndarray]]:
    """Cosmic rays on MS1137 against the L.A.Cosmic mask; returns lines and CR masks."""
    ref = job.frame.lacosmic
    image = job.frame.image
    curves, points, rows, masks = {}, {}, [], {}
    for tool in tools:
        if "CR" not in tool.classes:
            continue
        prob = _outputs(tool, job, work)["CR"]
        thr = tool.thresholds["CR"]
        predicted = prob >= thr
        masks[tool.key] = predicted
        st = point_stats(predicted, ref)
        st["label"] = tool.label
        points[tool.key] = st
        at = {}
        if not tool.binary:
            c = _curves(1, [thr])
            _update(c, prob[None], ref.astype(np.uint16), np.zeros(ref.shape, np.uint8))
            res = _result(c)
            res["label"] = tool.label
            curves[tool.key] = res
            at = {p: tpr_at_purity(res["roc_tpr"][0], res["curve_purity"][0], p)
                  for p in purities}
        rows.append(f"| {tool.label} | {st['tp'] + st['fp']} | {_f(st['tpr'])} | "
                    f"{_f(st['purity'])} | " + " | ".join(
                        _f(at.get(p, float("nan"))) for p in purities) + " |")
        png = _plot_disagreement(image, ref, predicted, tool.label,
                                 out / f"real_wfpc2_{tool.key}.png")
        if png is not None:
            st["png"] = png.name
    lines = ["### HST WFPC2 WF3 MS1137 (F814W, 2400 s): cosmic rays against IRAF L.A.Cosmic",
             "", f"{image.shape[1]}x{image.shape[0]} px, undersampled; the L.A.Cosmic mask "
             f"flags {int(ref.sum())} px ({ref.mean():.1%}). It is an algorithm's output, not "
             "truth: these figures measure agreement. Gain 7 e-/DN, read noise 5.2 e-, "
             "saturation 4095 DN given to the tools that take them.", "",
             "| tool | px flagged | TPR vs L.A.C. | purity vs L.A.C. | " + " | ".join(
                 f"TPR at purity {p:g}" for p in purities) + " |",
             "|---|---|---|---|" + "---|" * len(purities), *rows, ""]
    if curves or points:
        fig = _plot_purity(curves, points, out / "real_wfpc2_purity.png")
        lines += [f"![WFPC2 TPR vs purity]({fig.name})", ""]
    pngs = [f"[{st['label']}](real_wfpc2_{k}.png)" for k, st in points.items() if "png" in st]
    if pngs:
        lines += ["Where each tool disagrees most with L.A.Cosmic (four 64x64 windows; red: "
                  "tool only, blue: L.A.Cosmic only, yellow: both): " + ", ".join(pngs) + ".",
                  ""]
    return lines, masks


def _clean_frames(tools: list[Tool], jobs: list[Job], work: Path) -> tuple[list[str], dict]:
    """Flagged fraction per class on the clean DECam/Mosaic3 frames (DQ all 0)."""
    from mmx.classes import ABBREVIATIONS

    fractions: dict[str, dict[str, dict[str, float]]] = {}
    for job in jobs:
        for tool in tools:
            fractions.setdefault(tool.key, {})[job.frame.key] = flag_fractions(
                _masks(tool, _outputs(tool, job, work)))
    keys = [j.frame.key for j in jobs]
    multi = [t for t in tools if len(t.classes) > 1]
    lines = ["### Clean frames: DECam N6 r and Mosaic3 CCD3 (DQ planes all 0)", "",
             "Fraction of the frame's pixels each tool flags per class at its default point "
             "(" + ", ".join(f"`{k}`" for k in keys) + "). Their Community Pipeline DQ "
             "planes flag nothing: every CR, HP, TRL, NEB, FR, P, SP pixel is a false "
             "positive (HCL, DCL, DP, OV almost surely too; SAT, BBG, BG may be right).", "",
             "| class | " + " | ".join(f"{t.label} {k}" for t in multi for k in keys) + " |",
             "|---|" + "---|" * (len(multi) * len(keys))]
    for abbr in ABBREVIATIONS:
        mark = " (false)" if abbr in ABSENT else ""
        lines.append(f"| {abbr}{mark} | " + " | ".join(
            _pct(fractions[t.key][k][abbr]) for t in multi for k in keys) + " |")
    single = [t for t in tools if len(t.classes) == 1]
    if single:
        lines += ["", "CR flags of the cosmic-ray-only tools: " + "; ".join(
            f"{t.label} " + ", ".join(f"{k} {_pct(fractions[t.key][k]['CR'])}" for k in keys)
            for t in single) + ".", ""]
    return lines + [""], fractions


def _pct(v: float) -> str:
    return "—" if not np.isfinite(v) else (f"{100 * v:.2f} %" if v >= 1e-4 or v == 0
                                           else f"{100 * v:.1e} %")


def _hot_columns(tools: list[Tool], jobs: list[Job], work: Path, out: Path) -> list[str]:
    lines = ["### Dyer SBIG STL-1001E R and I: real hot columns", "",
             "The segments are located from the data (`locate_hot_columns`): the frame is "
             "sheared by trial slopes of -0.04 to 0.04 px per row (these are registered "
             "stacks, so a detector column can drift across the frame); per block of 64 rows "
             "each column's star-clipped mean is compared with the running median of the 10 "
             "columns either side (itself and its two neighbours left out); cells more than "
             "3 robust sigma above it over at least 4 consecutive blocks (256 rows) are a "
             "segment; the slope with the largest summed significance wins; columns within "
             f"8 px of the sides are not searched. Kept: segments within {HOT_COLUMN_WINDOW} "
             "px of the documented positions (R near x=850, I at x=165).", ""]
    rows, found = [], []
    panels = []
    for job in jobs:
        fr = job.frame
        mask = fr.hot_columns
        ys, xs = np.nonzero(mask)
        if not ys.size:
            found.append(f"`{fr.key}`: nothing found near x={HOT_COLUMNS[fr.name]}")
            continue
        found.append(f"`{fr.key}`: {int(mask.sum())} px, columns {xs.min()}-{xs.max()}, rows "
                     f"{ys.min()}-{ys.max()} (0-based), slope {fr.hot_slope:+.4f} px/row")
        flags = {}
        for tool in tools:
            planes = _masks(tool, _outputs(tool, job, work))
            cells = [_pct(planes[a][mask].mean()) if a in planes else "—" for a in ("HCL", "CR")]
            rows.append(f"| {tool.label} | `{fr.key}` | {int(mask.sum())} | " + " | ".join(cells)
                        + " |")
            flags[tool.label] = planes
        panels.append((fr, mask, flags))
    lines += ["Located: " + "; ".join(found) + ".", "",
              "| tool | frame | segment px | flagged HCL | flagged CR (must be 0) |",
              "|---|---|---|---|---|", *rows, ""]
    if panels:
        png = _plot_hot_columns(panels, out / "real_dyer_hot_columns.png")
        lines += [f"![Dyer hot columns]({png.name})", ""]
    return lines


def _ctio(tools: list[Tool], job: Job, work: Path, out: Path) -> list[str]:
    image = job.frame.image
    plateau = saturation_plateau(image)
    sat_key = float(job.frame.header.get("SATURATE", np.inf))
    above = image >= sat_key
    rows, sat_masks = [], {}
    for tool in tools:
        if "SAT" not in tool.classes:
            continue
        mask = _masks(tool, _outputs(tool, job, work))["SAT"]
        sat_masks[tool.label] = mask
        rows.append(f"| {tool.label} | {mask[plateau].mean():.3f} | "
                    f"{mask[above].mean() if above.any() else float('nan'):.3f} | "
                    f"{int(mask.sum())} | {int((mask & ~plateau).sum())} |")
    lines = ["### CTIO 4 m Mosaic2 (I, 420 s): the saturated star and its bleed", "",
             f"Plateau: pixels at or above 95 % of the frame maximum ({image.max():.0f} ADU): "
             f"{int(plateau.sum())} px; {int(above.sum())} px reach the header's SATURATE "
             f"({sat_key:g}).", "",
             "| tool | plateau px flagged SAT | px >= SATURATE flagged SAT | SAT px in frame | "
             "SAT px off the plateau |", "|---|---|---|---|---|", *rows, ""]
    if sat_masks:
        png = _plot_saturation(image, plateau, sat_masks, out / "real_ctio_sat.png")
        lines += [f"![CTIO saturation]({png.name})", ""]
    return lines


def _hard_negatives(tools: list[Tool], jobs: list[Job], work: Path) -> list[str]:
    kinds = {"star": "star cores", "knot": "compact knots on extended light",
             "noise": "noise peaks (4-6 sigma)"}
    counts: dict[tuple[str, str], int] = {}
    stats: dict[tuple[str, str, str], list[int]] = {}  # (tool, kind, cls) -> [px, flagged, obj]
    box = np.mgrid[-1:2, -1:2].reshape(2, -1).T
    for job in jobs:
        fr = job.frame
        exclude = fr.ccd.saturated.copy()
        if fr.lacosmic is not None:
            exclude |= fr.lacosmic
        if fr.dq is not None:
            exclude |= fr.dq > 0
        peaks = find_peaks(fr.image - fr.ccd.meta["bias"], sky=fr.ccd.sky, noise=fr.ccd.noise,
                           exclude=exclude)
        for tool in tools:
            masks = _masks(tool, _outputs(tool, job, work))
            for kind, yx in peaks.items():
                counts[(fr.key, kind)] = len(yx)
                if not len(yx):
                    continue
                pix = (yx[:, None, :] + box[None]).reshape(-1, 2)
                for abbr in ("CR", "HP"):
                    if abbr not in masks:
                        continue
                    hit = masks[abbr][pix[:, 0], pix[:, 1]].reshape(len(yx), 9)
                    acc = stats.setdefault((tool.key, kind, abbr), [0, 0, 0])
                    acc[0] += hit.size
                    acc[1] += int(hit.sum())
                    acc[2] += int(hit.any(axis=1).sum())
    per_frame = "; ".join(f"`{j.frame.key}` " + ", ".join(
        f"{counts.get((j.frame.key, k), 0)} {k}" for k in kinds) for j in jobs)
    lines = ["## 3. Hard negatives: star cores, compact knots, noise peaks", "",
             "Selected on the frames as observed (`find_peaks`): pixels that are the maximum "
             "of their 3x3 neighbourhood, >= 10 px from the sides, not within 2 px of a "
             "saturated pixel, an L.A.Cosmic pixel (MS1137) or a DQ-flagged pixel; excess "
             "`e` over the cleaning's sky map in units of its noise map, `r` the median "
             "excess on a ring of radius 6-10 px. Star cores: e > 20 and r < 0.05 e "
             "(isolated, PSF-like fall-off); compact knots: e > 20 and r >= 0.05 e (a peak "
             "on extended light: galaxy knots, HII regions, nuclei, crowded stars); noise "
             "peaks: 4 < e <= 6 and r < 1. Counted: the 3x3 box around each peak. "
             f"Peaks: {per_frame}.", "",
             "| tool | kind | peaks | CR: px FPR | CR: peaks with a flag | HP: px FPR | "
             "HP: peaks with a flag |", "|---|---|---|---|---|---|---|"]
    for tool in tools:
        for kind, what in kinds.items():
            n = sum(counts.get((j.frame.key, kind), 0) for j in jobs)
            cells = []
            for abbr in ("CR", "HP"):
                acc = stats.get((tool.key, kind, abbr))
                if acc is None or not acc[0]:
                    cells += ["—", "—"]
                else:
                    cells += [_e(acc[1] / acc[0]), _pct(acc[2] / n)]
            lines.append(f"| {tool.label} | {what} | {n} | " + " | ".join(cells) + " |")
    return lines + [""]


def _absent(tools: list[Tool], fractions: dict, results: dict) -> list[str]:
    from mmx.classes import ABBREVIATIONS

    multi = [t for t in tools if len(t.classes) > 1]
    lines = ["## 4. Absent classes and the default mask's false-positive rate", "",
             f"Targets (issue 9): each of NEB, FR, P, SP, TRL flags <= {ABSENT_TARGET:.0%} of "
             f"the clean frames' pixels; the default mask's FPR is <= {FPR_TARGET:g} per "
             "class on section 1 (pixels without that class, ignored ones left out).", "",
             "| tool | " + " | ".join(f"{a} on clean frames" for a in ("NEB", "FR", "P", "SP",
                                                                           "TRL")) + " |",
             "|---|" + "---|" * 5]
    for t in multi:
        cells = []
        for abbr in ("NEB", "FR", "P", "SP", "TRL"):
            worst = max(fractions[t.key][k][abbr] for k in fractions[t.key])
            cells.append(f"{_pct(worst)} {'ok' if worst <= ABSENT_TARGET else '**over**'}")
        lines.append(f"| {t.label} | " + " | ".join(cells) + " |")
    lines += ["", "(worst of the clean frames)", "",
              "| tool | " + " | ".join(ABBREVIATIONS) + " | classes over |",
              "|---|" + "---|" * (len(ABBREVIATIONS) + 1)]
    for t in multi:
        if t.key not in results:
            continue
        fpr = results[t.key]["fpr"]
        over = [a for k, a in enumerate(ABBREVIATIONS) if np.isfinite(fpr[k])
                and fpr[k] > FPR_TARGET and a not in ("BG", "BBG")]
        verdict = f"{len(over)}: {', '.join(over)}" if over else "none"
        lines.append(f"| {t.label} | " + " | ".join(
            ("**" + _e(fpr[k]) + "**") if a in over else _e(fpr[k])
            for k, a in enumerate(ABBREVIATIONS)) + f" | {verdict} |")
    lines += ["", "BG and BBG are not defects (BG is not even a mask bit): their rates are "
              "shown, not held to the target.", ""]
    return lines


# ----------------------------------------------------------------------------- figures
def _plot_cr_overlay(image: np.ndarray, ref: np.ndarray, masks: dict[str, np.ndarray],
                     labels: dict[str, str], path: Path, *, size: int = 160) -> Path:
    """MS1137 cut-out: image, then each tool's CR flags against L.A.Cosmic."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mmx.io.display import asinh_stretch, save_png

    # the window of the frame with the most L.A.Cosmic and tool flags together
    total = ref.astype(np.int64) + sum(m.astype(np.int64) for m in masks.values())
    integral = np.pad(total.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    h, w = total.shape
    best = (-1, 0, 0)
    for y in range(0, h - size + 1, size // 4):
        for x in range(0, w - size + 1, size // 4):
            c = (integral[y + size, x + size] - integral[y, x + size]
                 - integral[y + size, x] + integral[y, x])
            best = max(best, (int(c), y, x))
    _, y, x = best
    sl = (slice(y, y + size), slice(x, x + size))
    cut = asinh_stretch(image[sl], low=1, high=99.7)
    fig, axes = plt.subplots(1, 1 + len(masks), figsize=(4.2 * (1 + len(masks)), 4.6))
    axes[0].imshow(cut, cmap="gray", origin="lower")
    axes[0].set_title("MS1137 (asinh)", fontsize=9)
    for ax, (key, mask) in zip(axes[1:], masks.items(), strict=True):
        rgb = np.stack([cut] * 3, axis=-1)
        m, r = mask[sl], ref[sl]
        rgb[m & ~r] = (1.0, 0.1, 0.1)
        rgb[r & ~m] = (0.2, 0.4, 1.0)
        rgb[m & r] = (1.0, 1.0, 0.2)
        ax.imshow(rgb, origin="lower")
        ax.set_title(f"{labels[key]} CR: yellow both,\nred tool only, blue L.A.Cosmic only",
                     fontsize=9)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"HST WFPC2 MS1137, x {x}-{x + size - 1}, y {y}-{y + size - 1} (0-based): "
                 "cosmic-ray flags at each tool's default")
    return save_png(fig, path, dpi=90)


def _plot_hot_columns(panels, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mmx.io.display import asinh_stretch, save_png

    n_tools = max(len(f) for _, _, f in panels)
    fig, axes = plt.subplots(len(panels), 1 + n_tools, figsize=(3.2 * (1 + n_tools),
                                                                 5.5 * len(panels)),
                             squeeze=False)
    for row, (fr, mask, flags) in zip(axes, panels, strict=True):
        ys, xs = np.nonzero(mask)
        x0, x1 = max(xs.min() - 25, 0), min(xs.max() + 26, mask.shape[1])
        y0, y1 = max(ys.min() - 40, 0), min(ys.max() + 41, mask.shape[0])
        sl = (slice(y0, y1), slice(x0, x1))
        cut = asinh_stretch(fr.image[sl], low=1, high=99.5)
        ext = (x0 - 0.5, x1 - 0.5, y0 - 0.5, y1 - 0.5)
        row[0].imshow(cut, cmap="gray", origin="lower", aspect="auto", extent=ext)
        row[0].contour(np.arange(x0, x1), np.arange(y0, y1), mask[sl].astype(float),
                       levels=[0.5], colors="cyan", linewidths=0.6)
        row[0].set_title(f"{fr.key}; cyan: located segment", fontsize=8)
        for ax, (label, planes) in zip(row[1:], flags.items(), strict=False):
            rgb = np.stack([cut] * 3, axis=-1)
            if "HCL" in planes:
                rgb[planes["HCL"][sl]] = (0.2, 1.0, 0.2)
            rgb[planes["CR"][sl]] = (1.0, 0.1, 0.1)
            ax.imshow(rgb, origin="lower", aspect="auto", extent=ext)
            ax.set_title(f"{label}\ngreen HCL, red CR", fontsize=8)
        for ax in row[1 + len(flags):]:
            ax.axis("off")
    fig.suptitle("Dyer SBIG hot columns (0-based pixels)")
    return save_png(fig, path, dpi=80)


# ----------------------------------------------------------------------------- the section
def real_sky_section(
    real: Path,
    tools: list[Tool],
    work: Path,
    out: Path,
    *,
    draws: int = 3,
    seed: int = 2020,
    purities: Sequence[float] = (0.8, 0.9),
    reuse: bool = False,
    usages: list | None = None,
    params: dict | None = None,
) -> list[str]:
    """Run the tools on the held-out real frames and return the report's markdown lines.

    Parameters
    ----------
    real : pathlib.Path
        Folder of the real frames; absent or without any held-out sky frame: a one-line
        "skipped" section.
    tools : list of Tool
        Tools that can run (:func:`benchmarks.accuracy.make_tools`).
    work, out : pathlib.Path
        Working folder (frames, tool outputs, under ``work/real``) and report folder.
    draws : int
        Injection draws per frame.
    seed : int
        First number of every draw's seed sequence.
    purities : sequence of float
        Purities at which the WFPC2 TPR against L.A.Cosmic is compared.
    reuse : bool
        Reuse tool outputs (and timings) of an earlier run on the same frames.
    usages : list, optional
        Appended ``(label, what, n_frames, mpix, Usage)`` per tool run.
    params : dict, optional
        The project's params (default: ``params.yaml``).

    Raises
    ------
    mmx.errors.ConfigError
        If a frame to score is in ``real.train`` or not in ``real.holdout``.
    """
    params = params or _params()
    split = read_split(params)
    title = ["# Real skies held out from training", ""]
    names = [n for n in SKY_FRAMES if (real / n).is_file()]
    if not names:
        return title + [f"Skipped: no held-out sky frame in {real} (the real frames live "
                        "outside the repository; `--real DIR`).", ""]
    check_scored(names, split)
    missing = [n for n in SKY_FRAMES if n not in names]
    folder = work / "real" / "frames"
    frames, jobs = prepare(real, folder, names=names, draws=draws, seed=seed, params=params)
    cr_jobs = prepare_real_cosmic_rays(frames, folder, draws=draws, seed=seed, params=params)
    everything = jobs + cr_jobs
    mpix = sum(_npix(j.path) for j in everything) / 1e6
    for tool in tools:
        u: Usage | None = run_tool(tool, [j.path for j in everything], work / "real",
                                   reuse=reuse)
        if usages is not None and u is not None:
            usages.append((tool.label, "real frames (padded)", len(everything), mpix, u))
    originals = {j.frame.name: j for j in jobs if j.draw is None}
    lines = title + [
        "Frames held out from training (params.yaml `real.holdout`; a frame of `real.train` "
        f"is refused), read from `{real}`: " + ", ".join(f"`{SKY_FRAMES[n]}` {n}"
                                                        for n in names) + "."
        + (f" Absent: {', '.join(missing)}." if missing else "")
        + " GMOS (a spectrum) and the LSST lab flat are held out too but are not skies. "
        "Every tool ran once over all "
        f"{len(everything)} frames ({mpix:.2f} Mpix as given to the tools, padding "
        "included).", ""]
    results = _injected_results(tools, jobs, work / "real")
    lines += _section1(tools, frames, jobs, results, draws, seed)
    lines += _fp_sources_lines(tools, jobs, work / "real")
    lines += _cr_misses_lines(tools, jobs, work / "real")
    if results:
        png = _plot_roc(results, tools, out / "real_injected_roc.png",
                        title="ROC on held-out real skies with injected contaminants")
        lines += [f"![ROC per class, injected real skies]({png.name})", ""]
    if cr_jobs:
        lines += _real_cr_section(tools, cr_jobs, work / "real", draws, seed)

    lines += ["## 2. Real labelled cases", ""]
    if WFPC2 in originals and originals[WFPC2].frame.lacosmic is not None:
        more, cr_masks = _wfpc2(tools, originals[WFPC2], work / "real", out, list(purities))
        lines += more
        shown = {k: m for k, m in cr_masks.items() if k in ("mmx", "maximask")}
        if shown:
            png = _plot_cr_overlay(originals[WFPC2].frame.image, originals[WFPC2].frame.lacosmic,
                                   shown, {t.key: t.label for t in tools},
                                   out / "real_wfpc2_cr_overlay.png")
            lines += [f"![MS1137 CR flags, mmx and MaxiMask]({png.name})", ""]
    clean_jobs = [originals[n] for n in CLEAN_FRAMES if n in originals]
    fractions: dict = {}
    if clean_jobs:
        more, fractions = _clean_frames(tools, clean_jobs, work / "real")
        lines += more
    hot_jobs = [originals[n] for n in HOT_COLUMNS if n in originals]
    if hot_jobs:
        lines += _hot_columns(tools, hot_jobs, work / "real", out)
    if CTIO in originals:
        lines += _ctio(tools, originals[CTIO], work / "real", out)
    neg_jobs = [originals[n] for n in (WFPC2, *CLEAN_FRAMES) if n in originals]
    if neg_jobs:
        lines += _hard_negatives(tools, neg_jobs, work / "real")
    if fractions:
        lines += _absent(tools, fractions, results)
    lines += ["## Not covered here", "",
              "- Truth in section 1 is exact only for what was injected: a real defect or "
              "cosmic ray the cleaning missed counts as a negative (a tool that finds it "
              "is charged a false positive).",
              "- Injected contaminants come from mmx's own models (the ones it trains on), "
              "except the real MS1137 cosmic rays of section 1b; real cosmic rays as "
              "observed are scored only against L.A.Cosmic (MS1137), real "
              "hot columns only on the Dyer frames, real saturation only on CTIO.",
              "- No real trails, persistence, fringes, nebulosity or spikes with labels "
              "exist among the frames: for those only false-alarm rates are measured.", ""]
    return lines


def _npix(path: Path) -> int:
    from astropy.io import fits

    header = fits.getheader(path)
    return int(header["NAXIS1"]) * int(header["NAXIS2"])


# ----------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    """Command line: the real-sky benchmark alone, report ``OUT/real_skies.md``."""
    from mmx.model.hardware import cpu_info

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_tool_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out = args.out
    work = out / "real-skies-work"
    work.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    tools, model_what = setup_tools(args, work)
    live = [t for t in tools if t.available]
    usages: list = []
    md = [f"Written by `benchmarks/real_skies.py` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC "
          f"on {cpu_info().describe()}; load average {load_before[0]:.2f} at the start.", "",
          f"mmx model: {model_what}.", "",
          "Tools: " + "; ".join(dict.fromkeys(t.note for t in tools if t.note)) + ".", ""]
    section = real_sky_section(
        args.real, live, work, out, draws=args.draws, seed=args.seed,
        purities=[float(p) for p in args.purity.split(",") if p.strip()], reuse=args.reuse,
        usages=usages)
    load_after = os.getloadavg()
    md = section[:2] + md + section[2:] + [
        "## Time and memory (same run)", "", *_usage_rows(usages), "",
        f"Load average {load_before[0]:.2f} before, {load_after[0]:.2f} after.", ""]
    report = out / "real_skies.md"
    report.write_text("\n".join(md) + "\n")
    log.info("wrote %s", report)
    print("\n".join(md))
    if not args.keep_work:
        shutil.rmtree(work / "real", ignore_errors=True)
    return 0

if __name__ == "__main__":
    sys.exit(main())
