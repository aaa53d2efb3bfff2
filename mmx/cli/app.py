"""Root of the ``mmx`` command line. Heavy imports happen inside commands only."""

from __future__ import annotations

import typer

from mmx.cli.errors import reports_errors

__all__ = ["app"]

app = typer.Typer(
    name="mmx",
    help="Contaminant masks for astronomical images: simulate, train, track and serve.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Contaminant masks for astronomical images: simulate, train, track and serve."""


@app.command("classes")
@reports_errors
def classes_command() -> None:
    """Print the contaminant class table: abbreviation, bit, default prior and threshold."""
    from mmx.classes import CLASSES

    typer.echo(f"{'#':>2}  {'abbr':<4} {'bit':>5} {'prior':>8} {'thresh':>6}  name")
    for c in CLASSES:
        typer.echo(f"{c.index:>2}  {c.abbr:<4} {c.bit:>5} {c.prior:>8.1e} {c.threshold:>6.2f}"
                   f"  {c.name}")


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


_register_subcommands()
