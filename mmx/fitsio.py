"""Reading FITS images in every form users hand them over, and writing FITS atomically.

Accepted inputs: a FITS file (``.fits``, ``.fit``, ``.fts``, optionally ``.fz`` tile
compressed or ``.gz``), ``file.fits[N]`` for one HDU, a directory (its FITS files, sorted),
and a ``.list`` text file of such paths (one per line, ``#`` comments, relative paths
taken from the list's folder).

Image data always come back as native-endian float32. Non-finite pixels (NaN, Inf) and
integer ``BLANK`` pixels become NaN and are never silently turned into signal: callers
see them through :attr:`FitsImage.bad`.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits

from mmx.errors import InputError

__all__ = [
    "FITS_SUFFIXES",
    "InputSpec",
    "FitsImage",
    "is_fits_name",
    "expand_inputs",
    "read_images",
    "open_fits",
    "is_image_hdu",
    "write_fits_atomic",
]

FITS_SUFFIXES: tuple[str, ...] = (".fits", ".fit", ".fts")
_COMPRESSED = (".fz", ".gz")
_HDU_SELECTOR = re.compile(r"^(?P<path>.+)\[(?P<hdu>\d+)\]$")


@dataclass(frozen=True)
class InputSpec:
    """One input: a FITS file and optionally a single HDU index in it."""

    path: Path
    hdu: int | None = None

    def __str__(self) -> str:
        return f"{self.path}[{self.hdu}]" if self.hdu is not None else str(self.path)


@dataclass
class FitsImage:
    """One image HDU read from a file.

    Attributes
    ----------
    data : numpy.ndarray
        2-D native float32 pixels; NaN where the input was NaN, Inf or BLANK.
    header : astropy.io.fits.Header
        The HDU's own header, WCS included, unmodified.
    index : int
        HDU index in the file.
    path : pathlib.Path
        File the image came from.
    """

    data: np.ndarray
    header: fits.Header
    index: int
    path: Path

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


def _split_selector(text: str) -> InputSpec:
    match = _HDU_SELECTOR.match(text)
    if match:
        return InputSpec(Path(match["path"]), int(match["hdu"]))
    return InputSpec(Path(text))


def _read_list(path: Path) -> list[str]:
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read list file ({exc})") from None
    out = []
    for line in lines:
        entry = line.split("#", 1)[0].strip()
        if entry:
            candidate = Path(entry)
            out.append(str(candidate if candidate.is_absolute() else path.parent / candidate))
    if not out:
        raise InputError(f"{path}: list file names no input")
    return out


def expand_inputs(paths: Iterable[str | Path]) -> list[InputSpec]:
    """Expand files, ``file[N]``, directories and ``.list`` files into input specs.

    Existence is checked here; FITS validity is checked when a file is read.

    Raises
    ------
    InputError
        For a path that does not exist, a directory holding no FITS file, or an
        empty ``.list`` file.
    """
    specs: list[InputSpec] = []
    for raw in paths:
        spec = _split_selector(str(raw))
        path = spec.path
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and is_fits_name(p))
            if not found:
                raise InputError(f"{path}: directory holds no FITS file ({', '.join(FITS_SUFFIXES)}"
                                 " optionally .fz/.gz)")
            specs.extend(InputSpec(p) for p in found)
        elif path.suffix.lower() == ".list" and spec.hdu is None:
            if not path.is_file():
                raise InputError(f"{path}: no such list file")
            specs.extend(expand_inputs(_read_list(path)))
        elif path.is_file():
            specs.append(spec)
        else:
            raise InputError(f"{path}: no such file or directory")
    return specs


def open_fits(path: Path) -> fits.HDUList:
    """Open a FITS file read-only, turning every failure into one :class:`InputError`."""
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        hdul = fits.open(path, memmap=False, lazy_load_hdus=False)
    except (OSError, ValueError, TypeError, EOFError) as exc:
        raise InputError(f"{path}: not a readable FITS file ({exc})") from None
    if len(hdul) == 0:
        hdul.close()
        raise InputError(f"{path}: FITS file holds no HDU")
    return hdul


def is_image_hdu(hdu: fits.hdu.base.ExtensionHDU | fits.PrimaryHDU) -> bool:
    """True for a primary, image or tile-compressed image HDU holding 2-D data."""
    if not isinstance(hdu, fits.PrimaryHDU | fits.ImageHDU | fits.CompImageHDU):
        return False
    return hdu.header.get("NAXIS", 0) == 2 and hdu.data is not None


def _to_float32(hdu: fits.PrimaryHDU | fits.ImageHDU | fits.CompImageHDU) -> np.ndarray:
    raw = hdu.data
    data = np.asarray(raw, dtype=np.float32)  # native byte order, always a copy or cast
    if data is raw:
        data = data.copy()
    blank = hdu.header.get("BLANK")
    if blank is not None and np.issubdtype(raw.dtype, np.integer):
        data[raw == blank] = np.nan
    data[~np.isfinite(data)] = np.nan
    return data


def _iter_images(spec: InputSpec, hdul: fits.HDUList) -> Iterator[FitsImage]:
    path = spec.path
    if spec.hdu is not None:
        if spec.hdu >= len(hdul):
            raise InputError(f"{spec}: HDU {spec.hdu} does not exist; the file has "
                             f"{len(hdul)} HDU(s), numbered 0 to {len(hdul) - 1}")
        hdu = hdul[spec.hdu]
        if not is_image_hdu(hdu):
            kind = type(hdu).__name__
            naxis = hdu.header.get("NAXIS", 0)
            raise InputError(f"{spec}: HDU {spec.hdu} is not a 2-D image with data "
                             f"({kind}, NAXIS={naxis}); expected a 2-D image HDU")
        yield FitsImage(_to_float32(hdu), hdu.header.copy(), spec.hdu, path)
        return
    found = False
    for index, hdu in enumerate(hdul):
        if is_image_hdu(hdu):
            found = True
            yield FitsImage(_to_float32(hdu), hdu.header.copy(), index, path)
    if not found:
        kinds = ", ".join(f"{i}:{type(h).__name__}" for i, h in enumerate(hdul))
        raise InputError(f"{path}: no 2-D image HDU with data (HDUs: {kinds})")


def read_images(spec: InputSpec | str | Path) -> list[FitsImage]:
    """Read every 2-D image HDU of a file (or the one HDU its ``[N]`` selects).

    Raises
    ------
    InputError
        If the file is missing or not FITS, holds no 2-D image HDU with data, or the
        selected HDU does not exist or is not an image.
    """
    if not isinstance(spec, InputSpec):
        spec = _split_selector(str(spec))
    with open_fits(spec.path) as hdul:
        try:
            return list(_iter_images(spec, hdul))
        except (OSError, ValueError, TypeError, EOFError) as exc:
            raise InputError(f"{spec}: cannot read image data ({exc})") from None


def write_fits_atomic(
    hdul: fits.HDUList,
    path: str | Path,
    *,
    overwrite: bool = False,
    protect: Iterable[str | Path] = (),
) -> Path:
    """Write ``hdul`` to ``path`` through a temporary file in the same folder, then rename.

    A reader never sees a partial file: an interrupted write leaves only the old file
    (or nothing) behind.

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
        If ``path`` is one of ``protect``, or exists and ``overwrite`` is false.
    """
    path = Path(path)
    target = path.resolve()
    for other in protect:
        if Path(other).resolve() == target:
            raise InputError(f"{path}: refusing to overwrite an input file; choose another "
                             "output name or folder")
    if path.exists() and not overwrite:
        raise InputError(f"{path}: output exists; pass --overwrite to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            hdul.writeto(handle, output_verify="fix+ignore", checksum=False)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
