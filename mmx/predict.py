"""``mmx predict`` at file level: inputs in, one mask file per input file out.

Output file
-----------
``<name>.mask.fits`` next to the input (or in ``out_dir``), where ``<name>`` is the input's
file name without ``.fits``/``.fit``/``.fts`` and ``.fz``/``.gz``; an input selected as
``file.fits[N]`` gives ``<name>.hdu<N>.mask.fits``. Outputs are written atomically
(:func:`mmx.fitsio.write_fits_atomic`), never over an input, and over an existing output
only with ``overwrite``.

Layout: HDU ``i`` of the output answers HDU ``i`` of the input.

* A 2-D image HDU gets its mask (:mod:`mmx.masks` describes the four layouts), under the
  input HDU's own header: ``EXTNAME``, WCS and every other key carried over (minus the
  keys describing the input's data: ``BITPIX``, ``BSCALE``, ``BLANK``, ``BUNIT``...), plus
  the provenance keys below.
* Any other HDU (an empty primary, a table, a 3-D cube) is copied unchanged, with its
  header, and is *not* given a mask.
* With ``file.fits[N]``: the input's primary header (no data) then the mask of HDU ``N``
  (or only the mask when ``N`` is 0).

Provenance keys (in the primary header and in every mask HDU)
--------------------------------------------------------------
``MMXVERS`` mmx version, ``MMXDATE`` UTC time, ``MMXMODEL``/``MMXMVER``/``MMXALIAS``/
``MMXRUNID`` registry name, version, alias and MLflow run, ``MMXSRC`` where the model was
loaded from, ``MMXARCH`` network, ``MMXPRIOR`` prior correction applied, ``PN_<abbr>`` the
model's training proportion and ``PRI_<abbr>`` the proportion used for each output class,
``THR_<abbr>`` thresholds (binary modes), ``PLANEk``/``BIT_<abbr>`` the plane or bit of each
class, ``MMXMODE`` output mode, ``MMXTILE``/``MMXMARG``/``MMXPREC`` tiling and arithmetic,
``MMXINPUT``/``MMXHDU`` the input file and HDU. Floats are written at full (``repr``)
precision.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.io.fits.verify import VerifyWarning

from mmx.errors import ConfigError, InputError, MmxError
from mmx.fitsio import (
    FITS_SUFFIXES,
    InputSpec,
    expand_inputs,
    open_fits,
    read_images,
    write_fits_atomic,
)
from mmx.masks import OutputMode, make_writer

__all__ = [
    "MASK_SUFFIX",
    "FileResult",
    "PredictReport",
    "output_path",
    "preview_path",
    "check_class_options",
    "provenance_cards",
    "predict_file",
    "predict_files",
]

log = logging.getLogger(__name__)

MASK_SUFFIX = ".mask.fits"

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
        The input as given (``file``, ``file[N]``).
    output : pathlib.Path or None
        The mask file written, None on failure.
    error : str
        One-line reason of a failure, empty on success.
    seconds : float
        Wall time spent on this input.
    """

    input: str
    output: Path | None = None
    error: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when the mask file was written."""
        return self.output is not None and not self.error


@dataclass
class PredictReport:
    """Results of :func:`predict_files`, one per input in order."""

    results: list[FileResult] = field(default_factory=list)

    @property
    def failed(self) -> list[FileResult]:
        """Inputs that produced no mask file."""
        return [r for r in self.results if not r.ok]

    @property
    def outputs(self) -> list[Path]:
        """Mask files written."""
        return [r.output for r in self.results if r.ok and r.output is not None]


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
    """Mask file name for an input: ``<name>.mask.fits`` (``<name>.hdu<N>.mask.fits``).

    Parameters
    ----------
    spec : InputSpec, str or Path
        The input file (``.fits``, ``.fits.fz``, ``.fits.gz``...), optionally with an HDU.
    out_dir : path, optional
        Folder of the output; default the input's folder.
    """
    if not isinstance(spec, InputSpec):
        spec = InputSpec(Path(spec))
    stem = _stem(spec.path)
    if spec.hdu is not None:
        stem += f".hdu{spec.hdu}"
    folder = Path(out_dir) if out_dir is not None else spec.path.parent
    return folder / (stem + MASK_SUFFIX)


def preview_path(mask_path: Path, hdu: int | None = None) -> Path:
    """PNG preview name for a mask file (``.mask.png``, or ``.mask.hdu<i>.png`` per HDU)."""
    base = mask_path.name.removesuffix(".fits")
    if hdu is not None:
        base += f".hdu{hdu}"
    return mask_path.with_name(base + ".png")


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
        :meth:`mmx.inference.Predictor.provenance`.
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
    ]
    training = p.get("training_priors", {})
    used = p.get("priors", {})
    for abbr, value in training.items():
        if np.isfinite(value):
            cards.append((f"PN_{abbr}", float(value), f"training proportion P_N of {abbr}"))
        if p.get("apply_priors") and np.isfinite(used.get(abbr, np.nan)):
            cards.append((f"PRI_{abbr}", float(used[abbr]), f"prior P used for {abbr}"))
    return cards


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


def _copy_hdu(hdu, *, primary: bool):
    header = hdu.header.copy()
    if primary:
        if isinstance(hdu, fits.PrimaryHDU):
            return fits.PrimaryHDU(data=hdu.data, header=header)
        return fits.PrimaryHDU(header=_mask_header(header, []))
    if isinstance(hdu, fits.CompImageHDU):
        return fits.ImageHDU(data=hdu.data, header=header, name=hdu.name)
    if isinstance(hdu, fits.PrimaryHDU):  # a primary moved into an extension slot
        return fits.ImageHDU(data=hdu.data, header=_mask_header(header, []))
    return hdu.copy()


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
) -> Path:
    """Mask every 2-D image HDU of one input file and write its mask file.

    Parameters
    ----------
    spec : InputSpec, str or Path
        One FITS file, optionally ``file[N]``.
    predictor : mmx.inference.Predictor
        The model, classes and priors to use.
    mode : OutputMode or str
        Output mode (:mod:`mmx.masks`).
    thresholds : mapping, optional
        Probability thresholds per class (defaults from the class table).
    out_dir : path, optional
        Output folder (default: next to the input).
    overwrite : bool
        Replace existing outputs (never the input).
    preview : bool
        Also write a PNG per image HDU (:mod:`mmx.preview`).
    progress : bool
        Show a progress bar over tiles (stderr).

    Returns
    -------
    pathlib.Path
        The mask file.

    Raises
    ------
    InputError
        Unreadable or non-FITS input, no image HDU, output exists without ``overwrite``
        or would replace the input.
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
        raise InputError(f"{out}: output exists; pass --overwrite to replace it")
    images = read_images(spec)
    several = len(images) > 1  # a [N] selection already has .hdu<N> in its name
    pngs = {im.index: preview_path(out, im.index if several else None) for im in images}
    for png in pngs.values() if preview else ():
        if png.exists() and not overwrite:
            raise InputError(f"{png}: preview exists; pass --overwrite to replace it")
    written: list[Path] = []
    try:
        return _predict_images(spec, images, predictor, out, mode=mode, thresholds=thresholds,
                               overwrite=overwrite, pngs=pngs if preview else {},
                               written=written, progress=progress)
    except BaseException:
        for png in written:  # no preview without its mask
            png.unlink(missing_ok=True)
        raise


def _predict_images(spec, images, predictor, out, *, mode, thresholds, overwrite, pngs,
                    written, progress) -> Path:
    from tqdm.auto import tqdm

    prov = predictor.provenance()
    base_cards = provenance_cards(prov, mode=mode)
    masks: dict[int, tuple[fits.Header, np.ndarray]] = {}
    for image in images:
        n_tiles = len(predictor.plan(image.data.shape))
        with tqdm(total=n_tiles, desc=f"{image}", unit="tile", leave=False, disable=None
                  if progress else True, position=1) as bar:
            writer = predictor.predict(image.data, mode=mode, thresholds=thresholds,
                                       progress=bar)
        cards = base_cards + writer.header_cards() + [
            ("MMXINPUT", spec.path.name, "input file"),
            ("MMXHDU", image.index, "input HDU (0-based)"),
        ]
        masks[image.index] = (_mask_header(image.header, cards), writer.array)
        if image.index in pngs:
            from mmx.preview import render_preview

            written.append(render_preview(image.data, writer.binary_planes(), pngs[image.index],
                                          nodata=image.bad, title=f"{image}"))
        image.data = None  # the input pixels are no longer needed
    hdus: list = []
    with open_fits(spec.path) as hdul:
        indices = [spec.hdu] if spec.hdu is not None else range(len(hdul))
        if spec.hdu not in (None, 0):  # the file's primary header, without its data
            hdus.append(fits.PrimaryHDU(header=_mask_header(hdul[0].header, [])))
        for index in indices:
            primary = not hdus
            if index in masks:
                header, data = masks.pop(index)
                cls = fits.PrimaryHDU if primary else fits.ImageHDU
                scaling = [(k, header[k], header.comments[k]) for k in ("BSCALE", "BZERO")
                           if k in header]
                for key, _, _ in scaling:
                    header.remove(key)
                hdu = cls(data=data, header=header)
                for key, value, comment in scaling:  # set after: astropy then keeps raw data
                    hdu.header[key] = (value, comment)
            else:
                hdu = _copy_hdu(hdul[index], primary=primary)
            hdus.append(hdu)
        if not isinstance(hdus[0], fits.PrimaryHDU):
            hdus.insert(0, fits.PrimaryHDU())
        for key, value, comment in base_cards:
            hdus[0].header[key] = (value, _fit_comment(key, value, comment))
        hdus[0].header["MMXINPUT"] = (spec.path.name, "input file")
        try:
            with warnings.catch_warnings():  # non-standard cards carried from the input
                warnings.simplefilter("ignore", VerifyWarning)  # are fixed silently
                write_fits_atomic(fits.HDUList(hdus), out, overwrite=overwrite,
                                  protect=[spec.path])
        except OSError as exc:
            raise InputError(f"{out}: cannot write the mask ({exc})") from None
    log.info("%s -> %s (%d image HDU(s))", spec, out, len(images))
    return out


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
    on_error=None,
) -> PredictReport:
    """Mask many inputs; a bad input is reported and skipped, the others still processed.

    Parameters
    ----------
    inputs : iterable of str or Path
        Files, ``file[N]``, directories, ``.list`` files (:func:`mmx.fitsio.expand_inputs`).
    predictor : mmx.inference.Predictor
    mode, thresholds, out_dir, overwrite, preview
        As in :func:`predict_file`.
    progress : bool
        Progress bars over files and tiles on stderr (only when it is a terminal).
    on_error : callable, optional
        Called as ``on_error(input, message)`` for each failed input, at once.

    Returns
    -------
    PredictReport
        One :class:`FileResult` per input file (or per argument that could not be
        expanded).
    """
    from tqdm.auto import tqdm

    make_writer(mode, (1, 1), predictor.classes, thresholds=thresholds)  # validate early
    check_class_options([c.abbr for c in predictor.classes], thresholds=thresholds)
    report = PredictReport()
    items: list[InputSpec | FileResult] = []
    for raw in inputs:
        try:
            items.extend(expand_inputs([raw]))
        except MmxError as exc:
            items.append(FileResult(input=str(raw), error=str(exc)))
    bar = tqdm(items, desc="files", unit="file", disable=None if progress else True, position=0)
    for item in bar:
        if isinstance(item, FileResult):
            report.results.append(item)
            if on_error is not None:
                on_error(item.input, item.error)
            continue
        start = time.perf_counter()
        result = FileResult(input=str(item))
        try:
            result.output = predict_file(item, predictor, mode=mode, thresholds=thresholds,
                                         out_dir=out_dir, overwrite=overwrite, preview=preview,
                                         progress=progress)
        except (MmxError, OSError) as exc:
            result.error = str(exc) if isinstance(exc, MmxError) else f"{item}: {exc}"
            if on_error is not None:
                on_error(result.input, result.error)
        result.seconds = time.perf_counter() - start
        report.results.append(result)
    bar.close()
    return report
