"""Applying a model: tiling, runtimes, inference, masks, outputs, the Python API, the pyfunc."""
