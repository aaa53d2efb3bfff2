"""Stage ``evaluate``: score the trained package on the test split (:mod:`mmx.evaluation`)."""

from __future__ import annotations

import logging

from mmx.evaluation import evaluate
from pipelines.params import load_params, path

__all__ = ["main"]


def main() -> None:
    """Run the stage with the project's ``params.yaml``."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    params = load_params()
    evaluate(params["evaluate"], model_dir=path("model"), test_dir=path("test"),
             results_dir=path("results"))


if __name__ == "__main__":
    main()
