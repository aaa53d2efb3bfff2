"""Pure functions of the accuracy benchmark (``benchmarks/accuracy.py``): no peer tool runs."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.accuracy import (
    assemble_frames,
    disagreement_windows,
    point_stats,
    saturation_plateau,
    tpr_at_purity,
)
from mmx.io.shards import Sample


def _cutout(rng, value, *, x0, y0, ccd="c1", size=8, label_bit=1):
    image = np.full((size, size), float(value), dtype=np.float32)
    labels = np.zeros((size, size), dtype=np.uint16)
    labels[0, 0] = label_bit
    ignore = np.zeros((size, size), dtype=np.uint8)
    ignore[1, 1] = 1
    record = {"instrument": "CAM", "exposure": "e0", "ccd": ccd, "x0": x0, "y0": y0,
              "sky": 100.0, "sky_noise": 5.0, "gain": 2.0, "read_noise": 3.0,
              "saturate": 6e4}
    return Sample(image, labels, ignore, record)


def test_cutouts_go_back_to_their_detector_places(rng):
    # a 3x2 grid (columns x rows) with one cell missing, given out of order
    places = [(0, 0), (8, 0), (16, 0), (0, 8), (16, 8)]
    samples = [_cutout(rng, 10 * (k + 1), x0=108 + x, y0=50 + y)
               for k, (x, y) in enumerate(places)]
    order = [4, 2, 0, 3, 1]
    frames = assemble_frames([samples[i] for i in order], rng=rng)
    assert len(frames) == 1
    f = frames[0]
    assert f.image.shape == (16, 24)
    assert f.record["contiguous"] and f.record["filler_cells"] == 1
    for k, (x, y) in enumerate(places):
        np.testing.assert_array_equal(f.image[y:y + 8, x:x + 8], 10 * (k + 1))
        assert f.labels[y, x] == 1 and f.ignore[y + 1, x + 1] == 1
        assert f.ignore[y:y + 8, x:x + 8].sum() == 1
    # the missing cell (x 8-15, y 8-15) is filler: ignored, no truth, sky-like noise
    assert f.ignore[8:, 8:16].all() and not f.labels[8:, 8:16].any()
    assert abs(float(f.image[8:, 8:16].mean()) - 100.0) < 5.0
    assert sorted(f.members) == list(range(5))


def test_single_row_gets_an_ignored_row_so_both_sides_grow(rng):
    samples = [_cutout(rng, 1, x0=0, y0=0), _cutout(rng, 2, x0=8, y0=0)]
    (f,) = assemble_frames(samples, rng=rng)
    assert f.image.shape == (16, 16)
    assert f.ignore[8:].all()


def test_unplaceable_cutouts_are_packed_and_groups_split_by_ccd(rng):
    samples = [_cutout(rng, 1, x0=0, y0=0), _cutout(rng, 2, x0=3, y0=0),  # not on a grid
               _cutout(rng, 3, x0=0, y0=0, ccd="c2")]
    frames = assemble_frames(samples, rng=rng)
    assert [len(f.members) for f in frames] == [2, 1]
    assert not frames[0].record["contiguous"]
    assert frames[0].image.shape == (16, 16)
    np.testing.assert_array_equal(frames[0].image[:8, 8:], 2.0)


def test_mixed_shapes_are_refused(rng):
    a = _cutout(rng, 1, x0=0, y0=0)
    b = _cutout(rng, 1, x0=8, y0=0, size=4)
    with pytest.raises(ValueError, match=r"shape \(4, 4\), expected \(8, 8\)"):
        assemble_frames([a, b], rng=rng)


def test_point_stats_counts_only_valid_pixels():
    truth = np.array([1, 1, 0, 0, 0, 1], bool)
    pred = np.array([1, 0, 1, 0, 0, 1], bool)
    valid = np.array([1, 1, 1, 1, 1, 0], bool)
    st = point_stats(pred, truth, valid)
    assert (st["tp"], st["fp"], st["fn"], st["tn"]) == (1, 1, 1, 2)
    assert st["tpr"] == pytest.approx(0.5)
    assert st["fpr"] == pytest.approx(1 / 3)
    assert st["purity"] == pytest.approx(0.5)
    assert np.isnan(point_stats(np.zeros(3, bool), np.zeros(3, bool))["purity"])


def test_tpr_at_purity_takes_the_best_point_reaching_the_level():
    tpr = np.array([0.0, 0.3, 0.6, 0.9, 1.0, np.nan])
    purity = np.array([np.nan, 0.99, 0.92, 0.7, 0.1, 0.5])
    assert tpr_at_purity(tpr, purity, 0.9) == pytest.approx(0.6)
    assert tpr_at_purity(tpr, purity, 0.995) == 0.0
    assert np.isnan(tpr_at_purity(np.array([np.nan]), np.array([np.nan]), 0.5))


def test_disagreement_windows_find_the_worst_places_without_overlap():
    a = np.zeros((64, 64), bool)
    b = np.zeros((64, 64), bool)
    a[2:6, 2:6] = True  # 16 px disagree near the origin
    b[40:42, 50:52] = True  # 4 px elsewhere
    wins = disagreement_windows(a, b, size=16, n=3)
    assert wins[0][2] == 16 and wins[1][2] == 4
    assert wins[0][0] <= 2 and wins[0][1] <= 2
    y, x, _ = wins[1]
    assert y <= 40 and y + 16 >= 42 and x <= 50 and x + 16 >= 52
    assert len(wins) == 2  # no window without disagreement
    with pytest.raises(ValueError, match="smaller than the window"):
        disagreement_windows(a[:8], b[:8], size=16)


def test_saturation_plateau(rng):
    image = rng.normal(100.0, 1.0, size=(32, 32))
    image[10:20, 5] = 60000.0
    image[12, 6] = 59000.0
    image[0, 0] = np.nan
    plateau = saturation_plateau(image)
    assert plateau.sum() == 11 and plateau[12, 6]
    with pytest.raises(ValueError, match="positive saturation plateau"):
        saturation_plateau(-np.ones((4, 4)))


def test_frame_names_are_plain_file_names(rng):
    # exposure names of real frames carry HDU selectors and paths: MaxiMask would read
    # "x.fits[0]" as HDU 0 of x.fits, and name its output by replacing every ".fits"
    samples = [_cutout(rng, 1, x0=0, y0=0), _cutout(rng, 2, x0=8, y0=0)]
    for s in samples:
        s.record["exposure"] = "/work/data/real/x.fits[0]"
    (f,) = assemble_frames(samples, rng=rng)
    assert f.name == "CAM-_work_data_real_x_fits_0_-c1"


def test_run_tool_reuses_outputs_only_for_the_same_frames(tmp_path):
    """A real subprocess "tool" that copies each frame; reuse must notice changed frames."""
    import sys
    from pathlib import Path

    from benchmarks.accuracy import Tool, run_tool

    copy = ("import shutil, sys, pathlib; out = pathlib.Path(sys.argv[1]); "
            "[shutil.copy(f, out / (pathlib.Path(f).stem + '.out')) for f in sys.argv[2:]]")
    tool = Tool("copy", "copy", ("CR",), {"CR": 0.5}, True,
                lambda d, fr, o: [sys.executable, "-c", copy, str(o), *map(str, fr)],
                lambda f, o: o / f"{Path(f).stem}.out")
    frames = [tmp_path / "a.fits", tmp_path / "b.fits"]
    for f in frames:
        f.write_bytes(b"first")
    work = tmp_path / "work"
    run_tool(tool, frames, work, reuse=True)
    assert (work / "copy" / "a.out").read_bytes() == b"first"
    frames[1].write_bytes(b"second")  # injected anew: the earlier outputs are stale
    run_tool(tool, frames, work, reuse=True)
    assert (work / "copy" / "b.out").read_bytes() == b"second"
    (work / "copy" / "a.out").write_bytes(b"kept")  # unchanged frames: outputs reused as they are
    run_tool(tool, frames, work, reuse=True)
    assert (work / "copy" / "a.out").read_bytes() == b"kept"


def test_reuse_needs_the_same_frames_and_the_same_command_line(tmp_path):
    import sys

    from benchmarks.accuracy import Tool, run_tool

    frame = tmp_path / "frames" / "a.fits"
    frame.parent.mkdir()
    frame.write_bytes(b"frame one")
    script = "import sys, pathlib; pathlib.Path(sys.argv[1], 'a.out').write_text(sys.argv[2])"

    def tool(option: str) -> Tool:
        return Tool("t", "t", ("CR",), {"CR": 0.5}, False,
                    lambda d, fr, o: [sys.executable, "-c", script, str(o), option],
                    lambda f, o: o / "a.out")

    work = tmp_path / "work"
    run_tool(tool("--tta none"), [frame], work, reuse=True)
    first = (work / "t" / "a.out").stat().st_mtime_ns
    run_tool(tool("--tta none"), [frame], work, reuse=True)  # same: reused
    assert (work / "t" / "a.out").stat().st_mtime_ns == first
    run_tool(tool("--tta flips"), [frame], work, reuse=True)  # another option: run again
    assert (work / "t" / "a.out").read_text() == "--tta flips"
    second = (work / "t" / "a.out").stat().st_mtime_ns
    frame.write_bytes(b"frame two")  # another frame: run again
    run_tool(tool("--tta flips"), [frame], work, reuse=True)
    assert (work / "t" / "a.out").stat().st_mtime_ns != second
