"""Background and noise maps: the vectorised mesh statistics equal the per-mesh loop, bit for bit.

The network was trained on maps made by clipping each mesh in turn with ``np.median``; the
loop below is that implementation, kept verbatim as the slow, obviously correct reference.
Any change to :mod:`mmx.sky.normalize` must keep these maps identical (or retrain the model).
"""

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from mmx.sky import normalize
from mmx.sky.normalize import background_maps, normalize_image


def _reference_mesh_stats(image, mesh, n_clip, nsigma):
    h, w = image.shape
    ny, nx = max(1, round(h / mesh)), max(1, round(w / mesh))
    ys = np.linspace(0, h, ny + 1).astype(int)
    xs = np.linspace(0, w, nx + 1).astype(int)
    bkg = np.full((ny, nx), np.nan, dtype=np.float64)
    rms = np.full((ny, nx), np.nan, dtype=np.float64)
    for j in range(ny):
        for i in range(nx):
            v = image[ys[j]:ys[j + 1], xs[i]:xs[i + 1]].ravel()
            v = v[np.isfinite(v)]
            for _ in range(n_clip):
                if v.size < 8:
                    break
                med = np.median(v)
                sig = 1.4826 * np.median(np.abs(v - med))
                if sig <= 0:
                    break
                v = v[np.abs(v - med) < nsigma * sig]
            if v.size >= 8:
                med = np.median(v)
                mean = v.mean()
                skewed = abs(mean - med) / max(v.std(), 1e-12) >= 0.3
                bkg[j, i] = med if skewed else 2.5 * med - 1.5 * mean
                rms[j, i] = 1.4826 * np.median(np.abs(v - med))
    return bkg, rms, ys, xs


def _reference_upsample(grid, ys, xs, shape):
    yc = (ys[:-1] + ys[1:] - 1) / 2.0
    xc = (xs[:-1] + xs[1:] - 1) / 2.0
    rows = np.empty((grid.shape[0], shape[1]), dtype=np.float64)
    xfull = np.arange(shape[1])
    for j in range(grid.shape[0]):
        rows[j] = np.interp(xfull, xc, grid[j])
    yfull = np.arange(shape[0])
    out = np.empty(shape, dtype=np.float32)
    k = np.clip(np.searchsorted(yc, yfull) - 1, 0, max(len(yc) - 2, 0))
    if len(yc) == 1:
        out[:] = rows[0][None, :]
        return out
    t = np.clip((yfull - yc[k]) / (yc[k + 1] - yc[k]), 0.0, 1.0)[:, None]
    out[:] = (1 - t) * rows[k] + t * rows[k + 1]
    return out


def _sky(rng, shape, *, level=1000.0, noise=12.0):
    img = rng.normal(level, noise, shape).astype(np.float32)
    h, w = shape
    for _ in range(max(1, h * w // 2000)):  # stars, some crowding meshes
        y, x = rng.integers(0, h), rng.integers(0, w)
        img[max(0, y - 3):y + 4, max(0, x - 3):x + 4] += rng.uniform(50, 30000)
    return img


def _cases():
    rng = np.random.default_rng(20261130)
    nan = _sky(rng, (130, 200))
    nan[10:40, 5:60] = np.nan  # a mesh with few or no valid pixels
    nan[100, :] = np.inf
    nan[120:, 150:] = -np.inf
    flat = _sky(rng, (96, 160))
    flat[:64, :64] = 7.0  # zero MAD: clipping stops at once
    crowded = _sky(rng, (128, 128))
    crowded[:, :70] += np.linspace(0, 4000, 70, dtype=np.float32)  # skewed meshes
    quantised = np.round(_sky(rng, (150, 110), noise=1.5)).astype(np.float32)  # many ties
    return {
        "plain": (_sky(rng, (256, 192)), {}),
        "uneven meshes": (_sky(rng, (201, 333)), {"mesh": 47}),
        "nan inf": (nan, {"mesh": 32}),
        "zero mad": (flat, {"mesh": 32}),
        "crowded": (crowded, {"mesh": 32}),
        "ties": (quantised, {"mesh": 25}),
        "tiny": (_sky(rng, (5, 3)), {}),
        "one mesh": (_sky(rng, (40, 50)), {"mesh": 64}),
        "all nan": (np.full((64, 64), np.nan, dtype=np.float32), {"mesh": 16}),
        "more clipping": (_sky(rng, (128, 96)), {"mesh": 32, "n_clip": 6, "nsigma": 2.0}),
        "no clipping": (_sky(rng, (128, 96)), {"mesh": 32, "n_clip": 0}),
    }


@pytest.mark.parametrize("name", list(_cases()))
def test_mesh_stats_equal_the_per_mesh_loop(name):
    image, kw = _cases()[name]
    args = (kw.get("mesh", 64), kw.get("n_clip", 3), kw.get("nsigma", 3.0))
    got = normalize._mesh_stats(image, *args)
    want = _reference_mesh_stats(image, *args)
    for g, w in zip(got, want, strict=True):
        assert_array_equal(g, w)


def test_maps_and_normalised_image_equal_the_reference(monkeypatch):
    image, kw = _cases()["nan inf"]
    bkg, rms = background_maps(image, **kw)
    norm = normalize_image(image, mesh=kw["mesh"])
    monkeypatch.setattr(normalize, "_mesh_stats", _reference_mesh_stats)
    monkeypatch.setattr(normalize, "_upsample", _reference_upsample)
    ref_bkg, ref_rms = background_maps(image, **kw)
    assert_array_equal(bkg, ref_bkg)
    assert_array_equal(rms, ref_rms)
    assert_array_equal(norm, normalize_image(image, mesh=kw["mesh"]))
    assert np.isfinite(norm).all() and (rms > 0).all()


@pytest.mark.parametrize("shape", [(300, 257), (1, 40), (129, 1), (700, 90)])
def test_upsampling_equals_the_reference(shape):
    rng = np.random.default_rng(7)
    ny, nx = max(1, round(shape[0] / 64)), max(1, round(shape[1] / 64))
    ys = np.linspace(0, shape[0], ny + 1).astype(int)
    xs = np.linspace(0, shape[1], nx + 1).astype(int)
    grid = rng.normal(1000.0, 30.0, (ny, nx))
    assert_array_equal(normalize._upsample(grid, ys, xs, shape),
                       _reference_upsample(grid, ys, xs, shape))
