"""FITS input forms, header/WCS preservation, atomic writes and clear errors."""

import gzip
import os
import shutil

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from mmx.errors import InputError
from mmx.io.fitsio import expand_inputs, is_fits_name, read_images, write_fits_atomic


def _wcs_header(ny, nx):
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [150.1, 2.2]
    w.wcs.crpix = [nx / 2, ny / 2]
    w.wcs.cd = [[-7.3e-5, 0], [0, 7.3e-5]]
    return w.to_header()


@pytest.fixture
def mef(tmp_path, rng):
    """A camera-like MEF: empty primary, two image HDUs (float32 and int16), one table."""
    primary = fits.PrimaryHDU()
    primary.header["INSTRUME"] = "TESTCAM"
    a = rng.normal(100, 5, (30, 40)).astype(">f4")
    a[3, 4] = np.nan
    a[5, 6] = np.inf
    h1 = fits.ImageHDU(a, header=_wcs_header(30, 40), name="CCD1")
    b = rng.integers(0, 1000, (20, 25)).astype(np.int16)
    b[0, 0] = -999
    h2 = fits.ImageHDU(b, name="CCD2")
    h2.header["BLANK"] = -999
    table = fits.BinTableHDU.from_columns([fits.Column(name="x", format="E", array=[1.0, 2.0])],
                                          name="CAT")
    path = tmp_path / "mef.fits"
    fits.HDUList([primary, h1, h2, table]).writeto(path)
    return path


def test_reads_every_image_hdu_as_native_float32(mef):
    images = read_images(mef)
    assert [im.index for im in images] == [1, 2]
    assert [im.name for im in images] == ["CCD1", "CCD2"]
    for im in images:
        assert im.data.dtype == np.float32 and im.data.dtype.isnative
    assert images[0].bad.sum() == 2 and np.isnan(images[0].data[5, 6])  # Inf became NaN
    assert images[1].bad[0, 0] and images[1].bad.sum() == 1  # BLANK became NaN


def test_header_and_wcs_preserved(mef):
    image = read_images(mef)[0]
    assert WCS(image.header).wcs.crval.tolist() == pytest.approx([150.1, 2.2])
    assert image.header["EXTNAME"] == "CCD1"


def test_hdu_selector_and_errors(mef):
    (only,) = read_images(f"{mef}[2]")
    assert only.index == 2 and only.data.shape == (20, 25)
    with pytest.raises(InputError, match=r"HDU 3 is not a 2-D image.*BinTableHDU"):
        read_images(f"{mef}[3]")
    with pytest.raises(InputError, match=r"HDU 9 does not exist; the file has 4 HDU"):
        read_images(f"{mef}[9]")
    with pytest.raises(InputError, match=r"HDU 0 is not a 2-D image.*NAXIS=0"):
        read_images(f"{mef}[0]")


def test_fz_and_gz_round_trip(tmp_path, mef, rng):
    data = rng.integers(0, 60000, (64, 48)).astype(np.uint16)
    fz = tmp_path / "raw.fits.fz"
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(data, name="CCD01")]).writeto(fz)
    (image,) = read_images(fz)
    np.testing.assert_array_equal(image.data, data.astype(np.float32))
    assert image.name == "CCD01"
    gz = tmp_path / "mef.fits.gz"
    with open(mef, "rb") as src, gzip.open(gz, "wb") as dst:
        shutil.copyfileobj(src, dst)
    np.testing.assert_array_equal(read_images(gz)[1].data, read_images(mef)[1].data)


def test_directory_and_list_inputs(tmp_path, mef):
    folder = tmp_path / "dir"
    folder.mkdir()
    for name in ("b.fits", "a.fits.fz", "notes.txt"):
        (folder / name).write_bytes(b"")
    specs = expand_inputs([folder])
    assert [s.path.name for s in specs] == ["a.fits.fz", "b.fits"]
    listing = tmp_path / "inputs.list"
    listing.write_text(f"# my frames\n{mef.name}[1]\n\n{mef}  # absolute\n")
    specs = expand_inputs([listing])
    assert [(s.path, s.hdu) for s in specs] == [(mef, 1), (mef, None)]
    assert str(specs[0]).endswith("mef.fits[1]")


def test_input_errors_name_the_file(tmp_path):
    with pytest.raises(InputError, match=r"nope.fits: no such file or directory"):
        expand_inputs([tmp_path / "nope.fits"])
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    with pytest.raises(InputError, match="directory holds no FITS file"):
        expand_inputs([empty_dir])
    text = tmp_path / "text.fits"
    text.write_text("this is not FITS\n" * 10)
    with pytest.raises(InputError, match=r"text.fits: not a readable FITS file"):
        read_images(text)
    empty = tmp_path / "empty.fits"
    fits.PrimaryHDU().writeto(empty)
    with pytest.raises(InputError, match=r"empty.fits: no 2-D image HDU with data"):
        read_images(empty)
    table_only = tmp_path / "table.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(
        [fits.Column(name="a", format="J", array=[1])])]).writeto(table_only)
    with pytest.raises(InputError, match=r"table.fits: no 2-D image HDU.*BinTableHDU"):
        read_images(table_only)
    empty_list = tmp_path / "x.list"
    empty_list.write_text("# nothing\n")
    with pytest.raises(InputError, match="list file names no input"):
        expand_inputs([empty_list])


def test_is_fits_name():
    assert is_fits_name("a.fits") and is_fits_name("a.FITS.fz") and is_fits_name("b.fit.gz")
    assert not is_fits_name("a.txt") and not is_fits_name("a.fz")


def test_atomic_write_never_overwrites_input_or_leaves_partial(tmp_path, mef, monkeypatch):
    before = mef.read_bytes()
    hdul = fits.HDUList([fits.PrimaryHDU(np.zeros((4, 4), np.float32))])
    with pytest.raises(InputError, match="refusing to overwrite an input"):
        write_fits_atomic(hdul, mef, overwrite=True, protect=[mef])
    assert mef.read_bytes() == before
    out = tmp_path / "out.fits"
    write_fits_atomic(hdul, out)
    with pytest.raises(InputError, match="output exists; pass --overwrite"):
        write_fits_atomic(hdul, out)

    def broken_fsync(fd):
        raise KeyboardInterrupt  # an interruption in the middle of the write

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(KeyboardInterrupt):
        write_fits_atomic(fits.HDUList([fits.PrimaryHDU(np.ones((4, 4)))]), out, overwrite=True)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir() if "out" in p.name) == ["out.fits"]
    np.testing.assert_array_equal(fits.getdata(out), 0)  # the old complete file survived


def test_name_selectors_and_bad_selector(mef):
    (ccd,) = read_images(f"{mef}[ccd2]")  # EXTNAME is case-insensitive
    assert ccd.index == 2
    assert read_images(f"{mef}[CCD1,1]")[0].index == 1
    with pytest.raises(InputError, match=r"no HDU named CCD1,2; the file has 0, CCD1,1, CCD2,1"):
        read_images(f"{mef}[CCD1,2]")
    with pytest.raises(InputError, match=r"HDU selector \[1:2\] is not valid; expected \[N\]"):
        read_images(f"{mef}[1:2]")


def test_declared_data_beyond_the_file_is_refused_before_reading(tmp_path, rng):
    path = tmp_path / "big.fits"
    fits.PrimaryHDU(rng.normal(size=(20, 30)).astype(np.float32)).writeto(path)
    raw = bytearray(path.read_bytes())
    at = raw.find(b"NAXIS2  =")
    raw[at:at + 30] = b"NAXIS2  =           1000000000"
    path.write_bytes(bytes(raw))
    with pytest.raises(InputError, match=r"big.fits\[0\]: file is truncated: the header "
                                         r"declares 120000000000 bytes of data, the file holds"):
        read_images(path)


def test_declared_size_of_scaled_integers_holds_after_their_data_are_read(tmp_path):
    from mmx.io.fitsio import check_declared_size

    path = tmp_path / "scaled.fits"  # BITPIX 16 with BSCALE, as ESO-MIDAS wrote them
    hdu = fits.PrimaryHDU(np.arange(64 * 64, dtype=np.int16).reshape(64, 64))
    hdu.header["BSCALE"], hdu.header["BZERO"] = 2.5, 3700.0
    hdu.writeto(path)
    with fits.open(path) as hdul:
        assert hdul[0].data.dtype == np.float32  # astropy now says BITPIX -32
        check_declared_size(hdul[0], path, "scaled.fits[0]")
    assert read_images(path)[0].data[0, 1] == pytest.approx(3702.5)


def test_clean_header_drops_what_astropy_cannot_write():
    from mmx.io.fitsio import clean_header

    header = fits.Header.fromstring(
        "OBJECT  = 'M31     '".ljust(80) + "BAD     = 'a\x00b     '".ljust(80)
        + "GAIN    =                  1.5".ljust(80) + "END".ljust(80))
    clean, dropped = clean_header(header)
    assert dropped == ["BAD"] and clean["OBJECT"] == "M31" and clean["GAIN"] == 1.5
    clean.tostring()  # writable
