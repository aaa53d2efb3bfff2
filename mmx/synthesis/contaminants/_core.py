"""What every injector shares: the :class:`Injection` result, its contract, and helpers.

The contract of every injector
------------------------------
An injector takes an image (float32, bias-subtracted ADU, sky included) and returns a
*new* image plus boolean masks, never touching its input:

* ``truth``: the pixels it labels with its class;
* ``source``: pixels it changed that carry *no* contaminant class: only the
  astrophysical star that the SAT and SP injectors add to host saturation and spikes
  (labelled later by the BG/BBG rule, like any real star);
* ``changed == truth | source`` exactly, with ``truth`` and ``source`` disjoint.

Additive models are truncated where they fall below ``wing_cut`` times the sky noise:
those faint wings are *not added*, so no pixel is changed without being labelled, and
every labelled pixel carries at least ``wing_cut`` sigma of the contaminant (before
photon noise). A pixel whose float32 value happens not to change is not labelled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mmx.errors import ConfigError

__all__ = ["Injection"]


@dataclass
class Injection:
    """The result of one injector.

    Attributes
    ----------
    abbr : str
        Class abbreviation (``"CR"``...).
    image : numpy.ndarray
        The new float32 image.
    truth : numpy.ndarray of bool
        Pixels labelled with the class: exactly the changed pixels not in ``source``.
    source : numpy.ndarray of bool
        Changed pixels of an added astrophysical source carrying no class (SAT, SP).
    replaces : bool
        True when the injector replaces the pixel content (overscan): earlier truth
        bits and the ignore flag of ``truth`` pixels no longer apply.
    info : dict
        JSON-serialisable summary of the draw (counts, amplitudes) for the record.
    """

    abbr: str
    image: np.ndarray
    truth: np.ndarray
    source: np.ndarray
    replaces: bool = False
    info: dict | None = None


def _noise(record: dict) -> float:
    """Per-pixel sky noise of a cutout [ADU], from its record."""
    value = float(record.get("sky_noise") or 0.0)
    if not np.isfinite(value) or value <= 0:
        gain = float(record.get("gain", 1.0))
        value = float(np.hypot(record.get("read_noise", 1.0),
                               np.sqrt(max(float(record.get("sky", 0.0)), 0.0) / gain)))
    return max(value, 1e-3)


def _gain(record: dict) -> float:
    """Gain [e-/ADU] of a cutout, 1 when missing or invalid."""
    gain = float(record.get("gain") or 1.0)
    return gain if np.isfinite(gain) and gain > 0 else 1.0


def _fwhm(record: dict) -> float:
    """Seeing FWHM of a cutout [px], 3 when missing."""
    fwhm = float(record.get("fwhm") or 3.0)
    return fwhm if np.isfinite(fwhm) and fwhm > 0.5 else 3.0


def _range(value: Sequence[float] | float, name: str, *, low: float = -np.inf,
           high: float = np.inf) -> tuple[float, float]:
    """Check a ``[lo, hi]`` parameter range (a scalar means a fixed value)."""
    if np.isscalar(value):
        lo = hi = float(value)  # type: ignore[arg-type]
    else:
        try:
            lo, hi = (float(v) for v in value)  # type: ignore[union-attr]
        except (TypeError, ValueError):
            raise ConfigError(f"{name} must be a number or a [low, high] pair, "
                              f"got {value!r}") from None
    if not (np.isfinite(lo) and np.isfinite(hi) and low <= lo <= hi <= high):
        raise ConfigError(f"{name} must be an increasing pair within [{low:g}, {high:g}], "
                          f"got {value!r}")
    return lo, hi


def _uniform(rng: np.random.Generator, value, name: str, **bounds) -> float:
    lo, hi = _range(value, name, **bounds)
    return float(rng.uniform(lo, hi)) if hi > lo else lo


def _loguniform(rng: np.random.Generator, value, name: str) -> float:
    lo, hi = _range(value, name, low=1e-300)
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi)))) if hi > lo else lo


def _probability(value: float, name: str) -> float:
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{name} must be in [0, 1], got {value}")
    return value


def _count(rng: np.random.Generator, mean: float, name: str, *, minimum: int = 1) -> int:
    """Poisson number of features with the given mean, at least ``minimum``."""
    mean = float(mean)
    if not (np.isfinite(mean) and mean >= 0):
        raise ConfigError(f"{name} must be a non-negative number, got {mean}")
    return max(int(rng.poisson(mean)), minimum)


def _shot_noise(delta: np.ndarray, gain: float, rng: np.random.Generator) -> np.ndarray:
    """Add the photon (Poisson, Gaussian approximation) noise of an added signal [ADU]."""
    positive = np.clip(delta, 0.0, None)
    return delta + rng.standard_normal(delta.shape) * np.sqrt(positive / gain)


def _finish(abbr: str, image: np.ndarray, delta: np.ndarray, keep: np.ndarray, *,
            source: np.ndarray | None = None, info: dict | None = None) -> Injection:
    """Add ``delta`` where ``keep`` (truth) or ``source``; label exactly the changed pixels."""
    image = np.asarray(image, dtype=np.float32)
    source = np.zeros(image.shape, bool) if source is None else source & ~keep
    where = keep | source
    new = image.copy()
    new[where] = (image[where] + delta[where]).astype(np.float32)
    changed = new != image
    return Injection(abbr, new, keep & changed, source & changed, info=info or {})


def _replace(abbr: str, image: np.ndarray, values: np.ndarray, keep: np.ndarray, *,
             replaces: bool = False, info: dict | None = None) -> Injection:
    """Replace pixels by ``values`` where ``keep``; label exactly the changed pixels."""
    image = np.asarray(image, dtype=np.float32)
    new = image.copy()
    new[keep] = values[keep].astype(np.float32)
    changed = new != image
    return Injection(abbr, new, changed, np.zeros(image.shape, bool), replaces=replaces,
                     info=info or {})


def _moffat(shape: tuple[int, int], x0: float, y0: float, fwhm: float, beta: float
            ) -> np.ndarray:
    """Moffat profile of unit peak centred on ``(x0, y0)`` (Moffat 1969; Trujillo et al. 2001)."""
    alpha = fwhm / (2.0 * np.sqrt(2.0 ** (1.0 / beta) - 1.0))
    yy, xx = np.indices(shape, dtype=np.float64)
    r2 = (xx - x0) ** 2 + (yy - y0) ** 2
    return (1.0 + r2 / alpha**2) ** (-beta)


def _add_moffat(delta: np.ndarray, x0: float, y0: float, *, peak: float, fwhm: float,
                beta: float, floor: float) -> None:
    """Add a Moffat star of the given peak into ``delta`` where it exceeds ``floor``.

    Only the box where the profile can exceed ``floor`` is computed (stars far brighter
    than the noise have wide wings; faint ones are small).
    """
    alpha = fwhm / (2.0 * np.sqrt(2.0 ** (1.0 / beta) - 1.0))
    ratio = max(peak / max(floor, 1e-12), 1.0)
    radius = alpha * np.sqrt(max(ratio ** (1.0 / beta) - 1.0, 0.0)) + 1.0
    ny, nx = delta.shape
    y_lo, y_hi = max(int(y0 - radius), 0), min(int(y0 + radius) + 2, ny)
    x_lo, x_hi = max(int(x0 - radius), 0), min(int(x0 + radius) + 2, nx)
    if y_lo >= y_hi or x_lo >= x_hi:
        return
    yy, xx = np.mgrid[y_lo:y_hi, x_lo:x_hi]
    prof = peak * (1.0 + ((xx - x0) ** 2 + (yy - y0) ** 2) / alpha**2) ** (-beta)
    delta[y_lo:y_hi, x_lo:x_hi] += np.where(prof >= floor, prof, 0.0)


def _gaussian_field(shape: tuple[int, int], slope: float, rng: np.random.Generator
                    ) -> np.ndarray:
    """Zero-mean, unit-variance Gaussian random field with power spectrum ``P(k) ~ k**-slope``."""
    ny, nx = shape
    ky = np.fft.fftfreq(ny)[:, None]
    kx = np.fft.rfftfreq(nx)[None, :]
    k = np.hypot(ky, kx)
    k[0, 0] = np.inf
    amp = k ** (-slope / 2.0)
    spec = amp * (rng.standard_normal(amp.shape) + 1j * rng.standard_normal(amp.shape))
    field = np.fft.irfft2(spec, s=shape)
    field -= field.mean()
    std = field.std()
    return field / std if std > 0 else field
