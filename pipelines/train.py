"""Stage ``train``: fit the network on the training split (:func:`mmx.training.fit.train`)."""

from __future__ import annotations

import logging

from mmx.training.fit import train
from pipelines.params import ROOT, load_params, path

__all__ = ["main"]


def main() -> None:
    """Run the stage with the project's ``params.yaml``."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    params = load_params()
    train(params["train"], train_dir=path("train"), val_dir=path("val"),
          model_dir=path("model"), results_dir=path("results"), root=ROOT,
          all_params={"paths": params["paths"], "train": params["train"]})


if __name__ == "__main__":
    main()
