"""The main job (`make run`): raw survey in place, `dvc repro`, a production model at the end.

On a fresh clone ``data/`` is absent and no DVC remote is reachable, so the default raw
survey is regenerated with ``mmx surveys simulate`` from ``params.yaml``; the simulator is
deterministic, so the files match the hash recorded in ``data.dvc``. A user with real
exposures replaces ``data/`` and runs ``dvc add data`` (see the README).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from pipelines.params import ROOT, load_params, path

log = logging.getLogger("mmx.run")


def _run(*args: str) -> None:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("DVC_NO_ANALYTICS", "1")
    log.info("$ %s", " ".join(args))
    subprocess.run(args, cwd=ROOT, env=env, check=True)


def _dvc(*args: str) -> list[str]:
    return [sys.executable, "-m", "dvc", *args]


def _data_status() -> set[str]:
    """What ``dvc status`` says of ``data/`` against ``data.dvc`` (empty: in sync)."""
    out = subprocess.run(_dvc("status", "--json", "data.dvc"), cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    states: set[str] = set()
    for entry in json.loads(out or "{}").get("data.dvc", []):
        if isinstance(entry, dict):
            states.update(entry.get("changed outs", {}).values())
    return states


def ensure_raw_data() -> None:
    """Regenerate the default simulated survey when ``data/`` is missing, and check it."""
    raw = path("raw")
    if not raw.exists() or not any(raw.rglob("*.fits*")):
        log.info("no raw exposures in %s: simulating the default survey (params `survey`)", raw)
        _run(sys.executable, "-m", "mmx", "surveys", "simulate", "--out", str(raw), "--overwrite")
    dvc_file = ROOT / "data.dvc"
    if not dvc_file.is_file():
        _run(*_dvc("add", "data"))
        return
    states = _data_status()
    if states == {"not in cache"}:  # regenerated, same hash as data.dvc: cache it
        _run(*_dvc("commit", "--force", "--quiet", "data.dvc"))
    elif states:
        log.warning("data/ differs from data.dvc (%s): if you replaced the survey on purpose, "
                    "run `dvc add data` and commit data.dvc; the pipeline uses data/ as it is",
                    ", ".join(sorted(states)))


def ensure_real_frames() -> None:
    """Fill ``paths.real`` with the real training frames listed in ``real.train``.

    They are read from ``$MMX_REAL_DIR``, else ``real.source``; where neither exists the
    folder is left empty and training uses simulated skies alone.
    """
    from mmx.cleaning.real_frames import stage_real_frames

    cfg = load_params()["real"]
    source = Path(os.environ.get("MMX_REAL_DIR") or (ROOT / cfg["source"])).resolve()
    if not source.is_dir():
        log.warning("no real frames at %s (set MMX_REAL_DIR): training on simulated skies only",
                    source)
    kept = stage_real_frames(source, path("real"), train=cfg.get("train") or [],
                             holdout=cfg.get("holdout") or [])
    log.info("%d real training frame(s) in %s", len(kept), path("real"))


def ensure_release_registered() -> None:
    """Import the shipped release model as a registry version; make it production if none is.

    Runs before ``dvc repro`` so that the pipeline's own model is promoted over it only if
    at least as good (``register.promote: auto``). Idempotent: a version with the release's
    content (SHA-256 of its weights and metadata, tag ``release_sha256``) is not registered
    twice. A new release of mmx (new weights, or new thresholds for the same weights) is a
    new version, and takes over production from an older release, never from a user's model.
    """
    import hashlib

    from mmx.model.package import weights_sha256
    from mmx.tracking.registry import list_versions, promote, register_package, release_package_dir
    from mmx.tracking.store import PRODUCTION_ALIAS, default_tracking_uri

    release = release_package_dir()
    if not (release / "mmx_model.json").is_file():
        return
    uri = default_tracking_uri(ROOT)
    name = load_params()["register"]["name"]
    weights = weights_sha256(release)
    content = hashlib.sha256(weights.encode() + (release / "mmx_model.json").read_bytes())
    versions = list_versions(name, tracking_uri=uri)
    if any(v.tags.get("release_sha256") == content.hexdigest() for v in versions):
        return
    info = register_package(release, name=name, tracking_uri=uri,
                            tags={"weights_sha256": weights, "release_sha256": content.hexdigest(),
                                  "source": "mmx release"})
    production = [v for v in versions if PRODUCTION_ALIAS in v.aliases]
    take_over = not production or production[0].tags.get("source") == "mmx release"
    if take_over:
        promote(name, info.version, alias=PRODUCTION_ALIAS, tracking_uri=uri)
    log.info("release model registered as %s v%d%s", name, info.version,
             " (production)" if take_over else "")


def main() -> None:
    """Raw and real data in place, release model registered, ``dvc repro``, summary."""
    ensure_raw_data()
    ensure_real_frames()
    ensure_release_registered()
    _run(*_dvc("repro"))
    registered = json.loads((path("results") / "registered.json").read_text())
    metrics = json.loads((path("results") / "metrics.json").read_text())
    log.info("model %s v%s (%s), mean TPR at FPR=1e-3: %.3f; try: mmx predict FILE.fits --preview",
             registered["name"], registered["version"],
             "@production" if registered["promoted"] else "candidate, not promoted",
             metrics.get("mean.tpr_at_fpr_1e-3", float("nan")))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    try:
        main()
    except subprocess.CalledProcessError as exc:
        log.error("step failed (exit %d): %s", exc.returncode, " ".join(map(str, exc.cmd)))
        sys.exit(exc.returncode or 1)
