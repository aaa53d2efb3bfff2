"""Speed and memory of ``mmx predict`` on one large frame, side by side with MaxiMask.

Each tool runs as a separate process (as users run it), launched through a small wrapper
process that reports the tool's wall time, CPU seconds (user + system) and peak resident
memory from ``resource.getrusage(RUSAGE_CHILDREN)``. The frame is a seeded synthetic
float32 image (sky, noise, stars, cosmic rays, a trail, a hot column; NAXIS1 x NAXIS2 =
2048 x 4096 by default); speed does not depend on the model's weights, so without
``--model`` a random-weight model of the default compact architecture is built.

MaxiMask (``pip install maximask`` in a separate venv; it pulls TensorFlow) runs on a copy
of the same frame when ``--maximask-venv`` points to that venv, in its single bit-mask
mode, as mmx does by default; it is skipped with a note when the venv is absent.

It first prints the machine (CPU model, vector extensions, native bf16: ``mmx.model.hardware``)
and the arithmetic path ``auto`` takes there (:func:`mmx.serving.runtimes.choose_path`), then times
start-up on its own: ``mmx predict`` on a 64x64 frame through ``models:/mmx@production`` of
a temporary sqlite store (first call fills the model cache, then warm calls), through a
model folder, through the registry on ONNX Runtime (the path ``auto`` takes without native
bf16, which on a cached export never imports torch), and ``import torch`` alone.
``--paths`` also runs the frame once per forced path (PyTorch float32/bfloat16, ONNX
Runtime float32/int8). ``--mef N`` measures peak memory on an N-CCD exposure of the frame's
size, with and without the overlap of reading, masking and writing (``MMX_OVERLAP=0``).

``--max-isa avx2`` limits oneDNN, which runs both tools' convolutions, to AVX2: a
stand-in for an AVX2 machine without native bf16 (mmx then runs its PyTorch float32 path;
ONNX Runtime, the path ``auto`` takes on such a machine, cannot be limited this way).

``--ablation`` additionally times the :class:`mmx.serving.inference.Predictor` in this process
with each CPU optimisation switched off in turn, to show what each step buys.

Run ``python benchmarks/predict_speed.py --help``; see ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(ROOT))

from benchmarks.toolrun import maximask_command, measure, quiet_env  # noqa: E402

__all__ = ["make_frame", "make_model", "measure", "main"]

log = logging.getLogger("benchmarks.predict_speed")


def make_frame(path: Path, *, shape: tuple[int, int] = (4096, 2048), seed: int = 7) -> Path:
    """Write a synthetic float32 frame of ``shape`` (rows, columns) to ``path``."""
    from astropy.io import fits

    rng = np.random.default_rng(seed)
    h, w = shape
    image = rng.normal(1000.0, 12.0, size=shape).astype(np.float32)
    yy, xx = np.mgrid[-8:9, -8:9]
    psf = np.exp(-(xx**2 + yy**2) / (2 * 1.8**2)).astype(np.float32)
    for _ in range(400):  # stars
        y, x = rng.integers(10, h - 10), rng.integers(10, w - 10)
        image[y - 8:y + 9, x - 8:x + 9] += psf * rng.uniform(50, 20000)
    for _ in range(300):  # cosmic rays: short random walks
        y, x = rng.integers(0, h), rng.integers(0, w)
        for _ in range(rng.integers(1, 8)):
            image[y % h, x % w] += rng.uniform(300, 3000)
            y, x = y + rng.integers(-1, 2), x + rng.integers(-1, 2)
    image[:, w // 3] += 400.0  # hot column
    t = np.arange(w)
    image[(h // 5 + t // 3) % h, t] += 150.0  # faint trail
    header = fits.Header({"OBJECT": "predict_speed synthetic frame"})
    fits.PrimaryHDU(image, header).writeto(path, overwrite=True)
    return path


def make_model(folder: Path, *, tile: int = 512) -> Path:
    """Save a random-weight model of the default compact architecture (``unet``)."""
    import torch

    from mmx.classes import CLASSES
    from mmx.model.nets import build_network, receptive_field_margin
    from mmx.model.package import ModelMeta, save_package

    torch.manual_seed(0)
    net = build_network("unet", n_classes=len(CLASSES)).eval()
    meta = ModelMeta(architecture="unet", arch_kwargs={},
                     training_priors={c.abbr: c.maximask_prior for c in CLASSES},
                     tile=tile, margin=receptive_field_margin(net),
                     provenance={"note": "random weights, for speed measurements only"})
    return save_package(net, meta, folder)


def _ablation(frame: Path, model: Path, *, threads: int | None, batch_size: int) -> None:
    import torch

    from mmx.io.fitsio import read_images
    from mmx.model.package import load_package
    from mmx.serving.inference import Predictor
    from mmx.serving.runtimes import bf16_supported, onnxruntime_available
    from mmx.sky.normalize import normalize_image

    image = read_images(frame)[0].data
    package = load_package(model)
    t = time.perf_counter()
    normalize_image(image, **package.meta.normalization)
    print(f"\nnormalisation alone: {time.perf_counter() - t:.2f} s")
    torch_ = dict(runtime="torch")
    variants = [
        ("float32, NCHW, BatchNorm kept", dict(torch_, precision="float32",
                                               channels_last=False, fold_bn=False)),
        ("+ channels-last", dict(torch_, precision="float32", channels_last=True,
                                 fold_bn=False)),
        ("+ BatchNorm folded", dict(torch_, precision="float32")),
        ("bfloat16" + ("" if bf16_supported() else " (EMULATED here)"),
         dict(torch_, precision="bfloat16")),
    ]
    if onnxruntime_available():
        variants += [("ONNX Runtime float32", dict(runtime="onnxruntime", precision="float32")),
                     ("ONNX Runtime int8", dict(runtime="onnxruntime", precision="int8"))]
    variants.append(("auto, 1 thread", dict(threads=1)))
    print(f"\nPredictor ablation (in process, {torch.get_num_threads()} threads, batch "
          f"{batch_size}, bit mask of all classes):")
    print(f"{'variant [path]':58s} {'wall s':>7s} {'CPU s':>7s} {'Mpix/CPU-s':>10s}")
    mpix = image.size / 1e6
    for name, kw in variants:
        kw.setdefault("threads", threads)
        pred = Predictor(package, batch_size=batch_size, **kw)
        name = f"{name} [{pred.runtime.name}]"
        pred.predict(image[:512, :512], mode="bitmask")  # warm-up (oneDNN primitive cache)
        c, t = time.process_time(), time.perf_counter()
        pred.predict(image, mode="bitmask")
        wall, cpu = time.perf_counter() - t, time.process_time() - c
        print(f"{name:58s} {wall:7.2f} {cpu:7.2f} {mpix / cpu:10.3f}", flush=True)



def _machine() -> str:
    import onnxruntime
    import torch

    from mmx.model.hardware import cpu_info
    from mmx.serving.runtimes import choose_path

    runtime, precision = choose_path()
    return (f"machine: {cpu_info().describe()}\n"
            f"auto path here: {runtime}/{precision} (torch {torch.__version__}, "
            f"onnxruntime {onnxruntime.__version__})")


def _startup(work: Path, model: Path, *, repeat: int) -> list[tuple[str, object]]:
    """``mmx predict`` on a 64x64 frame: registry (cold, warm), folder, ONNX Runtime; torch."""
    from mmx.tracking.registry import promote, register_package

    small = work / "small.fits"
    make_frame(small, shape=(64, 64), seed=3)
    store = work / "store"
    uri = f"sqlite:///{store / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MMX_CACHE_DIR": str(work / "cache")}
    with contextlib.redirect_stderr(io.StringIO()):
        version = register_package(model, tracking_uri=uri).version
        promote("mmx", version, tracking_uri=uri)
    base = [sys.executable, "-m", "mmx", "predict", str(small), "--out-dir",
            str(work / "small-out"), "--overwrite"]
    rows = [("registry, first call (fills the cache)", measure(base, env=env))]
    warm = [measure(base, env=env) for _ in range(max(1, repeat))]
    rows.append((f"registry, cached (best of {len(warm)})", min(warm, key=lambda r: r.wall)))
    folder = [measure([*base, "--model", str(model)], env=env) for _ in range(max(1, repeat))]
    rows.append((f"model folder (best of {len(folder)})", min(folder, key=lambda r: r.wall)))
    ort = {**env, "MMX_RUNTIME": "onnxruntime"}  # `auto` without native bf16: no torch import
    measure(base, env=ort)  # the first call exports the network (cached)
    warm = [measure(base, env=ort) for _ in range(max(1, repeat))]
    rows.append((f"registry, cached, onnxruntime (best of {len(warm)})",
                 min(warm, key=lambda r: r.wall)))
    rows.append(("python -c 'import torch'", measure([sys.executable, "-c", "import torch"])))
    return rows


def _mef(path: Path, *, n: int, shape: tuple[int, int]) -> Path:
    """An ``n``-CCD exposure: empty primary, then ``n`` int16 image HDUs of ``shape``."""
    from astropy.io import fits

    rng = np.random.default_rng(5)
    with fits.HDUList([fits.PrimaryHDU()]) as hdul:
        hdul.writeto(path, overwrite=True)
    for k in range(n):
        data = rng.normal(1000.0, 12.0, size=shape).astype(np.int16)
        fits.append(path, data, fits.Header({"EXTNAME": f"CCD{k + 1}"}))
    return path


def main(argv: list[str] | None = None) -> int:
    """Command line of the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="model folder (default: random-weight unet)")
    parser.add_argument("--maximask-venv", type=Path, default=Path("/tmp/maximask-venv"),
                        help="venv where `pip install maximask` was run (skipped if absent)")
    parser.add_argument("--size", default="2048x4096",
                        help="frame size NAXIS1xNAXIS2 (columns x rows), default 2048x4096")
    parser.add_argument("--mode", default="bitmask", help="mmx output mode")
    parser.add_argument("--threads", type=int, default=None, help="mmx --threads")
    parser.add_argument("--batch-size", type=int, default=1, help="mmx --batch-size")
    parser.add_argument("--precision", default="auto", help="mmx --precision")
    parser.add_argument("--tile", type=int, default=1024, help="tile of the random model")
    parser.add_argument("--maximask-batch-size", type=int, default=8,
                        help="MaxiMask --batch_size (its default: 8)")
    parser.add_argument("--repeat", type=int, default=1, help="mmx runs (best is reported)")
    parser.add_argument("--paths", action="store_true",
                        help="also run mmx predict once per forced arithmetic path")
    parser.add_argument("--no-startup", action="store_true", help="skip the start-up timings")
    parser.add_argument("--mef", type=int, default=0, metavar="N",
                        help="also measure an N-CCD exposure of the frame size (peak memory)")
    parser.add_argument("--ablation", action="store_true",
                        help="also time each CPU optimisation of the Predictor in process")
    parser.add_argument("--workdir", type=Path, help="keep frame and outputs here")
    parser.add_argument("--max-isa", choices=["avx2"], default=None,
                        help="stand-in for an AVX2 machine: oneDNN (PyTorch's and "
                             "TensorFlow's convolutions) limited to AVX2 for both tools; mmx "
                             "on its PyTorch float32 path (ONNX Runtime cannot be limited)")
    args = parser.parse_args(argv)
    if args.max_isa:
        if args.paths or args.ablation:
            parser.error("--max-isa runs mmx on one path: leave out --paths and --ablation")
        if args.precision not in ("auto", "float32"):
            parser.error("--max-isa runs mmx in float32 (bf16 would be emulated under AVX2)")
        os.environ["ONEDNN_MAX_CPU_ISA"] = args.max_isa.upper()  # both tools' oneDNN kernels
        os.environ["ATEN_CPU_CAPABILITY"] = args.max_isa  # PyTorch's own vectorised kernels
        os.environ["TF_ENABLE_ONEDNN_OPTS"] = "1"  # TensorFlow's convolutions through oneDNN
        os.environ["MMX_RUNTIME"] = "torch"
        args.precision = "float32"
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as `mmx predict` does
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    cols, rows = (int(v) for v in args.size.lower().split("x"))
    tmp = tempfile.TemporaryDirectory(prefix="mmx-bench-") if args.workdir is None else None
    work = Path(tmp.name) if tmp else args.workdir
    work.mkdir(parents=True, exist_ok=True)
    frame = make_frame(work / "frame.fits", shape=(rows, cols))
    model = args.model or make_model(work / "model", tile=args.tile)
    os.environ["MMX_CACHE_DIR"] = str(work / "cache")  # never the user's own model cache
    mpix = rows * cols / 1e6
    load = os.getloadavg()[0]
    print(_machine())
    if args.max_isa:
        print(f"stand-in for an {args.max_isa.upper()} machine: oneDNN (ONEDNN_MAX_CPU_ISA) and "
              f"PyTorch (ATEN_CPU_CAPABILITY) limited to {args.max_isa.upper()} for mmx and "
              "MaxiMask; mmx runs torch/float32 (`auto` above already sees the limited "
              "CPU; its ONNX Runtime path cannot be limited, so it is not run)")
    print(f"frame {cols}x{rows} float32 ({mpix:.1f} Mpix), {os.cpu_count()} CPUs, "
          f"load average before: {load:.2f}")
    if not args.no_startup:
        print("\nstart-up: mmx predict on a 64x64 frame (wall s, CPU s, peak MB)")
        for name, r in _startup(work, model, repeat=max(3, args.repeat)):
            print(f"  {name:44s} {r.wall:6.2f} {r.cpu:6.2f} {r.maxrss_mb:7.0f}", flush=True)

    def mmx_cmd(path: Path, precision: str) -> list[str]:
        cmd = [sys.executable, "-m", "mmx", "predict", str(path), "--model", str(model),
               "--out-dir", str(work / "mmx-out"), "--overwrite", "--mode", args.mode,
               "--batch-size", str(args.batch_size), "--precision", precision]
        return cmd + (["--threads", str(args.threads)] if args.threads else [])

    cmd = mmx_cmd(frame, args.precision)
    measure(cmd)  # warm-up: fills the model cache (an ONNX export) as any first call would
    runs = [measure(cmd) for _ in range(max(1, args.repeat))]
    rows_out = [("mmx predict", min(runs, key=lambda r: r.cpu))]
    forced = []
    if args.paths:
        for runtime, precision in (("torch", "float32"), ("torch", "bfloat16"),
                                   ("onnxruntime", "float32"), ("onnxruntime", "int8")):
            cmd_p = mmx_cmd(frame, precision)
            env = {**os.environ, "MMX_RUNTIME": runtime}
            measure(cmd_p, env=env)  # the first run of a path may export/quantise (cached)
            forced.append((f"  {runtime}/{precision}", measure(cmd_p, env=env)))
    if args.mef:
        mef = _mef(work / "exposure.fits", n=args.mef, shape=(rows, cols))
        mef_cmd = mmx_cmd(mef, args.precision)
        forced.append((f"  {args.mef}-CCD exposure", measure(mef_cmd)))
        forced.append((f"  {args.mef}-CCD exposure, MMX_OVERLAP=0 (no read-ahead/writer)",
                       measure(mef_cmd, env={**os.environ, "MMX_OVERLAP": "0"})))
        if args.paths:  # the path `auto` takes on a CPU without native bf16
            forced.append((f"  {args.mef}-CCD exposure, onnxruntime/float32",
                           measure(mmx_cmd(mef, "float32"),
                                   env={**os.environ, "MMX_RUNTIME": "onnxruntime"})))

    maximask = args.maximask_venv / "bin" / "maximask"
    if maximask.is_file():
        mm_dir = work / "maximask"
        mm_dir.mkdir(exist_ok=True)
        mm_frame = mm_dir / "frame.fits"
        mm_frame.write_bytes(frame.read_bytes())
        rows_out.append(("MaxiMask 1.4.1", measure(
            maximask_command(args.maximask_venv / "bin" / "python", mm_frame,
                             probabilities=False, batch_size=args.maximask_batch_size),
            env=quiet_env())))
    else:
        print(f"MaxiMask skipped: no {maximask} (python3 -m venv {args.maximask_venv} && "
              f"{args.maximask_venv}/bin/pip install maximask)")

    print(f"\n{'tool':16s} {'wall s':>8s} {'CPU s':>8s} {'peak RSS MB':>12s} "
          f"{'Mpix/CPU-s':>11s} {'Mpix/wall-s':>12s}")
    for name, r in rows_out:
        print(f"{name:16s} {r.wall:8.2f} {r.cpu:8.2f} {r.maxrss_mb:12.0f} "
              f"{mpix / r.cpu:11.3f} {mpix / r.wall:12.3f}")
    for name, r in forced:
        n_mpix = mpix * (args.mef if "CCD" in name else 1)
        print(f"{name:16s} {r.wall:8.2f} {r.cpu:8.2f} {r.maxrss_mb:12.0f} "
              f"{n_mpix / r.cpu:11.3f} {n_mpix / r.wall:12.3f}")
    if len(rows_out) == 2:
        a, b = rows_out[0][1], rows_out[1][1]
        print(f"\nthroughput ratio mmx / MaxiMask: {b.cpu / a.cpu:.1f}x per CPU-second, "
              f"{b.wall / a.wall:.1f}x per wall-second; peak memory "
              f"{a.maxrss_mb:.0f} MB vs {b.maxrss_mb:.0f} MB")
    print(f"load average after: {os.getloadavg()[0]:.2f} (other processes slow both tools)")
    if args.ablation:
        _ablation(frame, model, threads=args.threads, batch_size=args.batch_size)
    if tmp:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
