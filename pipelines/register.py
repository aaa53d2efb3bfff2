"""Stage `register`: the trained package becomes a registry version; promotion is gated.

The new version always gets the ``candidate`` alias; :mod:`mmx.tracking.promotion` decides whether
it also takes ``register.alias`` (``register.promote``: auto, always or never).
"""

from __future__ import annotations

import json
import logging

from mmx.tracking.promotion import register_and_gate
from mmx.tracking.registry import KEY_METRIC
from mmx.tracking.store import default_tracking_uri
from pipelines import run_stage
from pipelines.params import ROOT, path, section

log = logging.getLogger("mmx.register")


def main() -> None:
    """Run the stage with the project's ``params.yaml``."""
    params = section("register")
    result = register_and_gate(
        path("model"), metrics=json.loads((path("results") / "metrics.json").read_text()),
        name=params["name"], alias=params["alias"], policy=params["promote"],
        tracking_uri=default_tracking_uri(ROOT))
    log.info("registered %s v%d (%s = %s); %s", result["name"], result["version"], KEY_METRIC,
             result[KEY_METRIC], f"promoted to @{params['alias']}" if result["promoted"]
             else f"@{params['alias']} stays on v{result['previous']}")
    out = path("results") / "registered.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    run_stage(main, "register")
