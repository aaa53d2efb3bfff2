"""Throughput of ``mmx predict`` on a folder of frames: 1 process, N local workers, a cluster.

Writes ``--frames`` synthetic float32 frames (sky, noise, a few cosmic rays) into a temporary
folder and times the command line on them three ways: one process (``--threads`` = all
cores), ``--jobs 1`` and ``--jobs N`` (a Dask LocalCluster), and ``--scheduler`` against a
``dask scheduler`` + ``dask worker --nworkers N`` started here on 127.0.0.1. Each run's
wall time includes start-up (imports, model load, cluster start), as a user sees it; the
per-frame time is taken from the run log. Ends with the arithmetic of a DECam night.

    .venv/bin/python benchmarks/predict_scaling.py --frames 8 --size 2048 --workers 2
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from astropy.io import fits

BIN = Path(sys.executable).parent
DECAM_NIGHT_PIX = 300 * 62 * 2048 * 4096  # ~300 exposures x 62 CCDs


def _frames(folder: Path, n: int, size: int, rng: np.random.Generator) -> None:
    folder.mkdir(parents=True)
    for i in range(n):
        img = rng.normal(1000.0, 10.0, (size, size)).astype(np.float32)
        ys, xs = rng.integers(0, size, (2, size // 4))
        img[ys, xs] += 2000.0
        fits.PrimaryHDU(img).writeto(folder / f"frame{i:03d}.fits")


def _run(folder: Path, out: Path, extra: list[str]) -> dict:
    start = time.perf_counter()
    res = subprocess.run([BIN / "mmx", "predict", folder, "--out-dir", out,
                          "--log", out / "run.jsonl", *extra], capture_output=True, text=True)
    wall = time.perf_counter() - start
    if res.returncode != 0:
        raise SystemExit(res.stderr)
    per_file = [json.loads(x)["seconds"] for x in (out / "run.jsonl").read_text().splitlines()]
    return {"wall_s": wall, "median_file_s": float(np.median(per_file)), "n": len(per_file)}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    """Time the runs and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=2048, help="frame side [px]")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--model", default=None, help="--model of mmx predict")
    args = parser.parse_args()
    rng = np.random.default_rng(11)
    tmp = Path(tempfile.mkdtemp(prefix="mmx-scaling-"))
    try:
        folder = tmp / "frames"
        _frames(folder, args.frames, args.size, rng)
        model = ["--model", args.model] if args.model else []
        cores = len(os.sched_getaffinity(0))
        rows = {"1 process": _run(folder, tmp / "o1", model + ["--threads", str(cores)]),
                "--jobs 1": _run(folder, tmp / "j1", model + ["--jobs", "1"]),
                f"--jobs {args.workers}": _run(folder, tmp / "jn", model + ["--jobs",
                                                                           str(args.workers)])}
        port = _free_port()
        address = f"tcp://127.0.0.1:{port}"
        with open(tmp / "dask.log", "w") as log:
            procs = [subprocess.Popen([BIN / "dask", "scheduler", "--host", "127.0.0.1",
                                       "--port", str(port), "--no-dashboard"], stdout=log,
                                      stderr=subprocess.STDOUT)]
            procs.append(subprocess.Popen([BIN / "dask", "worker", address, "--nworkers",
                                           str(args.workers), "--nthreads", "1",
                                           "--no-dashboard"], stdout=log,
                                          stderr=subprocess.STDOUT))
            try:
                time.sleep(5)
                rows[f"scheduler, {args.workers} workers"] = _run(
                    folder, tmp / "sc", model + ["--scheduler", address])
            finally:
                for p in procs:
                    p.terminate()
                    p.wait()
        mpix = args.frames * args.size**2 / 1e6
        base = rows["1 process"]["wall_s"]
        print(f"{args.frames} frames of {args.size}x{args.size} ({mpix:.0f} Mpix), "
              f"{cores} cores")
        print(f"{'run':<24} {'wall s':>8} {'Mpix/s':>8} {'speed-up':>9} {'s/frame':>8}")
        for name, r in rows.items():
            print(f"{name:<24} {r['wall_s']:8.1f} {mpix / r['wall_s']:8.2f} "
                  f"{base / r['wall_s']:9.2f} {r['median_file_s']:8.2f}")
        rate = mpix / min(r["wall_s"] for r in rows.values()) / cores  # Mpix/s per core
        night = DECAM_NIGHT_PIX / 1e6 / rate
        print(f"DECam night ({DECAM_NIGHT_PIX / 1e9:.0f} Gpix) at {rate:.2f} Mpix/s per core: "
              f"{night / 3600:.0f} core-hours; on N nodes of 32 cores: "
              f"{night / 3600 / 32:.1f} / N hours, if the file system keeps up")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
