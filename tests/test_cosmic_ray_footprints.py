"""Real cosmic-ray footprints: measured in electrons, cut, stored, and injected by synthesis."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from mmx.cleaning.cosmic_ray_footprints import (
    cosmic_ray_charge,
    cut_footprints,
    load_footprints,
    save_footprints,
)
from mmx.errors import ConfigError, InputError
from mmx.synthesis.config import SynthesisConfig
from mmx.synthesis.contaminants import inject_cosmic_rays
from mmx.synthesis.demo import demo_clean_samples


def test_charge_is_the_excess_over_the_sky_without_the_frame_noise(rng):
    image = rng.normal(100.0, 2.0, size=(64, 64))
    track = np.zeros(image.shape)
    track[30, 10:40] = 50.0       # a bright track ...
    track[29, 10:40] = 1.0        # ... and a faint edge, under the noise
    image += track
    mask = track >= 50.0          # what the reference algorithm found
    charge = cosmic_ray_charge(image, mask, gain=4.0, noise=2.0)
    assert charge[30, 10:40] == pytest.approx(4.0 * 50.0, abs=4.0 * 7.0)
    beyond = ~ndimage.binary_dilation(mask, np.ones((3, 3), bool))
    assert not charge[beyond].any()                      # nothing outside the grown mask
    assert np.count_nonzero(charge[29:32:2, 10:40]) < 6  # the ring's noise stays home


def test_each_whole_hit_is_cut_on_its_own():
    charge = np.zeros((40, 40))
    charge[5, 5:9] = [1.0, 2.0, 3.0, 4.0]     # a track
    charge[20:22, 20:22] = [[5.0, 0.0], [6.0, 7.0]]  # a blob (8-connected)
    charge[22, 30] = 9.0                      # a single pixel
    charge[0, 10:13] = 8.0                    # on the edge: maybe cut, left out
    hits = cut_footprints(charge)
    assert [h.shape for h in hits] == [(1, 4), (2, 2), (1, 1)]
    np.testing.assert_array_equal(hits[1], [[5.0, 0.0], [6.0, 7.0]])
    assert sum(h.sum() for h in hits) == charge[1:].sum()
    assert [h.shape for h in cut_footprints(charge, min_pixels=2)] == [(1, 4), (2, 2)]
    assert [h.shape for h in cut_footprints(charge, min_peak=7.0)] == [(2, 2), (1, 1)]


def test_library_round_trip_and_damage(tmp_path):
    hits = [np.arange(6, dtype=np.float32).reshape(2, 3), np.ones((1, 1), np.float32)]
    path = save_footprints(tmp_path / "lib.npz", hits, ["a/x.fits/1", "b/y.fits/2"])
    back = load_footprints(path)
    assert len(back) == 2
    for a, b in zip(hits, back, strict=True):
        np.testing.assert_array_equal(a, b)
    assert load_footprints(save_footprints(tmp_path / "empty.npz", [], [])) == []
    np.savez(tmp_path / "bad.npz", shapes=np.array([[2, 2]]), charge=np.zeros(3))
    with pytest.raises(InputError, match="bad.npz.*damaged"):
        load_footprints(tmp_path / "bad.npz")
    with pytest.raises(InputError, match="missing.npz.*not a cosmic-ray footprint library"):
        load_footprints(tmp_path / "missing.npz")


@pytest.fixture(scope="module")
def clean():
    return demo_clean_samples(1, rng=np.random.default_rng(7), shape=(96, 96))[0]


def test_real_hits_arrive_whole_divided_by_the_gain(clean):
    hit = np.array([[0.0, 4000.0, 0.0], [3000.0, 9000.0, 2000.0]])
    inj = inject_cosmic_rays(clean.image, record=clean.record, rng=np.random.default_rng(3),
                             min_events=1, max_events=1, real_share=1.0, footprints=[hit])
    assert inj.info["real"] == 1 and inj.info["events"] == 1
    delta = inj.image.astype(np.float64) - clean.image
    added = np.sort(delta[delta != 0])
    values = np.sort(hit[hit > 0] / clean.record["gain"])
    # turned and mirrored, maybe cut by the edge: its values, each at most once
    assert 0 < added.size <= values.size
    assert np.all(np.isclose(added[:, None], values[None, :], rtol=1e-4).any(axis=1))
    np.testing.assert_array_equal(inj.truth, delta >= 0.5 * clean.record["sky_noise"])
    again = inject_cosmic_rays(clean.image, record=clean.record, rng=np.random.default_rng(3),
                               min_events=1, max_events=1, real_share=1.0, footprints=[hit])
    np.testing.assert_array_equal(again.image, inj.image)


def test_without_a_library_or_a_share_the_simulated_draws_are_unchanged(clean):
    hit = np.full((2, 2), 5000.0)
    plain = inject_cosmic_rays(clean.image, record=clean.record, rng=np.random.default_rng(9))
    for kwargs in ({"real_share": 0.0, "footprints": [hit]}, {"real_share": 0.7}):
        same = inject_cosmic_rays(clean.image, record=clean.record,
                                  rng=np.random.default_rng(9), **kwargs)
        np.testing.assert_array_equal(same.image, plain.image)
    mixed = inject_cosmic_rays(clean.image, record=clean.record, rng=np.random.default_rng(9),
                               real_share=0.5, footprints=[hit], min_events=40)
    assert 0 < mixed.info["real"] < mixed.info["events"]


def test_the_library_is_not_a_setting_and_the_share_a_probability(clean):
    with pytest.raises(ConfigError, match="footprints"):
        SynthesisConfig.from_mapping({"contaminants": {"CR": {"footprints": [[1.0]]}}})
    with pytest.raises(ConfigError, match="real_share"):
        inject_cosmic_rays(clean.image, record=clean.record, rng=np.random.default_rng(0),
                           real_share=1.5, footprints=[np.ones((1, 1))])
