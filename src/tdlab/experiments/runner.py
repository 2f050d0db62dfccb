"""Running a catalogue experiment into a run directory: config, metrics, checks, figures, status."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import matplotlib
import pandas as pd
from matplotlib.figure import Figure

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from tdlab.config import configure_threads, resolve_device, worker_threads  # noqa: E402
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

    @classmethod
    def load(cls, record: Run) -> ExperimentRun:
        """A finished run read back from its directory: config, metrics and checks as stored (figures not loaded)."""
        experiment, config, metrics = stored(record)
        checks = [Check.model_validate(check) for check in record.checks()]
        return cls(experiment, config, Result(metrics, checks), record, float(record.meta.get("duration_s", 0.0)))


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


Done = Callable[[str, BaseException | None], None]


def run_many(
    runs: Sequence[tuple[str, str | None]],
    out: str | Path = "runs",
    jobs: int = 1,
    track: Tracker | None = None,
    done: Done | None = None,
) -> list[ExperimentRun]:
    """Run the catalogue experiments `runs` ((name, preset) pairs), `jobs` at a time, each into its own run directory
    under `out`; returns the finished ones in the order given (an experiment that raised is left out, and
    `done(name, error)` is told, as it is told `done(name, None)` of each one that finished).

    With `jobs` > 1 the experiments run in that many worker processes (started fresh, "spawn"), each with an equal
    share of the usable cores as its torch and BLAS threads (`tdlab.config.worker_threads`): most experiments are
    many small tensor operations that one thread runs as fast as two, so on 2 cores `tdlab reproduce --quick` takes
    half the wall time with 2 jobs. With `jobs` = 1 they run in this process, in order, with `track` as progress.
    """
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs: expected a positive integer, got {jobs!r}")
    notify = done or (lambda name, error: None)
    finished: dict[str, ExperimentRun] = {}
    if jobs == 1:
        for name, preset in runs:
            try:
                finished[name] = run(name, preset=preset, out=out, track=track)
            except Exception as error:  # a broken experiment is reported, the others still run
                notify(name, error)
            else:
                notify(name, None)
        return [finished[name] for name, _ in runs if name in finished]
    threads = worker_threads(jobs)
    pool = ProcessPoolExecutor(jobs, get_context("spawn"), initializer=configure_threads, initargs=(threads,))
    try:
        pending: dict[Future, str] = {pool.submit(_run_stored, name, preset, str(out)): name for name, preset in runs}
        while pending:
            ended, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in ended:
                name = pending.pop(future)
                if future.exception() is not None:
                    notify(name, future.exception())
                    continue
                finished[name] = ExperimentRun.load(Run.open(future.result()))
                notify(name, None)
    except KeyboardInterrupt:
        pool.shutdown(wait=False, cancel_futures=True)  # the runs in flight see the terminal's Ctrl-C and record it
        raise
    finally:
        pool.shutdown(wait=True)
    return [finished[name] for name, _ in runs if name in finished]


def _run_stored(name: str, preset: str | None, out: str) -> str:
    """`run` in a worker process; returns the run directory (the parent reads the run back from it)."""
    return str(run(name, preset=preset, out=out).run.path)


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
