"""Real cosmic-ray footprints: the charge a frame's own cosmic rays deposited, cut out.

The clean stage finds the cosmic rays already in each real training frame (L.A.Cosmic,
:func:`mmx.cleaning.defects.find_cosmic_rays`) and ignores them. Their charge is also
worth keeping: a real hit has the halo, clumps and edges a simulator only approximates.
:func:`cosmic_ray_charge` measures it (image minus the sky around it, in electrons, cut
where it sinks into the frame's noise), :func:`cut_footprints` cuts one small array per
hit, and :func:`save_footprints` / :func:`load_footprints` keep the library in one
``.npz`` file that synthesis injects from (:func:`mmx.synthesis.contaminants.inject_cosmic_rays`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import ndimage

from mmx.errors import InputError
from mmx.io.atomic import atomic_write

__all__ = ["cosmic_ray_charge", "cut_footprints", "load_footprints", "save_footprints"]

_EIGHT = np.ones((3, 3), bool)


def cosmic_ray_charge(image: np.ndarray, mask: np.ndarray, *, gain: float,
                      noise: float | np.ndarray, nsigma: float = 2.0, grow: int = 1
                      ) -> np.ndarray:
    """Charge [e-] that a frame's real cosmic rays deposited: ``image`` minus its sky.

    The sky under ``mask`` grown by ``grow`` px (the tracks' faint edges) is the median of
    the pixels around that region (:func:`mmx.cleaning.defects.repair` on the region
    grown once more). Where that excess is at least ``nsigma`` times the frame's
    ``noise`` [ADU], the charge is the excess times ``gain`` [e-/ADU]; elsewhere 0 (the
    frame's own noise must not travel with its cosmic rays).
    """
    from mmx.cleaning.defects import repair

    region = np.asarray(mask, bool)
    if grow > 0:
        region = ndimage.binary_dilation(region, _EIGHT, iterations=grow)
    image = np.asarray(image, np.float32)
    sky = repair(image, ndimage.binary_dilation(region, _EIGHT), radius=3)
    excess = np.nan_to_num(np.asarray(image, np.float64) - sky, nan=0.0)
    return np.where(region & (excess >= nsigma * np.asarray(noise)), excess * float(gain), 0.0)


def cut_footprints(charge: np.ndarray, *, min_pixels: int = 1, min_peak: float = 0.0
                   ) -> list[np.ndarray]:
    """One float32 array per 8-connected hit of ``charge`` (its bounding box, 0 outside).

    Hits touching the frame's edge are left out (they may be cut); so are those with fewer
    than ``min_pixels`` pixels or no pixel reaching ``min_peak`` (noise kept in a grown
    mask's rim, away from any real hit).
    """
    charge = np.asarray(charge, np.float64)
    lab, _ = ndimage.label(charge > 0, _EIGHT)
    out = []
    ny, nx = charge.shape
    for index, box in enumerate(ndimage.find_objects(lab), start=1):
        if box is None:
            continue
        ys, xs = box
        if ys.start == 0 or xs.start == 0 or ys.stop == ny or xs.stop == nx:
            continue
        own = lab[box] == index
        if own.sum() >= min_pixels and charge[box][own].max() >= min_peak:
            out.append(np.where(own, charge[box], 0.0).astype(np.float32))
    return out


def save_footprints(path: str | Path, footprints: Sequence[np.ndarray],
                    sources: Sequence[str]) -> Path:
    """Write a footprint library (``sources[i]`` names the frame of ``footprints[i]``)."""
    if len(footprints) != len(sources):
        raise ValueError(f"{len(footprints)} footprints but {len(sources)} sources")
    shapes = np.array([f.shape for f in footprints], dtype=np.int32).reshape(-1, 2)
    flat = (np.concatenate([np.ravel(f) for f in footprints]).astype(np.float32)
            if footprints else np.zeros(0, np.float32))

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, shapes=shapes, charge=flat,
                                sources=np.array(list(sources), dtype=str))

    return atomic_write(path, write)


def load_footprints(path: str | Path) -> list[np.ndarray]:
    """Read a library written by :func:`save_footprints`: one charge array [e-] per hit.

    Raises
    ------
    InputError
        If the file is missing or not such a library.
    """
    path = Path(path)
    try:
        with np.load(path) as npz:
            shapes, flat = npz["shapes"], npz["charge"]
    except (OSError, KeyError, ValueError) as exc:
        raise InputError(f"{path}: not a cosmic-ray footprint library (.npz with 'shapes' "
                         f"and 'charge'): {exc}") from None
    sizes = np.prod(shapes, axis=1) if len(shapes) else np.zeros(0, np.int64)
    if int(sizes.sum()) != flat.size:
        raise InputError(f"{path}: {flat.size} charge values for shapes totalling "
                         f"{int(sizes.sum())}: the library is damaged")
    pieces = np.split(flat, np.cumsum(sizes)[:-1]) if len(shapes) else []
    return [p.reshape(int(s[0]), int(s[1])) for p, s in zip(pieces, shapes, strict=True)]
