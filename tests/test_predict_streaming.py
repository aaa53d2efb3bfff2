"""Multi-extension files are masked one HDU at a time: same masks, bounded memory, no partials.

``mmx predict`` reads, masks and appends each HDU to a temporary file, renamed only when the
file is complete (:class:`mmx.io.fitsio.AtomicFitsWriter`).
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from mmx.errors import InputError

torch = pytest.importorskip("torch")

import mmx.serving.predict  # noqa: E402
from mmx.io.fitsio import AtomicFitsWriter, InputSpec, read_images  # noqa: E402
from mmx.model.package import load_package  # noqa: E402
from mmx.serving.inference import Predictor  # noqa: E402
from mmx.serving.predict import predict_file, predict_files  # noqa: E402
from mmx.serving.saturation import flag_saturated  # noqa: E402


@pytest.fixture(scope="module")
def predictor(tiny_package):
    return Predictor(load_package(tiny_package(2)), precision="float32", threads=1)


def _exposure(path: Path, rng: np.random.Generator, *, n: int, shape=(40, 56)) -> Path:
    """An empty primary, ``n`` CCDs (every other one tile-compressed), a table in the middle."""
    hdus: list = [fits.PrimaryHDU()]
    for k in range(n):
        data = (1000 + rng.normal(0, 12, shape)).astype(np.int16)
        data[5, 7 + k] = 30000  # a hot pixel, a different place per CCD
        kind = fits.CompImageHDU if k % 2 else fits.ImageHDU
        hdus.append(kind(data, name=f"CCD{k + 1}"))
        if k == n // 2:
            col = fits.Column("flux", "E", array=np.arange(3, dtype=np.float32))
            hdus.append(fits.BinTableHDU.from_columns([col], name="CAT"))
    hdus[1].header["SATURATE"] = 20000.0
    fits.HDUList(hdus).writeto(path)
    return path


@pytest.mark.parametrize("mode", ["bitmask", "prob8"])
def test_each_hdu_of_a_mef_is_masked_as_on_its_own(predictor, tmp_path, rng, mode):
    """HDU i of the output equals the mask of input HDU i alone, and the reference masks."""
    exposure = _exposure(tmp_path / "exp.fits", rng, n=5)
    out = predict_file(exposure, predictor, mode=mode, out_dir=tmp_path / "all")
    with fits.open(exposure) as src, fits.open(out) as got:
        assert len(got) == len(src)
        assert got[4].columns.names == ["flux"]  # the table, copied in its place
        np.testing.assert_array_equal(got[4].data["flux"], [0, 1, 2])
        for image in read_images(exposure):
            alone = predict_file(InputSpec(exposure, hdu=image.index), predictor, mode=mode,
                                 out_dir=tmp_path / "one")
            with fits.open(alone) as one:
                np.testing.assert_array_equal(got[image.index].data, one[1].data)
            assert got[image.index].header["MMXHDU"] == image.index
            assert got[image.index].header["EXTNAME"] == image.name
            if mode == "bitmask":  # the same values as masking the array directly
                writer = predictor.predict(image.data, mode=mode)
                if image.index == 1:  # header SATURATE flags SAT
                    flag_saturated(writer, image.data, 20000.0)
                np.testing.assert_array_equal(got[image.index].data, writer.array)


def _no_output(folder: Path) -> bool:
    """No mask and no temporary file (the folder may not even exist)."""
    return not folder.exists() or not [p for p in folder.iterdir()
                                       if ".mask." in p.name or p.suffix == ".part"]


def test_damaged_hdu_in_the_middle_leaves_no_partial_file(predictor, tmp_path, rng):
    exposure = _exposure(tmp_path / "exp.fits", rng, n=5)
    with fits.open(exposure) as hdul:
        start, size = hdul[2].fileinfo()["datLoc"], hdul[2].fileinfo()["datSpan"]
    raw = bytearray(exposure.read_bytes())
    raw[start:start + size] = b"\xff" * size  # CCD2: its compressed tiles are garbage
    exposure.write_bytes(bytes(raw))
    out = tmp_path / "out"
    report = predict_files([exposure], predictor, out_dir=out, log_path=False)
    (result,) = report.results
    assert result.status == "failed" and f"{exposure}[2] (CCD2)" in result.error
    assert _no_output(out)


@pytest.mark.parametrize("stop", [KeyboardInterrupt, RuntimeError])
def test_interrupt_part_way_leaves_no_partial_file(predictor, tmp_path, rng, monkeypatch,
                                                   stop):
    """A kill (SIGINT/SIGTERM arrive as KeyboardInterrupt) or a defect at the third CCD."""
    exposure = _exposure(tmp_path / "exp.fits", rng, n=5)
    out = tmp_path / "out"
    out.mkdir()
    real = mmx.serving.predict.read_image
    seen = []

    def failing(spec, hdul, index):
        seen.append(index)
        if len(seen) == 3:
            raise stop("stopped part-way")
        return real(spec, hdul, index)

    monkeypatch.setattr(mmx.serving.predict, "read_image", failing)
    with pytest.raises(stop, match="stopped part-way"):
        predict_file(exposure, predictor, out_dir=out, clean=True, preview=True)
    assert _no_output(out) and not list(out.iterdir())  # no mask, cleaned image or preview


def _peak_bytes(predictor, path: Path, out: Path) -> int:
    tracemalloc.start()
    try:
        predict_file(path, predictor, out_dir=out)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_the_number_of_hdus(predictor, tmp_path, rng):
    """Peak memory of arrays for 12 CCDs stays near that of 1 (numpy reports to tracemalloc)."""
    shape = (300, 300)  # 0.36 MB float32: large against the fixed costs
    one = _exposure(tmp_path / "one.fits", rng, n=1, shape=shape)
    many = _exposure(tmp_path / "many.fits", rng, n=12, shape=shape)
    _peak_bytes(predictor, one, tmp_path / "warm")  # first-call allocations
    base = _peak_bytes(predictor, one, tmp_path / "a")
    peak = _peak_bytes(predictor, many, tmp_path / "b")
    per_ccd = shape[0] * shape[1] * (2 + 4 + 2)  # raw int16, float32 image, int16 mask
    assert peak < base + 2 * per_ccd, (base, peak)  # all 12 held at once: base + 11 per_ccd


def test_writer_commits_complete_files_only(tmp_path):
    path = tmp_path / "x.fits"
    with pytest.raises(InputError, match="stopped"), AtomicFitsWriter(path) as writer:
        writer.append(fits.PrimaryHDU())
        writer.append(fits.ImageHDU(np.ones((3, 4), dtype=np.int32), name="A"))
        raise InputError("stopped")
    assert list(tmp_path.iterdir()) == []
    hdus = [fits.PrimaryHDU(), fits.ImageHDU(np.ones((3, 4), dtype=np.int32), name="A"),
            fits.CompImageHDU(np.arange(12, dtype=np.int32).reshape(3, 4))]
    with AtomicFitsWriter(path) as writer:
        for hdu in hdus:
            writer.append(hdu)
        assert not path.exists()
        writer.commit()
    fits.HDUList(hdus).writeto(tmp_path / "ref.fits", output_verify="fix+ignore")
    assert path.read_bytes() == (tmp_path / "ref.fits").read_bytes()  # as astropy writes it


def test_reading_and_writing_overlap_masking_with_the_same_outputs(predictor, tmp_path, rng,
                                                                   monkeypatch):
    """HDUs are read in the read-ahead thread and written in the writer thread; the files
    hold what a run in the calling thread alone writes (``MMX_OVERLAP=0``)."""
    import threading

    exposure = _exposure(tmp_path / "exp.fits", rng, n=4)
    threads: dict[str, set] = {"read": set(), "write": set()}
    read, append = mmx.serving.predict.read_image, mmx.serving.predict._append_images

    def reading(*args, **kwargs):
        threads["read"].add(threading.current_thread().name)
        return read(*args, **kwargs)

    def appending(*args, **kwargs):
        threads["write"].add(threading.current_thread().name)
        return append(*args, **kwargs)

    monkeypatch.setattr(mmx.serving.predict, "read_image", reading)
    monkeypatch.setattr(mmx.serving.predict, "_append_images", appending)
    together = predict_file(exposure, predictor, out_dir=tmp_path / "overlap", clean=True)
    assert threads == {"read": {"mmx-read-ahead"}, "write": {"mmx-write_0"}}
    monkeypatch.setenv("MMX_OVERLAP", "0")
    threads = {"read": set(), "write": set()}
    alone = predict_file(exposure, predictor, out_dir=tmp_path / "serial", clean=True)
    assert threads == {"read": {"MainThread"}, "write": {"MainThread"}}
    assert alone.name == together.name
    for name in (together.name, together.name.replace(".mask.", ".clean.")):
        with fits.open(tmp_path / "overlap" / name) as a, \
                fits.open(tmp_path / "serial" / name) as b:
            assert len(a) == len(b)
            for ha, hb in zip(a, b, strict=True):  # the same HDUs but for the time stamp
                ha.header.remove("MMXDATE", ignore_missing=True)
                hb.header.remove("MMXDATE", ignore_missing=True)
                assert ha.header.tostring() == hb.header.tostring(), name
                if ha.data is None:
                    assert hb.data is None
                elif isinstance(ha, fits.BinTableHDU):
                    assert ha.data.tobytes() == hb.data.tobytes()
                else:
                    np.testing.assert_array_equal(ha.data, hb.data)


def test_a_batch_prefetches_the_next_file_while_masking_one(predictor, tmp_path, rng,
                                                            monkeypatch):
    files = [_exposure(tmp_path / f"f{k}.fits", rng, n=1) for k in range(3)]
    events: list[str] = []
    monkeypatch.setattr(mmx.serving.predict, "prefetch_file",
                        lambda path: events.append(f"prefetch {Path(path).name}"))
    run_one = mmx.serving.predict.run_one

    def running(spec, *args, **kwargs):
        events.append(f"mask {spec.path.name}")
        return run_one(spec, *args, **kwargs)

    monkeypatch.setattr(mmx.serving.predict, "run_one", running)
    report = predict_files(files, predictor, out_dir=tmp_path / "out", progress=False)
    assert [r.status for r in report.results] == ["ok"] * 3
    assert events == ["prefetch f1.fits", "mask f0.fits", "prefetch f2.fits", "mask f1.fits",
                      "mask f2.fits"]
