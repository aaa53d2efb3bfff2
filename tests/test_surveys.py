"""Simulated raw survey exposures: profiles, determinism, file format, physics, CLI."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml
from astropy.io import fits
from astropy.wcs import WCS
from typer.testing import CliRunner

from mmx.cli.app import app
from mmx.errors import ConfigError, InputError
from mmx.io.fitsio import read_images
from mmx.surveys import (
    DEFAULT_SURVEY,
    INSTRUMENTS,
    get_instrument,
    plan_survey,
    read_survey_params,
    simulate_ccd,
    simulate_survey,
    survey_config,
)
from mmx.surveys.detector import bleed, digitize
from mmx.surveys.preview import data_section, parse_section

runner = CliRunner()

PRIMARY_KEYS = ("INSTRUME", "TELESCOP", "FILTER", "EXPTIME", "MJD-OBS", "AIRMASS", "PIXSCAL",
                "MMXSEED", "MMXVERS")
CCD_KEYS = ("EXTNAME", "CCDNUM", "GAIN", "RDNOISE", "SATURATE", "BIASSEC", "DATASEC",
            "INSTRUME", "FILTER", "EXPTIME")


def _tiny(**changes) -> dict:
    """A survey of small CCDs: one crowded DECam exposure and one sparse HSC exposure."""
    config = {
        "seed": 7,
        "exposures_per_instrument": 1,
        "ccds_per_exposure": 2,
        "ccd_shape": [160, 128],
        "exposures": {
            "DECam": {"bands": ["r"], "exptimes": [90], "star_density": [300000]},
            "HSC": {"bands": ["i"], "exptimes": [60], "star_density": [3000]},
        },
    }
    config.update(changes)
    return config


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory):
    out = tmp_path_factory.mktemp("survey")
    return simulate_survey(_tiny(), out, progress=False, workers=2)  # 2 spawned processes


# ---------------------------------------------------------------- instrument profiles


def test_registry_holds_the_cameras_with_their_mosaics():
    assert {name: inst.n_ccds for name, inst in INSTRUMENTS.items()} == {
        "DECam": 62, "MegaCam": 40, "HSC": 104, "SpaceCam": 4, "SmallScope": 2}
    assert get_instrument("hsc") is INSTRUMENTS["HSC"]
    for inst in INSTRUMENTS.values():
        assert inst.bias < inst.saturate <= inst.adc_max
        assert inst.ccd_name(1) != inst.ccd_name(inst.n_ccds)
    # MegaCam's 16-bit ADC saturates before its full well; DECam's full well comes first.
    assert INSTRUMENTS["MegaCam"].saturate > 65000
    assert INSTRUMENTS["DECam"].saturate < INSTRUMENTS["DECam"].bias + 150_000 / 4.0
    # the space imager undersamples its PSF: FWHM about one pixel, 12-bit ADC
    space = INSTRUMENTS["SpaceCam"]
    assert 0.8 < space.seeing_median / space.pixel_scale < 1.5 and space.adc_max == 4095
    # the observatory imager fills the gap between them: FWHM 2-3.5 px at r, airmass 1-1.6
    small = INSTRUMENTS["SmallScope"]
    assert 1.8 < small.seeing_median / small.pixel_scale < 2.5
    # every profile can be simulated on its own: `simulate --instruments` needs its lists
    from mmx.surveys.simulate import PROFILE_EXPOSURES

    assert set(PROFILE_EXPOSURES) == set(INSTRUMENTS)
    survey_config({**DEFAULT_SURVEY, "exposures": PROFILE_EXPOSURES})


# ---------------------------------------------------------------- configuration


def test_params_yaml_survey_section_matches_the_builtin_defaults():
    section = read_survey_params(Path(__file__).resolve().parents[1] / "params.yaml")
    assert section == DEFAULT_SURVEY
    survey_config(section)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"exposures": {"Foo": {"bands": ["r"], "exptimes": [1], "star_density": [1]}}},
         "unknown instrument 'Foo'; expected one of DECam, MegaCam, HSC"),
        ({"exposures_per_instrument": -1},
         r"survey.exposures_per_instrument must be >= 0, got -1"),
        ({"ccds_per_exposure": 500}, "ccds_per_exposure is 500 but DECam has only 62 CCDs"),
        ({"exposures": {"DECam": {"bands": ["q"], "exptimes": [1], "star_density": [1]}}},
         "DECam has no band 'q'; expected one of g, r, i, z, Y"),
        ({"exposures": {"DECam": {"bands": ["r"], "exptimes": [-5], "star_density": [1]}}},
         r"survey.exposures.DECam.exptimes must hold positive numbers, got -5"),
        ({"ccd_shape": [10, "x"]}, "survey.ccd_shape must be null or"),
        ({"nonsense": 1}, "unknown survey key"),
        ({"airmass": [0.5, 1.2]}, "survey.airmass must be"),
    ],
)
def test_bad_parameters_give_one_clear_config_error(changes, message):
    with pytest.raises(ConfigError, match=message):
        plan_survey(survey_config(_tiny(**changes)))


# ---------------------------------------------------------------- determinism


def test_same_seed_gives_identical_bytes_and_other_seed_other_pixels(tmp_path, tiny_files):
    again = simulate_survey(_tiny(), tmp_path / "a", progress=False, workers=1)  # in process
    assert [p.name for p in again] == [p.name for p in tiny_files]
    for first, second in zip(tiny_files, again, strict=True):
        assert first.read_bytes() == second.read_bytes()
    other = simulate_survey(_tiny(), tmp_path / "b", seed=8, progress=False, workers=1)
    a = read_images(tiny_files[0])[0].data
    b = read_images(other[0])[0].data
    assert a.shape == b.shape
    assert np.mean(a != b) > 0.5


def test_adding_exposures_or_instruments_leaves_existing_exposures_unchanged():
    small = survey_config(_tiny(ccds_per_exposure=1))
    bigger = survey_config(_tiny(ccds_per_exposure=1, exposures_per_instrument=2))
    plan_small = [p for p in plan_survey(small) if p.instrument.name == "HSC"][0]
    plan_big = [p for p in plan_survey(bigger) if p.instrument.name == "HSC"][0]
    assert plan_small == plan_big
    only_hsc = copy.deepcopy(_tiny(ccds_per_exposure=1))
    del only_hsc["exposures"]["DECam"]
    assert plan_survey(survey_config(only_hsc))[0] == plan_small
    a = simulate_ccd(plan_small, plan_small.ccds[0], small).data
    b = simulate_ccd(plan_big, plan_big.ccds[0], bigger).data
    np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- file format


def test_headers_carry_every_required_key_and_a_valid_wcs(tiny_files):
    with fits.open(tiny_files[0]) as hdul:
        primary = hdul[0].header
        assert hdul[0].data is None
        for key in PRIMARY_KEYS:
            assert key in primary, key
        assert len(hdul) == 3
        for hdu in hdul[1:]:
            assert isinstance(hdu, fits.CompImageHDU)
            assert hdu.data.dtype == np.uint16
            assert hdu.compression_type == "RICE_1"
            header = hdu.header
            for key in CCD_KEYS:
                assert key in header, key
            for key in ("INSTRUME", "FILTER", "EXPTIME"):
                assert header[key] == primary[key]
            rows, cols = parse_section(header["DATASEC"])
            brows, bcols = parse_section(header["BIASSEC"])
            assert (rows.stop - rows.start, cols.stop - cols.start) == (160, 128)
            assert bcols.start >= cols.stop and bcols.stop <= header["NAXIS1"]
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # no 'fixed' keys: the WCS is valid as written
                wcs = WCS(header)
            assert wcs.has_celestial and wcs.wcs.ctype[0] == "RA---TAN"
            scale = np.sqrt(abs(np.linalg.det(wcs.pixel_scale_matrix))) * 3600.0
            assert scale == pytest.approx(primary["PIXSCAL"])
            sky = wcs.pixel_to_world(cols.start + 64, rows.start + 80)
            assert np.isfinite(sky.ra.deg) and np.isfinite(sky.dec.deg)


def test_file_round_trips_through_read_images(tiny_files):
    images = read_images(tiny_files[1])  # the HSC exposure, .fits.fz
    assert [im.index for im in images] == [1, 2]
    config = survey_config(_tiny())
    plan = [p for p in plan_survey(config) if p.instrument.name == "HSC"][0]
    for image, ccdnum in zip(images, plan.ccds, strict=True):
        raw = simulate_ccd(plan, ccdnum, config).data
        np.testing.assert_array_equal(image.data, raw.astype(np.float32))
        assert image.header["CCDNUM"] == ccdnum


def test_noise_and_bias_match_the_profile(tiny_files):
    image = read_images(tiny_files[1])[0]  # sparse HSC field
    header = image.header
    inst = get_instrument(header["INSTRUME"])
    brows, bcols = parse_section(header["BIASSEC"])
    overscan = image.data[brows, bcols]
    assert np.median(overscan) == pytest.approx(inst.bias, abs=3)
    assert np.std(overscan) == pytest.approx(inst.read_noise / inst.gain, rel=0.15)
    sky = data_section(image.data, header)
    med = np.median(sky)
    step = np.diff(sky, axis=1)  # neighbours' differences: blind to the smooth flat and sky
    robust_sigma = 1.4826 * np.median(np.abs(step - np.median(step))) / np.sqrt(2.0)
    expected = np.sqrt(med * inst.gain + inst.read_noise**2  # Poisson + read noise
                       + (inst.flat_pixel_rms * med * inst.gain) ** 2) / inst.gain
    assert robust_sigma == pytest.approx(expected, rel=0.1)


# ---------------------------------------------------------------- detector physics


def test_bleed_conserves_charge_and_runs_along_the_column():
    full_well = 100.0
    image = np.full((60, 5), 10.0)
    image[30, 2] = 1000.0  # 900 e- beyond the full well
    total = image.sum()
    hit = bleed(image, full_well, up_fraction=0.5)
    assert hit == 1
    assert image.max() <= full_well
    assert image.sum() == pytest.approx(total)
    np.testing.assert_array_equal(image[:, [0, 1, 3, 4]], 10.0)
    assert np.sum(image[:, 2] >= full_well) >= 10  # 900 e- fill ~10 pixels of 90 e- room
    above = np.flatnonzero(image[:, 2] >= full_well)
    assert above.min() < 30 < above.max()


def test_bleed_loses_only_what_runs_off_the_ccd_edge():
    image = np.zeros((10, 1))
    image[1, 0] = 1000.0
    bleed(image, 100.0, up_fraction=0.0)  # everything flows towards row 0 and off the edge
    assert image.sum() == pytest.approx(200.0)


def test_digitize_places_overscan_and_clips_at_the_adc_maximum(rng):
    electrons = np.full((20, 10), 1e7)
    raw = digitize(electrons, gain=2.0, read_noise=5.0, bias=1000.0, adc_max=65535,
                   prescan=3, overscan=4, overscan_rows=2, rng=rng)
    assert raw.dtype == np.uint16 and raw.shape == (22, 17)
    assert np.all(raw[:20, 3:13] == 65535)
    assert np.all(np.abs(raw[:, :3].astype(int) - 1000) < 20)
    assert np.all(np.abs(raw[:, 13:].astype(int) - 1000) < 20)


def _run_through(line: np.ndarray, i: int) -> int:
    """Length of the run of True values of ``line`` that contains index ``i``."""
    lo, hi = i, i
    while lo > 0 and line[lo - 1]:
        lo -= 1
    while hi < line.size - 1 and line[hi + 1]:
        hi += 1
    return hi - lo + 1


def test_stars_beyond_the_full_well_saturate_and_bleed_along_columns():
    crowded = {"DECam": {"bands": ["r"], "exptimes": [90], "star_density": [1e6]}}
    config = survey_config(_tiny(ccd_shape=[200, 200], cosmic_rays=False, exposures=crowded))
    plan = plan_survey(config)[0]
    ccd = simulate_ccd(plan, plan.ccds[0], config)
    inst = plan.instrument
    image = ccd.data[:200, inst.prescan:inst.prescan + 200]
    saturated = image >= inst.saturate
    fwhm = plan.seeing / inst.pixel_scale
    peak = ccd.stars.flux * 0.9 / (np.pi * (fwhm / 2.0) ** 2)  # rough central-pixel e-
    inside = (ccd.stars.x > 10) & (ccd.stars.x < 190) & (ccd.stars.y > 30) & (ccd.stars.y < 170)
    bright = inside & (peak > 3 * inst.full_well)
    assert bright.sum() >= 2
    assert ccd.stats["bleeding_columns"] > 0
    for x, y, p in zip(ccd.stars.x[bright], ccd.stars.y[bright], peak[bright], strict=True):
        iy, ix = int(round(y)), int(round(x))
        assert saturated[iy, ix]
        if p > 10 * inst.full_well:  # clearly bleeding: the run is longer along the column
            assert _run_through(saturated[:, ix], iy) > _run_through(saturated[iy, :], ix)
    # Faint sources never saturate: every saturated pixel lies in the column of a star
    # that reaches the full well.
    sat_cols = np.flatnonzero(saturated.any(axis=0))
    star_cols = np.rint(ccd.stars.x[peak > 0.5 * inst.full_well]).astype(int)
    assert all(np.min(np.abs(star_cols - c)) <= 12 for c in sat_cols)


# ---------------------------------------------------------------- command line


def test_cli_simulate_profiles_and_errors(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"survey": _tiny()}))
    out = tmp_path / "data"
    args = ["surveys", "simulate", "--out", str(out), "--params", str(params),
            "--seed", "3", "--exposures", "1", "--ccds", "1", "--instruments", "HSC"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    written = out / "HSC" / "HSC_0000.fits.fz"
    assert written.is_file() and str(written) in result.output
    assert not (out / "DECam").exists()
    with fits.open(written) as hdul:
        assert hdul[0].header["MMXSEED"] == 3 and len(hdul) == 2

    again = runner.invoke(app, args)
    assert again.exit_code == 1
    assert "output exists" in again.output and "--overwrite" in again.output
    assert runner.invoke(app, [*args, "--overwrite"]).exit_code == 0
    # a profile the survey section leaves out takes its built-in exposure lists
    small = runner.invoke(app, [*args[:-1], "SmallScope"])
    assert small.exit_code == 0, small.output
    with fits.open(out / "SmallScope" / "SmallScope_0000.fits.fz") as hdul:
        assert hdul[0].header["FILTER"] == "Cousins R" and hdul[0].header["EXPTIME"] == 300

    bad = runner.invoke(app, ["surveys", "simulate", "--out", str(out), "--params", str(params),
                              "--instruments", "DECam,Foo"])
    assert bad.exit_code == 1
    assert "mmx: error: unknown instrument 'Foo'" in bad.output
    negative = runner.invoke(app, ["surveys", "simulate", "--out", str(out), "--params",
                                   str(params), "--exposures", "-2"])
    assert negative.exit_code == 1
    assert "survey.exposures_per_instrument must be >= 0, got -2" in negative.output

    profiles = runner.invoke(app, ["surveys", "profiles"])
    assert profiles.exit_code == 0
    for name in ("DECam", "MegaCam", "HSC", "SpaceCam", "SmallScope"):
        assert name in profiles.output


def test_cli_missing_params_file_is_one_clear_error(tmp_path):
    result = runner.invoke(app, ["surveys", "simulate", "--out", str(tmp_path),
                                 "--params", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 1
    assert "nope.yaml: no such parameter file" in result.output


def test_preview_writes_a_side_by_side_png(tmp_path, tiny_files, real_dir):
    png = tmp_path / "preview.png"
    result = runner.invoke(app, ["surveys", "preview", str(tiny_files[0]), "--out", str(png),
                                 "--compare", str(real_dir / "kpno_mosaic_z_30s_cutout.fits"),
                                 "--size", "128"])
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_read_survey_params_reports_a_missing_section(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("train: {epochs: 1}\n")
    with pytest.raises(ConfigError, match="no 'survey:' section"):
        read_survey_params(path)
    with pytest.raises(InputError, match="cannot read the parameter file"):
        read_survey_params(tmp_path / "missing.yaml")


@pytest.mark.slow
def test_default_survey_simulates_full_size_ccds(tmp_path):
    files = simulate_survey(None, tmp_path, progress=False)
    assert [f.parent.name for f in files] == ["DECam", "MegaCam", "HSC"]
    for f in files:
        images = read_images(f)
        inst = get_instrument(images[0].header["INSTRUME"])
        rows, cols = parse_section(images[0].header["DATASEC"])
        assert (rows.stop - rows.start, cols.stop - cols.start) == inst.ccd_shape
        assert len(images) == DEFAULT_SURVEY["ccds_per_exposure"]


def _one_galaxy(hlr: float, knots: float):
    from mmx.surveys.scene import Catalog

    a = np.array
    return Catalog(a([128.0]), a([128.0]), a([15.0]), a([2e6]), a([hlr]), a([0.8]), a([0.3]),
                   a([0.0]), a([knots]))


def test_resolved_galaxies_carry_knots_that_keep_their_flux():
    from mmx.surveys.scene import Psf, render_sources

    psf = Psf(fwhm=3.0, beta=3.0)
    stars = _one_galaxy(0.0, 0.0)
    stars.flux[:] = 0.0
    smooth, clumpy = np.zeros((256, 256)), np.zeros((256, 256))
    render_sources(smooth, stars, _one_galaxy(12.0, 0.0), psf, sky_sigma=10.0,
                   rng=np.random.default_rng(1))
    counts = render_sources(clumpy, stars, _one_galaxy(12.0, 0.4), psf, sky_sigma=10.0,
                            rng=np.random.default_rng(1))
    assert counts["knots"] >= 5
    assert clumpy.sum() == pytest.approx(smooth.sum(), rel=0.02)  # light moved, not added
    # Knots make the light lumpy: residuals from the smooth disc far above its noise.
    assert np.abs(clumpy - smooth).max() > 0.05 * smooth.max()


def test_space_psf_has_airy_rings_and_ground_psf_does_not():
    import galsim

    from mmx.surveys.scene import Psf

    def profile(psf):
        img = psf.core().drawImage(nx=41, ny=41, scale=0.25, method="no_pixel").array
        return img[20, 20:]

    airy = profile(Psf(fwhm=2.0, beta=2.5, obscuration=0.33))
    moffat = profile(Psf(fwhm=2.0, beta=2.5))
    assert isinstance(Psf(fwhm=2.0, beta=2.5).core(), galsim.GSObject)
    assert (np.diff(moffat) <= 0).all()  # monotonic
    assert (np.diff(airy) > 0).any()  # a dark ring, then a bright one


def test_large_galaxies_exceed_a_cutout_and_follow_their_count():
    from mmx.surveys.scene import large_galaxy_catalog

    rng = np.random.default_rng(3)
    cat = large_galaxy_catalog((2048, 2048), pixel_scale=0.26, mean=50.0, size=(15.0, 90.0),
                               colour=0.0, rng=rng)
    assert 25 < len(cat) < 80
    assert cat.hlr.min() > 15.0 / 0.26 * 0.99 and (cat.hlr > 128).any()
    assert (cat.knots > 0).all() and (cat.bulge < 0.15).all()
