"""The contract's promise, for one experiment: its checks and figures come from its stored metrics alone."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import torch

from tdlab.experiments.base import Context, Experiment, ExperimentConfig, Result
from tdlab.store import Run


def assert_rechecks(experiment: Experiment, config: ExperimentConfig, folder: Path) -> Result:
    """Measure once, store the metrics as a run does (Parquet), read them back, and assert that the checks evaluated
    on the stored metrics give the same names, measured values and verdicts as on the fresh ones, and that the
    figures draw from the stored metrics. Returns the fresh result (for further assertions)."""
    metrics = experiment.measure(config, Context(torch.device("cpu")))
    with Run.create(folder, config.model_dump(mode="json"), kind=experiment.name, run_id="recheck") as run:
        run.write_results(metrics)
    stored = Run.open(folder / "recheck").results()
    fresh, again = experiment.checks(metrics, config), experiment.checks(stored, config)
    assert [(c.name, c.verdict) for c in again] == [(c.name, c.verdict) for c in fresh]
    for a, b in zip(fresh, again, strict=True):
        same = a.measured == b.measured or (math.isnan(a.measured) and math.isnan(b.measured))  # nan: nothing to judge
        assert same or abs(a.measured - b.measured) <= 1e-12 * max(1.0, abs(a.measured)), a.name
    figures = experiment.figures(stored, config)
    for figure in figures.values():
        plt.close(figure)
    return Result(metrics, fresh, experiment.figures(metrics, config))
