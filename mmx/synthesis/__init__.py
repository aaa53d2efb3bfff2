"""Training data: clean cutouts plus injected contaminants with exact per-pixel truth."""
