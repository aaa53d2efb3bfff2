"""``mmx predict``: Predictor, output modes, FITS layout and provenance, the command line."""

from __future__ import annotations

import hashlib
import shutil

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from numpy.testing import assert_allclose
from typer.testing import CliRunner

from mmx.classes import CLASSES, by_abbr, planes_to_bitmask
from mmx.errors import ConfigError, InputError
from mmx.model.priors import correct_probabilities, logit
from mmx.serving.masks import NODATA_BIT, OutputMode, binary_planes

torch = pytest.importorskip("torch")
nets = pytest.importorskip("mmx.model.nets")

from mmx.cli.app import app  # noqa: E402
from mmx.model.package import ModelMeta, load_package, save_package  # noqa: E402
from mmx.serving.inference import Predictor, fold_batchnorm  # noqa: E402
from mmx.serving.predict import output_path, predict_file, predict_files  # noqa: E402
from mmx.serving.tiling import pad_image  # noqa: E402
from mmx.sky.normalize import normalize_image  # noqa: E402

runner = CliRunner()
TRAINING = {c.abbr: c.maximask_prior for c in CLASSES}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny random-weight U-Net package (speed and layout do not depend on weights)."""
    torch.manual_seed(1)
    kwargs = {"widths": [4, 8], "convs_per_level": 1}
    net = nets.build_network("unet", n_classes=len(CLASSES), **kwargs).eval()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    margin = nets.receptive_field_margin(net)
    meta = ModelMeta(architecture="unet", arch_kwargs=kwargs, training_priors=TRAINING,
                     tile=48, margin=margin)
    return save_package(net, meta, tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture(scope="module")
def package(model_dir):
    return load_package(model_dir)


def _wcs_header(shape):
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [150.1, 2.2]
    w.wcs.crpix = [shape[1] / 2, shape[0] / 2]
    w.wcs.cd = [[-7.3e-5, 1e-7], [2e-7, 7.3e-5]]
    return w.to_header()


@pytest.fixture
def mef(tmp_path, rng):
    """Empty primary, float CCD with NaNs and WCS, a table, an int16 CCD with BLANK."""
    img1 = (100 + rng.normal(0, 5, (70, 90))).astype(np.float32)
    img1[10:13, 20:25] = np.nan
    img1[40, 40:60] = 5000.0
    h1 = _wcs_header(img1.shape)
    h1["EXTNAME"] = "CCD1"
    h1["GAIN"] = (1.7, "e-/ADU")
    h1["BUNIT"] = "ADU"
    raw2 = (200 + rng.normal(0, 8, (50, 60))).astype(np.int16)
    raw2[0, :5] = -32768
    h2 = fits.Header({"EXTNAME": "CCD2", "BLANK": -32768})
    table = fits.BinTableHDU.from_columns([fits.Column(name="FLUX", format="E",
                                                       array=np.arange(4.0))], name="CAT")
    table.header["SURVEY"] = ("TEST", "kept")
    primary = fits.PrimaryHDU()
    primary.header["INSTRUME"] = "TESTCAM"
    path = tmp_path / "exp.fits"
    fits.HDUList([primary, fits.ImageHDU(img1, h1), table, fits.ImageHDU(raw2, h2)]).writeto(path)
    return path


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_fold_batchnorm_is_the_same_function(package, rng):
    x = torch.from_numpy(rng.normal(size=(2, 1, 32, 40)).astype(np.float32))
    with torch.inference_mode():
        assert_allclose(fold_batchnorm(package.net)(x).numpy(), package.net(x).numpy(),
                        rtol=1e-4, atol=1e-5)
    folded = fold_batchnorm(package.net).modules()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded)


@pytest.mark.parametrize("padding", ["none", "reflect", "zero"])
def test_predictor_equals_whole_image_reference(package, rng, padding):
    image = (50 + rng.normal(0, 3, (83, 101))).astype(np.float32)
    pred = Predictor(package, apply_priors=False, precision="float32", batch_size=3,
                     padding=padding)
    plan = pred.plan(image.shape)
    assert len(plan) > 4
    out = pred.predict(image, mode="prob").array
    padded = pad_image(normalize_image(image), plan)
    with torch.inference_mode():
        ref = torch.sigmoid(package.net(torch.from_numpy(padded)[None, None]))[0].numpy()
    (t, _), (lft, _) = plan.pad
    assert_allclose(out[:-1], ref[:, t:t + 83, lft:lft + 101], atol=2e-5)
    assert np.all(out[-1] == 0)  # no NODATA pixel
    assert pred.provenance()["padding"] == padding


@pytest.mark.parametrize("tta", ["flips", "dihedral"])
def test_tta_equals_the_whole_image_views_averaged(package, rng, tta):
    from mmx.model.symmetry import _VIEWS, _unview, _view

    image = (50 + rng.normal(0, 3, (83, 101))).astype(np.float32)
    image[40, 10:60] += 40  # something the views do not see alike
    pred = Predictor(package, apply_priors=False, precision="float32", batch_size=2, tta=tta)
    plan = pred.plan(image.shape)
    assert len(plan) > 4 and pred.runtime.name.endswith(f"+{tta}")
    out = pred.predict(image, mode="prob").array
    padded = pad_image(normalize_image(image), plan)[None, None]
    with torch.inference_mode():
        views = [_unview(package.net(torch.from_numpy(np.ascontiguousarray(_view(padded, k, t))))
                         .numpy(), k, t) for k, t in _VIEWS[tta]]
    ref = torch.sigmoid(torch.from_numpy(np.mean(views, axis=0)))[0].numpy()
    (t, _), (lft, _) = plan.pad
    assert_allclose(out[:-1], ref[:, t:t + 83, lft:lft + 101], atol=2e-5)
    plain = Predictor(package, apply_priors=False, precision="float32").predict(image, mode="prob")
    assert np.abs(plain.array - out).max() > 1e-3  # the views do differ
    assert pred.provenance()["tta"] == tta
    with pytest.raises(ConfigError, match="tta must be one of none, flips, dihedral, got 'rot'"):
        Predictor(package, tta="rot")


def test_padding_changes_only_the_border(package, rng):
    image = (50 + rng.normal(0, 3, (83, 101))).astype(np.float32)
    out = {p: Predictor(package, apply_priors=False, precision="float32", padding=p)
           .predict(image, mode="prob").array for p in ("none", "reflect", "zero")}
    assert Predictor(package).settings.padding == "none"
    m = package.meta.margin + package.net.stride
    for other in ("reflect", "zero"):
        differs = np.abs(out["none"] - out[other]).max(axis=0) > 1e-5
        assert differs[:, :2].any() and differs[:2].any()  # the edge sees other context
        assert not differs[m:-m, m:-m].any()  # the interior does not
    with pytest.raises(ConfigError, match="padding must be one of none, reflect, zero, got 'wrap'"):
        Predictor(package, padding="wrap")


def test_prior_correction_and_class_selection(package, rng):
    image = (50 + rng.normal(0, 3, (40, 50))).astype(np.float32)
    raw = Predictor(package, apply_priors=False, precision="float32").predict(image, mode="prob")
    pred = Predictor(package, classes=["TRL", "CR"], priors={"CR": 2e-3}, precision="float32")
    assert [c.abbr for c in pred.classes] == ["CR", "TRL"]
    got = pred.predict(image, mode="prob").array
    assert got.shape == (3, 40, 50)
    for k, (abbr, prior) in enumerate([("CR", 2e-3), ("TRL", by_abbr("TRL").prior)]):
        expect = correct_probabilities(raw.array[by_abbr(abbr).index], TRAINING[abbr], prior)
        assert_allclose(got[k], expect, rtol=1e-4, atol=1e-6)
    with pytest.raises(ConfigError, match="precision"):
        Predictor(package, precision="fp8")


def test_bfloat16_is_close_to_float32(package, rng):
    image = (50 + rng.normal(0, 3, (40, 50))).astype(np.float32)
    a = Predictor(package, precision="float32").predict(image, mode="prob").array
    b = Predictor(package, precision="bfloat16").predict(image, mode="prob").array
    assert np.abs(a - b).max() < 0.02


def test_every_mode_round_trips_through_a_file(package, mef, tmp_path):
    pred = Predictor(package, precision="float32")
    thresholds = {"CR": 0.3, "TRL": 0.0, "BG": 1.0}
    data = {}
    for mode in OutputMode:
        out = predict_file(mef, pred, mode=mode, thresholds=thresholds,
                           out_dir=tmp_path / mode.value)
        assert out.name == "exp.mask.fits"
        with fits.open(out) as hdul:
            header = hdul[1].header.copy()  # before the data: astropy drops BSCALE on scaling
            data[mode] = (hdul[1].data.copy(), header)
    prob, hdr = data[OutputMode.PROB]
    assert prob.dtype == np.dtype(">f4") and prob.shape == (15, 70, 90)
    assert [hdr[f"PLANE{i}"] for i in range(1, 16)] == [c.abbr for c in CLASSES] + ["NODATA"]
    prob8, hdr8 = data[OutputMode.PROB8]
    assert hdr8["BSCALE"] == 1 / 255 and hdr8["BITPIX"] == 8
    assert np.abs(prob8 - prob).max() <= 1 / 510 + 1e-6
    binary, hdrb = data[OutputMode.BINARY]
    assert binary.dtype == np.uint8 and set(np.unique(binary)) <= {0, 1}
    thr = {c.abbr: thresholds.get(c.abbr, c.threshold) for c in CLASSES}
    assert hdrb["THR_CR"] == 0.3 and hdrb["THR_HCL"] == 0.60
    valid = prob[-1] == 0
    for k, cls in enumerate(CLASSES):
        near = np.abs(prob[k] - thr[cls.abbr]) < 1e-6
        agree = (binary[k] == 1) == (prob[k] >= thr[cls.abbr])
        assert np.all(agree | near | ~valid), cls.abbr
    assert np.all(binary[CLASSES.index(by_abbr("TRL"))][valid] == 1)  # threshold 0: all
    assert not binary[CLASSES.index(by_abbr("BG"))].any()  # threshold 1: nothing
    bitmask, hdrm = data[OutputMode.BITMASK]
    assert bitmask.dtype == np.dtype(">i2") and bitmask.shape == (70, 90)
    expected = planes_to_bitmask(binary[:-1])
    expected[binary[-1] == 1] = NODATA_BIT
    assert np.array_equal(bitmask, expected)
    assert hdrm["BIT_TRL"] == 64 and hdrm["BIT_NODA"] == NODATA_BIT
    decoded = binary_planes(bitmask, "bitmask", CLASSES)
    assert "BG" not in decoded and np.array_equal(decoded["CR"], binary[0] == 1)


def test_nodata_pixels_are_flagged_never_signal(package, mef, tmp_path):
    pred = Predictor(package, precision="float32")
    out = predict_file(mef, pred, mode="binary", thresholds={c.abbr: 0.0 for c in CLASSES},
                       out_dir=tmp_path)
    with fits.open(out) as hdul:
        ccd1, ccd2 = hdul["CCD1"].data, hdul["CCD2"].data
    assert np.all(ccd1[-1, 10:13, 20:25] == 1) and ccd1[-1].sum() == 15
    assert np.all(ccd1[:-1, 10:13, 20:25] == 0)  # threshold 0 flags everything else
    assert np.all(ccd1[:-1][:, ccd1[-1] == 0] == 1)
    assert np.all(ccd2[-1, 0, :5] == 1) and ccd2[-1].sum() == 5  # integer BLANK


def test_header_wcs_tables_and_provenance(package, mef, tmp_path):
    pred = Predictor(package, classes=["CR", "SAT"], priors={"CR": 1 / 3}, precision="float32")
    out = predict_file(mef, pred, mode="prob8", out_dir=tmp_path)
    with fits.open(mef) as src, fits.open(out) as dst:
        assert len(dst) == len(src) == 4
        # primary: the input's keys plus provenance
        assert dst[0].header["INSTRUME"] == "TESTCAM" and dst[0].data is None
        assert dst[0].header["MMXARCH"] == "unet" and dst[0].header["MMXMODE"] == "prob8"
        # image HDU: header and WCS carried, data keys replaced
        h = dst["CCD1"].header
        assert h["GAIN"] == 1.7 and "BUNIT" not in h and h["NAXIS3"] == 3
        assert h["PLANE1"] == "CR" and h["PLANE2"] == "SAT" and h["PLANE3"] == "NODATA"
        assert h["PRI_CR"] == 1 / 3  # full precision, not 0.33
        assert h["PN_CR"] == TRAINING["CR"] and h["PRI_SAT"] == by_abbr("SAT").prior
        assert h["MMXPRIOR"] is True and h["MMXHDU"] == 1 and h["MMXINPUT"] == "exp.fits"
        assert h["MMXSRC"] == str(package.source)
        w_in, w_out = WCS(src["CCD1"].header), WCS(h).celestial
        pix = np.array([[0.0, 0.0], [89.0, 69.0], [13.5, 41.25]])
        assert_allclose(w_out.all_pix2world(pix, 0), w_in.all_pix2world(pix, 0), rtol=1e-12)
        # the table is copied with its header and gets no mask
        assert isinstance(dst["CAT"], fits.BinTableHDU)
        assert dst["CAT"].header["SURVEY"] == "TEST"
        assert_allclose(dst["CAT"].data["FLUX"], np.arange(4.0))
        assert "MMXMODE" not in dst["CAT"].header
        assert dst["CCD2"].data.shape == (3, 50, 60)


def test_single_hdu_selection_and_compressed_input(package, mef, tmp_path):
    pred = Predictor(package, classes=["CR"], precision="float32")
    out = predict_file(f"{mef}[3]", pred, mode="bitmask", out_dir=tmp_path)
    assert out.name == "exp.hdu3.mask.fits"
    with fits.open(out) as hdul:
        assert len(hdul) == 2 and hdul[0].header["INSTRUME"] == "TESTCAM"
        assert hdul[1].header["EXTNAME"] == "CCD2" and hdul[1].data.shape == (50, 60)
    with fits.open(mef) as src:
        comp = fits.CompImageHDU(src["CCD1"].data, src["CCD1"].header)
        fz = tmp_path / "comp.fits.fz"
        fits.HDUList([fits.PrimaryHDU(), comp]).writeto(fz)
    assert output_path(fz) == tmp_path / "comp.mask.fits"
    assert output_path(tmp_path / "x.FITS.gz", out_dir="o").as_posix() == "o/x.mask.fits"
    out = predict_file(fz, pred, mode="binary", out_dir=tmp_path / "o")
    with fits.open(out) as hdul:
        assert hdul[1].header["EXTNAME"] == "CCD1" and hdul[1].data.shape == (2, 70, 90)


def test_existing_output_and_input_protection(package, mef, tmp_path):
    pred = Predictor(package, classes=["CR"], precision="float32")
    before = _digest(mef)
    out = predict_file(mef, pred)
    assert out == mef.with_name("exp.mask.fits")
    stamp = _digest(out)
    with pytest.raises(InputError, match="exists; pass --overwrite"):
        predict_file(mef, pred)
    assert _digest(out) == stamp
    predict_file(mef, pred, overwrite=True)
    assert _digest(mef) == before


def test_preview_png(package, mef, tmp_path):
    pred = Predictor(package, precision="float32")
    predict_file(mef, pred, mode="binary", out_dir=tmp_path, preview=True)
    import matplotlib.image as mpimg

    for name in ("exp.mask.hdu1.png", "exp.mask.hdu3.png"):  # one per image HDU
        png = mpimg.imread(tmp_path / name)
        assert png.ndim == 3 and png.shape[0] > 100


def test_preview_shows_the_raw_image_beside_the_overlay(tmp_path):
    import matplotlib.image as mpimg
    from matplotlib import colors

    from mmx.classes import by_abbr
    from mmx.serving.preview import render_preview

    image = np.random.default_rng(0).normal(100.0, 5.0, (200, 300))
    cr = np.zeros(image.shape, dtype=bool)
    cr[80:120, 130:170] = True
    png = mpimg.imread(render_preview(image, {"CR": cr}, tmp_path / "p.png"))[..., :3]
    red = np.all(np.abs(png - colors.to_rgb(by_abbr("CR").colour)) < 0.25, axis=2)
    grey = (np.ptp(png, axis=2) < 0.02) & (png.mean(axis=2) < 0.99)  # image pixels, not paper
    half = png.shape[1] // 2
    assert red[:, half:].sum() > 100 and red[:, :half].sum() == 0  # overlay on the right only
    assert grey[:, :half].sum() > 0.5 * grey[:, half:].sum() > 1000  # the raw image on the left


def test_many_inputs_one_bad(package, mef, tmp_path):
    bad = tmp_path / "bad.fits"
    bad.write_text("not a FITS file")
    other = tmp_path / "other.fits"
    shutil.copy(mef, other)
    pred = Predictor(package, classes=["CR"], precision="float32")
    seen = []
    report = predict_files([mef, bad, tmp_path / "missing.fits", other], pred,
                           out_dir=tmp_path / "out", on_error=lambda i, m: seen.append(m))
    assert [r.ok for r in report.results] == [True, False, False, True]
    assert sorted(p.name for p in report.outputs) == ["exp.mask.fits", "other.mask.fits"]
    assert len(seen) == 2  # missing entries are reported before anything runs
    assert any("bad.fits: not a readable FITS file" in m for m in seen)
    assert any("missing.fits: no such file" in m for m in seen)
    assert not (tmp_path / "out" / "bad.mask.fits").exists()


# ---------------------------------------------------------------- command line


def _run(args):
    return runner.invoke(app, ["predict", *map(str, args)])


def test_cli_writes_masks(model_dir, mef, tmp_path):
    res = _run([mef, "--model", model_dir, "--mode", "binary", "--classes", "CR,TRL",
                "--prior", "CR=1e-3", "--threshold", "TRL=0.5", "--out-dir", tmp_path / "o",
                "--precision", "float32", "--threads", "1", "--batch-size", "3"])
    assert res.exit_code == 0, res.output
    with fits.open(tmp_path / "o" / "exp.mask.fits") as hdul:
        h = hdul[1].header
        assert h["PRI_CR"] == 1e-3 and h["THR_TRL"] == 0.5 and h["NAXIS3"] == 3
        assert h["MMXSRC"] == str(model_dir) and h["MMXTTA"] == "none"
    res = _run([mef, "--model", model_dir, "--classes", "CR", "--tta", "flips",
                "--out-dir", tmp_path / "v", "--precision", "float32", "--threads", "1"])
    assert res.exit_code == 0, res.output
    assert fits.getheader(tmp_path / "v" / "exp.mask.fits", 1)["MMXTTA"] == "flips"


@pytest.mark.parametrize(("args", "message"), [
    (["--classes", "CR,XX"], "unknown contaminant class 'XX'"),
    (["--prior", "CR=0"], "prior for CR must be in (0, 1), got 0"),
    (["--prior", "CR=1.5"], "prior for CR must be in (0, 1), got 1.5"),
    (["--threshold", "TRL=1.7"], "threshold for TRL must be in [0, 1], got 1.7"),
    (["--classes", "CR", "--threshold", "TRL=0.5"], "threshold given for TRL"),
    (["--prior", "CR=0.1", "--no-prior"], "--prior (CR) and --no-prior exclude each other"),
    (["--classes", "BG"], "BG has no bit"),
    (["--tta", "rotations"], "tta must be one of none, flips, dihedral, got 'rotations'"),
])
def test_cli_option_errors(model_dir, mef, args, message):
    res = _run([mef, "--model", model_dir, *args])
    assert res.exit_code == 1
    assert f"mmx: error: {message}" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert not mef.with_name("exp.mask.fits").exists()


def test_cli_missing_model(mef, tmp_path):
    res = _run([mef, "--model", tmp_path / "nope"])
    assert res.exit_code == 1 and "no such model folder" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert not mef.with_name("exp.mask.fits").exists()


def test_cli_bad_inputs(model_dir, tmp_path):
    notfits = tmp_path / "junk.fits"
    notfits.write_bytes(b"\x00" * 100)
    table_only = tmp_path / "table.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(
        [fits.Column(name="A", format="E", array=np.ones(3))])]).writeto(table_only)
    for path, message in [(notfits, "not a readable FITS file"),
                          (table_only, "no 2-D image HDU"),
                          (tmp_path / "absent.fits", "no such file")]:
        res = _run([path, "--model", model_dir, "--classes", "CR"])
        assert res.exit_code == 1
        lines = res.stderr.strip().splitlines()
        assert lines[0].startswith("mmx: error: ") and message in lines[0], res.stderr
        assert "1 of 1 input(s) failed" in lines[-1]
        assert not list(tmp_path.glob("*.mask.fits")) and not list(tmp_path.glob(".*.part"))


def test_cli_many_inputs_one_bad(model_dir, mef, tmp_path):
    bad = tmp_path / "bad.fits"
    bad.write_text("SIMPLE = nonsense")
    other = tmp_path / "b.fits"
    shutil.copy(mef, other)
    before = _digest(mef)
    res = _run([mef, bad, other, "--model", model_dir, "--classes", "CR", "--overwrite"])
    assert res.exit_code == 1
    errors = [line for line in res.stderr.splitlines() if "bad.fits" in line]
    assert len(errors) == 1 and "not a readable FITS file" in errors[0]
    assert "1 of 3 input(s) failed; 2 mask file(s) written" in res.stderr
    assert mef.with_name("exp.mask.fits").is_file() and other.with_name("b.mask.fits").is_file()
    assert not bad.with_name("bad.mask.fits").exists()
    assert _digest(mef) == before


def test_threshold_logit_edges():
    assert logit(0.0) == -np.inf  # threshold 0 flags every valid pixel


def test_real_frame_keeps_its_header(package, real_dir, tmp_path):
    src = real_dir / "ctio4m_mosaic2_I_420s_cutout.fits"
    before = _digest(src)
    pred = Predictor(package, classes=["CR", "SAT"], precision="float32")
    out = predict_file(src, pred, mode="bitmask", out_dir=tmp_path)
    with fits.open(src) as a, fits.open(out) as b:
        assert b[0].data.shape == a[0].data.shape and b[0].data.dtype == np.dtype(">i2")
        for key in ("OBJECT", "EXPTIME", "MJD-OBS", "CTYPE1", "CRVAL1", "CRPIX2", "CD1_1"):
            assert b[0].header[key] == a[0].header[key], key
    assert _digest(src) == before
    assert not (real_dir / "ctio4m_mosaic2_I_420s_cutout.mask.fits").exists()


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (47, 2)])
def test_tiny_and_blank_images(package, rng, shape):
    pred = Predictor(package, precision="float32")
    image = (10 + rng.normal(size=shape)).astype(np.float32)
    assert pred.predict(image, mode="bitmask").array.shape == shape
    blank = np.full(shape, np.nan, dtype=np.float32)
    out = pred.predict(blank, mode="bitmask").array
    assert np.all(out == NODATA_BIT)
