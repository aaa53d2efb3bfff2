"""Stage ``train``: fit the network on the training split (:func:`mmx.training.fit.train`)."""

from __future__ import annotations

from mmx.training.fit import train
from pipelines import run_stage
from pipelines.params import ROOT, load_params, path

__all__ = ["main"]


def main() -> None:
    """Run the stage with the project's ``params.yaml``."""
    params = load_params()
    train(params["train"], train_dir=path("train"), val_dir=path("val"),
          model_dir=path("model"), results_dir=path("results"), root=ROOT,
          all_params={"paths": params["paths"], "train": params["train"]})


if __name__ == "__main__":
    run_stage(main, "train")
