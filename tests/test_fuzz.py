"""Fuzzing ``mmx predict`` with damaged FITS files: never a traceback, never a partial file.

Each example takes a small valid multi-extension file and applies one of the mutations of
:data:`KINDS` (truncation, flipped bytes, bad BITPIX/NAXIS, non-ASCII cards, odd pixel
types and shapes, compression, junk...). Hypothesis draws the kind and the seed of a
``numpy.random.Generator`` that places the damage, so every failing example replays from
its two numbers. Properties, for every input:

* the result is a mask file that opens and verifies cleanly, or an ``InputError`` whose
  message names the input file (never another exception, never "internal error");
* nothing else is left in the output folder (no ``.part``, no mask on failure);
* the input is byte-identical afterwards.

The default run tries a small budget with a fixed derandomised sequence and no example
database (CI); ``-m slow`` tries many more, and feeds 1000 mutated inputs to the command
line in batches of 50.
"""

from __future__ import annotations

import gzip
import hashlib
import re
import tempfile
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from mmx.classes import CLASSES
from mmx.errors import InputError

torch = pytest.importorskip("torch")
nets = pytest.importorskip("mmx.model.nets")

from mmx.cli.app import app  # noqa: E402
from mmx.model.package import ModelMeta, load_package, save_package  # noqa: E402
from mmx.serving.inference import Predictor  # noqa: E402
from mmx.serving.predict import options_fingerprint, predict_file  # noqa: E402

_COMMON = {"database": None, "derandomize": True, "deadline": None,
           "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]}
FAST = settings(max_examples=40, **_COMMON)
SLOW = settings(max_examples=600, **_COMMON)

KINDS = (
    "valid", "truncate", "truncate_header", "flip_header", "flip_data", "no_end", "bitpix",
    "naxis", "naxisn_zero", "naxisn_huge", "all_nan", "all_inf", "constant", "huge",
    "blank", "bscale_bzero", "dtype", "tiny_shape", "cube", "one_d", "four_d", "table_only",
    "empty_primary", "duplicate_extname", "fz", "gz", "corrupt_gz", "empty_file", "text",
    "random_bytes", "directory", "nonascii_card", "nul_card", "bad_card_value",
    "long_header_junk", "zero_padding", "negative_naxis", "primary_image",
)


def _base_hdus(rng: np.random.Generator) -> list:
    sci = (100 + rng.normal(0, 5, (20, 26))).astype(np.float32)
    sci[2, 3] = 900.0
    primary = fits.PrimaryHDU()
    primary.header["OBJECT"] = "FIELD-7"
    primary.header["OBSERVER"] = "somebody"
    img = fits.ImageHDU(sci, name="SCI")
    img.header["GAIN"] = (1.5, "e-/ADU")
    img.header["FILTER"] = "r"
    dq = fits.ImageHDU(np.zeros((20, 26), np.int16), name="DQ")
    return [primary, img, dq]


def _card_offset(raw: bytes, key: str) -> int:
    return raw.find(key.ljust(8).encode()[:8] + b"=")


def _set_card(raw: bytearray, key: str, value: str) -> bytearray:
    at = _card_offset(bytes(raw), key)
    if at >= 0:
        card = f"{key:<8}= {value:>20}".encode()[:80].ljust(80)
        raw[at:at + 80] = card
    return raw


def make_input(kind: str, seed: int, folder: Path) -> Path:
    """Write one mutated input of ``kind`` into ``folder`` (damage placed by ``seed``)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"in_{kind}_{seed}.fits"
    hdus = _base_hdus(rng)
    if kind == "all_nan":
        hdus[1].data[:] = np.nan
    elif kind == "all_inf":
        hdus[1].data[:] = rng.choice([np.inf, -np.inf])
    elif kind == "constant":
        hdus[1].data[:] = rng.normal()
    elif kind == "huge":
        hdus[1].data[:] = rng.choice([3e38, -3e38, 1e30])
    elif kind == "blank":
        data = rng.integers(-100, 100, (20, 26)).astype(np.int16)
        hdus[1] = fits.ImageHDU(data, name="SCI")
        hdus[1].header["BLANK"] = int(rng.choice([-100, 0, 5, 32767]))
    elif kind == "bscale_bzero":
        data = rng.integers(0, 60000, (20, 26)).astype(np.uint16)
        hdus[1] = fits.ImageHDU(data, name="SCI")
        hdus[1].header["BSCALE"] = float(rng.choice([1.0, 0.5, 1e-30, 1e30]))
    elif kind == "dtype":
        dtype = rng.choice(["u1", "i2", "i4", "i8", "u2", "u4", "f8", ">f4", ">i2"])
        hdus[1] = fits.ImageHDU((rng.normal(100, 5, (20, 26))).astype(dtype), name="SCI")
    elif kind == "tiny_shape":
        shape = [(1, 1), (1, 37), (29, 1), (2, 2)][int(rng.integers(4))]
        hdus[1] = fits.ImageHDU(rng.normal(size=shape).astype(np.float32), name="SCI")
    elif kind == "cube":
        hdus[1] = fits.ImageHDU(rng.normal(size=(3, 8, 9)).astype(np.float32), name="SCI")
    elif kind == "one_d":
        hdus[1] = fits.ImageHDU(rng.normal(size=40).astype(np.float32), name="SCI")
    elif kind == "four_d":
        hdus[1] = fits.ImageHDU(rng.normal(size=(1, 2, 5, 6)).astype(np.float32), name="SCI")
    elif kind == "table_only":
        hdus = [hdus[0], fits.BinTableHDU.from_columns(
            [fits.Column(name="F", format="E", array=rng.normal(size=5))])]
    elif kind == "empty_primary":
        hdus = [hdus[0]]
    elif kind == "duplicate_extname":
        hdus.append(fits.ImageHDU(hdus[1].data.copy(), name="SCI"))
    elif kind == "primary_image":
        hdus = [fits.PrimaryHDU(hdus[1].data)]
    if kind == "fz":
        path = path.with_suffix(".fits.fz")
        hdus[1] = fits.CompImageHDU(hdus[1].data, hdus[1].header)
    fits.HDUList(hdus).writeto(path)
    raw = bytearray(path.read_bytes())
    header_end = raw.find(b"END" + b" " * 77, 2880) + 80  # end of the SCI header
    if kind == "truncate":
        raw = raw[:int(rng.integers(1, len(raw)))]
    elif kind == "truncate_header":
        raw = raw[:int(rng.integers(1, 2880))]
    elif kind == "flip_header":
        for _ in range(int(rng.integers(1, 6))):
            raw[int(rng.integers(0, header_end))] = int(rng.integers(0, 256))
    elif kind == "flip_data":
        for _ in range(int(rng.integers(1, 50))):
            raw[int(rng.integers(header_end, len(raw)))] = int(rng.integers(0, 256))
    elif kind == "no_end":
        at = raw.find(b"END" + b" " * 77)
        raw[at:at + 3] = b"   "
    elif kind == "bitpix":
        raw = _set_card(raw, "BITPIX", str(rng.choice([7, 12, 0, -16, 99, -128, 64])))
    elif kind == "naxis":
        raw = _set_card(raw, "NAXIS", str(int(rng.choice([0, 1, 3, 5, 1000]))))
    elif kind == "naxisn_zero":
        raw = _set_card(raw, str(rng.choice(["NAXIS1", "NAXIS2"])), "0")
    elif kind == "naxisn_huge":
        raw = _set_card(raw, str(rng.choice(["NAXIS1", "NAXIS2"])), "2000000000")
    elif kind == "negative_naxis":
        raw = _set_card(raw, "NAXIS1", "-5")
    elif kind in ("nonascii_card", "nul_card", "bad_card_value"):
        key = str(rng.choice(["OBJECT", "OBSERVER", "FILTER", "GAIN"]))
        at = _card_offset(bytes(raw), key)
        pos = at + 11 + int(rng.integers(0, 8))
        junk = {"nonascii_card": bytes([int(rng.integers(128, 256))]), "nul_card": b"\x00",
                "bad_card_value": b"'unclosed ("}[kind]
        raw[pos:pos + len(junk)] = junk
    elif kind == "long_header_junk":
        raw[80 * 5:80 * 6] = bytes(rng.integers(32, 127, 80, dtype=np.uint8))
    elif kind == "zero_padding":
        raw += b"\x00" * int(rng.integers(1, 5000))
    elif kind == "gz":
        path = path.with_suffix(".fits.gz")
        raw = bytearray(gzip.compress(bytes(raw), mtime=0))
        Path(str(path).removesuffix(".gz")).unlink()
    elif kind == "corrupt_gz":
        path.unlink()
        path = path.with_suffix(".fits.gz")
        raw = bytearray(gzip.compress(bytes(raw), mtime=0))
        raw = raw[:int(rng.integers(10, len(raw)))]
    elif kind == "empty_file":
        raw = bytearray()
    elif kind == "text":
        raw = bytearray(b"this is not FITS\n" * int(rng.integers(1, 400)))
    elif kind == "random_bytes":
        raw = bytearray(rng.integers(0, 256, int(rng.integers(1, 9000)), dtype=np.uint8))
    if kind == "directory":
        path.unlink()
        path.mkdir()
        (path / "inner.txt").write_text("a folder named like a FITS file")
        return path
    path.write_bytes(bytes(raw))
    return path


def _digest(path: Path) -> str:
    if path.is_dir():
        return "dir"
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    torch.manual_seed(3)
    kwargs = {"widths": [4, 8], "convs_per_level": 1}
    net = nets.build_network("unet", n_classes=len(CLASSES), **kwargs).eval()
    meta = ModelMeta(architecture="unet", arch_kwargs=kwargs, tile=32,
                     margin=nets.receptive_field_margin(net),
                     training_priors={c.abbr: c.maximask_prior for c in CLASSES})
    folder = save_package(net, meta, tmp_path_factory.mktemp("model") / "tiny")
    return Predictor(load_package(folder), classes=["CR", "SAT"], precision="float32",
                     threads=1)


def check_one(predictor, kind: str, seed: int, root: Path) -> str:
    """Run one mutated input through ``predict_file``; assert the properties; say what came."""
    root = Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=root))  # hypothesis replays examples
    folder, out_dir = root / "in", root / "out"
    path = make_input(kind, seed, folder)
    before = _digest(path)
    fp = options_fingerprint(predictor, mode="bitmask")
    try:
        out = predict_file(path, predictor, out_dir=out_dir, fingerprint=fp)
    except InputError as exc:
        message = str(exc)
        assert path.name in message, f"{kind}/{seed}: error does not name the file: {message}"
        assert "internal error" not in message
        assert "\n" not in message
        leftovers = list(out_dir.iterdir()) if out_dir.exists() else []
        assert leftovers == [], f"{kind}/{seed}: left {leftovers} after an error"
        outcome = "error"
    else:
        assert [p.name for p in out_dir.iterdir()] == [out.name]
        with fits.open(out) as hdul:
            hdul.verify("exception")  # a clean file: no card astropy would warn about
            for hdu in hdul:
                _ = hdu.data
            assert hdul[0].header["MMXFPRNT"] == fp
        outcome = "mask"
    assert _digest(path) == before, f"{kind}/{seed}: the input was modified"
    return outcome


@FAST
@given(kind=st.sampled_from(KINDS), seed=st.integers(0, 2**32 - 1))
def test_fuzz_inputs(predictor, tmp_path, kind, seed):
    check_one(predictor, kind, seed, tmp_path)


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_once(predictor, tmp_path, kind):
    """Each mutation kind at least once in the default run, whatever hypothesis draws."""
    outcome = check_one(predictor, kind, 7, tmp_path)
    if kind in ("valid", "all_nan", "constant", "dtype", "fz", "gz", "nonascii_card",
                "nul_card", "duplicate_extname", "primary_image", "blank"):
        assert outcome == "mask", kind
    if kind in ("empty_file", "text", "directory", "table_only", "empty_primary",
                "naxisn_zero", "corrupt_gz", "one_d", "cube"):
        assert outcome == "error", kind


def test_damaged_card_is_dropped_and_noted(predictor, tmp_path):
    path = make_input("nul_card", 0, tmp_path / "in")  # a NUL byte in the GAIN card
    out = predict_file(path, predictor, out_dir=tmp_path / "out")
    with fits.open(out) as hdul:
        hdul.verify("exception")
        notes = " ".join(str(c) for h in hdul for c in h.header.get("COMMENT", []))
    assert "mmx dropped 1 unreadable input card(s): GAIN" in notes


@pytest.mark.slow
@SLOW
@given(kind=st.sampled_from(KINDS), seed=st.integers(0, 2**32 - 1))
def test_fuzz_inputs_long(predictor, tmp_path, kind, seed):
    check_one(predictor, kind, seed, tmp_path)


@pytest.mark.slow
def test_thousand_inputs_through_the_command_line(tmp_path, predictor):
    """1000 mutated inputs, 50 per run: 0 tracebacks, every error line names its file."""
    model = predictor.package.source
    rng = np.random.default_rng(2024)
    runner = CliRunner()
    n_masks = n_errors = 0
    for batch in range(20):
        folder = tmp_path / f"batch{batch}"
        inputs = [make_input(str(rng.choice(KINDS)), int(rng.integers(2**31)), folder / "in")
                  for _ in range(50)]
        digests = {p: _digest(p) for p in inputs}
        res = runner.invoke(app, ["predict", *map(str, inputs), "--model", model,
                                  "--classes", "CR", "--out-dir", str(folder / "out"),
                                  "--threads", "1"])
        assert res.exit_code in (0, 1) and res.exception is None or isinstance(
            res.exception, SystemExit), res.output
        assert "Traceback" not in res.stderr
        errors = [x for x in res.stderr.splitlines() if x.startswith("mmx: error: ")][:-1]
        for line in errors:
            assert re.search(r"in_\w+?_\d+\.fits", line), line
            assert "internal error" not in line
        n_errors += len(errors)
        n_masks += len(list((folder / "out").glob("*.mask.fits")))
        assert not list((folder / "out").glob(".*.part"))
        assert all(_digest(p) == d for p, d in digests.items())
    print(f"1000 mutated inputs: {n_masks} masks, {n_errors} errors naming their file")
    assert n_masks + n_errors == 1000
