"""Compare mmx's simulated cosmic rays with the real ones of an HST WFPC2 frame.

The real frame (``../shared/real/hst_wfpc2_u3060301m_wf3_F814W_MS1137.fits``, WF3, F814W,
2400 s, gain 7 e-/DN, 15 um pixels) comes with its IRAF L.A.Cosmic mask. mmx's CR
injector is run on a blank frame with the same sky, noise, gain, exposure time and
pixel size, at an in-orbit rate; then L.A.Cosmic (astroscrappy, IRAF-like settings) is
run on the simulated frame, so that both are seen through the same detector algorithm.
Connected components (8-connected) are compared: pixel count, length (largest extent
along the principal axis), width (pixels / length), peak over the sky noise; and the
event rate. Prints a table and writes ``benchmarks/out/cosmic_ray_realism.png``.

Run: ``.venv/bin/python benchmarks/cosmic_ray_realism.py [RATE [THICKNESS_UM [WORM_FRACTION]]]``
(defaults 1.6 cm^-2 s^-1, 10 um: WFPC2's thin front-illuminated Loral CCDs, 0.1).
"""

from __future__ import annotations

import sys
from pathlib import Path

import astroscrappy
import numpy as np
from astropy.io import fits
from scipy import ndimage

from mmx.synthesis.contaminants import inject_cosmic_rays

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "real"
FRAME = REAL / "hst_wfpc2_u3060301m_wf3_F814W_MS1137.fits"
MASK = REAL / "hst_wfpc2_u3060301m_wf3_F814W_MS1137_lacosmic_iraf_mask.fits"
GAIN, READ_NOISE_E, PIXEL_UM = 7.0, 5.2, 15.0  # WFPC2 ATD-GAIN 7; WFPC2 handbook


def _components(mask: np.ndarray, image: np.ndarray, sky: float, noise: float) -> dict:
    lab, n = ndimage.label(mask, structure=np.ones((3, 3), bool))
    out = {"pixels": [], "length": [], "width": [], "peak_snr": []}
    for i, sl in enumerate(ndimage.find_objects(lab), start=1):
        ys, xs = np.nonzero(lab[sl] == i)
        npix = ys.size
        if npix > 1:
            cov = np.cov(np.vstack([xs, ys]))
            evals, evecs = np.linalg.eigh(cov)
            proj = np.vstack([xs, ys]).T @ evecs[:, -1]
            length = float(np.ptp(proj)) + 1.0
        else:
            length = 1.0
        out["pixels"].append(npix)
        out["length"].append(length)
        out["width"].append(npix / length)
        out["peak_snr"].append(float((image[sl][lab[sl] == i].max() - sky) / noise))
    return {k: np.asarray(v) for k, v in out.items()} | {"n": n}


def _row(name: str, stats: dict, area_cm2: float, exptime: float) -> str:
    q = lambda v: "/".join(f"{x:.3g}" for x in np.percentile(v, [10, 50, 90]))  # noqa: E731
    return (f"| {name:28s} | {stats['n']:6d} | {stats['n'] / area_cm2 / exptime:6.2f} | "
            f"{q(stats['pixels']):>14s} | {q(stats['length']):>14s} | {q(stats['width']):>14s} "
            f"| {q(stats['peak_snr']):>16s} | {np.mean(stats['length'] >= 10):.3f} |")


def main(rate: float = 1.6, thickness_um: float = 10.0, worm_fraction: float = 0.1) -> None:
    """Compare injected cosmic rays with the real WFPC2 frame through the same L.A.Cosmic."""
    if not FRAME.is_file():
        sys.exit(f"real frame not found: {FRAME}")
    real = fits.getdata(FRAME).astype(np.float32)
    real_mask = fits.getdata(MASK).astype(bool)
    exptime = float(fits.getheader(FRAME)["EXPTIME"])
    good = ~real_mask
    sky = float(np.median(real[good]))
    noise = float(1.4826 * np.median(np.abs(real[good] - sky)))
    area = real.size * (PIXEL_UM * 1e-4) ** 2

    rng = np.random.default_rng(1)
    blank = (rng.poisson(sky * GAIN, real.shape) / GAIN
             + rng.normal(0, READ_NOISE_E / GAIN, real.shape)).astype(np.float32)
    record = {"exptime": exptime, "gain": GAIN, "sky_noise": noise, "pixel_size": PIXEL_UM}
    inj = inject_cosmic_rays(blank, record=record, rng=rng, rate=rate, min_events=0,
                             max_events=100000, angular_index=1.0, thickness_um=thickness_um,
                             worm_fraction=worm_fraction)
    sim = inj.image
    sim_mask, _ = astroscrappy.detect_cosmics(sim, gain=GAIN, readnoise=READ_NOISE_E,
                                             sigclip=4.5, sigfrac=0.3, objlim=5.0, niter=4,
                                             satlevel=1e9)
    real_stats = _components(real_mask, real, sky, noise)
    sim_stats = _components(sim_mask, sim, sky, noise)
    truth_stats = _components(inj.truth, sim, sky, noise)
    print(f"WFPC2 WF3 frame: sky {sky:.2f} DN, noise {noise:.2f} DN, {exptime:.0f} s, "
          f"{area:.2f} cm^2; mmx: rate {rate} cm^-2 s^-1, depleted thickness {thickness_um} um, "
          f"worm fraction {worm_fraction}; {inj.info}")
    print("| components (10/50/90 %)      | count  | /cm2/s | pixels         | length [px]    "
          "| width [px]     | peak [sky sigma] | frac len>=10 |")
    print("|---|---|---|---|---|---|---|---|")
    print(_row("real, L.A.Cosmic mask", real_stats, area, exptime))
    print(_row("mmx, L.A.Cosmic on simulated", sim_stats, area, exptime))
    print(_row("mmx, exact truth", truth_stats, area, exptime))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mmx.io.display import asinh_stretch, save_png

    fig, axes = plt.subplots(2, 3, figsize=(13, 8))
    for ax, key, bins in zip(axes[0], ("pixels", "length", "peak_snr"),
                             (np.logspace(0, 3, 31), np.logspace(0, 2.7, 28),
                              np.logspace(0, 4, 33)), strict=True):
        for stats, label in ((real_stats, "real (L.A.Cosmic)"),
                             (sim_stats, "mmx (L.A.Cosmic)"), (truth_stats, "mmx truth")):
            ax.hist(stats[key], bins=bins, histtype="step", density=True, label=label, lw=1.5)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(key)
        ax.legend(fontsize=8)
    crop = np.s_[200:400, 200:400]
    axes[1, 0].imshow(asinh_stretch(real[crop]), cmap="gray", origin="lower")
    axes[1, 0].set_title("real WFPC2 (200x200)")
    axes[1, 1].imshow(asinh_stretch(sim[crop]), cmap="gray", origin="lower")
    axes[1, 1].set_title("mmx simulated, same sky/noise")
    axes[1, 2].imshow(inj.truth[crop], cmap="Reds", origin="lower")
    axes[1, 2].set_title("mmx truth")
    for ax in axes[1]:
        ax.set_axis_off()
    out = save_png(fig, ROOT / "benchmarks" / "out" / "cosmic_ray_realism.png")
    print(f"wrote {out}")


if __name__ == "__main__":
    main(*(float(a) for a in sys.argv[1:4]))
