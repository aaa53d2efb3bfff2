"""MLflow: store location and provenance, the registry and its local cache, the promotion gate."""
