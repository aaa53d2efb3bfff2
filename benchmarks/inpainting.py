"""Cleaned images against truth: ``mmx predict --clean``, deepCR and astroscrappy.

    .venv/bin/python benchmarks/inpainting.py [--model mmx/release] [--deepcr-venv DIR]

The held-out real skies of ``benchmarks/real_skies.py`` (cleaned by the clean stage, then
given contaminants by :func:`mmx.synthesis.synthesize_sample`, ``--draws`` per frame, the
same seeds) are cleaned by each tool at its defaults, one process per tool over the whole
folder; the clean frame before injection is the truth. Per tool, pooled over the images:

* on the pixels of each injected class (CR; HP, HCL, DCL, TRL which mmx also replaces):
  the median of ``|cleaned - truth| / sigma`` and the share left more than 3 sigma off
  (residue), with ``sigma`` the frame's sky-noise map;
* on pixels with nothing injected, more than 2 px from any contaminant: the share moved
  more than 3 sigma (damage to good pixels);
* the input itself as the first row (nothing cleaned).

Ignored pixels (unknown truth) are left out. Report: ``OUT/inpainting.md`` and a PNG of
the window with the most injected cosmic-ray pixels. Peers: as in ``accuracy.py``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(ROOT))

from benchmarks.accuracy import OUT, REAL  # noqa: E402
from benchmarks.real_skies import (  # noqa: E402
    SKY_FRAMES,
    Job,
    _params,
    _synthesis_config,
    frame_sample,
    prepare,
    read_split,
)
from benchmarks.toolrun import DEEPCR_PACKAGES, ensure_venv, measure, quiet_env  # noqa: E402

log = logging.getLogger("mmx.bench.inpainting")

CLASSES = ("CR", "HP", "HCL", "DCL", "TRL")
RUNNER = ROOT / "benchmarks" / "peer_runners.py"


def score(cleaned: np.ndarray, truth: np.ndarray, labels: np.ndarray, ignore: np.ndarray,
          sigma: np.ndarray) -> dict[str, np.ndarray]:
    """Normalised errors ``|cleaned - truth| / sigma`` per injected class and on good pixels.

    ``good`` pixels hold no class but BG/BBG/SAT and are more than 2 px from any that does.
    """
    from mmx.classes import label_bit

    err = np.abs(cleaned.astype(np.float64) - truth) / np.maximum(sigma, 1e-12)
    valid = ~ignore.astype(bool)
    out = {abbr: err[valid & ((labels & label_bit(abbr)) > 0)] for abbr in CLASSES}
    sky = label_bit("BG") | label_bit("BBG") | label_bit("SAT")
    touched = ndimage.binary_dilation((labels & ~np.uint16(sky)) > 0, iterations=2)
    out["good"] = err[valid & ~touched]
    return out


def _summary(errors: list[dict[str, np.ndarray]]) -> dict[str, tuple[int, float, float]]:
    """``class -> (pixels, median error [sigma], share above 3 sigma)`` pooled over images."""
    out = {}
    for key in (*CLASSES, "good"):
        e = np.concatenate([d[key] for d in errors]) if errors else np.zeros(0)
        out[key] = (e.size, float(np.median(e)) if e.size else float("nan"),
                    float(np.mean(e > 3.0)) if e.size else float("nan"))
    return out


def _tools(args) -> dict[str, tuple[list[str], str]]:
    """``key -> (command prefix taking frames, cleaned-file suffix)`` of each available tool."""
    mmx = str(Path(sys.executable).parent / "mmx")
    tools = {"mmx": ([mmx, "predict", "--model", args.model, "--clean", "--overwrite",
                      "--out-dir"], ".clean.fits")}
    try:
        import astroscrappy  # noqa: F401

        tools["astroscrappy"] = ([sys.executable, str(RUNNER), "astroscrappy", "--cleaned",
                                  "--out-dir"], ".astroscrappy.clean.fits")
    except ImportError:
        log.warning("astroscrappy not importable in mmx's venv: skipped")
    deepcr = ensure_venv("deepCR", args.deepcr_venv or args.envs / "deepcr",
                         packages=DEEPCR_PACKAGES, install=not args.no_install,
                         probe="from deepCR import deepCR; import astropy")
    if deepcr.python is not None:
        for model in ("ACS-WFC", "decam"):
            tools[f"deepCR {model}"] = ([str(deepcr.python), str(RUNNER), "deepcr", "--model",
                                         model, "--cleaned", "--out-dir"],
                                        f".deepcr-{model}.clean.fits")
    return tools


def _cleaned(work: Path, key: str, job: Job, suffix: str) -> np.ndarray:
    """The tool's cleaned image of a job (first HDU with data; NaN no-data as 0)."""
    from astropy.io import fits

    path = work / key.replace(" ", "-") / f"{job.path.name.removesuffix('.fits')}{suffix}"
    with fits.open(path) as hdul:
        data = next(np.asarray(h.data, np.float64) for h in hdul if h.data is not None)
    return np.nan_to_num(data)


def _plot(panels: list[tuple[str, np.ndarray]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from mmx.io.display import asinh_stretch, save_png

    ref = panels[1][1]
    lo, hi = np.percentile(ref, [1, 99.5])
    fig = Figure(figsize=(3 * len(panels), 3.3))
    for k, (title, image) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), k + 1)
        shown = asinh_stretch(np.clip(image, lo, hi), low=0.0, high=100.0)
        ax.imshow(shown, origin="lower", cmap="gray", interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.set_axis_off()
    return save_png(fig, path, dpi=100)


def main(argv: list[str] | None = None) -> int:
    """Command line: clean the held-out real skies with each tool, report against truth."""
    from astropy.io import fits

    from mmx.model.hardware import cpu_info

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "mmx" / "release"),
                        help="mmx model folder or models:/NAME@ALIAS (default: the release)")
    parser.add_argument("--real", type=Path, default=REAL, help="folder of the real frames")
    parser.add_argument("--draws", type=int, default=2)
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--envs", type=Path, default=ROOT / "benchmarks" / ".envs")
    parser.add_argument("--deepcr-venv", type=Path)
    parser.add_argument("--no-install", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not args.real.is_dir():
        raise SystemExit(f"{args.real}: no real frames (pass --real DIR)")
    work = args.out / "inpainting-work"
    split = read_split()
    names = [n for n in SKY_FRAMES if n in split.holdout and (args.real / n).is_file()]
    params = _params()
    frames, jobs = prepare(args.real, work / "frames", names=names, draws=args.draws,
                           seed=args.seed, params=params)
    jobs = [j for j in jobs if j.draw is not None and "CR" in j.injected]
    clean_config, _ = _synthesis_config(params)
    truths = {f.key: frame_sample(f.ccd, config=clean_config, record={}).image
              + np.float32(f.ccd.meta["bias"]) for f in frames}
    tools = _tools(args)
    usage, errors = {}, {"input": []}
    for key, (command, _) in tools.items():
        out = work / key.replace(" ", "-")
        out.mkdir(parents=True, exist_ok=True)
        log.info("%s: cleaning %d images", key, len(jobs))
        usage[key] = measure([*command, str(out), *[str(j.path) for j in jobs]],
                             env=quiet_env())
        errors[key] = []
    best: tuple[int, Job | None, tuple[int, int]] = (-1, None, (0, 0))
    for job in jobs:
        ys, xs = job.region
        truth = truths[job.frame.key]
        sigma = job.frame.ccd.noise
        image = np.asarray(fits.getdata(job.path), dtype=np.float64)[ys, xs]
        errors["input"].append(score(image, truth, job.labels, job.ignore, sigma))
        for key, (_, suffix) in tools.items():
            cleaned = _cleaned(work, key, job, suffix)
            errors[key].append(score(cleaned[ys, xs], truth, job.labels,
                                     job.ignore, sigma))
        cr = ndimage.uniform_filter((job.labels & 1).astype(float), 48)
        y, x = np.unravel_index(int(np.argmax(cr)), cr.shape)
        if cr[y, x] > best[0]:
            best = (cr[y, x], job, (y, x))
    rows = ["| tool | " + " | ".join(f"{c} median / >3σ" for c in CLASSES)
            + " | good pixels >3σ | CPU-s |", "|---" * (len(CLASSES) + 3) + "|"]
    for key, errs in errors.items():
        s = _summary(errs)
        cells = [f"{s[c][1]:.2f} / {s[c][2]:.1%}" for c in CLASSES]
        cpu = f"{usage[key].cpu:.1f}" if key in usage else "—"
        rows.append(f"| {'nothing cleaned (input)' if key == 'input' else key} | "
                    + " | ".join(cells) + f" | {s['good'][2]:.3%} | {cpu} |")
    pixels = _summary(errors["input"])
    md = ["# Cleaned images against truth (held-out real skies)", "",
          f"Written by `benchmarks/inpainting.py` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on "
          f"{cpu_info().describe()}; load average {os.getloadavg()[0]:.2f}. mmx model: "
          f"`{args.model}`.", "",
          f"{len(jobs)} images with injected cosmic rays ({len(frames)} held-out frames x "
          f"{args.draws} draws, seed {args.seed}); pixels scored: "
          + ", ".join(f"{c} {pixels[c][0]}" for c in (*CLASSES, "good")) + ".", "",
          "Error = |cleaned - truth| / sky sigma. deepCR and astroscrappy clean cosmic rays "
          "only; mmx replaces CR, HP, HCL, DCL and TRL pixels.", "", *rows, ""]
    if best[1] is not None:
        job, (y, x) = best[1], best[2]
        ys, xs = job.region
        win = (slice(max(y - 40, 0), y + 40), slice(max(x - 40, 0), x + 40))
        image = np.asarray(fits.getdata(job.path), np.float64)[ys, xs]
        panels = [("input", image[win]), ("truth", truths[job.frame.key][win])]
        for key, (_, suffix) in tools.items():
            panels.append((key, _cleaned(work, key, job, suffix)[ys, xs][win]))
        png = _plot(panels, args.out / "inpainting.png")
        md += [f"![the window with most injected CR pixels, `{job.path.name}`]({png.name})", ""]
    report = args.out / "inpainting.md"
    report.write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
