"""Root of the ``mmx`` command line. Heavy imports happen inside commands only.

Help is plain text (``rich_markup_mode=None``): option texts hold ``[default: ...]`` and
other brackets that rich markup would eat, and flags show as flags, not ``<bool>``.
Shell completion: ``mmx --install-completion`` (bash, zsh, fish, PowerShell).
"""

from __future__ import annotations

from typing import Annotated

import typer

from mmx.cli.errors import reports_errors

__all__ = ["app"]

app = typer.Typer(
    name="mmx",
    help="Contaminant masks for astronomical images: simulate, train, track and serve.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mmx")
    except PackageNotFoundError:
        from mmx import __version__

        return __version__


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"mmx {_version()}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option(
        "--version", callback=_show_version, is_eager=True,
        help="Print the mmx version and exit.")] = False,
) -> None:
    """Contaminant masks for astronomical images: simulate, train, track and serve."""


@app.command("classes")
@reports_errors
def classes_command(
    model: Annotated[str | None, typer.Option(
        "--model", metavar="URI|DIR", help="Show the thresholds of this model: models:/NAME@ALIAS, "
                        "models:/NAME/VERSION or a folder (default: the one mmx predict "
                        "uses, models:/mmx@production, else the release model)")] = None,
    tracking_uri: Annotated[str | None, typer.Option(
        "--tracking-uri", metavar="URI",
        help="MLflow store of the registry (default: $MLFLOW_TRACKING_URI "
             "or the project's mlruns/mlflow.db)")] = None,
    table_only: Annotated[bool, typer.Option(
        "--table", help="Only the class table's defaults; load no model.")] = False,
    tta: Annotated[str, typer.Option(
        "--tta", metavar="none|flips|dihedral",
        help="Show the thresholds mmx predict uses with this test-time augmentation.")] = "none",
) -> None:
    """Print the class table: bit, default prior, and the thresholds mmx predict uses.

    Bits are MaxiMask's; NODATA (8192) marks pixels with no valid input value. A bitmask
    output works as a SExtractor FLAG_IMAGE (see the README).
    """
    from mmx.classes import CLASSES
    from mmx.model.symmetry import check_tta
    from mmx.serving.masks import NODATA_BIT

    check_tta(tta)
    used: dict[str, float] = {}
    source = ""
    if not table_only:
        from mmx.cli.predict import _resolve_model
        from mmx.model.thresholds import default_thresholds

        package = _resolve_model(model, tracking_uri)
        abbrs = list(package.meta.classes)
        used = dict(zip(abbrs, map(float, default_thresholds(package.meta, abbrs, tta=tta)),
                        strict=True))
        reg = package.registry or {}
        version = f" version {reg['version']}" if reg.get("version") not in (None, "") else ""
        source = f"{package.source or package.meta.architecture}{version}"
    head = f"{'#':>2}  {'abbr':<6} {'bit':>5} {'prior':>8} {'table':>6}"
    typer.echo(head + (f" {'model':>7}" if used else "") + "  name")
    for c in CLASSES:
        line = f"{c.index:>2}  {c.abbr:<6} {c.bit:>5} {c.prior:>8.1e} {c.threshold:>6.2f}"
        if used:
            line += f" {used[c.abbr]:>7.3g}" if c.abbr in used else f" {'-':>7}"
        typer.echo(f"{line}  {c.name}")
    pad = 8 + 7 + (8 if used else 0)
    typer.echo(f"{'':>2}  {'NODATA':<6} {NODATA_BIT:>5} {'':>{pad}}  no input value "
               "(NaN/Inf/BLANK/masked; no class set)")
    typer.echo("prior: default expected proportion (--prior); table: the class table's "
               "threshold")
    if used:
        with_tta = f" and --tta {tta}" if tta != "none" else ""
        own = tta == "none" or tta in package.meta.tta_thresholds
        typer.echo(f"model: the threshold mmx predict uses with {source}{with_tta} (calibrated "
                   f"on its validation split at the default priors"
                   f"{'' if own else ', without test-time augmentation'}; --threshold overrides)")


def _register_subcommands() -> None:
    import importlib

    for module in ("surveys", "models", "predict"):
        try:
            mod = importlib.import_module(f"mmx.cli.{module}")
        except ModuleNotFoundError as exc:  # a command group still being written
            if exc.name != f"mmx.cli.{module}":
                raise
            continue
        mod.register(app)
    for group in app.registered_groups:  # plain help for the sub-groups too
        if group.typer_instance is not None:
            group.typer_instance.rich_markup_mode = None


_register_subcommands()
