"""Reading FITS images in every form users hand them over, and writing FITS atomically.

Accepted inputs: a FITS file (``.fits``, ``.fit``, ``.fts``, optionally ``.fz`` tile
compressed or ``.gz``), one HDU of it by index or name (``file.fits[N]``,
``file.fits[SCI]``, ``file.fits[SCI,2]`` for ``EXTNAME``/``EXTVER``), a directory (its FITS
files, sorted) and a ``.list`` text file of such paths (one per line, ``#`` comments,
relative paths taken from the list's folder). Files named ``*.mask.fits`` (mmx's own
outputs) are never inputs.

Which HDUs are masked: every 2-D image HDU with data, except the data-quality, error,
variance and weight planes of calibrated products (``EXTNAME`` in :data:`AUX_EXTNAMES`, or
starting with ``VAR``), which are copied unless selected by index or name.

Image data always come back as native-endian float32. Non-finite pixels (NaN, Inf), values
beyond +-:data:`MAX_VALUE` and integer ``BLANK`` pixels become NaN and are never silently
turned into signal: callers see them through :attr:`FitsImage.bad`. Headers come back as
clean copies: cards astropy cannot parse or write (non-ASCII bytes, NUL, unparsable
values) are dropped and named in :attr:`FitsImage.dropped`. Every failure is one
:class:`~mmx.errors.InputError` naming the file and HDU, what was wrong and what was
expected.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import gzip
import os
import re
import socket
import tempfile
import threading
import warnings
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits

from mmx.errors import InputError

__all__ = [
    "FITS_SUFFIXES",
    "MASK_SUFFIX",
    "AUX_EXTNAMES",
    "MAX_VALUE",
    "InputSpec",
    "FitsImage",
    "is_fits_name",
    "is_mask_name",
    "parse_input",
    "expand_inputs",
    "read_images",
    "image_indices",
    "read_image",
    "release_data",
    "open_fits",
    "is_image_hdu",
    "is_auxiliary_hdu",
    "clean_header",
    "hdu_label",
    "check_declared_size",
    "write_fits_atomic",
    "AtomicFitsWriter",
    "describe_os_error",
]

FITS_SUFFIXES: tuple[str, ...] = (".fits", ".fit", ".fts")
MASK_SUFFIX = ".mask.fits"  #: suffix of mmx's outputs, never taken as inputs
#: EXTNAMEs of data-quality, error, variance, weight and context planes (HST, JWST, DECam
#: community pipeline, Rubin): copied into the mask file, not masked, unless selected
AUX_EXTNAMES: frozenset[str] = frozenset({
    "DQ", "ERR", "ERROR", "SIGMA", "RMS", "NOISE", "VAR", "VARIANCE", "IVAR", "INVVAR",
    "WHT", "WEIGHT", "WGT", "MASK", "BPM", "BADPIX", "FLAGS", "EXP", "EXPMAP", "CTX", "CON",
    "SAMP", "TIME", "AREA", "DQF",
})
#: larger magnitudes are no data: no detector gives them, and float32 sums of them overflow
MAX_VALUE = 1e30
_COMPRESSED = (".fz", ".gz")
_SELECTOR = re.compile(r"^(?P<path>.+)\[(?P<sel>[^\[\]]*)\]$")
_EXTNAME = re.compile(r"^[A-Za-z_][\w.\-]*$")
_PART = ".part"


@dataclass(frozen=True)
class InputSpec:
    """One input: a FITS file and optionally one HDU of it, by index or by name.

    Attributes
    ----------
    path : pathlib.Path
        The file.
    hdu : int or None
        0-based HDU index (``file.fits[N]``).
    extname, extver : str or None, int or None
        HDU by ``EXTNAME`` (case-insensitive) and optionally ``EXTVER``
        (``file.fits[SCI]``, ``file.fits[SCI,2]``).
    """

    path: Path
    hdu: int | None = None
    extname: str | None = None
    extver: int | None = None

    @property
    def selector(self) -> str | None:
        """What is between the brackets (``"3"``, ``"SCI"``, ``"SCI,2"``), or None."""
        if self.hdu is not None:
            return str(self.hdu)
        if self.extname is not None:
            return self.extname + (f",{self.extver}" if self.extver is not None else "")
        return None

    @property
    def selected(self) -> bool:
        """True when one HDU is selected."""
        return self.selector is not None

    def __str__(self) -> str:
        sel = self.selector
        return f"{self.path}[{sel}]" if sel is not None else str(self.path)


@dataclass
class FitsImage:
    """One image HDU read from a file.

    Attributes
    ----------
    data : numpy.ndarray
        2-D native float32 pixels; NaN where the input was NaN, Inf or BLANK.
    header : astropy.io.fits.Header
        A clean copy of the HDU's own header, WCS included.
    index : int
        HDU index in the file.
    path : pathlib.Path
        File the image came from.
    dropped : list of str
        Keywords of header cards that could not be parsed or written and were left out.
    """

    data: np.ndarray
    header: fits.Header
    index: int
    path: Path
    dropped: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        """EXTNAME of the HDU, or an empty string."""
        return str(self.header.get("EXTNAME", ""))

    @property
    def bad(self) -> np.ndarray:
        """Boolean map of pixels with no valid value (NaN/Inf/BLANK in the input)."""
        return ~np.isfinite(self.data)

    def __str__(self) -> str:
        return f"{self.path}[{self.index}]"


def is_fits_name(path: str | Path) -> bool:
    """True if the file name has a FITS suffix, optionally followed by ``.fz``/``.gz``."""
    name = Path(path).name.lower()
    for comp in _COMPRESSED:
        if name.endswith(comp):
            name = name[: -len(comp)]
            break
    return name.endswith(FITS_SUFFIXES)


def is_mask_name(path: str | Path) -> bool:
    """True for a name mmx gives its outputs (``*.mask.fits``, compressed or not)."""
    name = Path(path).name.lower()
    for comp in _COMPRESSED:
        name = name.removesuffix(comp)
    return name.endswith(MASK_SUFFIX)


def parse_input(text: str | Path) -> InputSpec:
    """Split ``file.fits[N]``, ``file.fits[NAME]`` or ``file.fits[NAME,VER]`` into a spec.

    Raises
    ------
    InputError
        For an empty or malformed selector.
    """
    text = str(text)
    match = _SELECTOR.match(text)
    if not match:
        return InputSpec(Path(text))
    path, sel = Path(match["path"]), match["sel"].strip()
    if sel.isdigit():
        return InputSpec(path, hdu=int(sel))
    name, _, ver = (part.strip() for part in sel.partition(","))
    if _EXTNAME.match(name) and (not ver or ver.isdigit()):
        return InputSpec(path, extname=name.upper(), extver=int(ver) if ver else None)
    raise InputError(f"{text}: HDU selector [{sel}] is not valid; expected [N] (0-based index), "
                     "[EXTNAME] or [EXTNAME,EXTVER], e.g. [1], [SCI] or [SCI,2]")


def _read_list(path: Path) -> list[str]:
    try:
        lines = path.read_text().splitlines()
    except UnicodeDecodeError:
        raise InputError(f"{path}: list file is not text (undecodable bytes); expected one "
                         "FITS path per line") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read list file ({describe_os_error(exc)})") from None
    out = []
    for line in lines:
        entry = line.split("#", 1)[0].strip()
        if entry:
            candidate = Path(entry)
            out.append(str(candidate if candidate.is_absolute() else path.parent / candidate))
    if not out:
        raise InputError(f"{path}: list file names no input; expected one FITS path per line")
    return out


def expand_inputs(
    paths: Iterable[str | Path], *, errors: list[tuple[str, str]] | None = None,
    _seen_lists: frozenset[Path] = frozenset(),
) -> list[InputSpec]:
    """Expand files, ``file[N]``/``file[NAME]``, directories and ``.list`` files into specs.

    Existence is checked here; FITS validity is checked when a file is read. mmx's own
    outputs (``*.mask.fits``) and hidden files in a directory are left out.

    Parameters
    ----------
    paths : iterable of str or Path
        What the user named.
    errors : list, optional
        When given, a bad entry (missing file, empty folder, bad selector...) is appended
        to it as ``(entry, message)`` and expansion goes on with the next entry, also
        inside ``.list`` files; without it the first bad entry raises.

    Raises
    ------
    InputError
        For a path that does not exist, a directory holding no FITS file, an empty or
        unreadable ``.list`` file, a bad selector, or an mmx mask named as input (only
        when ``errors`` is None).
    """
    specs: list[InputSpec] = []
    for raw in paths:
        try:
            specs.extend(_expand_one(raw, errors, _seen_lists))
        except InputError as exc:
            if errors is None:
                raise
            errors.append((str(raw), str(exc)))
    return specs


def _expand_one(raw, errors, seen_lists) -> list[InputSpec]:
    spec = parse_input(raw)
    path = spec.path
    if path.is_dir() and not spec.selected:
        found = sorted(p for p in path.iterdir() if is_fits_name(p) and not is_mask_name(p)
                       and not p.name.startswith(".") and p.is_file())
        if not found:
            raise InputError(f"{path}: directory holds no FITS file to mask; expected files "
                             f"ending in {', '.join(FITS_SUFFIXES)} (optionally .fz/.gz), "
                             f"other than mmx's own *{MASK_SUFFIX}")
        return [InputSpec(p) for p in found]
    if path.suffix.lower() == ".list" and not spec.selected:
        if not path.is_file():
            raise InputError(f"{path}: no such list file")
        key = path.resolve()
        if key in seen_lists:
            raise InputError(f"{path}: list file includes itself; expected a list of FITS files")
        return expand_inputs(_read_list(path), errors=errors, _seen_lists=seen_lists | {key})
    if is_mask_name(path):
        raise InputError(f"{spec}: is an mmx mask (name ends in {MASK_SUFFIX}), not an image; "
                         "rename it to mask it again")
    if path.is_file():
        return [spec]
    if path.is_dir():
        raise InputError(f"{spec}: is a directory; an HDU selector needs a FITS file")
    raise InputError(f"{path}: no such file or directory")


#: Held while FITS code changes the process-wide warning filters or astropy's log level
#: (:func:`warnings.catch_warnings` is not thread-safe): the read-ahead and writer threads
#: of :mod:`mmx.serving.overlap` take turns here instead of restoring each other's state.
WARNINGS_LOCK = threading.RLock()


@contextlib.contextmanager
def _quiet_astropy():
    """Silence astropy's logger (non-ASCII replaced by '?') and its verify warnings."""
    from astropy import log

    with WARNINGS_LOCK:
        level = log.level
        log.setLevel("ERROR")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", fits.verify.VerifyWarning)
                warnings.filterwarnings("ignore", message=".*non-ASCII characters are present")
                yield
        finally:
            log.setLevel(level)


def describe_os_error(exc: OSError) -> str:
    """A short reason for an OS error, with what to do for the common machine faults."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    hints = {
        errno.ENOSPC: "free space on the device or choose another --out-dir",
        errno.EDQUOT: "free quota or choose another --out-dir",
        errno.EFBIG: "the file size limit of this process or file system was reached",
        errno.EACCES: "check the permissions",
        errno.EPERM: "check the permissions",
        errno.EROFS: "the file system is read-only; choose another --out-dir",
        errno.ENOENT: "the file or folder vanished while mmx was running",
    }
    hint = hints.get(exc.errno or -1)
    if exc.errno is None and "written" in reason:  # astropy's own short-write error
        hint = "the device may be full or a file size limit reached; free space or choose " \
               "another --out-dir"
    return f"{reason}; {hint}" if hint else reason


def open_fits(path: Path) -> fits.HDUList:
    """Open a FITS file read-only, turning every failure into one :class:`InputError`."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not a FITS file")
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({describe_os_error(exc)})") from None
    if size == 0:
        raise InputError(f"{path}: file is empty (0 bytes); expected a FITS file")
    if path.name.lower().endswith(".gz"):
        _check_gzip(path)
    failure = None
    with warnings.catch_warnings():
        # astropy leaves its file handle to the garbage collector when open fails part-way
        warnings.simplefilter("ignore", ResourceWarning)
        # a short file is reported per HDU, with sizes, when its pixels are read
        warnings.filterwarnings("ignore", message=".*File may have been truncated")
        try:
            with _quiet_astropy():
                hdul = fits.open(path, memmap=False, lazy_load_hdus=False)
        except PermissionError as exc:
            failure = (f"{path}: cannot read ({describe_os_error(exc)}); expected a readable "
                       "FITS file")
        except Exception as exc:  # astropy raises many types on damaged files
            failure = (f"{path}: not a readable FITS file ({_reason(exc)}); expected FITS (a "
                       "header of 80-character cards starting SIMPLE = T)")
        if failure is not None:
            gc.collect()  # close that handle now, not at some later collection
    if failure is not None:
        raise InputError(failure)
    if len(hdul) == 0:
        hdul.close()
        raise InputError(f"{path}: FITS file holds no HDU")
    return hdul


def _check_gzip(path: Path) -> None:
    """Decompress once to the end: astropy reads a cut .gz as a shorter, valid-looking file."""
    try:
        with gzip.open(path, "rb") as stream:
            while stream.read(1 << 24):
                pass
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(f"{path}: gzip stream is truncated or corrupt ({_reason(exc)}); "
                         "expected a complete .gz file") from None


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if len(text) > 160:
        text = text[:157] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def is_image_hdu(hdu: fits.hdu.base.ExtensionHDU | fits.PrimaryHDU) -> bool:
    """True for a primary, image or tile-compressed image HDU declaring 2-D data."""
    if not isinstance(hdu, fits.PrimaryHDU | fits.ImageHDU | fits.CompImageHDU):
        return False
    try:
        return int(hdu.header.get("NAXIS", 0)) == 2 and hdu.data is not None
    except Exception:  # damaged data: reported when the pixels are read
        return int(hdu.header.get("NAXIS", 0) or 0) == 2


def is_auxiliary_hdu(hdu) -> bool:
    """True for a data-quality, error, variance or weight plane (by ``EXTNAME``)."""
    try:
        name = str(hdu.header.get("EXTNAME", "")).strip().upper()
    except Exception:
        return False
    return name in AUX_EXTNAMES or name.startswith("VAR")


def hdu_label(path: Path | str, index: int, hdu=None) -> str:
    """``file[i]`` or ``file[i] (EXTNAME)`` for messages."""
    name = ""
    if hdu is not None:
        with contextlib.suppress(Exception):
            name = str(hdu.header.get("EXTNAME", "")).strip()
    return f"{path}[{index}]" + (f" ({name})" if name else "")


def clean_header(header: fits.Header) -> tuple[fits.Header, list[str]]:
    """A copy of ``header`` holding only the cards astropy can parse and write.

    Cards with non-ASCII or non-printable bytes, unparsable values or keywords are left out.

    Returns
    -------
    header : astropy.io.fits.Header
        The clean copy.
    dropped : list of str
        Keywords of the cards left out (``?`` when even the keyword is unreadable).
    """
    clean = fits.Header()
    dropped: list[str] = []
    with _quiet_astropy():
        for card in header.cards:
            try:
                new = fits.Card.fromstring(card.image)
                new.verify("fix")
                _ = new.value
                image = new.image
                if not image.isascii() or not image.isprintable():
                    raise ValueError("non-printable characters")
                clean.append(new, end=True)
            except Exception:
                try:
                    dropped.append(str(card.keyword).strip() or "?")
                except Exception:
                    dropped.append("?")
    return clean, dropped


def _to_float32(hdu: fits.PrimaryHDU | fits.ImageHDU | fits.CompImageHDU) -> np.ndarray:
    raw = hdu.data
    if not np.issubdtype(raw.dtype, np.number) or np.iscomplexobj(raw):
        raise ValueError(f"pixel type {raw.dtype} is not a real number type")
    data = np.asarray(raw, dtype=np.float32)  # native byte order, always a copy or cast
    if data is raw:
        data = data.copy()
    blank = hdu.header.get("BLANK")
    if blank is not None and np.issubdtype(raw.dtype, np.integer):
        with contextlib.suppress(TypeError, ValueError, OverflowError):
            data[raw == int(blank)] = np.nan
    with np.errstate(invalid="ignore"):
        data[~(np.abs(data) <= MAX_VALUE)] = np.nan  # NaN, Inf and overflow-prone values
    return data


def check_declared_size(hdu, path: Path, where: str) -> None:
    """Refuse data the header declares beyond the end of the file, before allocating it.

    Raises
    ------
    InputError
        Naming ``where``, the bytes declared and the bytes the file holds.
    """
    if path.name.lower().endswith(".gz") or isinstance(hdu, fits.CompImageHDU):
        return  # offsets in the decompressed stream; compressed tiles are checked by astropy
    try:
        header = hdu.header
        naxis = int(header["NAXIS"])
        # once scaled data (BSCALE/BZERO) are read, astropy's header says BITPIX -32; the
        # file holds the integers the original BITPIX declares
        bitpix = getattr(hdu, "_orig_bitpix", None) or header["BITPIX"]
        span = abs(int(bitpix)) // 8 * int(np.prod(
            [int(header[f"NAXIS{i}"]) for i in range(1, naxis + 1)], dtype=np.float64))
        start = int(hdu.fileinfo()["datLoc"])  # the block padding after the data may be cut
        size = path.stat().st_size
    except Exception:
        return
    if start + span > size:
        raise InputError(f"{where}: file is truncated: the header declares {span} bytes of "
                         f"data, the file holds {max(size - start, 0)}; expected the complete "
                         "file")


def _read_image(spec: InputSpec, hdul: fits.HDUList, index: int) -> FitsImage:
    hdu = hdul[index]
    where = hdu_label(spec.path, index, hdu)
    check_declared_size(hdu, spec.path, where)
    try:
        with WARNINGS_LOCK, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with _quiet_astropy():
                raw = hdu.data
                shape = None if raw is None else tuple(raw.shape)
                if raw is not None and len(shape) == 2 and 0 not in shape:
                    data = _to_float32(hdu)
    except Exception as exc:
        raise InputError(f"{where}: cannot read the pixels ({_reason(exc)}); expected "
                         "image data of the size the header declares") from None
    truncated = [w for w in caught if "truncated" in str(w.message).lower()]
    if truncated:
        note = " ".join(str(truncated[0].message).split())
        raise InputError(f"{where}: file is truncated ({note}); expected the complete file")
    if raw is None or len(shape) != 2:
        raise InputError(f"{where}: HDU holds no 2-D image (shape {shape}); expected a 2-D "
                         "image HDU")
    if 0 in shape:
        raise InputError(f"{where}: image has a zero-length axis (NAXIS1={shape[1]}, "
                         f"NAXIS2={shape[0]}); expected at least 1 pixel on each axis")
    header, dropped = clean_header(hdu.header)
    return FitsImage(data, header, index, spec.path, dropped)


def _select_index(spec: InputSpec, hdul: fits.HDUList) -> int:
    if spec.hdu is not None:
        if spec.hdu >= len(hdul):
            raise InputError(f"{spec}: HDU {spec.hdu} does not exist; the file has "
                             f"{len(hdul)} HDU(s), numbered 0 to {len(hdul) - 1}")
        return spec.hdu
    matches, names = [], []
    for index, hdu in enumerate(hdul):
        try:
            name = str(hdu.header.get("EXTNAME", "")).strip().upper()
            ver = int(hdu.header.get("EXTVER", 1))
        except Exception:
            continue
        names.append(f"{name},{ver}" if name else f"{index}")
        if name == spec.extname and (spec.extver is None or ver == spec.extver):
            matches.append(index)
    if not matches:
        raise InputError(f"{spec}: no HDU named {spec.selector}; the file has "
                         f"{', '.join(names) or 'none'} (EXTNAME,EXTVER)")
    if len(matches) > 1:
        raise InputError(f"{spec}: {len(matches)} HDUs are named {spec.extname} (HDUs "
                         f"{', '.join(map(str, matches))}); expected one: add EXTVER as "
                         f"[{spec.extname},N] or use the index [N]")
    return matches[0]


def release_data(hdu) -> None:
    """Drop the pixels astropy cached on an HDU of an open file (read again if used again)."""
    with contextlib.suppress(AttributeError, KeyError):
        del hdu.data


@contextlib.contextmanager
def _reading(spec: InputSpec) -> Iterator[None]:
    try:
        yield
    except InputError:
        raise
    except Exception as exc:  # astropy raises many types on damaged files
        raise InputError(f"{spec}: cannot read image data ({_reason(exc)}); expected "
                         "a valid FITS image") from None


def image_indices(spec: InputSpec, hdul: fits.HDUList, *, aux: bool = False) -> list[int]:
    """Indices of the HDUs of an open file that are masked (the one a selector names).

    Pixels looked at on the way are released again (:func:`release_data`), so planning a
    file of many CCDs holds none of them.

    Parameters
    ----------
    spec : InputSpec
        The file, optionally with ``[N]``, ``[NAME]`` or ``[NAME,VER]``.
    hdul : astropy.io.fits.HDUList
        The file, open (:func:`open_fits`).
    aux : bool
        Also mask data-quality, error, variance and weight planes (:data:`AUX_EXTNAMES`).

    Raises
    ------
    InputError
        As :func:`read_images`, for everything but unreadable pixels.
    """
    with _reading(spec):
        return _image_indices(spec, hdul, aux=aux)


def _image_indices(spec: InputSpec, hdul: fits.HDUList, *, aux: bool) -> list[int]:
    path = spec.path
    if spec.selected:
        index = _select_index(spec, hdul)
        hdu = hdul[index]
        image = is_image_hdu(hdu)
        release_data(hdu)
        if not image:
            kind = type(hdu).__name__
            naxis = hdu.header.get("NAXIS", 0)
            raise InputError(f"{spec}: HDU {index} is not a 2-D image with data "
                             f"({kind}, NAXIS={naxis}); expected a 2-D image HDU")
        return [index]
    found: list[int] = []
    skipped = []
    for index, hdu in enumerate(hdul):
        image = is_image_hdu(hdu)
        release_data(hdu)
        if image:
            if is_auxiliary_hdu(hdu) and not aux:
                skipped.append(hdu_label(path, index, hdu))
                continue
            found.append(index)
    if not found:
        kinds = ", ".join(f"{i}:{type(h).__name__}(NAXIS={h.header.get('NAXIS', 0)})"
                          for i, h in enumerate(hdul))
        extra = (f"; data-quality/error planes {', '.join(skipped)} are masked only when "
                 "selected, e.g. file.fits[DQ]") if skipped else ""
        raise InputError(f"{path}: no 2-D image HDU with data (HDUs: {kinds}); expected at "
                         f"least one 2-D image{extra}")
    return found


def read_image(spec: InputSpec, hdul: fits.HDUList, index: int) -> FitsImage:
    """Read HDU ``index`` of an open file as a :class:`FitsImage`; its cache is released.

    Raises
    ------
    InputError
        If the HDU holds no readable 2-D image; the message names the file and HDU.
    """
    with _reading(spec):
        try:
            return _read_image(spec, hdul, index)
        finally:
            release_data(hdul[index])  # the image holds its own float32 copy


def read_images(spec: InputSpec | str | Path, *, aux: bool = False) -> list[FitsImage]:
    """Read every 2-D image HDU of a file (or the one HDU its selector names).

    Parameters
    ----------
    spec : InputSpec, str or Path
        The file, optionally with ``[N]``, ``[NAME]`` or ``[NAME,VER]``.
    aux : bool
        Also read data-quality, error, variance and weight planes (:data:`AUX_EXTNAMES`);
        a selected HDU is always read.

    Raises
    ------
    InputError
        If the file is missing or not FITS, holds no 2-D image HDU with data, the selected
        HDU does not exist or is not an image, or pixels cannot be read; the message names
        the file and HDU.
    """
    if not isinstance(spec, InputSpec):
        spec = parse_input(spec)
    with open_fits(spec.path) as hdul:
        return [read_image(spec, hdul, i) for i in image_indices(spec, hdul, aux=aux)]


def _os_error_in(exc: BaseException | None) -> OSError | None:
    """The first ``OSError`` in an exception's chain of causes and contexts."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, OSError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def _sweep_stale_parts(folder: Path, name: str) -> None:
    """Remove temporary files of ``name`` left by a killed mmx process on this host."""
    host = socket.gethostname()
    try:
        leftovers = list(folder.glob(f".{name}.{host}-*{_PART}"))
    except OSError:
        return
    for part in leftovers:
        try:
            pid = int(part.name[len(f".{name}.{host}-"):].split(".", 1)[0])
        except ValueError:
            continue
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            part.unlink(missing_ok=True)
        except OSError:
            continue


class _Sink:
    """A plain writable stream: astropy writes one HDU into it as into a new file."""

    def __init__(self, handle) -> None:
        self._handle = handle

    def write(self, data) -> int:
        return self._handle.write(data)

    def tell(self) -> int:
        return self._handle.tell()

    def flush(self) -> None:
        self._handle.flush()


class AtomicFitsWriter:
    """Write a FITS file one HDU at a time; the file appears only when complete.

    HDUs go to a temporary file in the destination's folder,
    ``.<name>.<host>-<pid>.<random>.part``, which :meth:`commit` syncs and renames over
    the destination. Leaving the ``with`` block without :meth:`commit` (an error, an
    interrupt) removes it: a reader never sees a partial file, whatever happens part-way,
    and only the HDU being appended is in memory. A temporary file left by a process
    killed with SIGKILL is removed by the next write of the same output on that host.
    The bytes are those :meth:`astropy.io.fits.HDUList.writeto` writes for the same HDUs
    with ``output_verify="fix+ignore"`` (an empty primary HDU first if the first is an
    extension, ``EXTEND`` set when extensions follow).

    Parameters
    ----------
    path : str or Path
        Destination.
    overwrite : bool
        Replace an existing destination; without it an existing file is an error.
    protect : iterable of path
        Input files that must never be replaced, even with ``overwrite``.

    Raises
    ------
    InputError
        If ``path`` is one of ``protect``, exists and ``overwrite`` is false, or cannot be
        written (here, in :meth:`append` or :meth:`commit`; the message says why: no space,
        permissions, read-only file system); nothing is left behind.
    """

    def __init__(self, path: str | Path, *, overwrite: bool = False,
                 protect: Iterable[str | Path] = ()) -> None:
        self.path = path = Path(path)
        self._tmp: Path | None = None
        self._handle = None
        self._pending = None  # the primary, written once it is known if extensions follow
        self._count = 0
        target = path.resolve()
        for other in protect:
            if Path(other).resolve() == target:
                raise InputError(f"{path}: refusing to overwrite an input file; choose another "
                                 "output name or folder")
        if path.exists() and not overwrite:
            raise InputError(f"{path}: output exists; pass --overwrite to replace it")
        with self._failing():
            path.parent.mkdir(parents=True, exist_ok=True)
            _sweep_stale_parts(path.parent, path.name)
            prefix = f".{path.name}.{socket.gethostname()}-{os.getpid()}."
            fd, tmp_name = tempfile.mkstemp(prefix=prefix, suffix=_PART, dir=path.parent)
            self._tmp = Path(tmp_name)
            self._handle = os.fdopen(fd, "wb")

    def __enter__(self) -> AtomicFitsWriter:
        return self

    def __exit__(self, *exc_info) -> None:
        self.discard()

    def append(self, hdu) -> None:
        """Write the next HDU (its data may be dropped by the caller afterwards)."""
        if self._handle is None:
            raise ValueError(f"{self.path}: writer is already committed or discarded")
        with self._failing():
            if self._count == 0 and self._pending is None:
                if isinstance(hdu, fits.PrimaryHDU):
                    self._pending = hdu
                    return
                self._pending = fits.PrimaryHDU()
            if self._pending is not None:
                fits.HDUList([self._pending, hdu]).update_extend()
                self._write(self._pending)
                self._pending = None
            self._write(hdu)

    def commit(self) -> Path:
        """Finish the file and rename it to its destination."""
        if self._handle is None:
            raise ValueError(f"{self.path}: writer is already committed or discarded")
        with self._failing():
            if self._pending is not None:
                self._write(self._pending)
                self._pending = None
            self._handle.flush()
            os.fsync(self._handle.fileno())
            self._handle.close()
            self._handle = None
            os.chmod(self._tmp, 0o644)
            os.replace(self._tmp, self.path)
            self._tmp = None
        return self.path

    def discard(self) -> None:
        """Remove the temporary file (nothing once committed)."""
        if self._handle is not None:
            with contextlib.suppress(OSError):
                self._handle.close()
            self._handle = None
        if self._tmp is not None:
            with contextlib.suppress(OSError):
                self._tmp.unlink(missing_ok=True)
            self._tmp = None

    def _write(self, hdu) -> None:
        with _quiet_astropy():
            hdu.verify("fix+ignore")
            fits.HDUList([hdu]).writeto(_Sink(self._handle), output_verify="ignore",
                                        checksum=False)
        self._count += 1

    @contextlib.contextmanager
    def _failing(self) -> Iterator[None]:
        """On any failure remove the temporary file; a write error becomes one InputError."""
        try:
            yield
        except BaseException as exc:
            self.discard()
            cause = _os_error_in(exc) if isinstance(exc, Exception) else None
            if cause is None or isinstance(exc, InputError):
                raise
            raise InputError(f"{self.path}: cannot write ({describe_os_error(cause)}); nothing "
                             "was left behind") from None


def write_fits_atomic(
    hdul: fits.HDUList,
    path: str | Path,
    *,
    overwrite: bool = False,
    protect: Iterable[str | Path] = (),
) -> Path:
    """Write ``hdul`` to ``path`` through a temporary file in the same folder, then rename.

    A reader never sees a partial file: an interrupted or failed write (no space left, a
    vanished folder, SIGTERM) leaves only the old file (or nothing) behind
    (:class:`AtomicFitsWriter`, which writes a file one HDU at a time).

    Parameters
    ----------
    hdul
        What to write.
    path
        Destination.
    overwrite
        Replace an existing destination; without it an existing file is an error.
    protect
        Input files that must never be replaced, even with ``overwrite``.

    Raises
    ------
    InputError
        If ``path`` is one of ``protect``, exists and ``overwrite`` is false, or cannot be
        written (the message says why: no space, permissions, read-only file system).
    """
    with AtomicFitsWriter(path, overwrite=overwrite, protect=protect) as writer:
        for hdu in hdul:
            writer.append(hdu)
        return writer.commit()
