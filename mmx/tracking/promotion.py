"""The promotion gate: when a new registry version may take the production alias.

The ``register`` stage and ``mmx models promote`` apply the same rule: a version moves
to the alias when the policy is ``always``, or ``auto`` and either no version holds the
alias or the new one is at least as good on :data:`mmx.tracking.registry.KEY_METRIC`.
"""

from __future__ import annotations

from pathlib import Path

from mmx.errors import ConfigError

__all__ = ["POLICIES", "register_and_gate", "should_promote"]

#: Values of ``register.promote``.
POLICIES = ("auto", "always", "never")


def should_promote(policy: str, new: float | None, current: float | None, *,
                   has_current: bool) -> bool:
    """True when a version scoring ``new`` may replace one scoring ``current``.

    Raises
    ------
    ConfigError
        On a policy not in :data:`POLICIES`.
    """
    if policy not in POLICIES:
        raise ConfigError(f"register.promote must be one of {', '.join(POLICIES)}, "
                          f"got {policy!r}")
    if policy == "always":
        return True
    if policy == "never":
        return False
    if not has_current:
        return True
    return new is not None and (current is None or new >= current)


def register_and_gate(package_dir: str | Path, *, metrics: dict[str, float], name: str,
                      alias: str, policy: str, tracking_uri: str) -> dict:
    """Register a package (alias ``candidate``), then promote it to ``alias`` if the gate lets it.

    Returns
    -------
    dict
        ``name``, ``version``, ``run_id``, ``promoted``, ``alias``, ``model_uri``,
        ``tracking_uri``, the key metric, and ``previous`` (the version that held the alias).
    """
    from mmx.model.package import load_package
    from mmx.tracking.registry import KEY_METRIC, list_versions, promote, register_package

    should_promote(policy, None, None, has_current=False)  # a bad policy fails before any write
    package = load_package(package_dir)
    current = [v for v in list_versions(name, tracking_uri=tracking_uri) if alias in v.aliases]
    info = register_package(package_dir, name=name, tracking_uri=tracking_uri, metrics=metrics,
                            run_id=package.meta.provenance.get("run_id"))
    promote(name, info.version, alias="candidate", tracking_uri=tracking_uri)
    new_score = metrics.get(KEY_METRIC)
    tags = current[0].tags if current else {}
    cur_score = float(tags[KEY_METRIC]) if KEY_METRIC in tags else None
    promoted = should_promote(policy, new_score, cur_score, has_current=bool(current))
    if promoted:
        promote(name, info.version, alias=alias, tracking_uri=tracking_uri)
    return {"name": name, "version": info.version, "run_id": info.run_id,
            "promoted": promoted, "alias": alias if promoted else "candidate",
            "model_uri": f"models:/{name}/{info.version}", "tracking_uri": tracking_uri,
            KEY_METRIC: new_score, "previous": current[0].version if current else None}
