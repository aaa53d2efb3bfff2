"""Command-line runners of the cosmic-ray peers, one process per tool as users run them.

Run inside the peer's own environment (only numpy and astropy are imported at the top)::

    DEEPCR_PY peer_runners.py deepcr --model ACS-WFC --out-dir DIR [--cleaned] frame.fits...
    PYTHON    peer_runners.py astroscrappy --out-dir DIR [--cleaned] frame.fits...

Each input is a FITS file whose primary HDU holds the image in ADU; the header gives
``GAIN`` [e-/ADU], ``RDNOISE`` [e-] and ``SATURATE`` [ADU] (defaults 1, 5 and 65535 when
absent, said on stderr). Outputs are ``DIR/<stem>.<tool>.fits``:

* deepCR: float32 probability of a cosmic ray per pixel (``clean(binary=False)``), on
  the image converted to electrons as deepCR requires; its default threshold is 0.5.
* astroscrappy: uint8 0/1 cosmic-ray mask of ``detect_cosmics`` with its default
  parameters (sigclip 4.5, sigfrac 0.3, objlim 5, 4 iterations) and the frame's gain,
  read noise and saturation level.
* With ``--cleaned``, also ``DIR/<stem>.<tool>.clean.fits``: the tool's cleaned image in
  ADU (deepCR: ``clean(inpaint=True)`` at its threshold 0.5 with its default inpainting,
  5x5 median sampling (its one inpainting network is for ACS-WFC F606W only); astroscrappy:
  the ``cleanarr`` of ``detect_cosmics``, its default median-mask cleaning).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from astropy.io import fits

__all__ = ["frame_keys", "main"]


def frame_keys(header: fits.Header, *, path: Path) -> tuple[float, float, float]:
    """``(gain [e-/ADU], read noise [e-], saturation [ADU])`` of a frame's header."""
    defaults = {"GAIN": 1.0, "RDNOISE": 5.0, "SATURATE": 65535.0}
    values = []
    for key, default in defaults.items():
        if key not in header:
            print(f"{path}: no {key} in the header, using {default}", file=sys.stderr)
        values.append(float(header.get(key, default)))
    return values[0], values[1], values[2]


def _read(path: Path) -> tuple[np.ndarray, fits.Header]:
    with fits.open(path) as hdul:
        data = np.asarray(hdul[0].data, dtype=np.float32)
        header = hdul[0].header.copy()
    if data.ndim != 2:
        raise SystemExit(f"{path}: primary HDU is not a 2-D image (shape {data.shape})")
    return np.nan_to_num(data, nan=0.0), header


def _write(array: np.ndarray, out: Path, dtype) -> None:
    fits.PrimaryHDU(np.asarray(array, dtype=dtype)).writeto(out, overwrite=True)


def _deepcr(paths: list[Path], out_dir: Path, *, model: str, cleaned: bool) -> None:
    from deepCR import deepCR

    net = deepCR(mask=model, device="CPU")  # inpaint=None: its default 5x5 median sampling
    for path in paths:
        data, header = _read(path)
        gain, _, _ = frame_keys(header, path=path)
        stem = f"{path.name.removesuffix('.fits')}.deepcr-{model}"
        prob = net.clean(data * gain, binary=False, inpaint=False, segment=True, patch=1024)
        _write(prob, out_dir / f"{stem}.fits", np.float32)
        if cleaned:
            _, image = net.clean(data * gain, threshold=0.5, inpaint=True, segment=True,
                                 patch=1024)
            _write(np.asarray(image) / gain, out_dir / f"{stem}.clean.fits", np.float32)


def _astroscrappy(paths: list[Path], out_dir: Path, *, cleaned: bool) -> None:
    import astroscrappy

    for path in paths:
        data, header = _read(path)
        gain, read_noise, saturate = frame_keys(header, path=path)
        mask, image = astroscrappy.detect_cosmics(data, gain=gain, readnoise=read_noise,
                                                  satlevel=saturate)
        stem = f"{path.name.removesuffix('.fits')}.astroscrappy"
        _write(mask, out_dir / f"{stem}.fits", np.uint8)
        if cleaned:  # cleanarr is in the input's units
            _write(image, out_dir / f"{stem}.clean.fits", np.float32)


def main(argv: list[str] | None = None) -> int:
    """Command line: ``deepcr`` or ``astroscrappy`` over FITS frames."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tool", choices=("deepcr", "astroscrappy"))
    parser.add_argument("frames", nargs="+", type=Path)
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--model", default="ACS-WFC", help="deepCR mask model (default ACS-WFC)")
    parser.add_argument("--cleaned", action="store_true", help="also write cleaned images")
    args = parser.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    if args.tool == "deepcr":
        _deepcr(args.frames, args.out_dir, model=args.model, cleaned=args.cleaned)
    else:
        _astroscrappy(args.frames, args.out_dir, cleaned=args.cleaned)
    return 0


if __name__ == "__main__":
    sys.exit(main())
