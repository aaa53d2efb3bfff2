"""Stage ``evaluate``: the trained package scored on the test split (mmx.training.evaluation)."""

from __future__ import annotations

from mmx.training.evaluation import evaluate
from pipelines import run_stage
from pipelines.params import load_params, path

__all__ = ["main"]


def main() -> None:
    """Run the stage with the project's ``params.yaml``."""
    params = load_params()
    evaluate(params["evaluate"], model_dir=path("model"), test_dir=path("test"),
             results_dir=path("results"))


if __name__ == "__main__":
    run_stage(main, "evaluate")
