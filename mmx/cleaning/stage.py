"""Raw exposures to clean cutouts: one CCD, one exposure, and the whole ``clean`` stage.

For each CCD of each exposure (:func:`clean_ccd`): subtract the overscan and trim
(:mod:`mmx.cleaning.overscan`) when the frame is a raw read-out, else characterise the
processed frame (:mod:`mmx.cleaning.processed`); find the contaminants already there
(:mod:`mmx.cleaning.defects`), repair the pixels of unknown truth, measure the FWHM.
Then (:func:`cut_ccd`) cut ``size`` x ``size`` images on a grid, reject those with too
many pixels of unknown truth or too much saturation, label SAT, BBG and BG
(:func:`mmx.sky.background.label_background`) and put repaired pixels in the
ignore plane. :func:`run_clean` writes the shard set and the report.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits
from tqdm import tqdm

from mmx.classes import label_bit
from mmx.cleaning.config import CleanConfig
from mmx.cleaning.cosmic_ray_footprints import cosmic_ray_charge, cut_footprints, save_footprints
from mmx.cleaning.defects import CAUSES, detect_defects, repair
from mmx.cleaning.overscan import subtract_overscan
from mmx.cleaning.processed import characterise, is_raw_layout
from mmx.cleaning.psf import measure_fwhm
from mmx.errors import InputError
from mmx.io.fitsio import is_fits_name, open_fits
from mmx.io.shards import Sample, ShardWriter
from mmx.parallel import process_pool
from mmx.sky.background import label_background

__all__ = [
    "REJECT_REASONS",
    "CleanCCD",
    "CutoutResult",
    "clean_ccd",
    "grid_origins",
    "cut_ccd",
    "clean_exposure",
    "find_exposures",
    "merge_headers",
    "pad_to",
    "run_clean",
]

log = logging.getLogger(__name__)

#: Why a cutout is rejected (first reason that applies).
REJECT_REASONS: tuple[str, ...] = ("ignored_fraction", "saturated_fraction")

_SAT, _BBG, _BG = label_bit("SAT"), label_bit("BBG"), label_bit("BG")
_SIMULATED = "mmx surveys simulate"  # ORIGIN of the simulator's files
#: EXTNAMEs of planes that describe an image rather than show the sky: never cleaned.
NON_SKY_EXTNAMES = frozenset({"DQ", "BPM", "MASK", "VAR", "IVAR", "ERR", "SIG", "WHT",
                              "WEIGHT", "EXP", "EXPMAP", "SKYFIT", "SKY", "CTX", "CON"})


@dataclass
class CleanCCD:
    """One CCD after overscan subtraction, trimming, defect detection and repair.

    Attributes
    ----------
    image : numpy.ndarray
        float32 bias-subtracted, repaired data [ADU].
    saturated : numpy.ndarray of bool
        SAT pixels (saturation and bleed).
    cause : numpy.ndarray of uint8
        Cause of unknown truth per pixel (0 = known), see :data:`CAUSES`.
    sky, noise : numpy.ndarray
        Sky and noise maps [ADU].
    meta : dict
        ``ccd``, ``gain``, ``read_noise``, ``saturate``, ``bias``, ``overscan_noise``,
        ``fwhm``, ``fwhm_source``, ``n_stars`` and the exposure keys.
    cosmic_rays : list of numpy.ndarray
        A real frame's own cosmic-ray hits, one charge array [e-] each
        (:mod:`mmx.cleaning.cosmic_ray_footprints`); empty for simulated frames.
    """

    image: np.ndarray
    saturated: np.ndarray
    cause: np.ndarray
    sky: np.ndarray
    noise: np.ndarray
    meta: dict
    cosmic_rays: list[np.ndarray] = field(default_factory=list)


@dataclass
class CutoutResult:
    """One grid cutout: kept (``sample`` set) or rejected (``reason`` set)."""

    y0: int
    x0: int
    sample: Sample | None
    reason: str | None
    ignored: dict[str, int] = field(default_factory=dict)


def _key(header: fits.Header, key: str, where: str, kind=float):
    if key not in header:
        raise InputError(f"{where}: header has no {key}; expected GAIN, RDNOISE, SATURATE, "
                         "BIASSEC and DATASEC on every CCD")
    try:
        return kind(header[key])
    except (TypeError, ValueError):
        raise InputError(f"{where}: {key} = {header[key]!r} is not a valid value") from None


def merge_headers(primary: fits.Header | None, header: fits.Header) -> fits.Header:
    """The exposure's primary keys overridden by the CCD's own; unparsable cards are dropped.

    Real headers carry cards astropy cannot parse (non-ASCII bytes, broken values); a key
    the cleaning needs is never among them, so they are left out rather than fatal.
    """
    merged = fits.Header()
    for source in (primary, header):
        for card in (source.cards if source is not None else ()):
            try:
                if card.keyword in ("COMMENT", "HISTORY", ""):
                    continue
                merged[card.keyword] = card.value
            except (ValueError, KeyError, fits.VerifyError):
                continue
    return merged


def _number(header: fits.Header, key: str, default: float = 0.0) -> float:
    """A numeric header value (numbers written as strings too), else ``default``."""
    try:
        value = float(header.get(key, default))
    except (TypeError, ValueError):
        return default
    return value if np.isfinite(value) else default


def _header_fwhm(header: fits.Header, pixel_scale: float | None) -> float | None:
    for key in ("FWHM", "PSF_FWHM", "FWHMPIX"):  # [px]
        value = header.get(key)
        if isinstance(value, int | float) and value > 0:
            return float(value)
    seeing = header.get("SEEING")  # [arcsec]
    if isinstance(seeing, int | float) and seeing > 0 and pixel_scale:
        return float(seeing) / pixel_scale
    return None


def clean_ccd(
    raw: np.ndarray,
    header: fits.Header,
    *,
    config: CleanConfig | None = None,
    primary: fits.Header | None = None,
    name: str = "CCD",
) -> CleanCCD:
    """Find defects, repair and characterise one CCD, raw or processed.

    A raw read-out (``BIASSEC`` and ``DATASEC`` inside the array) is overscan-subtracted and
    trimmed and needs ``GAIN``, ``RDNOISE`` and ``SATURATE``; any other frame is taken as
    processed and characterised by :func:`mmx.cleaning.processed.characterise`.

    Parameters
    ----------
    raw : numpy.ndarray
        The CCD's pixels: a full raw read-out, or a processed frame [ADU].
    header : astropy.io.fits.Header
        Its header: ``GAIN`` [e-/ADU], ``RDNOISE`` [e-], ``SATURATE`` [raw ADU],
        ``BIASSEC``, ``DATASEC``; optional ``EXTNAME``/``CCDNUM``, ``FWHM`` [px] or
        ``SEEING`` [arcsec], ``SPIDANG`` [deg].
    config : CleanConfig, optional
        Settings; defaults when omitted.
    primary : astropy.io.fits.Header, optional
        The exposure's primary header (``FILTER``, ``EXPTIME``, ``PIXSCAL``...).
    name : str
        Where the data come from, for messages.

    Returns
    -------
    CleanCCD

    Raises
    ------
    InputError
        On a missing or invalid header key of a raw read-out, or a frame with no finite pixel.
    """
    cfg = config or CleanConfig()
    merged = merge_headers(primary, header)
    raw = np.asarray(raw, dtype=np.float32)
    if is_raw_layout(merged, raw.shape):
        gain = _key(merged, "GAIN", name)
        rdnoise_e = _key(merged, "RDNOISE", name)
        saturate_raw = _key(merged, "SATURATE", name)
        if gain <= 0:
            raise InputError(f"{name}: GAIN = {gain} must be > 0 e-/ADU")
        ov = subtract_overscan(raw, biassec=str(merged["BIASSEC"]),
                               datasec=str(merged["DATASEC"]), smooth=cfg.overscan_smooth,
                               name=name)
        read_noise = rdnoise_e / gain
        image, trimmed, bias, overscan_noise = ov.image, ov.raw, ov.bias, ov.noise
        layout, sources = "raw", {}
    else:  # processed: no overscan in the array; figures from the header or the pixels
        try:
            ch = characterise(raw, merged, mesh=cfg.mesh, assumed_noise_e=cfg.assumed_noise_e)
        except InputError as exc:
            raise InputError(f"{name}: {exc}") from None
        gain, read_noise, saturate_raw = ch.gain, ch.read_noise, ch.saturate
        bias, overscan_noise = ch.pedestal, ch.read_noise
        trimmed, image = raw, raw - np.float32(ch.pedestal)
        layout = "sky-subtracted" if ch.sky_subtracted else "processed"
        sources = ch.sources
    defects = detect_defects(image, trimmed, saturate=saturate_raw, bias=bias, gain=gain,
                             read_noise=read_noise, config=cfg)
    real = merged.get("ORIGIN") != _SIMULATED
    # a real frame's own hits [e-] for the synthesis library; a hit must peak at least
    # cr_sigclip sigmas up (the mask's dilated rim around other defects holds only noise)
    cosmic_rays = cut_footprints(
        cosmic_ray_charge(image, defects.cause == CAUSES.index("cosmic_ray") + 1, gain=gain,
                          noise=defects.noise, nsigma=cfg.cr_footprint_nsigma, grow=0),
        min_peak=cfg.cr_sigclip * float(np.median(defects.noise)) * gain) if real else []
    image = repair(image, defects.ignore, radius=cfg.repair_radius)
    pixel_scale = merged.get("PIXSCAL")
    pixel_scale = float(pixel_scale) if isinstance(pixel_scale, int | float) else None
    saturate = saturate_raw - bias
    # the header's seeing first (the observatory measured it on many stars); else our own
    # measure on the CCD's stars; else the default
    fwhm, n_stars = measure_fwhm(image, sky=defects.sky, noise=defects.noise,
                                 exclude=defects.ignore | defects.saturated, saturate=saturate)
    source = "stars"
    header_fwhm = _header_fwhm(merged, pixel_scale)
    if header_fwhm is not None:
        fwhm, source = header_fwhm, "header"
    elif fwhm is None or n_stars < cfg.min_stars:
        fwhm, source = cfg.fwhm_default, "default"
    spider = merged.get("SPIDANG", 0.0)
    meta = {
        "ccd": str(header.get("EXTNAME") or header.get("CCDNUM") or name),
        "band": str(merged.get("FILTER", "")).strip(),
        "exptime": _number(merged, "EXPTIME"),
        "gain": gain,
        "read_noise": read_noise,
        "saturate": float(saturate),
        "bias": float(bias),
        "overscan_noise": float(overscan_noise),
        "layout": layout,
        "estimated": sorted(k for k, v in sources.items() if v != "header"),
        "fwhm": float(fwhm),
        "fwhm_source": source,
        "n_stars": int(n_stars),
        "pixel_scale": pixel_scale,
        "spider_angle": float(spider) if isinstance(spider, int | float) else 0.0,
        "telescope": str(merged.get("TELESCOP", "")).strip(),
        "mjd": _number(merged, "MJD-OBS"),
        "airmass": _number(merged, "AIRMASS"),
        "origin": "real" if real else "simulated",
    }
    return CleanCCD(image=image, saturated=defects.saturated, cause=defects.cause,
                    sky=defects.sky, noise=defects.noise, meta=meta, cosmic_rays=cosmic_rays)


def grid_origins(shape: tuple[int, int], *, size: int, stride: int) -> list[tuple[int, int]]:
    """``(y0, x0)`` of the ``size`` x ``size`` cutouts that fit in ``shape`` at ``stride``.

    The grid is centred: the left-over margin is split between both sides.
    """
    def axis(n: int) -> list[int]:
        if n < size:
            return []
        count = (n - size) // stride + 1
        offset = ((n - size) - (count - 1) * stride) // 2
        return [offset + i * stride for i in range(count)]

    return [(y, x) for y in axis(shape[0]) for x in axis(shape[1])]


_PADDING = CAUSES.index("padding") + 1


def pad_to(ccd: CleanCCD, size: int) -> CleanCCD:
    """Mirror a CCD smaller than ``size`` up to it; the margin's truth is unknown (padding).

    Axes already at least ``size`` long are left alone; an axis shorter than ``size / 2``
    cannot be mirrored and is left too (no cutout fits it).
    """
    ny, nx = ccd.image.shape
    pads = [(0, 0) if n >= size or 2 * n < size else ((size - n) // 2, size - n - (size - n) // 2)
            for n in (ny, nx)]
    if pads == [(0, 0), (0, 0)]:
        return ccd
    cause = np.pad(ccd.cause, pads, mode="constant", constant_values=_PADDING)
    return CleanCCD(image=np.pad(ccd.image, pads, mode="symmetric"),
                    saturated=np.pad(ccd.saturated, pads, mode="constant"), cause=cause,
                    sky=np.pad(ccd.sky, pads, mode="symmetric"),
                    noise=np.pad(ccd.noise, pads, mode="symmetric"), meta=ccd.meta)


def cut_ccd(ccd: CleanCCD, *, config: CleanConfig | None = None,
            record: dict | None = None) -> Iterator[CutoutResult]:
    """Cut one cleaned CCD into labelled samples on a grid, rejecting the bad ones.

    Parameters
    ----------
    ccd : CleanCCD
        Output of :func:`clean_ccd`.
    config : CleanConfig, optional
        ``size``, ``stride``, rejection limits and BG/BBG rule settings.
    record : dict, optional
        Keys copied into every record (``instrument``, ``exposure``).

    Yields
    ------
    CutoutResult
        Kept cutouts carry a :class:`~mmx.io.shards.Sample` whose labels hold SAT, BBG and
        BG, whose ignore plane marks every repaired pixel, and whose record holds the
        keys of docs/architecture.md.
    """
    cfg = config or CleanConfig()
    size = cfg.size
    ccd = pad_to(ccd, size)
    for y0, x0 in grid_origins(ccd.image.shape, size=size, stride=cfg.stride):
        region = (slice(y0, y0 + size), slice(x0, x0 + size))
        cause = ccd.cause[region]
        ignore = cause > 0
        sat = ccd.saturated[region]
        hist = np.bincount(cause.ravel(), minlength=len(CAUSES) + 1)
        ignored = {c: int(hist[i + 1]) for i, c in enumerate(CAUSES)}
        n_pix = size * size - ignored["padding"]  # pixels of the frame itself
        reason = None
        if ignore.sum() - ignored["padding"] > cfg.max_ignored_fraction * n_pix:
            reason = "ignored_fraction"
        elif sat.sum() > cfg.max_saturated_fraction * n_pix:
            reason = "saturated_fraction"
        if reason is not None:
            yield CutoutResult(y0, x0, None, reason, ignored)
            continue
        image = ccd.image[region].copy()
        bbg, bg = label_background(image, contaminants=sat, ignore=ignore, mesh=cfg.mesh,
                                   smooth=cfg.bbg_smooth, nsigma=cfg.bbg_nsigma,
                                   min_area=cfg.bbg_min_area, core_nsigma=cfg.core_nsigma)
        labels = np.zeros(image.shape, dtype=np.uint16)
        labels[sat] |= _SAT
        labels[bbg] |= _BBG
        labels[bg] |= _BG
        meta = ccd.meta
        rec = {
            **(record or {}),
            "ccd": meta["ccd"], "x0": int(x0), "y0": int(y0), "size": size,
            "band": meta["band"], "exptime": meta["exptime"], "gain": meta["gain"],
            "read_noise": meta["read_noise"], "saturate": meta["saturate"],
            "sky": float(np.median(ccd.sky[region])),
            "sky_noise": float(np.median(ccd.noise[region])),
            "fwhm": meta["fwhm"], "fwhm_source": meta["fwhm_source"],
            "pixel_scale": meta["pixel_scale"], "spider_angle": meta["spider_angle"],
            "overscan_noise": meta["overscan_noise"], "bias": meta["bias"],
            "origin": meta["origin"], "layout": meta["layout"], "estimated": meta["estimated"],
            "telescope": meta["telescope"], "mjd": meta["mjd"], "airmass": meta["airmass"],
            "ignored_fraction": float(ignore.mean()), "saturated_fraction": float(sat.mean()),
            "padded_fraction": ignored["padding"] / (size * size),
            "ignored": ignored,
        }
        sample = Sample(image=image, labels=labels, ignore=ignore.astype(np.uint8), record=rec)
        yield CutoutResult(y0, x0, sample, None, ignored)


def clean_exposure(path: str | Path, *, config: CleanConfig | None = None,
                   instrument: str | None = None) -> Iterator[tuple[CleanCCD, list[CutoutResult]]]:
    """Clean every CCD of one raw multi-extension exposure and cut it.

    Parameters
    ----------
    path : str or pathlib.Path
        Raw exposure (``.fits`` or ``.fits.fz``).
    config : CleanConfig, optional
        Settings.
    instrument : str, optional
        Instrument name for the records; defaults to the ``INSTRUME`` key.

    Yields
    ------
    (CleanCCD, list of CutoutResult)
        Every CCD with its cutouts (an empty list when the CCD is smaller than a cutout).

    Raises
    ------
    InputError
        If the file cannot be read or a CCD lacks a required header key.
    """
    path = Path(path)
    exposure = path.name
    for suffix in (".fz", ".gz", ".fits", ".fit", ".fts"):
        exposure = exposure.removesuffix(suffix)
    with open_fits(path) as hdul:
        primary = hdul[0].header.copy()
        inst = instrument or str(primary.get("INSTRUME", "")).strip() or path.parent.name
        for name, header, data in _sky_planes(path, hdul):
            ccd = clean_ccd(data, header, config=config, primary=primary, name=name)
            results = list(cut_ccd(ccd, config=config,
                                   record={"instrument": inst, "exposure": exposure}))
            yield ccd, results


def _sky_planes(path: Path, hdul: fits.HDUList) -> Iterator[tuple[str, fits.Header, np.ndarray]]:
    """Every sky image of a file: 2-D image HDUs and each plane of a cube of chips.

    Quality, variance and weight planes (:data:`NON_SKY_EXTNAMES`) are skipped. Yields
    ``(name, header, float32 data)``; integer ``BLANK`` pixels become NaN.
    """
    for index, hdu in enumerate(hdul):
        if not isinstance(hdu, fits.PrimaryHDU | fits.ImageHDU | fits.CompImageHDU):
            continue
        extname = str(hdu.header.get("EXTNAME", "")).strip().upper()
        if extname in NON_SKY_EXTNAMES or hdu.header.get("NAXIS", 0) not in (2, 3):
            continue
        try:
            raw = hdu.data
        except (OSError, ValueError, TypeError) as exc:
            raise InputError(f"{path}[{index}]: cannot read image data ({exc})") from None
        if raw is None:
            continue
        planes = [raw] if raw.ndim == 2 else list(raw)
        for k, plane in enumerate(planes):
            data = np.array(plane, dtype=np.float32)
            blank = hdu.header.get("BLANK")
            if blank is not None and np.issubdtype(plane.dtype, np.integer):
                data[plane == blank] = np.nan
            data[~np.isfinite(data)] = np.nan
            # the file's name, not its path: this names the CCD in the records when the
            # header has no EXTNAME/CCDNUM, and the records must not depend on the checkout
            where = f"{path.name}[{index}]" + (f" plane {k}" if raw.ndim == 3 else "")
            header = hdu.header.copy()
            if raw.ndim == 3:
                header["EXTNAME"] = f"{extname or index}.{k}"
            yield where, header, data


def find_exposures(raw: str | Path) -> list[tuple[str, Path]]:
    """``(instrument, file)`` for every raw exposure under ``raw/<instrument>/``, sorted.

    FITS files directly under ``raw`` take ``raw``'s own name as instrument.

    Raises
    ------
    InputError
        If ``raw`` is not a folder or holds no FITS file.
    """
    raw = Path(raw)
    if not raw.is_dir():
        raise InputError(f"{raw}: no such folder of raw exposures")
    found = [(p.parent.name if p.parent != raw else raw.name, p)
             for p in sorted(raw.rglob("*")) if p.is_file() and is_fits_name(p)]
    if not found:
        raise InputError(f"{raw}: holds no raw exposure (*.fits, *.fits.fz) in "
                         "<instrument>/ folders; run `mmx surveys simulate` or `dvc pull`")
    return found


def _clean_one(job: tuple[str, Path, CleanConfig]) -> tuple[str, Path, list, float]:
    """Clean one exposure (in a worker process): per CCD its metadata, cutouts, footprints."""
    inst, path, cfg = job
    t0 = time.perf_counter()
    ccds = [(ccd.meta, results, ccd.cosmic_rays)
            for ccd, results in clean_exposure(path, config=cfg, instrument=inst)]
    return inst, path, ccds, time.perf_counter() - t0


def _empty_stats() -> dict:
    return {"exposures": 0, "ccds": 0, "ccds_too_small": 0, "cutouts_kept": 0,
            "cutouts_rejected": dict.fromkeys(REJECT_REASONS, 0),
            "ignored_pixels": dict.fromkeys(CAUSES, 0), "saturated_pixels": 0,
            "pixels_kept": 0, "fwhm_source": {}, "cosmic_ray_footprints": 0, "seconds": 0.0}


def run_clean(
    raw: str | Path,
    out: str | Path,
    *,
    extra: Sequence[str | Path] = (),
    report: str | Path | None = None,
    footprints: str | Path | None = None,
    config: CleanConfig | None = None,
) -> dict:
    """Run the ``clean`` stage: every exposure under ``raw`` (and ``extra``) to a shard set.

    Parameters
    ----------
    raw : str or pathlib.Path
        Folder of exposures, ``<instrument>/<exposure>.fits.fz`` (raw or processed frames).
    extra : sequence of str or pathlib.Path
        More folders laid out the same way (the real frames of ``paths.real``); one that
        holds no FITS file is skipped.
    out : str or pathlib.Path
        Shard set to write (replaced atomically).
    report : str or pathlib.Path, optional
        JSON report to write: per instrument the cutouts kept and rejected (by reason),
        ignored pixels by cause (in kept cutouts) and timing.
    footprints : str or pathlib.Path, optional
        Where to write the real frames' cosmic-ray footprints
        (:func:`mmx.cleaning.cosmic_ray_footprints.save_footprints`; empty when no frame
        is real).
    config : CleanConfig, optional
        Settings.

    Returns
    -------
    dict
        The report.

    Raises
    ------
    InputError
        If there is no raw exposure, one cannot be read, or no cutout survives.
    """
    cfg = config or CleanConfig()
    exposures = find_exposures(raw)
    for folder in extra:
        if any(is_fits_name(p) for p in Path(folder).rglob("*")):
            exposures += find_exposures(folder)
    stats: dict[str, dict] = {}
    start = time.perf_counter()
    writer = ShardWriter(out, shard_size=cfg.shard_size)
    hits: list[np.ndarray] = []
    sources: list[str] = []
    try:
        jobs = [(inst, path, cfg) for inst, path in exposures]
        with process_pool(min(cfg.workers, len(jobs))) as pool:
            done = pool.map(_clean_one, jobs) if pool else map(_clean_one, jobs)
            for inst, path, ccds, seconds in tqdm(done, total=len(jobs), desc="clean",
                                                  unit="exposure"):
                st = stats.setdefault(inst, _empty_stats())
                st["exposures"] += 1
                kept = rejected = 0
                for meta, results, cosmic_rays in ccds:
                    hits += cosmic_rays
                    sources += [f"{inst}/{path.name}/{meta['ccd']}"] * len(cosmic_rays)
                    st["cosmic_ray_footprints"] += len(cosmic_rays)
                    st["ccds"] += 1
                    st["ccds_too_small"] += not results
                    src = meta["fwhm_source"]
                    st["fwhm_source"][src] = st["fwhm_source"].get(src, 0) + 1
                    for result in results:
                        if result.sample is None:
                            st["cutouts_rejected"][result.reason] += 1
                            rejected += 1
                            continue
                        writer.add(result.sample)
                        kept += 1
                        st["cutouts_kept"] += 1
                        st["pixels_kept"] += result.sample.image.size
                        st["saturated_pixels"] += int(np.count_nonzero(result.sample.labels & _SAT))
                        for cause, n in result.ignored.items():
                            st["ignored_pixels"][cause] += n
                st["seconds"] += seconds
                log.info("%s: %d cutouts kept, %d rejected (%.1f s)", path, kept, rejected, seconds)
        if not any(st["cutouts_kept"] for st in stats.values()):
            raise InputError(f"{raw}: no cutout survived cleaning ({json.dumps(stats)}); "
                             "check clean.size and the rejection limits")
        if footprints is not None:
            save_footprints(footprints, hits, sources)
        summary = writer.close(stage="clean", config=cfg.__dict__)
    except BaseException:
        shutil.rmtree(writer.tmp, ignore_errors=True)  # never leave a half-written set
        raise
    for st in stats.values():
        st["seconds"] = round(st["seconds"], 2)
        total = st["cutouts_kept"] + sum(st["cutouts_rejected"].values())
        st["kept_fraction"] = st["cutouts_kept"] / total if total else 0.0
        st["ignored_fraction"] = sum(st["ignored_pixels"].values()) / max(st["pixels_kept"], 1)
    result = {
        "instruments": stats,
        "cutouts_kept": sum(s["cutouts_kept"] for s in stats.values()),
        "cutouts_rejected": sum(sum(s["cutouts_rejected"].values()) for s in stats.values()),
        "cosmic_ray_footprints": len(hits),
        "class_fraction": summary["class_fraction"],
        "seconds": round(time.perf_counter() - start, 2),
    }
    if report is not None:
        report = Path(report)
        report.parent.mkdir(parents=True, exist_ok=True)
        tmp = report.with_name(f".{report.name}.part")
        tmp.write_text(json.dumps(result, indent=2))
        tmp.replace(report)
    return result
