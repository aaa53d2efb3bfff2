"""How many 400x400 training images per second synthesis makes (single process).

Uses the clean set at ``paths.clean`` when it exists, else fake clean cutouts
(:func:`mmx.synthesis.demo.demo_clean_samples`); the contaminant probabilities and ranges are
those of params.yaml. Run: ``.venv/bin/python benchmarks/synthesis_speed.py [N]``.
"""

from __future__ import annotations

import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from mmx.io.shards import ShardSet
from mmx.synthesis.config import SynthesisConfig
from mmx.synthesis.demo import demo_clean_samples
from mmx.synthesis.splits import SPLITS
from mmx.synthesis.stage import synthesize

ROOT = Path(__file__).resolve().parents[1]


def main(n_images: int = 60) -> None:
    """Time synthesize_sample over ``n_images`` clean demo cutouts in one process."""
    logging.basicConfig(level=logging.WARNING)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    settings = dict(params["synthesize"])
    clean_dir = ROOT / params["paths"]["clean"]
    if (clean_dir / "summary.json").is_file():
        clean = ShardSet(clean_dir)
        source = f"clean set {clean_dir} ({len(clean)} cutouts)"
    else:
        clean = demo_clean_samples(max(n_images // 2, 3), rng=np.random.default_rng(0),
                                   exposures=10)
        source = "fake clean cutouts (no clean set yet)"
    n_clean = len(clean)
    settings["variants"] = {"train": max(1, round(n_images / n_clean)), "val": 0, "test": 0}
    settings["split_fractions"] = {"train": 1.0, "val": 0.0, "test": 0.0}
    config = SynthesisConfig.from_mapping(settings)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        report = synthesize(clean, out={s: Path(tmp) / s for s in SPLITS}, config=config,
                            progress=False)
        seconds = time.perf_counter() - start
    print(f"source: {source}")
    print(f"{report['images']} training images of 400x400 in {seconds:.1f} s: "
          f"{report['images'] / seconds:.1f} images/s (one process)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 60)
