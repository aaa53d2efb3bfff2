"""Where runs and models are tracked, and the provenance every run and model carries.

The project's store is a sqlite database ``mlruns/mlflow.db`` with artifacts under
``mlruns/artifacts`` at the project root (the folder holding ``dvc.yaml``).
``MLFLOW_TRACKING_URI`` overrides it, as everywhere in MLflow.

MLflow records absolute artifact paths. :func:`relocate_store` lets a project folder be
moved or copied: when a sqlite store finds itself away from the folder its paths name, it
points them at the ``artifacts`` folder beside it.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlparse

__all__ = [
    "project_root",
    "default_tracking_uri",
    "artifact_root",
    "relocate_store",
    "experiment_id",
    "ui_url",
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

log = logging.getLogger(__name__)

#: columns of MLflow's sqlite schema that hold artifact locations
_LOCATION_COLUMNS = (("experiments", "artifact_location"), ("runs", "artifact_uri"),
                     ("logged_models", "artifact_location"),
                     ("model_versions", "storage_location"), ("model_versions", "source"))


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


def _recorded_store_folder(con: sqlite3.Connection) -> Path | None:
    """The store folder the paths were written for: the parent of an ``.../artifacts`` root."""
    for (location,) in con.execute("SELECT artifact_location FROM experiments"):
        path = Path(unquote(urlparse(location or "").path))
        if path.name == "artifacts":
            return path.parent
    return None


def relocate_store(tracking_uri: str) -> int:
    """Point a moved or copied sqlite store's artifact paths at the folder it now sits in.

    The store's folder is recorded in its experiments' artifact roots (``<folder>/artifacts``,
    :func:`artifact_root`). When that differs from the folder of the database file, every
    location under the old folder (experiments, runs, logged models, model versions) is
    rewritten under the new one, in one transaction. A store that has not moved, a
    read-only one, or another backend is left as it is.

    Returns
    -------
    int
        Locations rewritten (0 when nothing moved).
    """
    if not tracking_uri.startswith("sqlite:///"):
        return 0
    db = Path(tracking_uri.removeprefix("sqlite:///"))
    if not db.is_file() or not os.access(db, os.W_OK):
        return 0
    here = db.resolve().parent
    try:
        with sqlite3.connect(db, timeout=30) as con:
            old = _recorded_store_folder(con)
            if old is None or old == here or not (here / "artifacts").is_dir():
                return 0
            prefixes = ((old.as_uri(), here.as_uri()), (str(old), str(here)))
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master")}
            changed = 0
            for table, column in _LOCATION_COLUMNS:
                if table not in tables:
                    continue
                rows = con.execute(f"SELECT rowid, {column} FROM {table}").fetchall()
                for rowid, value in rows:
                    for before, after in prefixes:
                        if isinstance(value, str) and (value == before
                                                       or value.startswith(before + "/")):
                            con.execute(f"UPDATE {table} SET {column} = ? WHERE rowid = ?",
                                        (after + value[len(before):], rowid))
                            changed += 1
                            break
    except sqlite3.Error as exc:
        log.warning("MLflow store %s moved from %s but its paths could not be updated: %s",
                    db, old, exc)
        return 0
    log.info("MLflow store moved from %s to %s: %d artifact locations updated", old, here,
             changed)
    return changed


def experiment_id(tracking_uri: str, name: str = EXPERIMENT_NAME) -> str | None:
    """Id of experiment ``name`` in a sqlite store, read with ``sqlite3`` (None if absent)."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    db = Path(tracking_uri.removeprefix("sqlite:///"))
    if not db.is_file():
        return None
    try:
        with sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True) as con:
            row = con.execute("SELECT experiment_id FROM experiments WHERE name = ?",
                              (name,)).fetchone()
    except sqlite3.Error:
        return None
    return None if row is None else str(row[0])


def ui_url(base: str, experiment: str | None, run_id: str | None = None, *,
           charts: bool = False) -> str:
    """MLflow UI page of the experiment's runs (model-training view, best test figure first).

    With ``charts``: the same runs as metric charts (loss, validation and test figures per
    step; the table's metric columns are the browser's own setting, not the URL's). With
    ``run_id``: that run's metric charts. MLflow 3 opens its GenAI view unless the URL asks
    for ``workflowType=machine_learning``.
    """
    if experiment is None:
        return base
    view = "workflowType=machine_learning"
    if run_id is not None:
        return f"{base}/#/experiments/{experiment}/runs/{run_id}/model-metrics?{view}"
    order = "orderByKey=metrics.%60test.mean.tpr_at_fpr_1e-3%60&orderByAsc=false"
    mode = "&compareRunsMode=CHART" if charts else ""
    return f"{base}/#/experiments/{experiment}/runs?{view}&{order}{mode}"


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
