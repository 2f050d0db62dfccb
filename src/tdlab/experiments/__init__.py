"""The catalogue of experiments: each lecture claim measured, compared with its theory, and drawn.

Example:
    >>> import tdlab.experiments as ex
    >>> sorted(ex.experiments())  # doctest: +SKIP
    >>> outcome = ex.run("quadratic-step-size", out="/tmp/runs")  # doctest: +SKIP
"""

from tdlab.config import resolve_device
from tdlab.experiments.base import Check, Context, Experiment, ExperimentConfig, Result
from tdlab.experiments.registry import experiments, get
from tdlab.experiments.runner import ExperimentRun, run, run_many

__all__ = [
    "Check",
    "Context",
    "Experiment",
    "ExperimentConfig",
    "ExperimentRun",
    "Result",
    "experiments",
    "get",
    "resolve_device",
    "run",
    "run_many",
]
