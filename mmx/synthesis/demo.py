"""Fake clean cutouts, for tests, benchmarks and trying synthesis without a clean set."""

from __future__ import annotations

import numpy as np

from mmx.classes import label_bit
from mmx.io.shards import Sample
from mmx.sky.background import label_background

__all__ = ["demo_clean_samples"]

_BG, _BBG = label_bit("BG"), label_bit("BBG")


def demo_clean_samples(n: int, *, rng: np.random.Generator, shape: tuple[int, int] = (400, 400),
                       exposures: int = 4) -> list[Sample]:
    """Fake clean cutouts: sky, noise, Moffat stars and a few galaxies, with records.

    For tests, benchmarks and trying synthesis before a clean set exists. Inherent
    labels follow the same rules as the clean stage (SAT at ``saturate``, BG/BBG by
    :func:`mmx.sky.background.label_background`).

    Parameters
    ----------
    n : int
        Number of cutouts.
    rng : numpy.random.Generator
        Source of every random draw.
    shape : tuple of int
        Cutout shape [px].
    exposures : int
        Number of distinct exposures (fields) the cutouts are spread over.

    Returns
    -------
    list of Sample
    """
    from mmx.synthesis.contaminants._core import _add_moffat

    out = []
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float64)
    for i in range(n):
        gain = float(rng.uniform(1.5, 4.0))
        read_noise = float(rng.uniform(2.0, 5.0))
        sky = float(rng.uniform(50.0, 2000.0))
        sky_noise = float(np.sqrt(sky / gain + read_noise**2))
        fwhm = float(rng.uniform(2.5, 5.0))
        level = float(rng.uniform(3e4, 6e4))
        record = {
            "instrument": "DEMO", "exposure": f"demo{i % max(exposures, 1):03d}",
            "ccd": i // max(exposures, 1) + 1, "x0": 0, "y0": 0, "band": "i",
            "exptime": float(rng.choice([60.0, 180.0, 300.0, 600.0])), "gain": gain,
            "read_noise": read_noise, "saturate": level, "sky": sky, "sky_noise": sky_noise,
            "fwhm": fwhm, "pixel_scale": 0.26, "spider_angle": float(rng.choice([0.0, 45.0])),
            "overscan_noise": read_noise,
        }
        light = np.zeros(shape)
        for _ in range(int(rng.integers(15, 60))):
            peak = sky_noise * np.exp(rng.uniform(np.log(3.0), np.log(0.3 * level / sky_noise)))
            _add_moffat(light, rng.uniform(0, shape[1]), rng.uniform(0, shape[0]), peak=peak,
                        fwhm=fwhm, beta=3.0, floor=0.01 * sky_noise)
        for _ in range(int(rng.integers(2, 8))):
            x0, y0 = rng.uniform(0, shape[1]), rng.uniform(0, shape[0])
            q, pa, scale = rng.uniform(0.3, 1.0), rng.uniform(0, np.pi), rng.uniform(2.0, 10.0)
            u = (xx - x0) * np.cos(pa) + (yy - y0) * np.sin(pa)
            v = (-(xx - x0) * np.sin(pa) + (yy - y0) * np.cos(pa)) / q
            light += sky_noise * rng.uniform(2.0, 30.0) * np.exp(-np.hypot(u, v) / scale)
        photons = rng.poisson(np.clip(sky + light, 0, None) * gain) / gain
        image = (photons + rng.normal(0.0, read_noise, shape)).astype(np.float32)
        image = np.minimum(image, np.float32(level))
        labels = np.where(image >= level, np.uint16(label_bit("SAT")), np.uint16(0))
        ignore = np.zeros(shape, dtype=np.uint8)
        bbg, bg = label_background(image, contaminants=labels != 0)
        labels[bbg] |= np.uint16(_BBG)
        labels[bg] |= np.uint16(_BG)
        out.append(Sample(image=image, labels=labels.astype(np.uint16), ignore=ignore,
                          record=record))
    return out
