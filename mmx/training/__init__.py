"""Training a model: settings, data, losses, metrics, scoring, calibration, evaluation."""
