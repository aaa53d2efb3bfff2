"""What a trained model is, for training and serving: networks, packages, priors, hardware."""
