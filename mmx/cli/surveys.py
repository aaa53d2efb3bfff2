"""``mmx surveys ...``: simulate raw survey exposures, list instrument profiles, preview."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mmx.cli.errors import reports_errors

__all__ = ["register"]

surveys_app = typer.Typer(help="Simulated raw survey exposures (DECam, MegaCam, HSC, SpaceCam, "
                               "SmallScope).",
                          no_args_is_help=True)

_DEFAULT_PARAMS = Path("params.yaml")


@surveys_app.command("simulate")
@reports_errors
def simulate_command(
    out: Annotated[Path, typer.Option(
        metavar="PATH", help="Root folder; files go to OUT/<instrument>/.")] = Path("data"),
    params: Annotated[Path | None, typer.Option(
        metavar="FILE",
        help="params.yaml whose `survey:` section to use [default: ./params.yaml if "
             "present, else the built-in survey].")] = None,
    seed: Annotated[int | None, typer.Option(
        metavar="SEED", help="Master seed (overrides survey.seed).")] = None,
    exposures: Annotated[int | None, typer.Option(
        metavar="N",
        help="Exposures per instrument (overrides survey.exposures_per_instrument).")] = None,
    ccds: Annotated[int | None, typer.Option(
        metavar="N", help="CCDs per exposure (overrides survey.ccds_per_exposure).")] = None,
    instruments: Annotated[str | None, typer.Option(
        metavar="NAME,...", help="Comma-separated instruments to simulate, e.g. DECam,MegaCam,HSC "
             "[default: those of the survey section].")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace existing files.")] = False,
    workers: Annotated[int | None, typer.Option(
        metavar="N", min=1, help="CCDs simulated in parallel processes (the files do not "
             "depend on it) [default: the CPUs available].")] = None,
) -> None:
    """Simulate raw multi-extension exposures, deterministic for a given seed."""
    import logging

    from mmx.errors import InputError
    from mmx.surveys.instruments import get_instrument
    from mmx.surveys.simulate import (
        DEFAULT_SURVEY,
        PROFILE_EXPOSURES,
        read_survey_params,
        simulate_survey,
    )

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if params is None:
        config = read_survey_params(_DEFAULT_PARAMS) if _DEFAULT_PARAMS.is_file() else {}
    elif not params.is_file():
        raise InputError(f"{params}: no such parameter file")
    else:
        config = read_survey_params(params)
    if exposures is not None:
        config["exposures_per_instrument"] = exposures
    if ccds is not None:
        config["ccds_per_exposure"] = ccds
    if instruments is not None:
        available = config.get("exposures", DEFAULT_SURVEY["exposures"])
        chosen = {}
        for name in (n.strip() for n in instruments.split(",") if n.strip()):
            inst = get_instrument(name)
            match = [k for k in available if str(k).lower() == inst.name.lower()]
            chosen[inst.name] = (available[match[0]] if match
                                 else PROFILE_EXPOSURES[inst.name])
        config["exposures"] = chosen
    files = simulate_survey(config, out, seed=seed, overwrite=overwrite, workers=workers)
    for path in files:
        typer.echo(str(path))


@surveys_app.command("profiles")
@reports_errors
def profiles_command() -> None:
    """Print the instrument profiles: scale, CCD size, gain, noise, saturation, bands."""
    from mmx.surveys.instruments import profile_table

    for line in profile_table():
        typer.echo(line)


@surveys_app.command("preview")
@reports_errors
def preview_command(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="Simulated (or any) FITS exposure.")],
    out: Annotated[Path, typer.Option(metavar="PATH", help="PNG to write.")],
    hdu: Annotated[int, typer.Option(metavar="N", help="Image HDU to show.", min=0)] = 1,
    compare: Annotated[list[Path] | None, typer.Option(
        metavar="FILE", help="Real frame to show alongside (repeatable).")] = None,
    size: Annotated[int, typer.Option(metavar="PX", help="Crop side [px].", min=16)] = 512,
) -> None:
    """Write a PNG of a simulated CCD next to real frames, at the same asinh stretch."""
    from mmx.surveys.preview import preview_exposure

    typer.echo(str(preview_exposure(file, out, hdu=hdu, compare=compare or (), size=size)))


def register(app: typer.Typer) -> None:
    """Add the ``surveys`` command group to the root ``mmx`` application."""
    app.add_typer(surveys_app, name="surveys")
