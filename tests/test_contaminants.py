"""Every injector changes pixels exactly where it sets truth, deterministically, physically."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from mmx.errors import ConfigError
from mmx.synthesis.config import INJECTORS
from mmx.synthesis.contaminants import (
    inject_cosmic_rays,
    inject_overscan,
    inject_saturated_stars,
    inject_spikes,
    saturate,
)
from mmx.synthesis.demo import demo_clean_samples


@pytest.fixture(scope="module")
def clean():
    return demo_clean_samples(1, rng=np.random.default_rng(7), shape=(96, 96))[0]


@pytest.mark.parametrize("abbr", list(INJECTORS))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_truth_is_exactly_the_changed_pixels(clean, abbr, seed):
    before = clean.image.copy()
    inj = INJECTORS[abbr](clean.image, record=clean.record, rng=np.random.default_rng(seed))
    np.testing.assert_array_equal(clean.image, before)  # input untouched
    changed = inj.image != clean.image
    assert inj.truth.any(), f"{abbr} injected nothing"
    assert not (inj.truth & inj.source).any()
    np.testing.assert_array_equal(changed, inj.truth | inj.source)
    if abbr not in ("SAT", "SP"):
        assert not inj.source.any()
    assert inj.image.dtype == np.float32 and inj.abbr == abbr


@pytest.mark.parametrize("abbr", list(INJECTORS))
def test_same_seed_same_injection(clean, abbr):
    a = INJECTORS[abbr](clean.image, record=clean.record, rng=np.random.default_rng(5))
    b = INJECTORS[abbr](clean.image, record=clean.record, rng=np.random.default_rng(5))
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.truth, b.truth)


@pytest.mark.parametrize("abbr", ["CR", "TRL", "P", "NEB", "FR"])
def test_labelled_signal_is_above_the_wing_cut(clean, abbr):
    """Faint wings are not added: every labelled pixel moved by at least a fraction of sigma."""
    inj = INJECTORS[abbr](clean.image, record=clean.record, rng=np.random.default_rng(3),
                          wing_cut=0.5)
    delta = np.abs(inj.image - clean.image)[inj.truth]
    if abbr in ("CR", "P"):  # no photon noise added: the cut is exact
        assert delta.min() >= 0.5 * clean.record["sky_noise"] * (1 - 1e-5)
    else:  # photon noise on top: the median stays well above the cut
        assert np.median(delta) >= 0.5 * clean.record["sky_noise"]


def test_cosmic_rays_are_not_psf_convolved():
    """Spots without diffusion put all their charge in one pixel (no PSF)."""
    image = np.zeros((50, 50), np.float32)
    record = {"sky_noise": 1.0, "gain": 1.0, "exptime": 1.0}
    inj = inject_cosmic_rays(image, record=record, rng=np.random.default_rng(0),
                             worm_fraction=0.0, spot_fraction=1.0, diffusion_px=0.0,
                             min_events=5, max_events=5, spot_charge_e=[1000, 2000])
    assert inj.truth.sum() == 5
    assert inj.image.max() >= 1000


def test_cosmic_ray_count_scales_with_exposure_time():
    image = np.zeros((200, 200), np.float32)
    counts = []
    for exptime in (100.0, 1000.0):
        record = {"sky_noise": 1.0, "gain": 1.0, "exptime": exptime}
        inj = inject_cosmic_rays(image, record=record, rng=np.random.default_rng(1),
                                 rate=0.1, min_events=0)
        counts.append(inj.info["events"])
    # 0.1 /cm^2/s * 0.09 cm^2: Poisson means 0.9 and 9
    assert counts[0] < counts[1]
    assert 2 <= counts[1] <= 20


def test_grazing_muons_make_long_straight_tracks():
    image = np.zeros((300, 300), np.float32)
    record = {"sky_noise": 1.0, "gain": 1.0, "exptime": 1.0}
    inj = inject_cosmic_rays(image, record=record, rng=np.random.default_rng(2),
                             worm_fraction=0, spot_fraction=0, thickness_um=300.0,
                             min_events=1, max_events=1)
    ys, xs = np.nonzero(inj.truth)
    assert max(np.ptp(ys), np.ptp(xs)) > 10  # a thick CCD: every muon is a track


def test_saturation_conserves_charge_and_labels_the_bleed():
    image = np.full((60, 7), 10.0, np.float32)
    image[28:32, 3] = 250.0  # 4 px at 240 above a 100 ADU full well...
    image[30, 3] = 1000.0
    inj = saturate(image, level=100.0, rng=np.random.default_rng(0), asymmetry=[0.5, 0.5])
    np.testing.assert_allclose(inj.image.sum(), image.sum(), rtol=1e-6)
    assert inj.image.max() <= 100.0
    col = inj.truth[:, 3]
    assert col.sum() > 4  # the bleed is longer than the over-full pixels
    assert np.all(inj.truth[:, [0, 1, 2, 4, 5, 6]] == 0)  # bleeds stay in the column
    np.testing.assert_array_equal(inj.image != image, inj.truth)


def test_saturation_without_bleed_only_clips():
    image = np.array([[5.0, 150.0, 5.0]], np.float32)
    inj = saturate(image, level=100.0, rng=np.random.default_rng(0), bleed=False)
    np.testing.assert_array_equal(inj.image, [[5.0, 100.0, 5.0]])
    np.testing.assert_array_equal(inj.truth, [[False, True, False]])


def test_saturated_star_reaches_the_record_level(clean):
    inj = inject_saturated_stars(clean.image, record=clean.record, rng=np.random.default_rng(4),
                                 peak=[50, 60])
    level = clean.record["saturate"]
    assert inj.image.max() == pytest.approx(level)
    assert np.all(inj.image[inj.truth & (inj.image >= level)] == np.float32(level))


def test_spikes_follow_the_spider_angle():
    image = np.zeros((201, 201), np.float32)
    record = {"sky_noise": 1.0, "gain": 1e6, "saturate": 1e4, "fwhm": 3.0, "spider_angle": 0.0}
    inj = inject_spikes(image, record=record, rng=np.random.default_rng(0), peak=[10, 10],
                        level=[0.05, 0.05], modulation=0.0, edge_margin=-0.45)
    ys, xs = np.nonzero(inj.truth)
    cy, cx = np.unravel_index(np.argmax(inj.image), image.shape)
    # every spike pixel lies near the horizontal or vertical through the star
    near = (np.abs(ys - cy) <= 8) | (np.abs(xs - cx) <= 8)
    assert near.mean() > 0.99
    assert np.ptp(xs) > 40 and np.ptp(ys) > 40


def test_overscan_strip_at_an_edge_with_zero_level(clean):
    inj = inject_overscan(clean.image, record=clean.record, rng=np.random.default_rng(1))
    assert inj.replaces
    lab, n = ndimage.label(inj.truth)
    assert n == 1
    rows, cols = np.nonzero(inj.truth)
    touches = (rows.min() == 0 and rows.max() == 95) and (cols.min() == 0 or cols.max() == 95) \
        or (cols.min() == 0 and cols.max() == 95) and (rows.min() == 0 or rows.max() == 95)
    assert touches
    values = inj.image[inj.truth]
    assert abs(values.mean()) < 1.5 * clean.record["overscan_noise"]
    assert values.std() == pytest.approx(clean.record["overscan_noise"], rel=0.35)


def test_bad_range_is_a_config_error(clean):
    with pytest.raises(ConfigError, match="TRL peak"):
        INJECTORS["TRL"](clean.image, record=clean.record, rng=np.random.default_rng(0),
                         peak=[10, 1])
    with pytest.raises(ConfigError, match="saturation level"):
        saturate(clean.image, level=-1, rng=np.random.default_rng(0))
