"""mmx: contaminant masks for astronomical images, and the MLOps system behind them."""

__all__ = ["__version__"]

__version__ = "0.1.0"
