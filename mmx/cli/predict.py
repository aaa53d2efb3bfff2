"""``mmx predict``: contaminant masks for FITS images (torch and mlflow imported inside)."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated

import typer

from mmx.cli.errors import fail, reports_errors

__all__ = ["register", "predict_command"]


class _Mode(enum.StrEnum):
    prob = "prob"
    prob8 = "prob8"
    binary = "binary"
    bitmask = "bitmask"


def _resolve_model(spec: str | None, tracking_uri: str | None):
    """Resolve the model; a damaged MLflow store is one clear error, not a traceback."""
    import logging

    from mmx.errors import MmxError, ModelError
    from mmx.tracking.registry import resolve_model

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # its INFO lines are not ours
    try:
        return resolve_model(spec, tracking_uri=tracking_uri, lazy=True)
    except MmxError:
        raise
    except Exception as exc:  # MlflowException, sqlalchemy errors, OSError from the store
        from mmx.tracking.store import default_tracking_uri

        uri = tracking_uri or default_tracking_uri()
        reason = " ".join(str(exc).split())[:240]
        raise ModelError(f"cannot read the model registry at {uri} ({type(exc).__name__}: "
                         f"{reason}); expected a readable MLflow store: restore it, point "
                         "--tracking-uri elsewhere or pass --model FOLDER") from None


def _raise_interrupt(signum, frame):
    import signal

    raise KeyboardInterrupt(signal.Signals(signum).name)


class _Progress:
    """A bar over files on a terminal, else one line per file on stderr."""

    def __init__(self) -> None:
        import sys

        self.tty = sys.stderr.isatty()
        self.bar = None

    def __call__(self, result, done: int, total: int) -> None:
        if self.tty:
            if self.bar is None:
                from tqdm.auto import tqdm

                self.bar = tqdm(total=total, desc="files", unit="file", position=0)
            self.bar.update(1)
            return
        if result.status == "failed":
            return  # its error line is printed already
        typer.echo(f"mmx: [{done}/{total}] {result.status:<7} {result.input} -> "
                   f"{result.output} ({result.seconds:.1f} s)", err=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@reports_errors
def predict_command(
    paths: Annotated[list[str], typer.Argument(
        metavar="PATH",  # Typer shows {PATH}... in the usage line
        help="FITS files (.fits, .fits.fz, .fits.gz), file.fits[N] for one HDU, folders, "
             ".list files of paths.", show_default=False)],
    model: Annotated[str | None, typer.Option(
        "--model", metavar="URI|DIR",
        help="models:/NAME@ALIAS, models:/NAME/VERSION or a model folder "
             "(default: models:/mmx@production, else the release model)")] = None,
    tracking_uri: Annotated[str | None, typer.Option(
        "--tracking-uri", metavar="URI",
        help="MLflow store of the registry (default: $MLFLOW_TRACKING_URI "
             "or the project's mlruns/mlflow.db)")] = None,
    prior: Annotated[list[str] | None, typer.Option(
        "--prior", metavar="CLS=P",
        help="Expected class proportion CLS=VALUE in (0, 1), repeatable "
             "(default: the class table's; see `mmx classes`)")] = None,
    no_prior: Annotated[bool, typer.Option(
        "--no-prior", help="Output the network's posteriors without prior correction.")] = False,
    threshold: Annotated[list[str] | None, typer.Option(
        "--threshold", metavar="CLS=T",
        help="Probability threshold CLS=VALUE in [0, 1] for binary/bitmask, "
             "repeatable (default: the model's calibrated thresholds, else "
             "the class table's)")] = None,
    mode: Annotated[_Mode, typer.Option(
        "--mode", help="prob: float32 planes; prob8: uint8 planes (BSCALE=1/255); binary: "
                       "0/1 planes; bitmask: one int16 MaxiMask-compatible bit mask.",
        case_sensitive=False)] = _Mode.bitmask,
    classes: Annotated[str | None, typer.Option(
        "--classes", metavar="CLS,...",
        help="Comma-separated classes to output, e.g. CR,TRL (default: all)")] = None,
    out_dir: Annotated[Path | None, typer.Option(
        "--out-dir", metavar="DIR", help="Folder for the masks (default: next to each input)",
        file_okay=False)] = None,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Replace existing masks (inputs are never replaced).")] = False,
    preview: Annotated[bool, typer.Option(
        "--preview", help="Also write a PNG of each image with its masks overlaid.")] = False,
    batch_size: Annotated[int, typer.Option(
        "--batch-size", min=1, metavar="N",
        help="Tiles per network pass (with 1024-px tiles, 1 is fastest and smallest).")] = 1,
    threads: Annotated[int | None, typer.Option(
        "--threads", min=1, metavar="N", help="CPU threads (default: torch's choice, the physical "
                                 "cores)")] = None,
    device: Annotated[str, typer.Option(
        "--device", metavar="DEVICE",
        help="Where the network runs: auto (a CUDA GPU when torch sees one, else "
             "the CPU), cpu, cuda or cuda:N.")] = "auto",
    compress: Annotated[bool, typer.Option(
        "--compress", help="Tile-compress the masks (PLIO_1 for the bit mask, lossless "
                           "GZIP_2 for planes); a primary image's mask goes to HDU 1.")] = False,
    clean: Annotated[bool, typer.Option(
        "--clean", help="Also write <name>.clean.fits: the image with cosmic rays, hot "
                        "pixels, hot/dead columns and trails (CR, HP, HCL, DCL, TRL) replaced "
                        "by the median of good neighbours.")] = False,
    precision: Annotated[str, typer.Option(
        "--precision", metavar="auto|float32|bfloat16",
        help="Convolution arithmetic: auto (bfloat16 where the CPU has it), "
             "float32 or bfloat16.")] = "auto",
    padding: Annotated[str, typer.Option(
        "--padding", metavar="none|reflect|zero",
        help="The image border: nothing beyond it, as at the edge of the training crops "
             "(none), the image mirrored (reflect) or noiseless sky (zero).")] = "none",
    tta: Annotated[str, typer.Option(
        "--tta", metavar="none|flips|dihedral",
        help="Test-time augmentation: average the network over the image's 4 flips or 8 "
             "rotations and reflections; better masks (cosmic rays most) for about 3 or 6 "
             "times the CPU time.")] = "none",
    skip_existing: Annotated[bool, typer.Option(
        "--skip-existing", help="Keep masks already made by the same model and options "
                                "(their MMXFPRNT key) and skip their inputs: resumes a "
                                "crashed batch.")] = False,
    all_hdus: Annotated[bool, typer.Option(
        "--all-hdus", help="Also mask data-quality, error, variance and weight HDUs (DQ, ERR, "
                           "VAR, WHT...), which are otherwise copied unmasked.")] = False,
    jobs: Annotated[int | None, typer.Option(
        "--jobs", min=1, metavar="N",
        help="Mask files in N local worker processes (a Dask LocalCluster); "
             "--threads is then per process.")] = None,
    scheduler: Annotated[str | None, typer.Option(
        "--scheduler", metavar="ADDRESS",
        help="Send the files to the Dask cluster of this scheduler "
             "(tcp://HOST:PORT); workers need mmx and the same file paths.",
        show_default=False)] = None,
    log: Annotated[Path | None, typer.Option(
        "--log", metavar="FILE",
        help="Run log, one JSON line per input (default: mmx-predict-<time>-<pid>"
             ".jsonl in --out-dir, else the folder of the outputs).",
        dir_okay=False)] = None,
) -> None:
    """Write contaminant masks (<name>.mask.fits) for FITS images."""
    import contextlib
    import os
    import signal
    import time

    # Idle OpenMP threads sleep instead of spinning: on a shared machine spinning threads
    # doubled the CPU time of a frame (17 vs 7.4 CPU-s, see benchmarks/README.md). Read
    # by libgomp when torch is first imported, below; a user's own setting wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

    from mmx.classes import parse_class_list, parse_class_values
    from mmx.serving.predict import check_class_options

    chosen = [c.abbr for c in parse_class_list(classes)]
    priors = parse_class_values(prior, what="prior", open_low=True, open_high=True)
    thresholds = parse_class_values(threshold, what="threshold")
    check_class_options(chosen, priors=priors, thresholds=thresholds)
    if priors and no_prior:
        raise fail(f"--prior ({', '.join(priors)}) and --no-prior exclude each other")
    if mode is _Mode.bitmask and all(c == "BG" for c in chosen):
        raise fail("BG has no bit in the MaxiMask bit mask; use --mode binary or prob")
    if device.strip().lower() not in ("auto", "cpu") and (jobs or scheduler):
        raise fail(f"--device {device} with --jobs/--scheduler: Dask workers run on their "
                   "CPUs; expected --device cpu or auto there, or no --jobs/--scheduler")
    if jobs is not None and scheduler is not None:
        raise fail("--jobs and --scheduler exclude each other: --jobs starts a local cluster, "
                   "--scheduler uses an existing one")

    package = _resolve_model(model, tracking_uri)

    from mmx.serving.inference import Predictor
    from mmx.serving.predict import predict_files

    model_classes = set(package.meta.classes)
    if classes is None:
        chosen = [a for a in chosen if a in model_classes]
    local_threads = threads
    if jobs is not None and threads is None:
        local_threads = 1  # the client's predictor only resolves settings; workers compute
    predictor = Predictor(package, classes=chosen, priors=priors, apply_priors=not no_prior,
                          batch_size=batch_size, threads=local_threads, precision=precision,
                          device=device, padding=padding, tta=tta)

    def report(item: str, message: str) -> None:
        typer.echo(f"mmx: error: {message}", err=True)

    progress = _Progress()
    start = time.perf_counter()
    options = dict(mode=mode.value, thresholds=thresholds, out_dir=out_dir, overwrite=overwrite,
                   preview=preview, on_error=report, on_result=progress,
                   skip_existing=skip_existing, aux=all_hdus, log_path=log, compress=compress,
                   clean=clean)
    previous = None
    with contextlib.suppress(ValueError):  # not in the main thread: keep the default
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)  # finally blocks run
    try:
        if jobs is None and scheduler is None:
            result = predict_files(paths, predictor, **options)
        else:
            from mmx.serving.distributed import connect, local_cluster

            cluster = (local_cluster(jobs, threads=threads) if jobs is not None
                       else connect(scheduler, threads=threads))
            with cluster as executor:
                result = predict_files(paths, predictor, executor=executor, progress=False,
                                       **options)
    except KeyboardInterrupt as exc:
        progress.close()
        why = str(exc) or "SIGINT"
        raise fail(f"interrupted ({why}); masks written so far are complete, nothing partial "
                   "was left: rerun with --skip-existing to finish the rest",
                   code=130 if why == "SIGINT" else 143) from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    progress.close()
    n_ok, n_skip, n_bad = len(result.outputs), len(result.skipped), len(result.failed)
    total = n_ok + n_skip + n_bad
    took = time.perf_counter() - start
    where = f"; log {result.log_path}" if result.log_path else ""
    if n_bad:
        raise fail(f"{n_bad} of {total} input(s) failed; {n_ok} mask file(s) written, "
                   f"{n_skip} skipped as already done, in {took:.1f} s{where}")
    typer.echo(f"mmx: wrote {n_ok} mask file(s), {n_skip} skipped as already done, "
               f"in {took:.1f} s{where}", err=True)


def register(app: typer.Typer) -> None:
    """Add the ``predict`` command to ``app``."""
    app.command("predict")(predict_command)
