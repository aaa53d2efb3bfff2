"""Where runs and models are tracked, and the provenance every run and model carries.

The project's store is a sqlite database ``mlruns/mlflow.db`` with artifacts under
``mlruns/artifacts`` at the project root (the folder holding ``dvc.yaml``).
``MLFLOW_TRACKING_URI`` overrides it, as everywhere in MLflow.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

__all__ = [
    "project_root",
    "default_tracking_uri",
    "artifact_root",
    "git_commit",
    "data_hash",
    "EXPERIMENT_NAME",
    "mark_training_experiment",
    "REGISTERED_MODEL",
    "PRODUCTION_ALIAS",
]

EXPERIMENT_NAME = "mmx"
REGISTERED_MODEL = "mmx"
PRODUCTION_ALIAS = "production"


def mark_training_experiment(client, experiment_id: str) -> None:
    """Tag an experiment as model training, so MLflow 3's UI opens its runs table.

    Without the tag MLflow 3 guesses the experiment kind and may open the GenAI "Traces"
    view, which shows nothing of a training run.
    """
    client.set_experiment_tag(experiment_id, "mlflow.experimentKind", "custom_model_development")


def project_root(start: str | Path | None = None) -> Path | None:
    """The nearest folder at or above ``start`` (default: cwd) holding ``dvc.yaml``."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "dvc.yaml").is_file() and (folder / "mmx").is_dir():
            return folder
    return None


def default_tracking_uri(root: str | Path | None = None) -> str:
    """``$MLFLOW_TRACKING_URI`` if set, else the project's sqlite store.

    Outside a project (no ``dvc.yaml`` above cwd) the store is ``./mlruns/mlflow.db``.
    """
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    base = Path(root) if root else (project_root() or Path.cwd())
    return f"sqlite:///{(base / 'mlruns' / 'mlflow.db').resolve()}"


def artifact_root(tracking_uri: str) -> str | None:
    """Artifact folder next to a sqlite store (``mlruns/artifacts``), as a file URI."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    db = Path(tracking_uri.removeprefix("sqlite:///"))
    return (db.parent / "artifacts").resolve().as_uri()


def git_commit(root: str | Path | None = None) -> str:
    """Current git commit (with ``-dirty`` if the tree has changes), or ``unknown``."""
    cwd = Path(root or project_root() or Path.cwd())
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=cwd, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + ("-dirty" if dirty.strip() else "")


def data_hash(root: str | Path | None = None, *, target: str = "data") -> str:
    """DVC's md5 of the raw data (from ``data.dvc``), or ``unknown``."""
    import yaml

    base = Path(root or project_root() or Path.cwd())
    dvc_file = base / f"{target}.dvc"
    if not dvc_file.is_file():
        return "unknown"
    outs = (yaml.safe_load(dvc_file.read_text()) or {}).get("outs") or [{}]
    return str(outs[0].get("md5", "unknown"))
