"""Pure functions of the real-sky benchmark (``benchmarks/real_skies.py``): no tool runs."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.real_skies import (
    MIN_SIDE,
    SKY_FRAMES,
    RealSplit,
    _params,
    _synthesis_config,
    check_scored,
    cr_feature_kinds,
    cr_misses,
    false_positive_sources,
    find_peaks,
    flag_fractions,
    frame_sample,
    inject,
    locate_hot_columns,
    pad_frame,
    read_split,
    transplant_cosmic_rays,
)
from mmx.classes import label_bit
from mmx.cleaning.stage import CleanCCD
from mmx.errors import ConfigError


def test_small_frames_are_mirror_padded_and_the_padding_counts_nowhere(rng):
    image = rng.normal(size=(208, 204)).astype(np.float32)
    padded, region = pad_frame(image)
    assert padded.shape == (MIN_SIDE, MIN_SIDE)
    np.testing.assert_array_equal(padded[region], image)
    ys, xs = region
    np.testing.assert_array_equal(padded[ys.start - 1, xs], image[0])  # mirrored
    np.testing.assert_array_equal(padded[ys, xs.stop], image[:, -1])
    # a tool flagging only the padding has flagged nothing of the frame
    flags = np.ones(padded.shape, bool)
    flags[region] = False
    assert flag_fractions({"CR": flags[region]}) == {"CR": 0.0}
    flags[ys.start, xs.start] = True
    assert flag_fractions({"CR": flags[region]})["CR"] == pytest.approx(1 / image.size)


def test_large_frames_are_left_alone_and_one_short_axis_is_padded(rng):
    big = rng.normal(size=(500, 420))
    same, region = pad_frame(big)
    assert same is big and same[region].shape == big.shape
    wide = rng.normal(size=(375, 500))
    padded, region = pad_frame(wide)
    assert padded.shape == (MIN_SIDE, 500)
    assert region[0] == slice(20, 395) and region[1] == slice(0, 500)
    with pytest.raises(ValueError, match="2-D image"):
        pad_frame(np.zeros(5))


def test_frames_that_train_or_are_not_held_out_are_refused():
    split = RealSplit(train=("a.fits",), holdout=("b.fits", "c.fits"))
    check_scored(["b.fits", "some/folder/c.fits"], split)
    with pytest.raises(ConfigError, match=r"a\.fits is in params.yaml real.train"):
        check_scored(["b.fits", "a.fits"], split)
    with pytest.raises(ConfigError, match=r"d\.fits is not in params.yaml real.holdout"):
        check_scored(["d.fits"], split)
    with pytest.raises(ConfigError, match="no real.holdout"):
        read_split({"real": {"train": ["x/a.fits"]}})


def test_the_project_split_holds_out_every_scored_frame():
    split = read_split()
    check_scored(list(SKY_FRAMES), split)
    assert not set(split.train) & set(split.holdout)


def _sky(rng, shape=(512, 512), sky=100.0, noise=1.5):
    return rng.normal(sky, noise, size=shape)


def test_hot_column_locator_finds_a_faint_partial_column_and_nothing_else(rng):
    image = _sky(rng)
    image[256:, 200] += 1.2  # 0.8 sigma per pixel: hardly visible pixel by pixel
    yy, xx = np.mgrid[:512, :512]
    for y, x in ((100, 300), (400, 60), (300, 203)):  # stars, one next to the column
        image += 500 * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * 1.5**2))
    image[:, :3] += 5.0  # noisy edge columns are not hot columns
    mask, slope = locate_hot_columns(image)
    ys, xs = np.nonzero(mask)
    assert set(xs.tolist()) == {200}
    assert ys.min() == 256 and ys.max() == 511
    assert slope == pytest.approx(0.0, abs=0.006)
    clean, _ = locate_hot_columns(_sky(rng))
    assert not clean.any()


def test_hot_column_locator_follows_a_tilted_column(rng):
    image = _sky(rng)
    rows = np.arange(512)
    cols = np.round(250 + 0.02 * (rows - 256)).astype(int)
    image[rows, cols] += 1.5
    mask, slope = locate_hot_columns(image)
    assert slope == pytest.approx(0.02, abs=0.004)
    hit = mask[rows, cols]
    assert hit.mean() > 0.9
    assert mask.sum() <= 1.1 * len(rows)


def test_peaks_are_told_apart_as_stars_knots_and_noise(rng):
    sky = np.full((128, 128), 10.0)
    noise = np.ones((128, 128))
    image = sky + rng.normal(0, 1, size=sky.shape) * 0.01  # nearly noiseless sky
    yy, xx = np.mgrid[:128, :128]
    image += 200 * np.exp(-((yy - 30) ** 2 + (xx - 30) ** 2) / (2 * 1.0**2))  # star
    image += 60 * np.exp(-((yy - 90) ** 2 + (xx - 90) ** 2) / (2 * 15.0**2))  # galaxy...
    image += 100 * np.exp(-((yy - 92) ** 2 + (xx - 88) ** 2) / (2 * 1.0**2))  # ...its knot
    image[110, 20] += 5.0  # a noise peak
    peaks = find_peaks(image, sky=sky, noise=noise)
    assert [tuple(p) for p in peaks["star"]] == [(30, 30)]
    assert (92, 88) in [tuple(p) for p in peaks["knot"]]
    assert [tuple(p) for p in peaks["noise"]] == [(110, 20)]
    excluded = find_peaks(image, sky=sky, noise=noise,
                          exclude=(yy == 31) & (xx == 31))
    assert not len(excluded["star"])


def _clean_ccd(rng, shape=(160, 160)) -> CleanCCD:
    sky, noise = 200.0, 5.0
    image = rng.normal(sky, noise, size=shape).astype(np.float32)
    cause = np.zeros(shape, np.uint8)
    cause[10, 10] = 6  # a repaired cosmic ray of the frame: ignored
    meta = {"ccd": "c", "band": "r", "exptime": 60.0, "gain": 2.0, "read_noise": 3.0,
            "saturate": 60000.0, "bias": 0.0, "fwhm": 3.0, "pixel_scale": 0.26,
            "spider_angle": 0.0, "overscan_noise": 3.0, "layout": "processed"}
    return CleanCCD(image=image, saturated=np.zeros(shape, bool), cause=cause,
                    sky=np.full(shape, sky), noise=np.full(shape, noise), meta=meta)


def test_injection_is_fixed_by_seed_frame_and_draw(rng):
    clean, synth = _synthesis_config(_params())
    extra = np.zeros((160, 160), bool)
    extra[:, 50] = True
    sample = frame_sample(_clean_ccd(rng), config=clean, record={"instrument": "t"},
                          ignore=extra)
    assert sample.ignore[10, 10] and sample.ignore[:, 50].all()
    a = inject(sample, config=synth, seed=7, frame_index=2, draw=1)
    b = inject(sample, config=synth, seed=7, frame_index=2, draw=1)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.record["injected"] == b.record["injected"]
    others = [inject(sample, config=synth, seed=7, frame_index=2, draw=d) for d in (0, 2)]
    others.append(inject(sample, config=synth, seed=7, frame_index=3, draw=1))
    for c in others:
        assert not np.array_equal(a.image, c.image)
    # the cleaning's unknown-truth pixels stay ignored after injection, unless an injected
    # defect or overscan strip replaced them (their truth is then known)
    replaced = (a.labels & sum(label_bit(c) for c in ("DCL", "DP", "OV"))) > 0
    assert (a.ignore.astype(bool) | replaced)[sample.ignore.astype(bool)].all()


def test_false_positives_are_traced_to_what_the_pixels_truly_are():
    """2000 negatives over two images: FPR 1e-3 is the 2nd highest; its 2 false positives
    are an injected hot column and a pixel of plain sky."""
    cr, hcl, bg = label_bit("CR"), label_bit("HCL"), label_bit("BG")
    labels = [np.full((20, 50), bg, np.uint16), np.full((20, 50), bg, np.uint16)]
    labels[0][0, :5] = cr  # 5 positives, not counted among the negatives
    labels[1][:, 7] |= hcl
    probs = [np.zeros((20, 50), np.float32), np.zeros((20, 50), np.float32)]
    probs[0][0, :5] = 0.99
    probs[1][3, 7] = 0.8  # on the hot column
    probs[0][9, 9] = 0.6  # on sky
    probs[1][5, 5] = 0.5  # third highest negative: below the threshold
    ignores = [np.zeros((20, 50), np.uint8), np.zeros((20, 50), np.uint8)]
    ignores[0][19, 0] = 1
    probs[0][19, 0] = 1.0  # ignored: no false positive, not a negative
    planes = [{"CR": p} for p in probs]
    threshold, n_fp, n_neg, sources = false_positive_sources(planes, labels, ignores, "CR",
                                                             fpr=1e-3)
    assert threshold == pytest.approx(0.6) and n_fp == 2 and n_neg == 2000 - 5 - 1
    assert sources == {"sky": 1, "HCL": 1}


def test_cr_misses_are_split_by_signal_and_by_feature():
    """A spot, a row-aligned track and a diagonal one; the tool misses the aligned track's
    faint half and one bright diagonal pixel."""
    cr, bg = label_bit("CR"), label_bit("BG")
    labels = np.full((40, 50), bg, np.uint16)
    signal = np.zeros((40, 50), np.float32)
    labels[5, 5] |= cr                       # spot, 1 px
    signal[5, 5] = 30.0
    labels[20, 10:30] |= cr                  # row-aligned track, 20 px
    signal[20, 10:20], signal[20, 20:30] = 1.0, 10.0
    diag = (np.arange(30, 40), np.arange(40, 50))
    labels[diag] |= cr                       # diagonal track, 10 px
    signal[diag] = 50.0
    kinds = cr_feature_kinds((labels & cr) != 0)
    assert kinds[5, 5] == 1 and (kinds[20, 10:30] == 2).all() and (kinds[diag] == 3).all()
    assert (kinds[(labels & cr) == 0] == 0).all()
    prob = np.where((labels & cr) != 0, 0.9, 0.0).astype(np.float32)
    prob[20, 10:20] = 0.0                    # faint half missed
    prob[35, 45] = 0.1                       # one bright diagonal pixel below threshold
    prob[0, 0] = 0.5                         # the 2 highest negatives: FPR 1e-3 of 1969
    prob[0, 1] = 0.2
    ignore = np.zeros((40, 50), np.uint8)
    threshold, counts = cr_misses([{"CR": prob}], [labels], [ignore], [signal], fpr=1e-3)
    assert threshold == pytest.approx(0.2)
    assert counts == {"all": (11, 31), "< 2": (10, 10), "2-5": (0, 0), "5-20": (0, 10),
                      ">= 20": (1, 11), "spots": (0, 1), "aligned tracks": (10, 20),
                      "other tracks": (1, 10)}


def _transplant_sample(rng):
    clean, _ = _synthesis_config(_params())
    return frame_sample(_clean_ccd(rng), config=clean, record={"instrument": "t"})


def test_transplanted_cosmic_rays_keep_their_charge_and_are_labelled_by_the_wing_cut(rng):
    sample = _transplant_sample(rng)
    charge = np.zeros((160, 160))
    charge[20, 5:60] = 800.0      # a track [e-]
    charge[90:93, 70] = 10.0      # a faint worm: 5 ADU at gain 2 = 1 sky sigma
    charge[130, 140] = 2.0        # 1 ADU: under the 0.5 sigma wing cut
    out = transplant_cosmic_rays(sample, charge, rng=np.random.default_rng(1), keep=1.0,
                                 wing_cut=0.5)
    delta = out.image.astype(np.float64) - sample.image
    # one whole period of the tiled layer: every electron arrives, divided by the gain
    assert delta.sum() == pytest.approx(charge.sum() / 2.0, rel=1e-4)
    cr = (out.labels & label_bit("CR")) > 0
    np.testing.assert_array_equal(cr, delta >= 0.5 * sample.record["sky_noise"])
    assert cr.sum() == 55 + 3
    np.testing.assert_array_equal(out.labels & ~np.uint16(label_bit("CR")), sample.labels)
    np.testing.assert_array_equal(out.ignore, sample.ignore)
    same = transplant_cosmic_rays(sample, charge, rng=np.random.default_rng(1), keep=1.0)
    np.testing.assert_array_equal(same.image, out.image)
    none = transplant_cosmic_rays(sample, charge, rng=np.random.default_rng(1), keep=0.0)
    np.testing.assert_array_equal(none.image, sample.image)
    assert not (none.labels & label_bit("CR")).any()
