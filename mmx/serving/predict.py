"""``mmx predict`` at file level: inputs in, one mask file per input file out.

Output file
-----------
``<name>.mask.fits`` next to the input (or in ``out_dir``), where ``<name>`` is the input's
file name without ``.fits``/``.fit``/``.fts`` and ``.fz``/``.gz``; an input selected as
``file.fits[N]`` gives ``<name>.hdu<N>.mask.fits``, ``file.fits[SCI,2]`` gives
``<name>.SCI_2.mask.fits``. Outputs are written one HDU at a time and atomically
(:class:`mmx.io.fitsio.AtomicFitsWriter`: memory holds at most three images and masks, the
next HDU read ahead and the previous one being written while one is masked
(:mod:`mmx.serving.overlap`), whatever the number of HDUs, and the file appears only when
complete), never over an input, and over an existing
output only with ``overwrite``; with ``skip_existing`` an existing mask made by the same model and
options (its ``MMXFPRNT`` key) is kept and the input skipped, so a crashed batch resumes.
Two inputs that would write one output file are refused before anything runs.

Layout: HDU ``i`` of the output answers HDU ``i`` of the input.

* A 2-D image HDU gets its mask (:mod:`mmx.serving.masks` describes the four layouts), under the
  input HDU's own header: ``EXTNAME``, WCS and every other key carried over (minus the
  keys describing the input's data: ``BITPIX``, ``BSCALE``, ``BLANK``, ``BUNIT``...), plus
  the provenance keys below.
* Any other HDU (an empty primary, a table, a 3-D cube, and the data-quality, error,
  variance and weight planes of :data:`mmx.io.fitsio.AUX_EXTNAMES` unless selected) is copied
  unchanged, with its header, and is *not* given a mask.
* Header cards that cannot be parsed or written (non-ASCII bytes...) are left out; a
  ``COMMENT`` card names them.
* With ``file.fits[N]``: the input's primary header (no data) then the mask of HDU ``N``
  (or only the mask when ``N`` is 0).
* Cube outputs (``prob``, ``prob8``, ``binary``) carry ``WCSAXES = 2``: the celestial WCS
  describes the two image axes, not the plane axis (astropy: ``WCS(header, naxis=2)``,
  required for a SIP header on a 3-D HDU).
* Saturation: where the input HDU's header has a numeric ``SATURATE``, pixels at or above
  it are flagged SAT whatever the network says (:mod:`mmx.serving.saturation`).
* With ``compress``: mask HDUs are tile-compressed (``PLIO_1`` for the bit mask,
  ``GZIP_2`` lossless for the cubes), and a mask of a primary image goes to HDU 1 behind
  an empty primary (tile-compressed images are extensions: the ``fpack`` layout).
* With ``clean``: ``<name>.clean.fits`` beside the mask, the same layout with each masked
  image replaced by its cleaned pixels (float32; :mod:`mmx.serving.inpaint`: CR, HP, HCL, DCL, TRL
  inpainted, no-data NaN), written first and removed if the mask cannot be written.

Provenance keys (in the primary header and in every mask HDU)
--------------------------------------------------------------
``MMXVERS`` mmx version, ``MMXDATE`` UTC time, ``MMXMODEL``/``MMXMVER``/``MMXALIAS``/
``MMXRUNID`` registry name, version, alias and MLflow run, ``MMXSRC`` where the model was
loaded from, ``MMXARCH`` network, ``MMXPRIOR`` prior correction applied, ``PN_<abbr>`` the
model's training proportion and ``PRI_<abbr>`` the proportion used for each output class,
``THR_<abbr>`` thresholds (binary modes), ``PLANEk``/``BIT_<abbr>`` the plane or bit of each
class, ``MMXMODE`` output mode, ``MMXTILE``/``MMXMARG``/``MMXPREC`` tiling and arithmetic,
``MMXPAD`` the image border, ``MMXTTA`` test-time augmentation,
``MMXINPUT``/``MMXHDU`` the input file and HDU, ``MMXFPRNT`` a digest of the model's weights
and every option that changes the mask (:func:`options_fingerprint`). Floats are written at
full (``repr``) precision.

Batches
-------
:func:`predict_files` expands inputs (a bad entry is one failed result, the rest goes on),
runs each file locally or on a Dask cluster (:mod:`mmx.serving.distributed`), and appends one JSON
line per input to a run log (``input``, ``output``, ``status`` ok/skipped/failed,
``seconds``, ``error``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np
from astropy.io import fits
from astropy.io.fits.verify import VerifyWarning

from mmx.errors import ConfigError, InputError, MmxError
from mmx.io.fitsio import (
    FITS_SUFFIXES,
    MASK_SUFFIX,
    WARNINGS_LOCK,
    AtomicFitsWriter,
    InputSpec,
    check_declared_size,
    clean_header,
    expand_inputs,
    hdu_label,
    image_indices,
    open_fits,
    parse_input,
    read_image,
    release_data,
)
from mmx.serving.masks import OutputMode, make_writer
from mmx.serving.overlap import OrderedWriter, overlap_enabled, prefetch_file, read_ahead

__all__ = [
    "MASK_SUFFIX",
    "FileResult",
    "PredictReport",
    "output_path",
    "preview_path",
    "clean_path",
    "check_class_options",
    "provenance_cards",
    "options_fingerprint",
    "MaskOptions",
    "run_one",
    "predict_file",
    "predict_files",
]

log = logging.getLogger(__name__)

#: keys describing the input's data array, dropped from the header of its mask
_DATA_KEYS = ("SIMPLE", "XTENSION", "BITPIX", "NAXIS", "EXTEND", "PCOUNT", "GCOUNT",
              "BSCALE", "BZERO", "BLANK", "BUNIT", "DATAMIN", "DATAMAX", "CHECKSUM",
              "DATASUM", "ZIMAGE", "ZBITPIX", "ZCMPTYPE", "ZQUANTIZ", "ZDITHER0")


@dataclass
class FileResult:
    """What happened to one input.

    Attributes
    ----------
    input : str
        The input as given (``file``, ``file[N]``, ``file[SCI]``).
    output : pathlib.Path or None
        The mask file written or kept, None on failure.
    error : str
        One-line reason of a failure, empty on success.
    seconds : float
        Wall time spent on this input.
    status : {"ok", "skipped", "failed"}
        ``skipped``: an identical mask existed (``skip_existing``).
    """

    input: str
    output: Path | None = None
    error: str = ""
    seconds: float = 0.0
    status: str = ""

    def __post_init__(self) -> None:
        if not self.status:
            self.status = "failed" if self.error or self.output is None else "ok"

    @property
    def ok(self) -> bool:
        """True when the mask file exists: written, or kept by ``skip_existing``."""
        return self.status in ("ok", "skipped")

    def log_record(self) -> dict:
        """The JSON-lines record of the run log."""
        return {"input": self.input, "output": str(self.output) if self.output else None,
                "status": self.status, "seconds": round(self.seconds, 3), "error": self.error}


@dataclass
class PredictReport:
    """Results of :func:`predict_files`, one per input in order."""

    results: list[FileResult] = field(default_factory=list)
    log_path: Path | None = None

    @property
    def failed(self) -> list[FileResult]:
        """Inputs that produced no mask file."""
        return [r for r in self.results if r.status == "failed"]

    @property
    def skipped(self) -> list[FileResult]:
        """Inputs whose identical mask already existed."""
        return [r for r in self.results if r.status == "skipped"]

    @property
    def outputs(self) -> list[Path]:
        """Mask files written by this run."""
        return [r.output for r in self.results if r.status == "ok" and r.output is not None]


@dataclass(frozen=True)
class MaskOptions:
    """Everything besides the model that decides a mask file (see :func:`predict_file`)."""

    mode: str = OutputMode.BITMASK.value
    thresholds: tuple[tuple[str, float], ...] = ()
    out_dir: Path | None = None
    overwrite: bool = False
    preview: bool = False
    aux: bool = False
    compress: bool = False
    clean: bool = False

    @classmethod
    def make(cls, *, mode: OutputMode | str = OutputMode.BITMASK,
             thresholds: Mapping[str, float] | None = None, out_dir: str | Path | None = None,
             overwrite: bool = False, preview: bool = False, aux: bool = False,
             compress: bool = False, clean: bool = False) -> MaskOptions:
        """Build from the keyword arguments of :func:`predict_file`."""
        return cls(OutputMode(mode).value, tuple(sorted((thresholds or {}).items())),
                   Path(out_dir) if out_dir is not None else None, bool(overwrite),
                   bool(preview), bool(aux), bool(compress), bool(clean))


def _stem(path: Path) -> str:
    name = path.name
    lower = name.lower()
    for comp in (".fz", ".gz"):
        if lower.endswith(comp):
            name, lower = name[: -len(comp)], lower[: -len(comp)]
            break
    for suffix in FITS_SUFFIXES:
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name


def output_path(spec: InputSpec | str | Path, *, out_dir: str | Path | None = None) -> Path:
    """Mask file name for an input: ``<name>.mask.fits``.

    ``<name>.hdu<N>.mask.fits`` for ``file[N]``, ``<name>.<EXTNAME>[_<EXTVER>].mask.fits``
    for ``file[EXTNAME,EXTVER]``.

    Parameters
    ----------
    spec : InputSpec, str or Path
        The input file (``.fits``, ``.fits.fz``, ``.fits.gz``...), optionally with an HDU.
    out_dir : path, optional
        Folder of the output; default the input's folder.
    """
    if not isinstance(spec, InputSpec):
        spec = parse_input(spec)
    stem = _stem(spec.path)
    if spec.hdu is not None:
        stem += f".hdu{spec.hdu}"
    elif spec.extname is not None:
        stem += f".{spec.extname}" + (f"_{spec.extver}" if spec.extver is not None else "")
    folder = Path(out_dir) if out_dir is not None else spec.path.parent
    return folder / (stem + MASK_SUFFIX)


def preview_path(mask_path: Path, hdu: int | None = None) -> Path:
    """PNG preview name for a mask file (``.mask.png``, or ``.mask.hdu<i>.png`` per HDU)."""
    base = mask_path.name.removesuffix(".fits")
    if hdu is not None:
        base += f".hdu{hdu}"
    return mask_path.with_name(base + ".png")


def clean_path(mask_path: Path) -> Path:
    """Cleaned-image name for a mask file: ``<name>.clean.fits``."""
    from mmx.serving.inpaint import CLEAN_SUFFIX

    return mask_path.with_name(mask_path.name.removesuffix(MASK_SUFFIX) + CLEAN_SUFFIX)


def check_class_options(
    classes: Iterable[str], *, priors: Mapping[str, float] | None = None,
    thresholds: Mapping[str, float] | None = None,
) -> None:
    """Refuse priors or thresholds for classes that are not output.

    Raises
    ------
    ConfigError
        Naming the class, the option and the output classes.
    """
    wanted = list(classes)
    for what, values in (("prior", priors), ("threshold", thresholds)):
        for abbr in values or {}:
            if abbr not in wanted:
                raise ConfigError(f"{what} given for {abbr}, which is not among the output "
                                  f"classes ({', '.join(wanted)}); add it to --classes")


def _mmx_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mmx")
    except PackageNotFoundError:
        return "unknown"


def provenance_cards(provenance: Mapping, *, mode: OutputMode | str) -> list[tuple]:
    """FITS cards ``(key, value, comment)`` recording what made a mask.

    Parameters
    ----------
    provenance : mapping
        :meth:`mmx.serving.inference.Predictor.provenance`.
    mode : OutputMode or str
        Output mode.
    """
    p = provenance
    cards: list[tuple] = [
        ("MMXVERS", _mmx_version(), "mmx version that wrote this mask"),
        ("MMXDATE", datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"), "UTC time of the mask"),
        ("MMXMODEL", p.get("model_name", ""), "registered model name"),
        ("MMXMVER", p.get("model_version", ""), "registered model version"),
        ("MMXALIAS", p.get("model_alias", ""), "registry alias used"),
        ("MMXRUNID", p.get("run_id", ""), "MLflow run that trained the model"),
        ("MMXSRC", p.get("source", ""), "where the model was loaded from"),
        ("MMXARCH", p.get("architecture", ""), "network architecture"),
        ("MMXMODE", OutputMode(mode).value, "output mode: prob, prob8, binary or bitmask"),
        ("MMXPRIOR", bool(p.get("apply_priors", False)), "prior correction applied"),
        ("MMXTILE", int(p.get("tile", 0)), "largest tile side [px]"),
        ("MMXMARG", int(p.get("margin", 0)), "tile margin [px]"),
        ("MMXPREC", p.get("precision", ""), "convolution arithmetic"),
        ("MMXPAD", p.get("padding", ""), "context beyond the image border"),
        ("MMXTTA", p.get("tta", "none"), "test-time augmentation: views averaged"),
    ]
    training = p.get("training_priors", {})
    used = p.get("priors", {})
    for abbr, value in training.items():
        if np.isfinite(value):
            cards.append((f"PN_{abbr}", float(value), f"training proportion P_N of {abbr}"))
        if p.get("apply_priors") and np.isfinite(used.get(abbr, np.nan)):
            cards.append((f"PRI_{abbr}", float(used[abbr]), f"prior P used for {abbr}"))
    return cards


def options_fingerprint(
    predictor, *, mode: OutputMode | str, thresholds: Mapping[str, float] | None = None,
    aux: bool = False, clean: bool = False,
) -> str:
    """Digest of the model and every option that changes a mask (``MMXFPRNT``).

    Two runs with the same fingerprint write the same mask for the same input: it covers
    the weights (their SHA-256, else the model's source and registry version), the output
    classes, mode, priors, effective thresholds (binary modes), tiling, arithmetic, border,
    test-time augmentation (only when on: older masks keep their fingerprint), which HDUs
    are masked, header saturation and whether a cleaned image is written. Not the mmx
    version, the date or the compression (the values are the same).
    """
    mode = OutputMode(mode)
    prov = predictor.provenance()
    package = predictor.package
    digest = getattr(package, "weights_sha256", "") or ""
    model = ({"weights_sha256": digest} if digest else
             {k: prov.get(k, "") for k in ("model_name", "model_version", "source")})
    doc = {
        "model": model,
        "architecture": prov.get("architecture", ""),
        "classes": [c.abbr for c in predictor.classes],
        "mode": mode.value,
        "apply_priors": bool(prov.get("apply_priors")),
        "priors": {k: repr(float(v)) for k, v in sorted(prov.get("priors", {}).items())},
        "training_priors": {k: repr(float(v))
                            for k, v in sorted(prov.get("training_priors", {}).items())},
        "tile": prov.get("tile"), "margin": prov.get("margin"),
        "precision": prov.get("precision"), "padding": prov.get("padding"),
        **({"tta": prov["tta"]} if prov.get("tta", "none") != "none" else {}),
        "aux": bool(aux),
        "saturate": "header SATURATE flags SAT",
    }
    if clean:
        from mmx.serving.inpaint import CLEAN_CLASSES

        doc["clean"] = list(CLEAN_CLASSES)
    if mode in (OutputMode.BINARY, OutputMode.BITMASK):
        thr = predictor.default_thresholds() | dict(thresholds or {})
        doc["thresholds"] = {k: repr(float(v)) for k, v in sorted(thr.items())}
    text = json.dumps(doc, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _mask_header(source: fits.Header, cards: Iterable[tuple]) -> fits.Header:
    header = source.copy()
    for key in list(header.keys()):
        upper = key.upper()
        if upper in _DATA_KEYS or (upper.startswith("NAXIS") and upper[5:].isdigit()):
            header.remove(key, ignore_missing=True, remove_all=True)
    for key, value, comment in cards:
        header[key] = (value, _fit_comment(key, value, comment))
    return header


def _fit_comment(key: str, value, comment: str) -> str:
    """Shorten ``comment`` so the card fits in 80 columns (values are never shortened)."""
    if isinstance(value, str) and len(value) > 60:
        return ""
    room = 80 - len(fits.Card(key, value).image.rstrip()) - 3
    return comment[:max(room, 0)]


def predict_file(
    spec: InputSpec | str | Path,
    predictor,
    *,
    mode: OutputMode | str = OutputMode.BITMASK,
    thresholds: Mapping[str, float] | None = None,
    out_dir: str | Path | None = None,
    overwrite: bool = False,
    preview: bool = False,
    progress: bool = False,
    aux: bool = False,
    fingerprint: str | None = None,
    compress: bool = False,
    clean: bool = False,
) -> Path:
    """Mask every 2-D image HDU of one input file and write its mask file.

    Parameters
    ----------
    spec : InputSpec, str or Path
        One FITS file, optionally ``file[N]``, ``file[NAME]`` or ``file[NAME,VER]``.
    predictor : mmx.serving.inference.Predictor
        The model, classes and priors to use.
    mode : OutputMode or str
        Output mode (:mod:`mmx.serving.masks`).
    thresholds : mapping, optional
        Probability thresholds per class (defaults from the class table).
    out_dir : path, optional
        Output folder (default: next to the input).
    overwrite : bool
        Replace existing outputs (never the input).
    preview : bool
        Also write a PNG per image HDU (:mod:`mmx.serving.preview`).
    progress : bool
        Show a progress bar over tiles (stderr).
    aux : bool
        Also mask data-quality, error, variance and weight planes
        (:data:`mmx.io.fitsio.AUX_EXTNAMES`); without it they are copied.
    fingerprint : str, optional
        :func:`options_fingerprint` of this call, if already computed.
    compress : bool
        Tile-compress the mask HDUs (module docstring).
    clean : bool
        Also write ``<name>.clean.fits`` (:func:`clean_path`), the image with the pixels
        of :data:`mmx.serving.inpaint.CLEAN_CLASSES` inpainted.

    Returns
    -------
    pathlib.Path
        The mask file.

    Raises
    ------
    InputError
        Unreadable or non-FITS input, no image HDU, output exists without ``overwrite``
        or would replace the input, or cannot be written; the message names the file.
    """
    if isinstance(spec, str | Path):
        specs = expand_inputs([spec])
        if len(specs) != 1:
            raise InputError(f"{spec}: names {len(specs)} files; expected one FITS file")
        spec = specs[0]
    mode = OutputMode(mode)
    out = output_path(spec, out_dir=out_dir)
    if out.resolve() == spec.path.resolve():
        raise InputError(f"{out}: refusing to overwrite an input file; choose another output "
                         "name or folder")
    if out.exists() and not overwrite:
        raise InputError(f"{out}: output exists; pass --overwrite to replace it or "
                         "--skip-existing to keep it")
    with open_fits(spec.path) as hdul:
        indices = image_indices(spec, hdul, aux=aux)
        several = len(indices) > 1  # a selection already has its HDU in its name
        pngs = {i: preview_path(out, i if several else None) for i in indices}
        for png in pngs.values() if preview else ():
            if png.exists() and not overwrite:
                raise InputError(f"{png}: preview exists; pass --overwrite to replace it")
        cleaned_out = clean_path(out) if clean else None
        if cleaned_out is not None:
            if cleaned_out.resolve() == spec.path.resolve():
                raise InputError(f"{cleaned_out}: refusing to overwrite an input file")
            if cleaned_out.exists() and not overwrite:
                raise InputError(f"{cleaned_out}: cleaned image exists; pass --overwrite to "
                                 "replace it")
            clean_classes = _clean_classes(predictor)
        if fingerprint is None:
            fingerprint = options_fingerprint(predictor, mode=mode, thresholds=thresholds,
                                              aux=aux, clean=clean)
        written: list[Path] = []
        try:
            return _predict_hdus(spec, hdul, indices, predictor, out, mode=mode,
                                 thresholds=thresholds, overwrite=overwrite,
                                 pngs=pngs if preview else {}, written=written,
                                 progress=progress, fingerprint=fingerprint,
                                 compress=compress, cleaned_out=cleaned_out,
                                 clean_classes=clean_classes if clean else ())
        except BaseException:
            for png in written:  # no preview or cleaned image without its mask
                png.unlink(missing_ok=True)
            raise


def _clean_classes(predictor) -> list[str]:
    from mmx.serving.inpaint import CLEAN_CLASSES

    have = [c.abbr for c in predictor.classes]
    chosen = [a for a in CLEAN_CLASSES if a in have]
    if not chosen:
        raise ConfigError(f"--clean replaces pixels of {', '.join(CLEAN_CLASSES)}, none of "
                          f"which is an output class ({', '.join(have)}); add some to "
                          "--classes")
    return chosen


def _image_hdu(header: fits.Header, data: np.ndarray, *, primary: bool, compress: bool):
    """An image HDU of ``data``; ``BSCALE``/``BZERO`` set after, so the data stay raw."""
    scaling = [(k, header[k], header.comments[k]) for k in ("BSCALE", "BZERO") if k in header]
    header = header.copy()
    for key, _, _ in scaling:
        header.remove(key)
    if compress:
        kind = "PLIO_1" if data.ndim == 2 and data.dtype.kind == "i" else "GZIP_2"
        for key in ("SIMPLE", "EXTEND"):
            header.remove(key, ignore_missing=True)
        hdu = fits.CompImageHDU(data=data, header=header, compression_type=kind,
                                quantize_level=0.0 if data.dtype.kind == "f" else 16.0)
    else:
        hdu = (fits.PrimaryHDU if primary else fits.ImageHDU)(data=data, header=header)
    for key, value, comment in scaling:
        hdu.header[key] = (value, comment)
    return hdu


def _predict_hdus(spec, hdul, indices, predictor, out, *, mode, thresholds, overwrite, pngs,
                  written, progress, fingerprint, compress=False, cleaned_out=None,
                  clean_classes=()) -> Path:
    """Mask HDUs ``indices`` of the open file ``hdul``, one HDU at a time.

    Each output HDU is appended to its file as soon as it is made and its pixels dropped,
    so memory holds a few images and masks whatever the number of HDUs: the next HDU is
    read and the previous one's outputs written while the current one is masked
    (:mod:`mmx.serving.overlap`). The files appear only when complete
    (:class:`~mmx.io.fitsio.AtomicFitsWriter`), the cleaned image first.
    """
    prov = predictor.provenance()
    base_cards = provenance_cards(prov, mode=mode) + [
        ("MMXFPRNT", fingerprint, "digest of model and options (--skip-existing)")]
    overlap = overlap_enabled()
    with contextlib.ExitStack() as stack:
        masks = _Output(stack.enter_context(
            AtomicFitsWriter(out, overwrite=overwrite, protect=[spec.path])),
            spec, base_cards, compress=compress)
        cleans = None if cleaned_out is None else _Output(stack.enter_context(
            AtomicFitsWriter(cleaned_out, overwrite=overwrite, protect=[spec.path])),
            spec, base_cards, compress=False)
        outputs = [o for o in (masks, cleans) if o is not None]
        # entered last, left first: no write is running when a failed file is discarded
        writer = stack.enter_context(OrderedWriter(enabled=overlap))
        if spec.selected and indices[0] != 0:  # the file's primary header, without its data
            for output in outputs:
                output.add_primary_header(hdul[0])
        for index, item in read_ahead(_hdu_items(spec, hdul, indices, len(outputs)),
                                      enabled=overlap):
            if isinstance(item, list):  # copies of HDUs that are not masked
                writer.submit(_append_copies, outputs, item)
                continue
            mask, cleaned = _mask_image(item, predictor, spec,
                                        mode=mode, thresholds=thresholds, progress=progress,
                                        base_cards=base_cards, png=pngs.get(index),
                                        written=written, clean_classes=clean_classes
                                        if cleans is not None else ())
            del item
            writer.submit(_append_images, masks, mask, cleans, cleaned)
            del mask, cleaned  # the next HDU starts from an empty slate
        writer.finish()
        if cleans is not None:
            written.append(cleans.writer.commit())
        masks.writer.commit()
    log.info("%s -> %s (%d image HDU(s))", spec, out, len(indices))
    return out


def _hdu_items(spec, hdul, indices, n_outputs: int) -> Iterator[tuple[int, object]]:
    """``(index, image)`` for each HDU to mask, ``(index, copies)`` for each one to copy.

    Everything that touches the input file happens here (in the read-ahead thread):
    a copied HDU comes with its data in memory, one copy per output file.
    """
    for index in indices if spec.selected else range(len(hdul)):
        if index in indices:
            yield index, read_image(spec, hdul, index)
            continue
        hdu = hdul[index]
        copies = [_copy_hdu_safely(hdu, spec.path, index, primary=index == 0)
                  for _ in range(n_outputs)]
        for copy in copies:
            _ = copy.data  # read now, not by the writer thread
        release_data(hdu)
        yield index, copies


def _append_copies(outputs: list[_Output], copies: list) -> None:
    for output, copy in zip(outputs, copies, strict=True):
        output.append_copy(copy)


def _append_images(masks: _Output, mask: tuple, cleans: _Output | None,
                   cleaned: tuple | None) -> None:
    masks.add_image(*mask)
    if cleans is not None:
        assert cleaned is not None  # clean_classes given: a cleaned image comes back
        cleans.add_image(*cleaned)


def _mask_image(image, predictor, spec, *, mode, thresholds, progress, base_cards, png,
                written, clean_classes) -> tuple[tuple, tuple | None]:
    """Mask one image: ``(header, mask)`` and, with ``clean_classes``, ``(header, cleaned)``."""
    from tqdm.auto import tqdm

    from mmx.serving.saturation import flag_saturated, saturation_level

    n_tiles = len(predictor.plan(image.data.shape))
    with tqdm(total=n_tiles, desc=f"{image}", unit="tile", leave=False, disable=None
              if progress else True, position=1) as bar:
        with np.errstate(over="ignore", invalid="ignore"):  # absurd pixel values
            writer = predictor.predict(image.data, mode=mode, thresholds=thresholds,
                                       progress=bar, clean_classes=clean_classes)
    level = saturation_level(image.header)
    if level is not None:
        flag_saturated(writer, image.data, level)
    where = [("MMXINPUT", spec.path.name, "input file"),
             ("MMXHDU", image.index, "input HDU (0-based)")]
    header = _mask_header(image.header, base_cards + writer.header_cards() + where)
    if writer.array.ndim == 3 and any(k.startswith("CTYPE") for k in header):
        header["WCSAXES"] = (2, "the WCS describes the two image axes")
    _note_dropped(header, image.dropped)
    cleaned = None
    if clean_classes:
        from mmx.serving.inpaint import CLEAN_FRACTION, inpaint, writer_clean_mask

        bad = writer_clean_mask(writer, clean_classes)
        clean_header = _mask_header(image.header, base_cards + where + [
            ("MMXCLEAN", ",".join(clean_classes),
             "classes inpainted (median of good neighbours)"),
            ("MMXCLFRC", CLEAN_FRACTION, "cleaning grows flags down to this x threshold")])
        if "BUNIT" in image.header:
            clean_header["BUNIT"] = image.header["BUNIT"]
        cleaned = (clean_header, inpaint(image.data, bad))
    if png is not None:
        from mmx.serving.preview import render_preview

        written.append(render_preview(image.data, writer.binary_planes(), png,
                                      nodata=image.bad, title=f"{image}"))
    return (header, writer.array), cleaned


class _Output:
    """One output file in the making: HDU ``i`` answers input HDU ``i``.

    The first HDU written (always a primary) carries the provenance cards and the input
    file name.
    """

    def __init__(self, writer: AtomicFitsWriter, spec: InputSpec, base_cards, *,
                 compress: bool) -> None:
        self.writer, self.spec, self.base_cards, self.compress = writer, spec, base_cards, compress
        self.started = False

    def add_primary_header(self, hdu) -> None:
        """The input's primary header, without its data."""
        header, dropped = _clean(hdu, self.spec.path, 0)
        primary = fits.PrimaryHDU(header=_mask_header(header, []))
        _note_dropped(primary.header, dropped)
        self._append(primary)

    def add_image(self, header: fits.Header, data: np.ndarray) -> None:
        """A mask (or cleaned image) under ``header``."""
        primary = not self.started
        if primary and self.compress:  # compressed images are extensions
            self._append(fits.PrimaryHDU())
            primary = False
        self._append(_image_hdu(header, data, primary=primary, compress=self.compress))

    def append_copy(self, copy) -> None:
        """An input HDU that is not masked, as :func:`_copy_hdu_safely` copied it."""
        self._append(copy)

    def _append(self, hdu) -> None:
        if not self.started:
            if not isinstance(hdu, fits.PrimaryHDU):
                self._append(fits.PrimaryHDU())
            else:
                for key, value, comment in self.base_cards:
                    hdu.header[key] = (value, _fit_comment(key, value, comment))
                hdu.header["MMXINPUT"] = (self.spec.path.name, "input file")
                self.started = True
        with WARNINGS_LOCK, warnings.catch_warnings():  # non-standard cards from the input
            warnings.simplefilter("ignore", VerifyWarning)  # are fixed silently
            self.writer.append(hdu)


def _note_dropped(header: fits.Header, dropped: list[str]) -> None:
    if dropped:
        names = ", ".join(dropped)
        header.add_comment(f"mmx dropped {len(dropped)} unreadable input card(s): {names}"[:72])


def _clean(hdu, path: Path, index: int) -> tuple[fits.Header, list[str]]:
    try:
        return clean_header(hdu.header)
    except Exception as exc:  # pragma: no cover - clean_header drops what it cannot read
        raise InputError(f"{hdu_label(path, index, hdu)}: unreadable header ({exc})") from None


def _copy_hdu_safely(hdu, path: Path, index: int, *, primary: bool):
    """Copy a non-masked HDU with a clean header; a damaged one is an error naming it."""
    header, dropped = _clean(hdu, path, index)
    if isinstance(hdu, fits.PrimaryHDU | fits.ImageHDU):
        check_declared_size(hdu, path, hdu_label(path, index, hdu))
    try:
        with WARNINGS_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if isinstance(hdu, fits.PrimaryHDU | fits.ImageHDU | fits.CompImageHDU):
                data = hdu.data
                for key in ("BSCALE", "BZERO", "BLANK"):  # data come back scaled and NaN'd
                    if hdu.data is not None and data.dtype.kind == "f":
                        header.remove(key, ignore_missing=True)
                if primary:
                    copy = fits.PrimaryHDU(data=data, header=_mask_header(header, [])
                                           if data is None else header)
                else:
                    for key in ("SIMPLE", "EXTEND"):
                        header.remove(key, ignore_missing=True)
                    copy = fits.ImageHDU(data=data, header=header)
            elif primary:
                copy = fits.PrimaryHDU(header=_mask_header(header, []))
            else:
                copy = hdu.copy()
                copy.header = _merge_clean(copy.header, header)
            copy.header.tostring()  # fails here, not at writing, on an unwritable card
    except InputError:
        raise
    except Exception as exc:
        label = hdu_label(path, index, hdu)
        raise InputError(f"{label}: cannot copy this {type(hdu).__name__} into the mask file "
                         f"({type(exc).__name__}: {' '.join(str(exc).split())[:160]}); expected "
                         "a readable HDU; select the image HDUs with file.fits[N]") from None
    _note_dropped(copy.header, dropped)
    return copy


def _merge_clean(structural: fits.Header, clean: fits.Header) -> fits.Header:
    """Keep a table's structural cards as astropy made them, the rest from ``clean``."""
    out = structural.copy()
    for key in list(out.keys()):
        if key not in clean and key not in ("", "COMMENT", "HISTORY") and not any(
                key.startswith(p) for p in ("XTENSION", "BITPIX", "NAXIS", "PCOUNT", "GCOUNT",
                                            "TFIELDS", "TTYPE", "TFORM", "TDIM", "THEAP")):
            out.remove(key, ignore_missing=True, remove_all=True)
    return out


def run_one(spec: InputSpec, predictor, options: MaskOptions, *, fingerprint: str,
            progress: bool = False) -> FileResult:
    """Mask one input and say what happened; never raises for a bad input.

    An :class:`~mmx.errors.MmxError` or ``OSError`` becomes the result's ``error``; any
    other exception (a defect in mmx) too, marked ``internal error``, so one file cannot
    end a batch. ``KeyboardInterrupt`` and ``SystemExit`` still stop it.
    """
    start = time.perf_counter()
    result = FileResult(input=str(spec))
    try:
        result.output = predict_file(
            spec, predictor, mode=options.mode, thresholds=dict(options.thresholds),
            out_dir=options.out_dir, overwrite=options.overwrite, preview=options.preview,
            progress=progress, aux=options.aux, fingerprint=fingerprint,
            compress=options.compress, clean=options.clean)
        result.status = "ok"
    except MmxError as exc:
        result.error, result.status = str(exc), "failed"
    except OSError as exc:
        from mmx.io.fitsio import describe_os_error

        result.error, result.status = f"{spec}: {describe_os_error(exc)}", "failed"
    except Exception as exc:  # a defect: keep the batch going, say so plainly
        log.debug("internal error on %s", spec, exc_info=True)
        result.error = (f"{spec}: internal error ({type(exc).__name__}: "
                        f"{' '.join(str(exc).split())[:200]}); please report it with this file")
        result.status = "failed"
    result.seconds = time.perf_counter() - start
    return result


def _existing_fingerprint(path: Path) -> str | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return str(fits.getheader(path, 0).get("MMXFPRNT", "")) or None
    except Exception:
        return None


def _dedupe_and_check(specs: list[InputSpec], out_dir) -> tuple[list[InputSpec], list[Path]]:
    seen: dict[tuple, InputSpec] = {}
    for spec in specs:
        key = (spec.path.resolve(), spec.hdu, spec.extname, spec.extver)
        seen.setdefault(key, spec)  # the same input named twice runs once
    unique = list(seen.values())
    outputs = [output_path(s, out_dir=out_dir) for s in unique]
    by_out: dict[Path, list[InputSpec]] = {}
    for spec, out in zip(unique, outputs, strict=True):
        by_out.setdefault(out.resolve(), []).append(spec)
    clashes = [(out, group) for out, group in by_out.items() if len(group) > 1]
    if clashes:
        out, group = clashes[0]
        more = f" (and {len(clashes) - 1} more clash(es))" if len(clashes) > 1 else ""
        raise ConfigError(f"inputs {', '.join(map(str, group))} would all write {out}{more}; "
                          "nothing was run: mask them into separate --out-dir folders or "
                          "rename them")
    return unique, outputs


def default_log_path(outputs: Iterable[Path], out_dir: str | Path | None) -> Path:
    """Run log location: in ``out_dir``, else the folder common to all outputs."""
    if out_dir is not None:
        folder = Path(out_dir)
    else:
        parents = [str(p.parent.resolve()) for p in outputs] or [os.getcwd()]
        folder = Path(os.path.commonpath(parents))
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    return folder / f"mmx-predict-{stamp}-{os.getpid()}.jsonl"


class _RunLog:
    """Appends one JSON line per input; a log that cannot be written never stops a batch."""

    def __init__(self, path: Path | None, on_error) -> None:
        self.path, self._handle, self._on_error = path, None, on_error
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = open(path, "a", encoding="utf-8")  # noqa: SIM115
        except OSError as exc:
            from mmx.io.fitsio import describe_os_error

            self.path = None
            if on_error is not None:
                on_error(str(path), f"{path}: cannot write the run log "
                                    f"({describe_os_error(exc)}); masks are still written")

    def write(self, result: FileResult) -> None:
        if self._handle is None:
            return
        try:
            self._handle.write(json.dumps(result.log_record()) + "\n")
            self._handle.flush()
        except OSError:
            with contextlib.suppress(OSError):
                self._handle.close()
            self._handle, self.path = None, None

    def close(self) -> None:
        if self._handle is not None:
            with contextlib.suppress(OSError):
                self._handle.close()


def _run_local(specs, predictor, options, fingerprint, progress) -> Iterator[FileResult]:
    overlap = overlap_enabled()
    for k, spec in enumerate(specs):
        if overlap and k + 1 < len(specs) and specs[k + 1].path != spec.path:
            prefetch_file(specs[k + 1].path)  # read by the kernel while this one is masked
        yield run_one(spec, predictor, options, fingerprint=fingerprint, progress=progress)


def predict_files(
    inputs: Iterable[str | Path],
    predictor,
    *,
    mode: OutputMode | str = OutputMode.BITMASK,
    thresholds: Mapping[str, float] | None = None,
    out_dir: str | Path | None = None,
    overwrite: bool = False,
    preview: bool = False,
    progress: bool = True,
    on_error: Callable[[str, str], None] | None = None,
    on_result: Callable[[FileResult, int, int], None] | None = None,
    skip_existing: bool = False,
    aux: bool = False,
    log_path: str | Path | Literal[False] | None = None,
    executor=None,
    compress: bool = False,
    clean: bool = False,
) -> PredictReport:
    """Mask many inputs; a bad input is reported and skipped, the others still processed.

    Parameters
    ----------
    inputs : iterable of str or Path
        Files, ``file[N]``/``file[NAME]``, directories, ``.list`` files
        (:func:`mmx.io.fitsio.expand_inputs`); a bad entry, also inside a list, is one failed
        result.
    predictor : mmx.serving.inference.Predictor
    mode, thresholds, out_dir, overwrite, preview, aux
        As in :func:`predict_file`.
    progress : bool
        Progress bars over tiles on stderr (only when it is a terminal, local runs).
    on_error : callable, optional
        Called as ``on_error(input, message)`` for each failed input, at once.
    on_result : callable, optional
        Called as ``on_result(result, n_done, n_total)`` after each input (skipped and
        failed ones included), in the order they finish.
    skip_existing : bool
        Keep an existing mask made by the same model and options (``MMXFPRNT``) and skip
        its input; an existing mask made otherwise is an error unless ``overwrite``.
    log_path : path, bool or None
        The run log (JSON lines); None: :func:`default_log_path` (none when no input could
        be expanded and there is no ``out_dir``); False: no log.
    compress, clean : bool
        Tile-compressed masks; cleaned images too (:func:`predict_file`).
    executor : object, optional
        Runs the files elsewhere: something with ``run(specs, predictor, options,
        fingerprint)`` yielding :class:`FileResult` as they finish
        (:class:`mmx.serving.distributed.DaskExecutor`); default: one after the other, here.

    Returns
    -------
    PredictReport
        One :class:`FileResult` per input file (or per entry that could not be
        expanded), in input order.

    Raises
    ------
    ConfigError
        Before anything runs: two inputs that would write one output file, or bad
        thresholds for the mode.
    """
    make_writer(mode, (1, 1), predictor.classes, thresholds=thresholds)  # validate early
    check_class_options([c.abbr for c in predictor.classes], thresholds=thresholds)
    options = MaskOptions.make(mode=mode, thresholds=thresholds, out_dir=out_dir,
                               overwrite=overwrite, preview=preview, aux=aux,
                               compress=compress, clean=clean)
    if clean:
        _clean_classes(predictor)  # refused before anything runs
    order: list[str] = []  # report order: each argument's files, then its bad entries
    bad_entries: list[tuple[str, str]] = []
    specs: list[InputSpec] = []
    for raw in inputs:
        errors: list[tuple[str, str]] = []
        found = expand_inputs([raw], errors=errors)
        specs.extend(found)
        bad_entries.extend(errors)
        order.extend([str(s) for s in found] + [entry for entry, _ in errors])
    order = list(dict.fromkeys(order))
    specs, outputs = _dedupe_and_check(specs, out_dir)
    fingerprint = options_fingerprint(predictor, mode=mode, thresholds=thresholds, aux=aux,
                                      clean=clean)
    if log_path is None:  # no log when nothing could be run: its errors are on stderr
        log_path = default_log_path(outputs, out_dir) if specs or out_dir else False
    run_log = _RunLog(Path(log_path) if log_path else None, on_error)
    report = PredictReport(log_path=run_log.path)
    results: dict[str, FileResult] = {}
    total = len(bad_entries) + len(specs)
    done = 0

    def finish(result: FileResult) -> None:
        nonlocal done
        done += 1
        results[result.input] = result
        run_log.write(result)
        if result.status == "failed" and on_error is not None:
            on_error(result.input, result.error)
        if on_result is not None:
            on_result(result, done, total)

    try:
        for entry, message in bad_entries:
            finish(FileResult(input=entry, error=message, status="failed"))
        todo: list[InputSpec] = []
        for spec, out in zip(specs, outputs, strict=True):
            if skip_existing and out.exists():
                existing = _existing_fingerprint(out)
                if existing == fingerprint:
                    finish(FileResult(input=str(spec), output=out, status="skipped"))
                    continue
                if not overwrite:
                    why = ("was made with another model or options" if existing else
                           "has no mmx fingerprint (MMXFPRNT) or cannot be read")
                    finish(FileResult(input=str(spec), status="failed", error=(
                        f"{out}: output exists but {why}; pass --overwrite to replace it")))
                    continue
            todo.append(spec)
        if executor is None:
            stream = _run_local(todo, predictor, options, fingerprint, progress)
        else:
            stream = executor.run(todo, predictor, options, fingerprint)
        for result in stream:
            finish(result)
    finally:
        run_log.close()
    report.results = [results[key] for key in order if key in results]
    return report
