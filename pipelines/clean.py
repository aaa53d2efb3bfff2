"""Stage `clean`: raw exposures (``paths.raw``) to clean labelled cutouts (``paths.clean``).

Reads the ``clean:`` section of params.yaml; writes the shard set and
``results/clean_report.json`` (cutouts kept and rejected by reason, ignored pixels by
cause, per instrument). All the work is in :func:`mmx.cleaning.run_clean`.
"""

from __future__ import annotations

import logging

from mmx.cleaning import CleanConfig, run_clean
from pipelines.params import path, section

log = logging.getLogger("mmx.clean")


def main() -> None:
    config = CleanConfig.from_mapping(section("clean"))
    report = run_clean(path("raw"), path("clean"), report=path("results") / "clean_report.json",
                       config=config)
    log.info("%d cutouts kept, %d rejected in %.1f s", report["cutouts_kept"],
             report["cutouts_rejected"], report["seconds"])


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    main()
