"""The catalogue: one module per phenomenon, each defining `EXPERIMENT` (see `tdlab.experiments.base`)."""
