"""The Hydra config tree, shipped with the package (``pkg://intentloop.configs``)."""
