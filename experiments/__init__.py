"""User-facing Hydra apps behind the `intentloop` console script."""
