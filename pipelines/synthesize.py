"""Stage `synthesize`: clean cutouts + injected contaminants -> train/val/test shard sets.

Reads the clean set and its real cosmic-ray footprints (``paths.cosmic_rays``),
``synthesize:`` of params.yaml (and the BG/BBG rule settings of ``clean:``, so
that synthesized truth follows exactly the clean stage's definition); writes the three
shard sets, ``results/synthesis.json`` and ``results/synthesis_preview.png``.
"""

from __future__ import annotations

from mmx.cleaning.config import CleanConfig
from mmx.cleaning.cosmic_ray_footprints import load_footprints
from mmx.io.shards import ShardSet
from mmx.synthesis.config import SynthesisConfig
from mmx.synthesis.splits import SPLITS
from mmx.synthesis.stage import synthesize
from pipelines import run_stage
from pipelines.params import path, section


def main() -> None:
    """Run the stage with the project's ``params.yaml``."""
    settings = section("synthesize")
    clean = CleanConfig.from_mapping(section("clean"))
    settings.setdefault("background", {
        "mesh": clean.mesh, "smooth": clean.bbg_smooth, "nsigma": clean.bbg_nsigma,
        "min_area": clean.bbg_min_area, "core_nsigma": clean.core_nsigma,
    })
    config = SynthesisConfig.from_mapping(settings)
    results = path("results")
    footprints = load_footprints(path("cosmic_rays"))
    synthesize(
        ShardSet(path("clean")),
        out={split: path(split) for split in SPLITS},
        config=config,
        report=results / "synthesis.json",
        preview=results / "synthesis_preview.png",
        footprints=footprints,
    )


if __name__ == "__main__":
    run_stage(main, "synthesize")
