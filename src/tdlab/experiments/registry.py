"""Discovery of the catalogue: every module of `tdlab.experiments.catalogue` that defines `EXPERIMENT`."""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from tdlab.experiments import catalogue
from tdlab.experiments.base import Experiment


@cache
def experiments() -> dict[str, Experiment]:
    """All catalogue experiments by name, in the order of their modules' names."""
    found: dict[str, Experiment] = {}
    for info in sorted(pkgutil.iter_modules(catalogue.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{catalogue.__name__}.{info.name}")
        experiment = getattr(module, "EXPERIMENT", None)
        if isinstance(experiment, Experiment):
            if experiment.name in found:
                raise RuntimeError(f"two catalogue modules define the experiment {experiment.name!r}")
            found[experiment.name] = experiment
    return found


def get(name: str) -> Experiment:
    """The experiment called `name`; a clear error listing the catalogue otherwise."""
    catalogue_ = experiments()
    if name not in catalogue_:
        raise ValueError(f"experiment: expected one of {', '.join(catalogue_)}, got {name!r}")
    return catalogue_[name]
