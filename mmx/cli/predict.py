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
    from mmx.registry import resolve_model

    return resolve_model(spec, tracking_uri=tracking_uri)


@reports_errors
def predict_command(
    paths: Annotated[list[str], typer.Argument(
        help="FITS files (.fits, .fits.fz, .fits.gz), file.fits[N] for one HDU, folders, "
             ".list files of paths.", show_default=False)],
    model: Annotated[str | None, typer.Option(
        "--model", help="models:/NAME@ALIAS, models:/NAME/VERSION or a model folder "
                        "(default: models:/mmx@production, else the release model)")] = None,
    tracking_uri: Annotated[str | None, typer.Option(
        "--tracking-uri", help="MLflow store of the registry (default: $MLFLOW_TRACKING_URI "
                               "or the project's mlruns/mlflow.db)")] = None,
    prior: Annotated[list[str] | None, typer.Option(
        "--prior", help="Expected class proportion CLS=VALUE in (0, 1), repeatable "
                        "(default: the class table's; see `mmx classes`)")] = None,
    no_prior: Annotated[bool, typer.Option(
        "--no-prior", help="Output the network's posteriors without prior correction.")] = False,
    threshold: Annotated[list[str] | None, typer.Option(
        "--threshold", help="Probability threshold CLS=VALUE in [0, 1] for binary/bitmask, "
                            "repeatable (default: the model's calibrated thresholds, else "
                            "the class table's)")] = None,
    mode: Annotated[_Mode, typer.Option(
        "--mode", help="prob: float32 planes; prob8: uint8 planes (BSCALE=1/255); binary: "
                       "0/1 planes; bitmask: one int32 MaxiMask-compatible bit mask.",
        case_sensitive=False)] = _Mode.bitmask,
    classes: Annotated[str | None, typer.Option(
        "--classes", help="Comma-separated classes to output, e.g. CR,TRL (default: all)")] = None,
    out_dir: Annotated[Path | None, typer.Option(
        "--out-dir", help="Folder for the masks (default: next to each input)",
        file_okay=False)] = None,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Replace existing masks (inputs are never replaced).")] = False,
    preview: Annotated[bool, typer.Option(
        "--preview", help="Also write a PNG of each image with its masks overlaid.")] = False,
    batch_size: Annotated[int, typer.Option(
        "--batch-size", min=1, help="Tiles per network pass.")] = 2,
    threads: Annotated[int | None, typer.Option(
        "--threads", min=1, help="CPU threads (default: torch's choice, the physical "
                                 "cores)")] = None,
    precision: Annotated[str, typer.Option(
        "--precision", help="Convolution arithmetic: auto (bfloat16 where the CPU has it), "
                            "float32 or bfloat16.")] = "auto",
) -> None:
    """Write contaminant masks (<name>.mask.fits) for FITS images."""
    import os

    # Idle OpenMP threads sleep instead of spinning: on a shared machine spinning threads
    # doubled the CPU time of a frame (17 vs 7.4 CPU-s, see benchmarks/README.md). Read
    # by libgomp when torch is first imported, below; a user's own setting wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

    from mmx.classes import parse_class_list, parse_class_values
    from mmx.predict import check_class_options

    chosen = [c.abbr for c in parse_class_list(classes)]
    priors = parse_class_values(prior, what="prior", open_low=True, open_high=True)
    thresholds = parse_class_values(threshold, what="threshold")
    check_class_options(chosen, priors=priors, thresholds=thresholds)
    if priors and no_prior:
        raise fail(f"--prior ({', '.join(priors)}) and --no-prior exclude each other")
    if mode is _Mode.bitmask and all(c == "BG" for c in chosen):
        raise fail("BG has no bit in the MaxiMask bit mask; use --mode binary or prob")

    package = _resolve_model(model, tracking_uri)

    from mmx.inference import Predictor
    from mmx.predict import predict_files

    model_classes = set(package.meta.classes)
    if classes is None:
        chosen = [a for a in chosen if a in model_classes]
    predictor = Predictor(package, classes=chosen, priors=priors, apply_priors=not no_prior,
                          batch_size=batch_size, threads=threads, precision=precision)

    def report(item: str, message: str) -> None:
        typer.echo(f"mmx: error: {message}", err=True)

    result = predict_files(paths, predictor, mode=mode.value, thresholds=thresholds,
                           out_dir=out_dir, overwrite=overwrite, preview=preview,
                           on_error=report)
    n_ok, n_bad = len(result.outputs), len(result.failed)
    if n_bad:
        raise fail(f"{n_bad} of {n_ok + n_bad} input(s) failed; {n_ok} mask file(s) written")
    typer.echo(f"mmx: wrote {n_ok} mask file(s)", err=True)


def register(app: typer.Typer) -> None:
    """Add the ``predict`` command to ``app``."""
    app.command("predict")(predict_command)
