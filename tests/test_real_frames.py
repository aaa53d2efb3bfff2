"""Real frames in training: staged by name, held-out refused, processed frames characterised."""

import numpy as np
import pytest
from astropy.io import fits

from mmx.cleaning import CleanConfig
from mmx.cleaning.processed import characterise, is_raw_layout
from mmx.cleaning.real_frames import README_NAME, check_no_holdout, stage_real_frames
from mmx.cleaning.stage import _PADDING, CleanCCD, cut_ccd, merge_headers, pad_to
from mmx.errors import ConfigError, InputError


def test_staging_copies_exactly_the_training_list(tmp_path):
    src, dest = tmp_path / "src", tmp_path / "data_real"
    src.mkdir()
    for name in ("a.fits", "b.fits", "held.fits"):
        (src / name).write_bytes(name.encode())
    (dest / "old").mkdir(parents=True)
    (dest / "old" / "stale.fits").write_bytes(b"x")
    kept = stage_real_frames(src, dest, train=["cam/a.fits", "cam/missing.fits"],
                             holdout=["held.fits"])
    assert kept == [dest / "cam" / "a.fits"] and (dest / "cam" / "a.fits").read_bytes() == b"a.fits"
    assert not (dest / "old").exists() and (dest / README_NAME).is_file()
    with pytest.raises(ConfigError, match="held-out frame.*held.fits"):
        stage_real_frames(src, dest, train=["cam/held.fits"], holdout=["held.fits"])
    with pytest.raises(ConfigError, match="expected '<instrument>/<file>'"):
        stage_real_frames(src, dest, train=["a.fits"])
    # no source at all: an empty folder (training on simulated skies alone)
    assert stage_real_frames(tmp_path / "nowhere", dest, train=["cam/a.fits"]) == []
    assert [p.name for p in dest.iterdir()] == [README_NAME]


def test_a_held_out_frame_in_the_inputs_is_refused(tmp_path):
    (tmp_path / "cam").mkdir()
    (tmp_path / "cam" / "held.fits").write_bytes(b"x")
    with pytest.raises(InputError, match="held.fits: this frame is held out"):
        check_no_holdout(tmp_path, ["../shared/real/held.fits"])
    check_no_holdout(tmp_path, ["other.fits"])


def test_cutout_keys_of_a_full_ccd_do_not_make_a_cutout_raw():
    header = fits.Header({"BIASSEC": "[1063:1112,1:4096]", "DATASEC": "[25:1048,1:4096]"})
    assert not is_raw_layout(header, (400, 400))
    header = fits.Header({"BIASSEC": "[101:110,1:50]", "DATASEC": "[1:100,1:50]"})
    assert is_raw_layout(header, (50, 110))


def test_processed_frames_are_characterised():
    rng = np.random.default_rng(7)
    gain, rn_e, pedestal, sky_e = 2.0, 6.0, 700.0, 2000.0
    image = (rng.poisson(sky_e, (256, 256)) + rn_e * rng.standard_normal((256, 256))) / gain
    image = (image + pedestal).astype(np.float32)
    ch = characterise(image, fits.Header({"GAIN": gain, "RDNOISE": rn_e}), mesh=64)
    assert ch.pedestal == pytest.approx(pedestal, abs=60)  # the bias left in the data
    assert ch.read_noise == pytest.approx(rn_e / gain, rel=0.05) and not ch.sky_subtracted
    assert ch.sources["saturate"] == "none" and ch.saturate > image.max()
    skysub = (image - np.median(image)).astype(np.float32)
    skysub[10:12, 10:14] = 5000.0  # a clipped plateau
    ch = characterise(skysub, fits.Header(), mesh=64, assumed_noise_e=20.0)
    noise = float(np.std(image))
    assert ch.sky_subtracted and ch.pedestal == 0.0
    assert ch.gain == pytest.approx(20.0 / noise, rel=0.1) and ch.sources["gain"] == "estimated"
    assert ch.saturate == 5000.0 and ch.sources["saturate"] == "plateau"


def test_small_frames_are_mirrored_up_and_the_margin_ignored():
    rng = np.random.default_rng(3)
    image = (100 + rng.standard_normal((200, 150))).astype(np.float32)
    ccd = CleanCCD(image=image, saturated=np.zeros(image.shape, bool),
                   cause=np.zeros(image.shape, np.uint8), sky=np.full(image.shape, 100.0),
                   noise=np.ones(image.shape), meta={})
    padded = pad_to(ccd, 256)
    assert padded.image.shape == (256, 256)
    assert np.count_nonzero(padded.cause == _PADDING) == 256 * 256 - 200 * 150
    np.testing.assert_array_equal(padded.image[28:228, 53:203], image)
    meta = {"ccd": "x", "band": "r", "exptime": 1.0, "gain": 1.0, "read_noise": 1.0,
            "saturate": 1e4, "fwhm": 2.0, "fwhm_source": "default", "pixel_scale": None,
            "spider_angle": 0.0, "overscan_noise": 1.0, "bias": 0.0, "telescope": "",
            "mjd": 0.0, "airmass": 0.0, "origin": "real", "layout": "processed",
            "estimated": []}
    ccd.meta.update(meta)
    (result,) = cut_ccd(ccd, config=CleanConfig(size=256, stride=256, mesh=64))
    assert result.sample is not None  # padding does not count against the ignored limit
    assert result.sample.ignore.sum() == 256 * 256 - 200 * 150
    assert result.sample.record["padded_fraction"] == pytest.approx(1 - 200 * 150 / 256**2)


def test_unparsable_header_cards_are_dropped_when_merging():
    primary = fits.Header({"EXPTIME": 30.0})
    header = fits.Header({"GAIN": 2.0})
    header.append(fits.Card.fromstring("BADCARD = 'unterminated"))
    merged = merge_headers(primary, header)
    assert merged["EXPTIME"] == 30.0 and merged["GAIN"] == 2.0
