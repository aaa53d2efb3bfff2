"""Stage `register`: the trained package becomes a registry version; promotion is gated.

The new version always gets the ``candidate`` alias. It is promoted to the production
alias when ``register.promote`` is ``always``, or ``auto`` and either no production
version exists or the new one is at least as good on the key metric.
"""

from __future__ import annotations

import json
import logging

from mmx.model_package import load_package
from mmx.registry import KEY_METRIC, list_versions, promote, register_package
from mmx.tracking import default_tracking_uri
from pipelines.params import ROOT, path, section

log = logging.getLogger("mmx.register")


def _should_promote(policy: str, new: float | None, current: float | None, has_prod: bool) -> bool:
    if policy == "always":
        return True
    if policy == "never":
        return False
    if not has_prod:
        return True
    return new is not None and (current is None or new >= current)


def main() -> None:
    """Run the stage with the project's ``params.yaml``."""
    params = section("register")
    name, alias, policy = params["name"], params["alias"], params["promote"]
    uri = default_tracking_uri(ROOT)
    package_dir = path("model")
    package = load_package(package_dir)
    metrics = json.loads((path("results") / "metrics.json").read_text())
    current = [v for v in list_versions(name, tracking_uri=uri) if alias in v.aliases]
    info = register_package(package_dir, name=name, tracking_uri=uri, metrics=metrics,
                            run_id=package.meta.provenance.get("run_id"))
    promote(name, info.version, alias="candidate", tracking_uri=uri)
    new_score = metrics.get(KEY_METRIC)
    cur_tags = current[0].tags if current else {}
    cur_score = float(cur_tags[KEY_METRIC]) if KEY_METRIC in cur_tags else None
    promoted = _should_promote(policy, new_score, cur_score, bool(current))
    if promoted:
        promote(name, info.version, alias=alias, tracking_uri=uri)
    log.info("registered %s v%d (%s = %s); %s", name, info.version, KEY_METRIC, new_score,
             f"promoted to @{alias}" if promoted else f"@{alias} stays on v{current[0].version}")
    out = path("results") / "registered.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "name": name, "version": info.version, "run_id": info.run_id,
        "promoted": promoted, "alias": alias if promoted else "candidate",
        "model_uri": f"models:/{name}/{info.version}", "tracking_uri": uri,
        KEY_METRIC: new_score,
    }, indent=2))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    main()
