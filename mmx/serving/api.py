"""The Python face of mmx: mask and clean images in a notebook or a script.

>>> import mmx
>>> masker = mmx.Masker()                       # loads the default model once
>>> flags = masker.mask(image)                  # numpy in: the int16 bit mask out
>>> ccd = masker.mask(ccd)                      # CCDData in: CCDData out (.flags, .mask)
>>> cleaned = masker.clean(ccd)                 # CR, HP, HCL, DCL, TRL pixels inpainted

:func:`mask` and :func:`clean_image` do the same with a model loaded on first use and kept
for the next call with the same settings.

Inputs and outputs
------------------
``numpy.ndarray`` (2-D; NaN/Inf are no-data; a ``numpy.ma.MaskedArray``'s mask is no-data)
    :meth:`Masker.mask` returns the mask array of the output mode (:mod:`mmx.serving.masks`: the
    int16 MaxiMask bit mask by default, ``(K + 1, H, W)`` planes for the other modes);
    :meth:`Masker.clean` returns the cleaned float32 image.
``astropy.nddata.NDData`` / ``CCDData``
    Pixels where ``.mask`` is true are no-data: never a class, bit ``NODATA`` (8192) set.
    :meth:`Masker.mask` returns a ``CCDData`` holding the input's pixels, unit, WCS and
    meta, with ``.flags`` the mask (the bit mask array, or for the plane modes a
    ``FlagCollection`` of one plane per class name plus ``NODATA``), ``.mask`` true where
    the input had no data or any output class is flagged, and the provenance of ``mmx
    predict`` (``MMXMODEL``, ``THR_<abbr>``, ``BIT_<abbr>``...) added to ``.meta``.
    :meth:`Masker.clean` returns the same with the cleaned pixels as data and ``.mask`` the
    no-data pixels only.
path (``str`` or ``pathlib.Path``; ``file.fits[N]`` selects one HDU)
    Read as ``mmx predict`` reads it; one ``CCDData`` per 2-D image HDU, as above (unit
    from ``BUNIT``, else adu): a ``CCDData`` when the file (or the selection) holds one
    image, a list of them otherwise. Nothing is written; ``mmx predict`` writes files.

Saturation: where the input's header or meta has ``SATURATE``, pixels at or above it are
flagged SAT whatever the network says (when SAT is an output class).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mmx.errors import ConfigError

__all__ = ["Masker", "mask", "clean_image"]

_SINGLE: dict[tuple, Masker] = {}  # the Masker of the last mask()/clean_image() call


class Masker:
    """A model loaded once, then used to mask (and clean) any number of images.

    Parameters
    ----------
    model : str or Path, optional
        ``models:/NAME@ALIAS``, ``models:/NAME/VERSION`` or a model folder; default, as for
        ``mmx predict``, ``models:/mmx@production``, else the release model shipped with mmx.
    device : {"auto", "cpu", "cuda", "cuda:N"}
        Where the network runs; ``auto`` is the GPU when torch sees one.
    classes : str or iterable of str, optional
        Classes to output (``"CR,TRL"`` or ``["CR", "TRL"]``); default every class of the
        model.
    priors : mapping, optional
        Expected proportion ``P(c)`` in (0, 1) per class (default: the class table's).
    apply_priors : bool
        False outputs the network's own posteriors (``--no-prior``).
    thresholds : mapping, optional
        Probability threshold in [0, 1] per class for the binary and bit-mask modes
        (default: the model's calibrated thresholds, else the class table's).
    mode : {"bitmask", "binary", "prob", "prob8"}
        Output mode (:mod:`mmx.serving.masks`).
    tracking_uri : str, optional
        MLflow store of the registry (default ``$MLFLOW_TRACKING_URI`` or the project's).
    precision : {"auto", "float32", "bfloat16", "int8"}
        Arithmetic of the network (:class:`mmx.serving.inference.Predictor`).
    threads : int, optional
        CPU threads for torch (process-wide).
    batch_size : int
        Tiles per network pass.
    padding : {"none", "reflect", "zero"}
        The image border (:mod:`mmx.serving.tiling`): nothing beyond it, as at the edge of
        the training crops (default), the image mirrored, or noiseless sky.
    tta : {"none", "flips", "dihedral"}
        Test-time augmentation (:mod:`mmx.model.symmetry`): the network averaged over
        the image's 4 flips or 8 rotations and reflections, for 4 or 8 network passes.

    Raises
    ------
    ConfigError
        On an unknown class, a prior or threshold out of range or for a class not output,
        an unknown mode, or a device that does not exist here (CUDA without a GPU).
    ModelError
        If the model cannot be found or loaded.
    """

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        device: str = "auto",
        classes: str | Iterable[str] | None = None,
        priors: Mapping[str, float] | None = None,
        apply_priors: bool = True,
        thresholds: Mapping[str, float] | None = None,
        mode: str = "bitmask",
        tracking_uri: str | None = None,
        precision: str = "auto",
        threads: int | None = None,
        batch_size: int = 1,
        padding: str = "none",
        tta: str = "none",
    ) -> None:
        from mmx.classes import parse_class_list, parse_class_values
        from mmx.serving.masks import OutputMode
        from mmx.serving.predict import check_class_options
        from mmx.serving.runtimes import resolve_device

        try:
            self.mode = OutputMode(mode)
        except ValueError:
            raise ConfigError(f"mode must be one of {', '.join(m.value for m in OutputMode)}, "
                              f"got {mode!r}") from None
        chosen = [c.abbr for c in parse_class_list(classes)]
        priors = parse_class_values(priors, what="prior", open_low=True, open_high=True)
        self.thresholds = parse_class_values(thresholds, what="threshold")
        check_class_options(chosen, priors=priors, thresholds=self.thresholds)
        if priors and not apply_priors:
            raise ConfigError(f"priors given ({', '.join(priors)}) with apply_priors=False; "
                              "expected one or the other")
        device = resolve_device(device)  # before loading: a bad device fails fast
        package = _load(model, tracking_uri)

        from mmx.serving.inference import Predictor

        if classes is None:  # every class the model has
            chosen = [a for a in chosen if a in set(package.meta.classes)]
        self.predictor = Predictor(package, classes=chosen, priors=priors,
                                   apply_priors=apply_priors, batch_size=batch_size,
                                   threads=threads, precision=precision, device=device,
                                   padding=padding, tta=tta)

    @property
    def classes(self) -> tuple[str, ...]:
        """Abbreviations of the output classes, in plane order."""
        return tuple(c.abbr for c in self.predictor.classes)

    @property
    def device(self) -> str:
        """The torch device the network runs on (``cpu``, ``cuda``...)."""
        return self.predictor.settings.device

    def effective_thresholds(self) -> dict[str, float]:
        """The thresholds binary and bit-mask outputs use: the model's, then the user's."""
        return self.predictor.default_thresholds() | self.thresholds

    def mask(self, data: Any, *, mode: str | None = None,
             thresholds: Mapping[str, float] | None = None) -> Any:
        """Mask one image (see the module docstring for what each input type returns).

        Parameters
        ----------
        data : numpy.ndarray, NDData, CCDData, str or Path
            The image.
        mode : str, optional
            Output mode for this call (default the Masker's).
        thresholds : mapping, optional
            Thresholds for this call, over the Masker's.

        Raises
        ------
        ConfigError
            On an input that is not a non-empty 2-D image, or a bad threshold.
        InputError
            On a path that cannot be read as a FITS image.
        """
        from mmx.classes import parse_class_values
        from mmx.serving.masks import OutputMode
        from mmx.serving.predict import check_class_options

        mode = self.mode if mode is None else OutputMode(mode)
        extra = parse_class_values(thresholds, what="threshold")
        check_class_options(self.classes, thresholds=extra)
        thr = self.thresholds | extra
        results = []
        for item in _images(data):
            flagged = self._mask_one(item, mode, thr)
            results.append(item.wrap(flagged.array, flagged))
        return _shape_like(data, results)

    def clean(self, data: Any, *, classes: Iterable[str] | None = None,
              radius: int = 2) -> Any:
        """Image with the pixels flagged as ``classes`` replaced (:mod:`mmx.serving.inpaint`).

        Parameters
        ----------
        data : numpy.ndarray, NDData, CCDData, str or Path
            The image.
        classes : iterable of str, optional
            Classes to replace (default :data:`mmx.serving.inpaint.CLEAN_CLASSES`); each must be
            an output class of this Masker.
        radius : int
            Half-width of the neighbourhood the median is taken over [px].

        Returns
        -------
        numpy.ndarray or CCDData or list of CCDData
            float32 cleaned pixels (no-data stays NaN); a ``CCDData`` carries the bit mask
            as ``.flags`` and the no-data pixels as ``.mask``.
        """
        from mmx.classes import by_abbr
        from mmx.serving.inpaint import CLEAN_CLASSES, inpaint, writer_clean_mask

        asked = CLEAN_CLASSES if classes is None else classes
        wanted = [by_abbr(a).abbr for a in asked if by_abbr(a).abbr in self.classes]
        missing = [by_abbr(a).abbr for a in asked if by_abbr(a).abbr not in self.classes]
        if not wanted or (missing and classes is not None):
            raise ConfigError(f"cannot clean {', '.join(missing)}: not output by this Masker "
                              f"(classes {', '.join(self.classes)}); expected some of them")
        results = []
        for item in _images(data):
            flagged = self._mask_one(item, "bitmask", self.thresholds, clean_classes=wanted)
            bad = writer_clean_mask(flagged.writer, wanted)
            cleaned = inpaint(item.pixels, bad, radius=radius)
            results.append(item.wrap(cleaned, flagged, cleaned_image=True))
        return _shape_like(data, results)

    def _mask_one(self, item: _Image, mode, thresholds, clean_classes=()) -> _Flagged:
        with np.errstate(over="ignore", invalid="ignore"):
            writer = self.predictor.predict(item.pixels, mode=mode, thresholds=thresholds,
                                            clean_classes=clean_classes)
        if item.saturate is not None:
            from mmx.serving.saturation import flag_saturated

            flag_saturated(writer, item.pixels, item.saturate)
        return _Flagged(writer, self.predictor)


class _Flagged:
    """A mask array with what made it (the writer's header cards, the predictor)."""

    def __init__(self, writer, predictor) -> None:
        self.array, self.writer, self.predictor = writer.array, writer, predictor

    def cards(self) -> list[tuple]:
        from mmx.serving.predict import provenance_cards

        return provenance_cards(self.predictor.provenance(), mode=self.writer.mode) + \
            self.writer.header_cards()


class _Image:
    """One 2-D image taken from an input, with what a ``CCDData`` result needs."""

    def __init__(self, pixels, *, kind, unit=None, wcs=None, meta=None, data=None,
                 saturate=None) -> None:
        self.pixels, self.kind, self.unit, self.wcs, self.meta = pixels, kind, unit, wcs, meta
        self.data, self.saturate = data, saturate

    def wrap(self, array, flagged: _Flagged, *, cleaned_image: bool = False):
        """The result for this input: the array itself, or a ``CCDData``."""
        if self.kind == "array":
            return array
        from astropy.io import fits
        from astropy.nddata import CCDData

        nodata = ~np.isfinite(self.pixels)
        if cleaned_image:
            data, mask = array, nodata
        else:
            data = self.data
            mask = nodata | _any_flag(flagged)
        meta = self.meta.copy() if self.meta is not None else fits.Header()
        for key, value, comment in flagged.cards():
            if key in ("BSCALE", "BZERO"):  # describe a stored prob8 plane, not .flags
                continue
            if isinstance(meta, fits.Header):
                meta[key] = (value, comment[:47])
            else:
                meta[key] = value
        return CCDData(data, unit=self.unit, wcs=self.wcs, meta=meta, mask=mask,
                       flags=_flags(flagged))


def _flags(flagged: _Flagged):
    """``.flags`` of a result: the bit mask, or the planes as a ``FlagCollection``."""
    from astropy.nddata import FlagCollection

    from mmx.serving.masks import plane_names

    array = flagged.array
    if array.ndim == 2:
        return array
    planes = FlagCollection(shape=array.shape[1:])
    for name, plane in zip(plane_names(flagged.writer.mode, flagged.writer.classes), array,
                           strict=True):
        planes[name] = plane
    return planes


def _any_flag(flagged: _Flagged) -> np.ndarray:
    """True where any output class is flagged (BG, the sky, does not count)."""
    planes = flagged.writer.binary_planes()
    out = np.zeros(flagged.array.shape[-2:], dtype=bool)
    for abbr, plane in planes.items():
        if abbr != "BG":
            out |= plane
    return out


def _images(data: Any) -> list[_Image]:
    """The 2-D images of an input, with their no-data pixels as NaN."""
    from astropy.nddata import NDData

    if isinstance(data, str | Path):
        return _file_images(data)
    if isinstance(data, NDData):
        return [_nddata_image(data)]
    if isinstance(data, np.ndarray):
        pixels = _float_pixels(np.ma.getdata(data), "array")
        if np.ma.isMaskedArray(data):
            pixels[np.ma.getmaskarray(data)] = np.nan
        return [_Image(pixels, kind="array")]
    raise ConfigError(f"cannot mask a {type(data).__name__}; expected a 2-D numpy array, an "
                      "astropy NDData/CCDData, or the path of a FITS file")


def _float_pixels(array, what: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != 2 or array.size == 0:
        raise ConfigError(f"{what}: expected a non-empty 2-D image, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise ConfigError(f"{what}: expected real pixel values, got dtype {array.dtype}")
    return np.array(array, dtype=np.float32, copy=True)


def _nddata_image(data) -> _Image:
    from astropy import units as u
    from astropy.wcs import WCS

    pixels = _float_pixels(data.data, type(data).__name__)
    if data.mask is not None:
        mask = np.asarray(data.mask, dtype=bool)
        if mask.shape != pixels.shape:
            raise ConfigError(f"{type(data).__name__}.mask has shape {mask.shape}; expected "
                              f"the image's {pixels.shape}")
        pixels[mask] = np.nan
    meta = data.meta
    unit = data.unit if data.unit is not None else _unit_of(meta)
    wcs = data.wcs if isinstance(data.wcs, WCS) else None
    return _Image(pixels, kind="nddata", unit=unit or u.adu, wcs=wcs, meta=meta,
                  data=np.asarray(data.data), saturate=_saturate_of(meta))


def _file_images(path: str | Path) -> list[_Image]:
    from mmx.io.fitsio import read_images

    out = []
    for image in read_images(path):
        header = image.header
        out.append(_Image(image.data, kind="file", unit=_unit_of(header), wcs=_wcs_of(header),
                          meta=header, data=image.data.copy(), saturate=_saturate_of(header)))
    return out


def _unit_of(meta):
    from astropy import units as u

    text = (meta or {}).get("BUNIT") if hasattr(meta, "get") else None
    if not text:
        return u.adu
    try:
        return u.Unit(str(text).strip(), format="fits", parse_strict="raise")
    except ValueError:
        try:
            return u.Unit(str(text).strip())
        except ValueError:
            return u.adu


def _wcs_of(header):
    from astropy.wcs import WCS

    if not any(str(k).startswith(("CTYPE", "CRVAL", "CD1_", "PC1_")) for k in header):
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            wcs = WCS(header, naxis=2)
    except Exception:  # a header WCS astropy cannot parse: the keys stay in .meta
        return None
    return wcs if wcs.has_celestial or wcs.naxis == 2 else None


def _saturate_of(meta) -> float | None:
    from mmx.serving.saturation import saturation_level

    return saturation_level(meta) if meta is not None else None


def _shape_like(data: Any, results: list) -> Any:
    if isinstance(data, str | Path) and len(results) != 1:
        return results
    return results[0]


def _load(model, tracking_uri):
    """Resolve the model as ``mmx predict`` does; a damaged store is one clear error."""
    from mmx.errors import MmxError, ModelError
    from mmx.tracking.registry import resolve_model

    try:
        return resolve_model(None if model is None else str(model), tracking_uri=tracking_uri,
                             lazy=True)
    except MmxError:
        raise
    except Exception as exc:  # MlflowException, sqlalchemy errors, OSError from the store
        reason = " ".join(str(exc).split())[:240]
        raise ModelError(f"cannot load model {model or 'models:/mmx@production'} "
                         f"({type(exc).__name__}: {reason}); expected a readable MLflow "
                         "store or a model folder") from None


def _cached(model, settings: dict) -> Masker:
    key = (str(model) if model is not None else None,
           tuple(sorted((k, repr(v)) for k, v in settings.items())))
    masker = _SINGLE.get(key)
    if masker is None:
        masker = Masker(model, **settings)
        _SINGLE.clear()
        _SINGLE[key] = masker
    return masker


def mask(data: Any, *, model: str | Path | None = None, device: str = "auto",
         classes: str | Iterable[str] | None = None, priors: Mapping[str, float] | None = None,
         apply_priors: bool = True, thresholds: Mapping[str, float] | None = None,
         mode: str = "bitmask", tracking_uri: str | None = None,
         precision: str = "auto", tta: str = "none") -> Any:
    """Contaminant mask of one image (see :class:`Masker` for the options).

    The model is loaded on the first call and kept for later calls with the same model
    and options; to mask many images with several settings, make a :class:`Masker`.

    Parameters
    ----------
    data : numpy.ndarray, NDData, CCDData, str or Path
        The image; what comes back for each type is in the module docstring.
    model, device, classes, priors, apply_priors, thresholds, mode, tracking_uri, precision, tta
        As for :class:`Masker`.

    Returns
    -------
    numpy.ndarray or CCDData or list of CCDData
        The mask array for an array; a ``CCDData`` (``.flags``, ``.mask``, WCS and meta
        of the input) for NDData and files.
    """
    masker = _cached(model, dict(device=device, classes=classes, priors=priors,
                                 apply_priors=apply_priors, thresholds=thresholds, mode=mode,
                                 tracking_uri=tracking_uri, precision=precision, tta=tta))
    return masker.mask(data)


def clean_image(data: Any, *, model: str | Path | None = None, device: str = "auto",
                classes: Iterable[str] | None = None, thresholds: Mapping[str, float] | None
                = None, tracking_uri: str | None = None, radius: int = 2) -> Any:
    """Image with cosmic rays, hot pixels, hot/dead columns and trails inpainted.

    Parameters
    ----------
    data : numpy.ndarray, NDData, CCDData, str or Path
        The image.
    model, device, thresholds, tracking_uri
        As for :class:`Masker`.
    classes : iterable of str, optional
        Classes to replace (default :data:`mmx.serving.inpaint.CLEAN_CLASSES`).
    radius : int
        Half-width of the neighbourhood of the median [px].

    Returns
    -------
    numpy.ndarray or CCDData or list of CCDData
        See :meth:`Masker.clean`.
    """
    masker = _cached(model, dict(device=device, thresholds=thresholds,
                                 tracking_uri=tracking_uri))
    return masker.clean(data, classes=classes, radius=radius)
