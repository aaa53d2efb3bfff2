"""The MLflow ``pyfunc`` face of an mmx model, so any MLflow tool can load and serve it.

Logged as MLflow "models from code": this file is stored with the model and
``set_model`` below tells MLflow which object to serve (no pickled Python objects).

The logged artifacts are the :mod:`mmx.model.package` folder; ``predict`` takes one 2-D
image (float, ADU or electrons) and returns the prior-corrected probability planes
``(C, H, W)`` for the classes in ``meta.classes``.
"""

from __future__ import annotations

import warnings

import numpy as np

with warnings.catch_warnings():
    # MLflow 3.17 warns about its own type hints while importing pyfunc; nothing to act on.
    warnings.filterwarnings("ignore", message=".*type hint.*", category=UserWarning)
    from mlflow.models import set_model
    from mlflow.pyfunc import PythonModel

__all__ = ["MmxPyfuncModel"]


class MmxPyfuncModel(PythonModel):
    """Wraps a model package for ``mlflow.pyfunc.load_model``."""

    def load_context(self, context) -> None:
        """Load the model package shipped as the ``package`` artifact."""
        from mmx.model.package import load_package

        self._package = load_package(context.artifacts["package"])

    def predict(self, context, model_input: np.ndarray, params=None) -> np.ndarray:
        """Per-class probabilities ``(C, H, W)`` of one 2-D image."""
        from mmx.serving.inference import Predictor

        image = np.asarray(model_input, dtype=np.float32)
        planes = Predictor(self._package, precision="float32").predict(image, mode="prob").array
        return planes[:-1]  # the last plane is the no-data flag


set_model(MmxPyfuncModel())
