"""The MLflow model registry: register model packages, promote by alias, resolve URIs.

A model reaches users by an alias (``production`` by default) on a version of the
registered model ``mmx``. Versions carry tags: git commit, data hash, and key metrics.
``resolve_model`` turns what a user types (a registry URI, a local folder, or nothing)
into a loaded :class:`~mmx.model.package.ModelPackage`.

Serving does not import MLflow: on the project's sqlite store the alias is read with
``sqlite3`` (a millisecond) and the version it names is loaded from a verified local copy
(:mod:`mmx.tracking.model_cache`, keyed by version and weights hash, refreshed when the alias
moves); a version whose copy is missing is copied from the store's artifact folder, or
downloaded through MLflow when the artifacts are elsewhere. Other stores (a tracking
server) are asked through the MLflow client, and still served from the cache.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

from mmx.errors import ModelError
from mmx.model.package import ModelPackage, load_package, save_package
from mmx.tracking import model_cache
from mmx.tracking.model_cache import CacheRecord
from mmx.tracking.store import (
    EXPERIMENT_NAME,
    PRODUCTION_ALIAS,
    REGISTERED_MODEL,
    artifact_root,
    default_tracking_uri,
    relocate_store,
)

__all__ = [
    "KEY_METRIC",
    "VersionInfo",
    "register_package",
    "promote",
    "list_versions",
    "resolve_model",
    "release_package_dir",
]

log = logging.getLogger(__name__)

#: metric used to compare versions (mean over classes of TPR at FPR = 1e-3)
KEY_METRIC = "mean.tpr_at_fpr_1e-3"
_TAGGED_METRICS = ("mean.tpr_at_fpr_1e-3", "mean.auc", "CR.tpr_at_fpr_1e-3", "CR.auc")


@dataclass(frozen=True)
class VersionInfo:
    """One registered version, as ``mmx models list`` shows it."""

    name: str
    version: int
    aliases: tuple[str, ...]
    run_id: str
    created: int  # ms since epoch
    tags: dict


_PACKAGE_DIR = Path(__file__).resolve().parents[1]  # mmx/
#: The MLflow pyfunc face logged with each version as "models from code": MLflow stores the
#: file and runs it when loading the model; it is not imported here (it imports serving).
PYFUNC_MODEL_FILE = _PACKAGE_DIR / "serving" / "pyfunc_model.py"


def _import_pyfunc():
    with warnings.catch_warnings():
        # MLflow 3.17 warns about its own type hints while importing pyfunc; nothing to act on
        warnings.filterwarnings("ignore", message=".*type hint.*", category=UserWarning)
        import mlflow.pyfunc
    return mlflow.pyfunc


def _client(tracking_uri: str | None):
    import mlflow
    from mlflow import MlflowClient

    uri = tracking_uri or default_tracking_uri()
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        relocate_store(uri)
    for noisy in ("mlflow.store.db.utils", "alembic.runtime.migration"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri), uri


def _ensure_experiment(client, uri: str, name: str) -> str:
    from mmx.tracking.store import mark_training_experiment

    exp = client.get_experiment_by_name(name)
    exp_id = exp.experiment_id if exp is not None else client.create_experiment(
        name, artifact_location=artifact_root(uri))
    mark_training_experiment(client, exp_id)
    return exp_id


def _log_package_record(client, run_id: str, meta) -> None:
    """Log a package's params (flattened), test figures and provenance into a run."""
    import time

    from mlflow.entities import Metric, Param

    flat: dict[str, object] = {}

    def walk(prefix: str, value: object) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        else:
            flat[prefix] = value

    walk("", meta.params or {})
    params = [Param(k, str(v)[:6000]) for k, v in sorted(flat.items())]
    now = int(time.time() * 1000)
    metrics = [Metric(f"test.{k}", float(v), now, 0) for k, v in sorted(meta.metrics.items())]
    for i in range(0, max(len(params), len(metrics)), 100):
        client.log_batch(run_id, metrics=metrics[i:i + 100], params=params[i:i + 100])
    for key in ("git_commit", "data_hash", "run_id"):
        if key in meta.provenance:
            client.set_tag(run_id, f"source.{key}", str(meta.provenance[key]))


def register_package(
    package_dir: str | Path,
    *,
    name: str = REGISTERED_MODEL,
    run_id: str | None = None,
    metrics: dict[str, float] | None = None,
    tags: dict[str, str] | None = None,
    tracking_uri: str | None = None,
    experiment: str = EXPERIMENT_NAME,
) -> VersionInfo:
    """Log a model package as an MLflow pyfunc model and register it as a new version.

    Parameters
    ----------
    package_dir
        Folder written by :func:`mmx.model.package.save_package`.
    name
        Registered model name.
    run_id
        Run to log into (the training run); a new run in ``experiment`` if None or unknown.
    metrics
        Test-set figures to store in the registered copy's metadata (the folder itself is
        left untouched: it is the train stage's output).
    tags
        Extra version tags.
    tracking_uri
        Store; default :func:`mmx.tracking.store.default_tracking_uri`.

    Returns
    -------
    VersionInfo
        The new version, tagged with git commit, data hash and key metrics.
    """
    import mlflow
    import numpy as np
    from mlflow.exceptions import MlflowException
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    from mmx import __version__

    package = load_package(package_dir)  # validates before anything is logged
    source_name = Path(package_dir).name
    staging = Path(tempfile.mkdtemp(prefix="mmx-register-"))
    if metrics:
        package.meta.metrics = {**package.meta.metrics, **metrics}
        package_dir = save_package(package.net, package.meta, staging / "package")
    client, uri = _client(tracking_uri)
    if run_id is not None:
        try:
            client.get_run(run_id)
        except MlflowException:
            log.warning("run %s is not in %s; logging into a new run", run_id, uri)
            run_id = None
    if run_id is None:
        exp_id = _ensure_experiment(client, uri, experiment)
        run_id = client.create_run(exp_id, run_name=f"imported-{source_name}").info.run_id
        # the package's own record, so the run compares with training runs in the UI
        _log_package_record(client, run_id, package.meta)
        client.set_terminated(run_id)
    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, -1))]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, -1, -1))]),
    )
    with mlflow.start_run(run_id=run_id), warnings.catch_warnings():
        # the tensor signature describes the input; an example would only cost a forward pass
        warnings.filterwarnings("ignore", message=".*input example was not provided.*")
        info = _import_pyfunc().log_model(
            name="model",
            python_model=str(PYFUNC_MODEL_FILE),  # models from code
            artifacts={"package": str(Path(package_dir).resolve())},
            signature=signature,
            pip_requirements=[f"mmx=={__version__}"],
            registered_model_name=name,
            await_registration_for=0,
        )
    shutil.rmtree(staging, ignore_errors=True)
    version = int(info.registered_model_version)
    meta = package.meta
    version_tags = {
        "git_commit": str(meta.provenance.get("git_commit", "unknown")),
        "data_hash": str(meta.provenance.get("data_hash", "unknown")),
        "architecture": meta.architecture,
        **{k: f"{meta.metrics[k]:.6g}" for k in _TAGGED_METRICS if k in meta.metrics},
        **(tags or {}),
    }
    for key, value in version_tags.items():
        client.set_model_version_tag(name, str(version), key, value)
    return VersionInfo(name, version, (), run_id, 0, version_tags)


def promote(
    name: str, version: int | str, *, alias: str = PRODUCTION_ALIAS, tracking_uri: str | None = None
) -> None:
    """Point ``alias`` at ``version`` of ``name`` (moving it from any other version).

    Raises
    ------
    ModelError
        If the registered model or the version does not exist.
    """
    from mlflow.exceptions import MlflowException

    client, uri = _client(tracking_uri)
    try:
        client.get_model_version(name, str(version))
    except MlflowException:
        known = ", ".join(str(v.version) for v in list_versions(name, tracking_uri=uri)) or "none"
        raise ModelError(f"model {name!r} has no version {version} in {uri} "
                         f"(versions: {known})") from None
    client.set_registered_model_alias(name, alias, str(version))


def list_versions(
    name: str = REGISTERED_MODEL, *, tracking_uri: str | None = None
) -> list[VersionInfo]:
    """All versions of ``name``, newest first (empty if the model is not registered)."""
    client, _ = _client(tracking_uri)
    versions = client.search_model_versions(f"name = '{name}'")
    aliases: dict[str, list[str]] = {}
    if versions:
        for alias, ver in client.get_registered_model(name).aliases.items():
            aliases.setdefault(str(ver), []).append(alias)
    out = [
        VersionInfo(v.name, int(v.version), tuple(sorted(aliases.get(str(v.version), []))),
                    v.run_id or "", int(v.creation_timestamp or 0), dict(v.tags or {}))
        for v in versions
    ]
    return sorted(out, key=lambda v: -v.version)


def release_package_dir() -> Path:
    """Folder of the release model shipped inside the mmx package."""
    return _PACKAGE_DIR / "release"


def _parse_models_uri(spec: str) -> tuple[str, str | None, str | None]:
    body = spec.removeprefix("models:/")
    if "@" in body:
        name, alias = body.split("@", 1)
        return name, None, alias
    name, _, version = body.partition("/")
    if not name or not version:
        raise ModelError(f"model URI {spec!r} must be models:/NAME@ALIAS or models:/NAME/VERSION")
    return name, version, None


def _sqlite_file(uri: str) -> Path | None:
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri.removeprefix("sqlite:///"))


def _read_version_sqlite(uri: str, name: str, version: str | None,
                         alias: str | None) -> CacheRecord | None | bool:
    """The version an alias (or number) names, read from a sqlite store with ``sqlite3``.

    Returns a :class:`~mmx.tracking.model_cache.CacheRecord`; ``False`` when the store answers
    that there is no such alias/version (or no store file); None when this store cannot be
    read this way (another backend, an unknown schema): the caller then asks MLflow.
    """
    import sqlite3

    db = _sqlite_file(uri)
    if db is None:
        return None
    if not db.is_file():
        return False
    try:
        con = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=10)
    except sqlite3.Error:
        return None
    try:
        cols = {r[1] for r in con.execute("PRAGMA table_info(model_versions)")}
        ws = " AND a.workspace = v.workspace" if "workspace" in cols else ""
        query = ("SELECT v.version, v.run_id, v.storage_location, v.status "
                 "FROM model_versions v ")
        if alias is not None:
            query += ("JOIN registered_model_aliases a ON a.name = v.name AND "
                      f"a.version = v.version{ws} WHERE a.name = ? AND a.alias = ?")
            args = (name, alias)
        else:
            query += "WHERE v.name = ? AND v.version = ?"
            args = (name, int(version))
        rows = con.execute(query, args).fetchall()
    except (sqlite3.Error, ValueError):
        return None
    finally:
        con.close()
    if len(rows) != 1:
        return False if not rows else None
    ver, run_id, location, status = rows[0]
    if status not in (None, "READY") or not location:
        return None
    return CacheRecord(uri, name, int(ver), run_id or "", str(location))


def _local_artifacts(location: str) -> Path | None:
    """The folder of a ``file://`` (or plain path) storage location, if it is on this machine."""
    from urllib.parse import unquote, urlparse

    parsed = urlparse(location)
    if parsed.scheme not in ("", "file") or parsed.netloc not in ("", "localhost"):
        return None
    folder = Path(unquote(parsed.path))
    return folder if folder.is_dir() else None


def _package_root(folder: Path) -> Path | None:
    found = sorted(folder.rglob("mmx_model.json"))
    return found[0].parent if found else None


def _fetch_into_cache(spec: str, record: CacheRecord) -> Path:
    """Copy version ``record`` from the store into the cache (MLflow only if remote)."""
    local = _local_artifacts(record.storage_location)
    root = _package_root(local) if local is not None else None
    if root is not None:
        return model_cache.store(record, root)
    import mlflow
    from mlflow.exceptions import MlflowException

    _client(record.tracking_uri)
    dest = Path(tempfile.mkdtemp(prefix="mmx-model-"))
    try:
        got = mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{record.name}/{record.version}", dst_path=str(dest),
            tracking_uri=record.tracking_uri)
        root = _package_root(Path(got))
        if root is None:
            raise ModelError(f"{spec}: version {record.version} holds no mmx model package")
        return model_cache.store(record, root)
    except (MlflowException, OSError) as exc:
        raise ModelError(f"{spec}: version {record.version} is registered but its files "
                         f"cannot be read ({exc})") from None
    finally:
        shutil.rmtree(dest, ignore_errors=True)


def _record_from_mlflow(spec: str, uri: str, name: str, version: str | None,
                        alias: str | None) -> CacheRecord:
    from mlflow.exceptions import MlflowException

    client, uri = _client(uri)
    try:
        mv = (client.get_model_version_by_alias(name, alias) if alias
              else client.get_model_version(name, version))
    except MlflowException:
        _not_found(spec, uri, name)
    location = getattr(mv, "storage_location", None) or mv.source or ""
    return CacheRecord(uri, name, int(mv.version), mv.run_id or "", str(location))


def _not_found(spec: str, uri: str, name: str):
    versions = list_versions(name, tracking_uri=uri)
    have = "; ".join(f"v{v.version}" + (f" @{','.join(v.aliases)}" if v.aliases else "")
                     for v in versions) or "no registered versions"
    raise ModelError(f"{spec}: not found in {uri} ({have}); run `make run` to train and "
                     "register one, or pass --model") from None


def _from_registry(spec: str, tracking_uri: str | None, *,
                   lazy: bool = False) -> ModelPackage:
    """Load a registered version through the local cache (:mod:`mmx.tracking.model_cache`).

    On a sqlite store the alias is read with ``sqlite3`` and a cached version is loaded
    without importing MLflow at all; MLflow is used only for other stores, or to fetch a
    version whose artifacts are not on this machine.
    """
    uri = tracking_uri or default_tracking_uri()
    name, version, alias = _parse_models_uri(spec)
    relocate_store(uri)
    record = _read_version_sqlite(uri, name, version, alias)
    if record is False:
        _not_found(spec, uri, name)
    if record is None:
        record = _record_from_mlflow(spec, uri, name, version, alias)
    folder = model_cache.lookup(record)
    if folder is None:
        folder = _fetch_into_cache(spec, record)
    package = load_package(folder, source=spec, lazy=lazy)
    package.registry = {"name": name, "version": record.version, "alias": alias or "",
                        "run_id": record.run_id, "tracking_uri": uri,
                        "cache": str(folder)}
    return package


def _has_alias(name: str, alias: str, tracking_uri: str | None) -> bool:
    """Whether the store holds ``name@alias``; a store that cannot be read is an error.

    Only the store's own answer "no such model or alias" (or no store file) is False: a
    damaged or locked store must not quietly send users to another model.

    Raises
    ------
    ModelError
        Naming the store and the reason, when it cannot be read.
    """
    uri = tracking_uri or default_tracking_uri()
    found = _read_version_sqlite(uri, name, None, alias)
    if found is not None:
        return found is not False
    from mlflow.exceptions import MlflowException

    try:
        client, _ = _client(uri)
        store_log = logging.getLogger("mlflow.store.db.utils")  # would log the error with a
        level = store_log.level  # traceback; the ModelError below says it in one line
        store_log.setLevel(logging.CRITICAL)
        try:
            client.get_model_version_by_alias(name, alias)
        finally:
            store_log.setLevel(level)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return False  # no such registered model / "alias ... not found"
        raise _unreadable_store(uri, exc) from None
    except Exception as exc:  # sqlalchemy, alembic or OS errors of a damaged store
        raise _unreadable_store(uri, exc) from None
    return True


def _unreadable_store(uri: str, exc: Exception) -> ModelError:
    reason = " ".join(str(exc).split())[:200]
    return ModelError(
        f"cannot read the model registry at {uri} ({type(exc).__name__}: {reason}); without "
        f"--model mmx uses models:/{REGISTERED_MODEL}@{PRODUCTION_ALIAS} from it (the shipped "
        "release model only when the store has none): restore the store, point "
        f"--tracking-uri elsewhere, or pass --model FOLDER (the release model: --model "
        f"{release_package_dir()})")


def resolve_model(spec: str | None = None, *, tracking_uri: str | None = None,
                  lazy: bool = False) -> ModelPackage:
    """Load the model a user names.

    Parameters
    ----------
    spec
        ``models:/NAME@ALIAS``, ``models:/NAME/VERSION``, a local model folder, or None for
        the project's production model (``models:/mmx@production``), falling back to the
        release model shipped with mmx when the store has none (no store file, or a store
        that answers it has no such model or alias).

    Raises
    ------
    ModelError
        If the named model, version, alias or folder does not exist, or, with ``spec``
        None, the store exists but cannot be read (never a silent fall-back).

    With ``lazy`` the network is built on first use (:func:`mmx.model.package.load_package`).
    """
    if spec is None:
        default = f"models:/{REGISTERED_MODEL}@{PRODUCTION_ALIAS}"
        if _has_alias(REGISTERED_MODEL, PRODUCTION_ALIAS, tracking_uri):
            return _from_registry(default, tracking_uri, lazy=lazy)
        release = release_package_dir()
        if (release / "mmx_model.json").is_file():
            package = load_package(release, source="mmx release model", lazy=lazy)
            package.registry = {"name": "release", "version": 0, "alias": "", "run_id": ""}
            return package
        raise ModelError(f"no production model: {default} is not in "
                         f"{tracking_uri or default_tracking_uri()} and no release model is "
                         "installed; run `make run` or pass --model")
    if spec.startswith("models:/"):
        return _from_registry(spec, tracking_uri, lazy=lazy)
    path = Path(spec)
    if not path.exists():
        raise ModelError(f"{spec}: no such model folder, and not a models:/ URI")
    return load_package(path, source=str(path), lazy=lazy)
