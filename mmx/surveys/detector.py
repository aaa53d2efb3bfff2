"""What the detector does to the light: response, defects, cosmic rays, bleeding, readout.

Order of operations in :func:`mmx.surveys.simulate.simulate_ccd`, as in a real CCD:
expected electrons = response (flat field, dead pixels/columns) x (sky + sources);
Poisson draw; dark charge of hot pixels/columns and cosmic-ray charge added; charge
beyond the full well bleeds along columns (charge conserving); readout adds bias,
read noise, prescan/overscan, and the ADC quantises to uint16 with clipping.

Arrays are ``(ny, nx)`` numpy arrays; columns run along axis 0 (the parallel transfer
direction, towards row 0 where the serial register is).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "DefectCounts",
    "response_map",
    "add_dead_defects",
    "add_hot_defects",
    "add_cosmic_rays",
    "bleed",
    "digitize",
]

_DEPOSIT_PER_UM = 80.0  # most probable e- freed per um of silicon by a minimum-ionising particle


@dataclass(frozen=True)
class DefectCounts:
    """Mean numbers of defects per CCD (each count is Poisson-drawn per CCD).

    Attributes
    ----------
    hot_pixels, hot_columns, dead_pixels, dead_columns : float
        Mean counts per full-size CCD; scaled with the CCD area when a smaller CCD is
        simulated.
    """

    hot_pixels: float = 30.0
    hot_columns: float = 1.0
    dead_pixels: float = 20.0
    dead_columns: float = 1.0


def response_map(
    shape: tuple[int, int], *, pixel_rms: float, large_scale: float,
    offset: tuple[float, float], field_radius: float, rng: np.random.Generator,
) -> np.ndarray:
    """Relative response (flat field) of one CCD, mean close to 1.

    Parameters
    ----------
    shape
        ``(ny, nx)`` [px].
    pixel_rms
        Pixel-to-pixel non-uniformity (fractional Gaussian rms).
    large_scale
        Amplitude of the smooth variation: radial vignetting across the field plus a
        random tilt of a quarter of it.
    offset
        Position ``(y, x)`` [px] of this CCD's pixel (0, 0) from the optical axis.
    field_radius
        Radius of the focal plane [px] (where the vignetting reaches ``large_scale``).
    rng
        Random generator.
    """
    ny, nx = shape
    yy = (np.arange(ny, dtype=np.float64) + offset[0])[:, None]
    xx = (np.arange(nx, dtype=np.float64) + offset[1])[None, :]
    r2 = (yy**2 + xx**2) / field_radius**2
    tilt_y, tilt_x = rng.uniform(-0.25, 0.25, 2) * large_scale
    smooth = (1.0 - large_scale * r2
              + tilt_y * (yy - yy.mean()) / ny + tilt_x * (xx - xx.mean()) / nx)
    pixel = 1.0 + pixel_rms * rng.standard_normal(shape, dtype=np.float32)
    return (smooth * pixel).astype(np.float32)


def _scaled_count(mean: float, area_fraction: float, rng: np.random.Generator) -> int:
    return int(rng.poisson(mean * area_fraction))


def add_dead_defects(
    response: np.ndarray, counts: DefectCounts, *, area_fraction: float,
    rng: np.random.Generator,
) -> dict[str, int]:
    """Lower the response of dead pixels and (partial) dead columns in place.

    A dead pixel keeps 0-20 % of its response. A dead column keeps 0-30 % from a random
    row up to the top (a blocked transfer loses the charge of every pixel behind it).

    Returns
    -------
    dict
        ``dead_pixels`` and ``dead_columns`` drawn.
    """
    ny, nx = response.shape
    n_pix = _scaled_count(counts.dead_pixels, area_fraction, rng)
    ys, xs = rng.integers(0, ny, n_pix), rng.integers(0, nx, n_pix)
    response[ys, xs] *= rng.uniform(0.0, 0.2, n_pix).astype(np.float32)
    n_col = _scaled_count(counts.dead_columns, area_fraction, rng)
    for _ in range(n_col):
        x, start = int(rng.integers(0, nx)), int(rng.integers(0, ny))
        response[start:, x] *= np.float32(rng.uniform(0.0, 0.3))
    return {"dead_pixels": n_pix, "dead_columns": n_col}


def add_hot_defects(
    electrons: np.ndarray, counts: DefectCounts, *, exptime: float, area_fraction: float,
    rng: np.random.Generator,
) -> dict[str, int]:
    """Add dark charge of hot pixels and hot columns [e-] in place.

    Hot pixels: log-normal dark current, median 20 e-/s. Hot columns: a charge trap or
    hot spot at a random row adds 0.2-3 e-/s to every pixel transferred through it, i.e.
    from that row to the top.

    Returns
    -------
    dict
        ``hot_pixels`` and ``hot_columns`` drawn.
    """
    ny, nx = electrons.shape
    n_pix = _scaled_count(counts.hot_pixels, area_fraction, rng)
    ys, xs = rng.integers(0, ny, n_pix), rng.integers(0, nx, n_pix)
    electrons[ys, xs] += 20.0 * np.exp(1.2 * rng.standard_normal(n_pix)) * exptime
    n_col = _scaled_count(counts.hot_columns, area_fraction, rng)
    for _ in range(n_col):
        x, start = int(rng.integers(0, nx)), int(rng.integers(0, ny))
        level = rng.uniform(0.2, 3.0) * exptime
        electrons[start:, x] += rng.poisson(level, ny - start)
    return {"hot_pixels": n_pix, "hot_columns": n_col}


def add_cosmic_rays(
    electrons: np.ndarray, *, rate: float, exptime: float, pixel_size: float,
    thickness: float, rng: np.random.Generator,
) -> int:
    """Add cosmic-ray tracks [e-] in place; return how many.

    A simple muon model: Poisson number of events for the CCD area and exposure time;
    zenith angle with a cos^2 distribution; a straight track whose projected length is
    ``thickness * tan(theta)``; 80 e-/um of path with Landau-like (log-normal) scatter;
    lateral charge diffusion growing with the thickness. Detailed cosmic rays (worms,
    delta rays) are injected later by :mod:`mmx.synthesis.contaminants`.

    Parameters
    ----------
    electrons
        Image [e-], changed in place.
    rate
        Events per cm^2 per s.
    exptime
        Exposure time [s] (the readout time is ignored).
    pixel_size, thickness
        Pixel pitch and depleted thickness [um].
    rng
        Random generator.
    """
    ny, nx = electrons.shape
    area_cm2 = ny * nx * (pixel_size * 1e-4) ** 2
    n = int(rng.poisson(rate * area_cm2 * exptime))
    if n == 0:
        return 0
    cos_t = rng.random(n) ** (1.0 / 3.0)  # flux ~ cos^2(theta) per solid angle
    tan_t = np.sqrt(1.0 - cos_t**2) / np.maximum(cos_t, 1e-3)
    length = np.minimum(thickness * tan_t / pixel_size, 400.0)  # projected [px]
    charge = _DEPOSIT_PER_UM * thickness / cos_t * np.exp(0.35 * rng.standard_normal(n))
    phi = rng.uniform(0.0, 2.0 * np.pi, n)
    x0, y0 = rng.uniform(-5, nx + 5, n), rng.uniform(-5, ny + 5, n)
    diffusion = 0.25 + 0.001 * thickness  # [px]
    samples = np.maximum(6, (6 * length).astype(np.int64))
    owner = np.repeat(np.arange(n), samples)
    t = rng.random(owner.size) - 0.5
    xs = x0[owner] + t * length[owner] * np.cos(phi[owner]) \
        + diffusion * rng.standard_normal(owner.size)
    ys = y0[owner] + t * length[owner] * np.sin(phi[owner]) \
        + diffusion * rng.standard_normal(owner.size)
    ix, iy = np.rint(xs).astype(np.int64), np.rint(ys).astype(np.int64)
    inside = (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny)
    weights = (charge / samples)[owner]
    electrons += np.bincount(iy[inside] * nx + ix[inside], weights=weights[inside],
                             minlength=ny * nx).reshape(ny, nx)
    return n


def _spill(column: np.ndarray, start: int, step: int, excess: float, full_well: float) -> None:
    """Fill pixels from ``start`` in direction ``step`` up to the full well with ``excess``."""
    if step > 0:
        path = column[start:]
    else:
        path = column[start::-1] if start >= 0 else column[:0]
    if path.size == 0 or excess <= 0:
        return  # charge reaching the CCD edge is lost into the serial register / guard
    room = np.clip(full_well - path, 0.0, None)
    filled = np.cumsum(room)
    k = int(np.searchsorted(filled, excess))
    path[:k] = np.maximum(path[:k], full_well)
    if k < path.size:
        path[k] += excess - (filled[k - 1] if k else 0.0)


def bleed(electrons: np.ndarray, full_well: float, *, up_fraction: float = 0.5) -> int:
    """Move charge beyond the full well along columns, conserving it; return columns hit.

    Each run of pixels above ``full_well`` in a column is clipped to it and its excess
    fills the neighbouring pixels of the same column up to the full well, a fraction
    ``up_fraction`` towards higher rows and the rest towards lower rows. Charge pushed
    past the CCD's first or last row is lost (as in a real CCD).
    """
    cols = np.flatnonzero((electrons > full_well).any(axis=0))
    for x in cols:
        column = electrons[:, x]  # a view: changes land in ``electrons``
        for _ in range(50):  # a few passes settle runs that spill into each other
            over = column > full_well
            if not over.any():
                break
            edges = np.flatnonzero(np.diff(np.concatenate(([0], over.view(np.int8), [0]))))
            for a, b in zip(edges[::2], edges[1::2], strict=True):
                excess = float(np.sum(column[a:b] - full_well))
                column[a:b] = full_well
                _spill(column, b, 1, up_fraction * excess, full_well)
                _spill(column, a - 1, -1, (1.0 - up_fraction) * excess, full_well)
    return int(cols.size)


def digitize(
    electrons: np.ndarray, *, gain: float, read_noise: float, bias: float, adc_max: int,
    prescan: int, overscan: int, overscan_rows: int, rng: np.random.Generator,
) -> np.ndarray:
    """Read the CCD out: raw uint16 frame with prescan, data, overscan and overscan rows.

    The frame is ``(ny + overscan_rows, prescan + nx + overscan)``; the data section
    sits at rows ``[0, ny)`` and columns ``[prescan, prescan + nx)``. Every pixel gets
    the bias (with a slow row-to-row drift of about 1 ADU and 0.3 ADU row jitter, the
    same in the data and the overscan so that a row-wise overscan correction removes
    it) and Gaussian read noise; data pixels add ``electrons / gain``. Values are
    rounded and clipped to ``[0, adc_max]``.
    """
    ny, nx = electrons.shape
    total_y, total_x = ny + overscan_rows, prescan + nx + overscan
    rows = np.arange(total_y, dtype=np.float64)
    phase = rng.uniform(0.0, 2.0 * math.pi)
    drift = 1.0 * np.sin(2.0 * math.pi * rows / total_y + phase) \
        + 0.3 * rng.standard_normal(total_y)
    frame = rng.standard_normal((total_y, total_x), dtype=np.float32)
    frame *= np.float32(read_noise / gain)
    frame += (bias + drift)[:, None].astype(np.float32)
    frame[:ny, prescan:prescan + nx] += (electrons / gain).astype(np.float32)
    np.rint(frame, out=frame)
    np.clip(frame, 0, adc_max, out=frame)
    return frame.astype(np.uint16)
