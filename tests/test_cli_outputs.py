"""The command line as astronomers meet it: version, completion, help texts, ``mmx classes``."""

from __future__ import annotations

import re

import numpy as np
import pytest
from scipy import ndimage
from typer.testing import CliRunner

from mmx import __version__
from mmx.classes import CLASSES
from mmx.cli.app import app

runner = CliRunner()


def test_version_and_completion():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"mmx {__version__}"
    assert "--install-completion" in runner.invoke(app, ["--help"]).output


@pytest.mark.parametrize("command", [["models", "list"], ["models", "promote"], ["predict"],
                                     ["classes"]])
def test_help_texts_keep_their_words_and_show_flags_as_flags(command):
    out = runner.invoke(app, [*command, "--help"], terminal_width=100).output
    assert "<bool>" not in out  # flags are flags
    if command[0] == "models":
        assert "MLflow store [default: sqlite store under the" in " ".join(out.split())
    if command == ["predict"]:
        assert re.search(r"^\s+--preview\s+Also write", out, re.M)


def test_classes_shows_nodata_and_the_thresholds_predict_uses():
    pytest.importorskip("torch")
    from mmx.serving.inference import Predictor
    from mmx.tracking.registry import resolve_model

    for tta in ("none", "dihedral"):
        result = runner.invoke(app, ["classes", "--tta", tta])
        assert result.exit_code == 0, result.output
        lines = result.output.splitlines()
        assert re.search(r"NODATA\s+8192", result.output)
        used = Predictor(resolve_model(None), tta=tta).default_thresholds()  # what predict applies
        for cls in CLASSES:
            row = next(line for line in lines
                       if re.match(rf"\s*{cls.index}\s+{cls.abbr}\s", line))
            fields = row.split()
            assert float(fields[4]) == pytest.approx(cls.threshold)  # the table's
            assert float(fields[5]) == pytest.approx(used[cls.abbr], rel=1e-2)  # the model's
    assert "and --tta dihedral (calibrated" in result.output
    bad_tta = runner.invoke(app, ["classes", "--tta", "all"])
    assert bad_tta.exit_code == 1 and "mmx: error: tta must be one of" in bad_tta.output
    table = runner.invoke(app, ["classes", "--table"])
    assert table.exit_code == 0 and "model" not in table.output.splitlines()[0]
    bad = runner.invoke(app, ["classes", "--model", "no/such/folder"])
    assert bad.exit_code == 1
    assert "mmx: error: no/such/folder: no such model folder" in bad.output


def _sip_frame(path, rng):
    """A SIP-WCS frame with a flat saturated plateau at SATURATE and a few hot pixels."""
    from astropy.io import fits
    from astropy.wcs import WCS, Sip

    image = (200 + rng.normal(0, 10, (96, 128))).astype(np.float32)
    image[40:44, 60:64] = 30000.0  # at the header's SATURATE
    image[10, 20] += 5000.0
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN-SIP", "DEC--TAN-SIP"]
    w.wcs.crval, w.wcs.crpix, w.wcs.cdelt = [10.0, 20.0], [64.0, 48.0], [-7e-5, 7e-5]
    w.sip = Sip(np.zeros((3, 3)), np.zeros((3, 3)), None, None, [64.0, 48.0])
    w.sip.a[2, 0] = 1e-6
    header = w.to_header(relax=True)
    header["SATURATE"] = 30000.0
    header["BUNIT"] = "adu"
    fits.PrimaryHDU(image, header).writeto(path)
    return image


def test_predict_clean_compress_saturate_and_cube_wcs(tmp_path, rng):
    pytest.importorskip("torch")
    from astropy.io import fits
    from astropy.wcs import WCS

    from mmx.classes import by_abbr
    from mmx.tracking.registry import release_package_dir

    src = tmp_path / "f.fits"
    image = _sip_frame(src, rng)
    model = str(release_package_dir())
    out = runner.invoke(app, ["predict", str(src), "--model", model, "--device", "cpu",
                              "--clean", "--compress", "--log", str(tmp_path / "l.jsonl")])
    assert out.exit_code == 0, out.output
    with fits.open(tmp_path / "f.mask.fits") as hdul:
        assert isinstance(hdul[1], fits.CompImageHDU)  # compressed, behind an empty primary
        flags = hdul[1].data
    assert ((flags[40:44, 60:64] & by_abbr("SAT").bit) != 0).all()  # SATURATE honoured
    with fits.open(tmp_path / "f.clean.fits") as hdul:
        cleaned = hdul[0].data
        assert hdul[0].header["MMXCLEAN"] == "CR,HP,HCL,DCL,TRL"
        assert hdul[0].header["BUNIT"] == "adu"
    defects = (flags & sum(by_abbr(a).bit for a in ("CR", "HP", "HCL", "DCL", "TRL"))) != 0
    saturated = (flags & by_abbr("SAT").bit) != 0
    np.testing.assert_array_equal(cleaned[saturated], image[saturated])  # never cleaned
    # cleaning grows flags over weaker candidates: every changed region touches a flag
    regions, n = ndimage.label(cleaned != image, structure=np.ones((3, 3), bool))
    touched = np.unique(regions[ndimage.binary_dilation(defects, np.ones((3, 3), bool))])
    assert set(range(1, n + 1)) <= set(touched.tolist())
    assert defects[10, 20] and abs(cleaned[10, 20] - 200) < 50  # the hot pixel inpainted
    cube = runner.invoke(app, ["predict", str(src), "--model", model, "--mode", "binary",
                               "--out-dir", str(tmp_path / "b"), "--log", str(tmp_path / "b.j")])
    assert cube.exit_code == 0, cube.output
    header = fits.getheader(tmp_path / "b" / "f.mask.fits", 0)
    assert header["WCSAXES"] == 2 and header["NAXIS"] == 3
    assert WCS(header, naxis=2).has_celestial  # the SIP WCS of the image axes


def test_predict_device_cuda_is_one_clear_error(tmp_path, rng):
    pytest.importorskip("torch")
    from mmx.tracking.registry import release_package_dir

    src = tmp_path / "f.fits"
    _sip_frame(src, rng)
    out = runner.invoke(app, ["predict", str(src), "--model", str(release_package_dir()),
                              "--device", "cuda"])
    assert out.exit_code == 1
    assert "mmx: error: device 'cuda': no CUDA GPU usable" in out.output
    assert not (tmp_path / "f.mask.fits").exists()
