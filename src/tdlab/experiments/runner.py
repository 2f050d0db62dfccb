"""Running a catalogue experiment into a run directory: config, metrics, checks, figures, status."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import pandas as pd
from matplotlib.figure import Figure

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from tdlab.config import resolve_device  # noqa: E402
from tdlab.experiments.base import Check, Context, Experiment, ExperimentConfig, Result  # noqa: E402
from tdlab.experiments.registry import get  # noqa: E402
from tdlab.store import Run  # noqa: E402

Tracker = Callable[[Iterable[Any], str, int | None], Iterator[Any]]


@dataclass
class ExperimentRun:
    """A finished experiment: its run directory and what `run` returned."""

    experiment: Experiment
    config: ExperimentConfig
    result: Result
    run: Run
    duration_s: float

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.result.checks)


def run(
    name: str,
    preset: str | None = None,
    out: str | Path = "runs",
    run_id: str | None = None,
    track: Tracker | None = None,
    **overrides: Any,
) -> ExperimentRun:
    """Run the catalogue experiment `name` and write its run directory under `out`.

    The config is the experiment's defaults (the quick config), updated by `preset` (e.g. "full") and then by
    `overrides`; it is validated before anything is written.

    Example:
        >>> result = run("quadratic-step-size", out="/tmp/runs")  # doctest: +SKIP
        >>> [(c.name, c.verdict) for c in result.result.checks]  # doctest: +SKIP
    """
    experiment = get(name)
    config = experiment.make_config(preset, **overrides)
    record = Run.create(out, config.model_dump(mode="json"), kind=experiment.name, run_id=run_id, seed=config.seed)
    with record:
        began, began_cpu = time.perf_counter(), time.process_time()
        files = record.path / "figures"
        files.mkdir(exist_ok=True)
        result = experiment.run(config, Context(resolve_device(config.device), track, files))
        duration, cpu = time.perf_counter() - began, time.process_time() - began_cpu
        save_result(record, result)
        failed = [c.name for c in result.checks if not c.passed]
        # cpu_s: CPU time of this process over all its threads; on a shared machine it says what the wall time
        # duration_s does not (how much work the run was)
        record.set_status("done", duration_s=duration, cpu_s=cpu, preset=preset, checks_failed=failed)
    return ExperimentRun(experiment, config, result, record, duration)


def save_result(record: Run, result: Result) -> None:
    """Write metrics, checks and figures (PNG and SVG) of `result` into the run directory."""
    if not result.metrics.empty:
        record.write_results(result.metrics)
    record.write_checks([check.model_dump() for check in result.checks])
    save_figures(record, result.figures)


def save_figures(record: Run, figures: dict[str, Figure]) -> list[Path]:
    """Save each figure as PNG and SVG in the run's `figures/` folder; returns the PNG paths."""
    saved = []
    for figure_name, figure in figures.items():
        for ext in ("png", "svg"):
            figure.savefig(record.figure_path(figure_name, ext), dpi=120, bbox_inches="tight")
        saved.append(record.figure_path(figure_name, "png"))
        plt.close(figure)
    return saved


def stored(record: Run) -> tuple[Experiment, ExperimentConfig, pd.DataFrame]:
    """The experiment of a stored catalogue run, its validated config and its metrics (from `results.parquet`)."""
    experiment = get(record.meta.get("kind", ""))
    config = experiment.config.model_validate(record.config)
    return experiment, config, record.results()


def recheck(record: Run) -> list[Check]:
    """The checks of a stored catalogue run, evaluated again from its stored metrics and config alone."""
    experiment, config, metrics = stored(record)
    return experiment.checks(metrics, config)


def redraw(record: Run) -> list[Path]:
    """The figures of a stored catalogue run, drawn again from its stored metrics into its `figures/` folder."""
    experiment, config, metrics = stored(record)
    return save_figures(record, experiment.figures(metrics, config))
