"""Cosmic rays (CR) as a CCD records them: charge deposited in silicon, never PSF-convolved.

Three kinds of event are drawn (Groom 2004, "Cosmic rays and other nonsense in
astronomical CCD imagers", Exp. Astron. 14, 45; Smith et al. 2002 for space):

*Muons (and, in orbit, protons)*: minimum-ionising particles crossing the depleted
layer of thickness ``d`` at zenith angle ``theta`` drawn from ``dN/dcos(theta) ~
cos(theta)**angular_index`` (1: isotropic flux through a plane, as in orbit; ~3: the
``cos^2`` sea-level muon distribution through a horizontal detector, PDG "Cosmic rays"
review). The projected track is ``d tan(theta)`` long: a near-vertical hit makes a
single-pixel dot, an inclined one a short track, a grazing one a long straight track
across the cutout. Charge along the path follows a Landau distribution (here its Moyal
approximation, per 1/4-px step) with most probable value ``mip_e_per_um`` (~80 e-/um
in silicon for a minimum-ionising particle; Bichsel 1988, Rev. Mod. Phys. 60, 663).

*Worms*: low-energy electrons (Compton electrons from gamma radioactivity in the dewar
window and field flattener, delta rays; Groom 2004) of energy ``worm_energy_kev``. The
path length is the Everhart-Hoff range in silicon, ``R = 0.0171 E[keV]**1.75`` um, seen
in projection (x0.7); the direction random-walks with a multiple-scattering angle that
grows as the electron slows, and energy is lost as ``E(s) = E0 sqrt(1 - s/R)`` (Bethe
``dE/ds ~ 1/E``), so worms are curly and brightest at their end. 3.65 eV per e- pair.

*Spots*: all charge of an X-ray or short-range particle deposited at one point,
``spot_charge_e`` electrons.

Charge diffusion: every packet of charge generated at depth ``z`` reaches the potential
wells displaced by a Gaussian of rms ``diffusion_px * sqrt(z / d)`` (field-free
diffusion in back-illuminated CCDs, Holland et al. 2003, IEEE TED 50, 225: a few um,
0.2-0.5 px of 15 um). Each packet lands in the pixel that contains it.

*Real hits*: with ``real_share`` > 0 and a library of ``footprints`` (the real training
frames' own cosmic rays, :mod:`mmx.cleaning.cosmic_ray_footprints`), that share of the
events is a real footprint instead, drawn at random, turned by a multiple of 90 degrees,
maybe mirrored, and added with its charge converted by the cutout's gain.

Rates: events per cm^2 per s (``rate``) times the cutout area (``pixel_size_um``) and
the record's ``exptime``; ~0.02-0.05 cm^-2 s^-1 on the ground (sea-level muon flux
~1 cm^-2 min^-1, PDG; more at altitude and from radioactivity, Groom 2004) up to
~1-2 cm^-2 s^-1 in low Earth orbit (HST instrument handbooks: WFPC2, ACS, WFC3 quote
~1-2 events cm^-2 s^-1). ``boost`` multiplies the physical rate for class balance.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mmx.synthesis.contaminants._core import (
    Injection,
    _finish,
    _gain,
    _loguniform,
    _noise,
    _probability,
    _range,
    _uniform,
)

__all__ = ["inject_cosmic_rays"]

_STEP = 0.25  # px between charge-deposition points along a path
_PACKETS = 6  # charge packets per step (Monte Carlo diffusion)
_EV_PER_PAIR = 3.65


def _moyal(rng: np.random.Generator, n: int) -> np.ndarray:
    """Moyal variates (mode 0), the usual closed-form stand-in for Landau fluctuations."""
    z = rng.standard_normal(n)
    return -np.log(np.maximum(z * z, 1e-12))


def _muon(rng, d_um, pix_um, ang_index, mip, lwidth, shape):
    cos_t = rng.uniform() ** (1.0 / (ang_index + 1.0))
    cos_t = max(cos_t, 1e-3)
    length = min(d_um * np.sqrt(1 - cos_t**2) / cos_t / pix_um, 2.0 * max(shape))
    phi = rng.uniform(0, 2 * np.pi)
    xc, yc = rng.uniform(-0.5, shape[1] - 0.5), rng.uniform(-0.5, shape[0] - 0.5)
    n = max(1, int(np.ceil(length / _STEP)))
    t = (np.arange(n) + 0.5) / n
    xs = xc + (t - 0.5) * length * np.cos(phi)
    ys = yc + (t - 0.5) * length * np.sin(phi)
    path_um = d_um / cos_t / n
    charge = mip * path_um * np.clip(1.0 + lwidth * _moyal(rng, n), 0.05, None)
    depth = t if rng.uniform() < 0.5 else 1.0 - t
    return xs, ys, charge, depth


def _worm(rng, energy_kev, pix_um, shape):
    r_px = 0.7 * 0.0171 * energy_kev**1.75 / pix_um
    n = max(1, int(np.ceil(r_px / _STEP)))
    s = np.arange(n + 1) / n
    energy = energy_kev * np.sqrt(np.clip(1.0 - s, 0.0, None))
    kick = 0.3 * np.sqrt(_STEP) * np.clip((50.0 / np.maximum(energy[:-1], 1.0)) ** 0.8, 0, 4.0)
    angle = rng.uniform(0, 2 * np.pi) + np.cumsum(rng.standard_normal(n) * kick)
    step = r_px / n
    xs = rng.uniform(-0.5, shape[1] - 0.5) + np.cumsum(step * np.cos(angle))
    ys = rng.uniform(-0.5, shape[0] - 0.5) + np.cumsum(step * np.sin(angle))
    charge = (energy[:-1] - energy[1:]) * 1e3 / _EV_PER_PAIR
    depth = np.full(n, rng.uniform())
    return xs, ys, charge, depth


def _add_footprint(delta: np.ndarray, footprint: np.ndarray, rng: np.random.Generator) -> None:
    """Add ``footprint`` to ``delta`` in place: turned, maybe mirrored, centred anywhere."""
    fp = np.rot90(footprint, int(rng.integers(4)))
    if rng.uniform() < 0.5:
        fp = fp[:, ::-1]
    fy, fx = fp.shape
    y0 = int(rng.integers(delta.shape[0])) - fy // 2
    x0 = int(rng.integers(delta.shape[1])) - fx // 2
    ys = slice(max(y0, 0), min(y0 + fy, delta.shape[0]))
    xs = slice(max(x0, 0), min(x0 + fx, delta.shape[1]))
    delta[ys, xs] += fp[ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0]


def inject_cosmic_rays(
    image: np.ndarray,
    *,
    record: dict,
    rng: np.random.Generator,
    rate: list[float] = (0.02, 2.0),
    boost: list[float] = (1.0, 1.0),
    pixel_size_um: float = 15.0,
    thickness_um: list[float] = (10.0, 50.0),
    angular_index: float = 1.0,
    mip_e_per_um: list[float] = (70.0, 90.0),
    landau_width: list[float] = (0.15, 0.3),
    worm_fraction: float = 0.25,
    spot_fraction: float = 0.15,
    worm_energy_kev: list[float] = (10.0, 200.0),
    spot_charge_e: list[float] = (100.0, 20000.0),
    diffusion_px: list[float] = (0.2, 0.5),
    min_events: int = 1,
    max_events: int = 3000,
    wing_cut: float = 0.5,
    real_share: float = 0.0,
    footprints: Sequence[np.ndarray] = (),
) -> Injection:
    """Add cosmic-ray hits (muon tracks, worms, spots, real footprints) with charge diffusion.

    Parameters
    ----------
    image : numpy.ndarray
        Cutout [ADU], not modified.
    record : dict
        Its record; uses ``exptime`` [s], ``gain`` [e-/ADU], ``sky_noise`` [ADU] and
        ``pixel_size`` [um] when present (else ``pixel_size_um``).
    rng : numpy.random.Generator
        Source of every random draw.
    rate : [float, float]
        Event rate range [events cm^-2 s^-1], drawn log-uniformly per image.
    boost : [float, float]
        Multiplier of the rate for class balance, drawn log-uniformly.
    pixel_size_um : float
        Physical pixel size [um] when the record has no ``pixel_size``.
    thickness_um : [float, float]
        Depleted thickness [um]: sets the projected length of particle tracks.
    angular_index : float
        ``n`` of ``dN/dcos(theta) ~ cos(theta)**n``.
    mip_e_per_um : [float, float]
        Most probable ionisation of a minimum-ionising particle [e- per um].
    landau_width : [float, float]
        Relative width of the Landau (Moyal) fluctuation per 1/4-px step.
    worm_fraction, spot_fraction : float
        Fractions of events that are worms and spots; the rest are particle tracks.
    worm_energy_kev : [float, float]
        Energy of worm electrons [keV], log-uniform.
    spot_charge_e : [float, float]
        Charge of spots [e-], log-uniform.
    diffusion_px : [float, float]
        Rms charge diffusion from the back surface [px].
    min_events, max_events : int
        Bounds on the number of events in the cutout.
    wing_cut : float
        Pixels receiving less than this many sky-noise sigma get nothing (and no label).
    real_share : float
        Share of the events that are real footprints, when ``footprints`` is not empty.
    footprints : sequence of numpy.ndarray
        Real hits, one charge array [e-] each (not a params.yaml setting: synthesis passes
        the clean stage's library).

    Returns
    -------
    Injection
        ``truth`` = pixels that received charge above the cut.
    """
    shape = image.shape
    pix_um = float(record.get("pixel_size") or pixel_size_um)
    exptime = float(record.get("exptime") or 1.0)
    area_cm2 = shape[0] * shape[1] * (pix_um * 1e-4) ** 2
    r = _loguniform(rng, rate, "CR rate") * _loguniform(rng, boost, "CR boost")
    n = int(np.clip(rng.poisson(r * area_cm2 * exptime), min_events, max_events))
    p_worm = _probability(worm_fraction, "CR worm_fraction")
    p_spot = _probability(spot_fraction, "CR spot_fraction")
    weights = np.array([max(1.0 - p_worm - p_spot, 0.0), p_worm, p_spot])
    kinds = rng.choice(3, size=n, p=weights / weights.sum())
    real = np.zeros(n, dtype=bool)
    if _probability(real_share, "CR real_share") > 0 and len(footprints):
        real = rng.uniform(size=n) < real_share
    d_um = _uniform(rng, thickness_um, "CR thickness_um", low=0.0)
    mip = _uniform(rng, mip_e_per_um, "CR mip_e_per_um", low=0.0)
    lwidth = _uniform(rng, landau_width, "CR landau_width", low=0.0)
    _range(worm_energy_kev, "CR worm_energy_kev", low=1e-3)
    _range(spot_charge_e, "CR spot_charge_e", low=1e-3)
    parts_x, parts_y, parts_q, parts_s = [], [], [], []
    for kind in kinds[~real]:
        sigma = _uniform(rng, diffusion_px, "CR diffusion_px", low=0.0)
        if kind == 0:
            xs, ys, q, depth = _muon(rng, d_um, pix_um, angular_index, mip, lwidth, shape)
        elif kind == 1:
            xs, ys, q, depth = _worm(rng, _loguniform(rng, worm_energy_kev, ""), pix_um, shape)
        else:
            xs = np.array([rng.uniform(-0.5, shape[1] - 0.5)])
            ys = np.array([rng.uniform(-0.5, shape[0] - 0.5)])
            q = np.array([_loguniform(rng, spot_charge_e, "")])
            depth = np.array([rng.uniform()])
        k = _PACKETS if kind != 2 else 8 * _PACKETS
        parts_x.append(np.repeat(xs, k))
        parts_y.append(np.repeat(ys, k))
        parts_q.append(np.repeat(q / k, k))
        parts_s.append(np.repeat(sigma * np.sqrt(depth), k))
    gain = _gain(record)
    delta = np.zeros(shape, dtype=np.float64)
    if parts_x:
        sig = np.concatenate(parts_s)
        x = np.rint(np.concatenate(parts_x) + rng.standard_normal(sig.size) * sig).astype(int)
        y = np.rint(np.concatenate(parts_y) + rng.standard_normal(sig.size) * sig).astype(int)
        q = np.concatenate(parts_q) / gain
        inside = (x >= 0) & (x < shape[1]) & (y >= 0) & (y < shape[0])
        delta = np.bincount(y[inside] * shape[1] + x[inside], weights=q[inside],
                            minlength=shape[0] * shape[1]).reshape(shape)
    for _ in range(int(real.sum())):
        _add_footprint(delta, footprints[int(rng.integers(len(footprints)))] / gain, rng)
    keep = delta >= wing_cut * _noise(record)
    info = {"events": n, "tracks": int(np.sum(kinds[~real] == 0)),
            "worms": int(np.sum(kinds[~real] == 1)),
            "spots": int(np.sum(kinds[~real] == 2)), "real": int(real.sum())}
    return _finish("CR", image, delta, keep, info=info)
