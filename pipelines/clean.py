"""Stage `clean`: exposures (``paths.raw`` and the real frames of ``paths.real``) to clean cutouts.

Reads the ``clean:`` section of params.yaml; writes the shard set, the real frames'
cosmic-ray footprints (``paths.cosmic_rays``) and ``results/clean_report.json`` (cutouts
kept and rejected by reason, ignored pixels by cause, per instrument). All the work is in
:func:`mmx.cleaning.run_clean`.
"""

from __future__ import annotations

import logging

from mmx.cleaning import CleanConfig, run_clean
from mmx.cleaning.real_frames import check_no_holdout
from pipelines import run_stage
from pipelines.params import path, section

log = logging.getLogger("mmx.clean")


def main() -> None:
    """Run the stage with the project's ``params.yaml``."""
    config = CleanConfig.from_mapping(section("clean"))
    check_no_holdout(path("real"), section("real").get("holdout") or [])
    report = run_clean(path("raw"), path("clean"), extra=[path("real")],
                       report=path("results") / "clean_report.json",
                       footprints=path("cosmic_rays"), config=config)
    log.info("%d cutouts kept, %d rejected in %.1f s", report["cutouts_kept"],
             report["cutouts_rejected"], report["seconds"])


if __name__ == "__main__":
    run_stage(main, "clean")
