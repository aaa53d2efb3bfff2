"""``mmx models ...`` (the registry) and ``mmx ui`` (the MLflow UI on the project's store)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mmx.cli.errors import reports_errors

__all__ = ["register"]

models_app = typer.Typer(help="List, import and promote registered models.", no_args_is_help=True)

TrackingUri = Annotated[
    str | None,
    typer.Option("--tracking-uri", envvar="MLFLOW_TRACKING_URI", metavar="URI",
                 help="MLflow store [default: sqlite store under the project's mlruns/]."),
]


@models_app.command("list")
@reports_errors
def list_command(
    name: Annotated[str, typer.Option(metavar="NAME", help="Registered model name.")] = "mmx",
    tracking_uri: TrackingUri = None,
) -> None:
    """Show every version with its aliases, run and key metrics."""
    import datetime

    from mmx.tracking.registry import list_versions

    versions = list_versions(name, tracking_uri=tracking_uri)
    if not versions:
        typer.echo(f"no versions of {name!r} registered yet (run `make run`)")
        return
    typer.echo(f"{'version':>7}  {'aliases':<18} {'created (UTC)':<16}  {'TPR@1e-3':>8} "
               f"{'AUC':>6} {'CR TPR@1e-3':>11}  {'arch':<12} {'git':<9} run")
    for v in versions:
        when = datetime.datetime.fromtimestamp(v.created / 1000, datetime.UTC)
        typer.echo(
            f"{v.version:>7}  {','.join(v.aliases) or '-':<18} {when:%Y-%m-%d %H:%M}  "
            f"{v.tags.get('mean.tpr_at_fpr_1e-3', '-'):>8} {v.tags.get('mean.auc', '-'):>6} "
            f"{v.tags.get('CR.tpr_at_fpr_1e-3', '-'):>11}  {v.tags.get('architecture', '-'):<12} "
            f"{v.tags.get('git_commit', '-')[:9]:<9} {v.run_id}"
        )


@models_app.command("promote")
@reports_errors
def promote_command(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Registered model name, e.g. mmx.")],
    version: Annotated[int, typer.Argument(
        metavar="VERSION", help="Version number to promote.", min=1)],
    alias: Annotated[str, typer.Option(metavar="ALIAS", help="Alias to set.")] = "production",
    force: Annotated[bool, typer.Option(
        "--force", help="Promote even when the version's test figures are worse.")] = False,
    tracking_uri: TrackingUri = None,
) -> None:
    """Point an alias (default: production) at a version; `mmx predict` then uses it.

    Shows the key test figures of the version now at the alias and of the new one, and
    refuses (without --force) a version that is worse on mean TPR at FPR 1e-3.
    """
    from mmx.errors import ModelError
    from mmx.tracking.promotion import should_promote
    from mmx.tracking.registry import list_versions, promote

    versions = {v.version: v for v in list_versions(name, tracking_uri=tracking_uri)}
    new = versions.get(int(version))
    old = next((v for v in versions.values() if alias in v.aliases), None)
    if new is not None and old is not None and old.version != new.version:
        for label, v in (("now", old), ("new", new)):
            typer.echo(f"{label} @{alias}: version {v.version:<4} " + "  ".join(
                f"{k} {v.tags.get(k, '-')}" for k in _KEY_FIGURES))
        before, after = (_figure(v.tags.get(_KEY_FIGURES[0])) for v in (old, new))
        if not force and not should_promote("auto", after, before, has_current=True):
            raise ModelError(f"version {new.version} is worse than version {old.version} on "
                             f"{_KEY_FIGURES[0]} ({after} < {before}, or unknown); "
                             "pass --force to promote it anyway")
    promote(name, version, alias=alias, tracking_uri=tracking_uri)
    typer.echo(f"{name} version {version} is now @{alias}")


_KEY_FIGURES = ("mean.tpr_at_fpr_1e-3", "mean.auc", "CR.tpr_at_fpr_1e-3")


def _figure(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


@models_app.command("import")
@reports_errors
def import_command(
    folder: Annotated[Path, typer.Argument(
        metavar="DIR", help="Model folder (weights.pt + mmx_model.json).", exists=True,
        file_okay=False)],
    name: Annotated[str, typer.Option(metavar="NAME", help="Registered model name.")] = "mmx",
    alias: Annotated[str | None, typer.Option(
        metavar="ALIAS", help="Alias to give the new version.")] = None,
    tracking_uri: TrackingUri = None,
) -> None:
    """Register a model folder, one trained elsewhere for instance, as a new version."""
    from mmx.tracking.registry import promote, register_package

    info = register_package(folder, name=name, tracking_uri=tracking_uri)
    if alias:
        promote(name, info.version, alias=alias, tracking_uri=tracking_uri)
    typer.echo(f"registered {name} version {info.version}" + (f" @{alias}" if alias else ""))


def ui_command(
    port: Annotated[int, typer.Option(
        metavar="PORT", help="Port on 127.0.0.1.", min=1, max=65535)] = 5000,
    tracking_uri: TrackingUri = None,
) -> None:
    """Open the MLflow UI on 127.0.0.1 for the project's store (compare runs side by side)."""
    import os
    import subprocess
    import sys

    from mmx.tracking.store import (
        artifact_root,
        default_tracking_uri,
        experiment_id,
        relocate_store,
        ui_url,
    )

    uri = tracking_uri or default_tracking_uri()
    relocate_store(uri)
    cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
           "--workers", "1", "--backend-store-uri", uri]
    if artifact_root(uri):
        cmd += ["--default-artifact-root", artifact_root(uri)]
    # MLflow's job runner (a consumer pool for GenAI scorers and judges) is not needed to
    # browse runs and models: without it the UI is 2 processes instead of 10.
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **os.environ}
    base, exp = f"http://127.0.0.1:{port}", experiment_id(uri)
    typer.echo(f"MLflow UI of {uri} (Ctrl-C stops it)\n  mmx runs:   {ui_url(base, exp)}\n"
               f"  as charts:  {ui_url(base, exp, charts=True)}", err=True)
    raise typer.Exit(subprocess.call(cmd, env=env))


def register(app: typer.Typer) -> None:
    """Attach the ``models`` group and the ``ui`` command to the root app."""
    app.add_typer(models_app, name="models")
    app.command("ui")(reports_errors(ui_command))
