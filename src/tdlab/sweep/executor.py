"""Running a sweep's points, resumably, in local processes or on a Ray cluster.

Every point is one run directory `<out>/<sweep name>/<run id>` with a stable id, so a rerun of the same spec
skips the finished runs (done, diverged), resumes the partial training runs from their last checkpoint (no metric
row lost or duplicated, see `tdlab.store.run`), and starts the rest. Catalogue experiments have no checkpoints: a
partial one is started again from scratch. All configs are validated before anything runs.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Literal

from tdlab.store import Run
from tdlab.sweep.spec import SweepPoint, SweepSpec

Backend = Literal["local", "ray"]
FINISHED = ("done", "diverged")


@dataclass
class SweepSummary:
    """Counts of the points by outcome: skipped ones were already finished before this invocation."""

    counts: Counter
    folder: Path


def validate(spec: SweepSpec, points: list[SweepPoint]) -> None:
    """Validate every point's config as its run would, raising ValueError naming the bad field."""
    if spec.kind == "train":
        from tdlab.train import TrainConfig

        for point in points:
            TrainConfig.model_validate(point.config)
        return
    from tdlab.experiments import get

    experiment = get(spec.kind)
    for point in points:
        experiment.make_config(**point.config)


def run_point(kind: str, run_id: str, config: dict[str, Any], folder: str, threads: int = 0) -> str:
    """Run (or resume, or skip) one point; returns its final status. Safe to call in a fresh process."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    path = Path(folder) / run_id
    if path.exists():
        status = Run.open(path).status
        if status in FINISHED:
            return "skipped"
        if kind == "train":
            from tdlab.train import resume

            return resume(path).status
        shutil.rmtree(path)
    if kind == "train":
        from tdlab.train import TrainConfig, train

        return train(TrainConfig.model_validate(config), out=folder, run_id=run_id).status
    from tdlab.experiments import run

    try:
        return run(kind, out=folder, run_id=run_id, **config).run.status
    except Exception:  # the run directory records the failure
        return "failed"


Report = Callable[[Counter, int], None]


def run_sweep(
    spec: SweepSpec,
    points: list[SweepPoint],
    out: str | Path,
    workers: int = 1,
    backend: Backend = "local",
    address: str | None = None,
    report: Report | None = None,
) -> SweepSummary:
    """Run all points into `out/<spec.name>/`; `report(counts, running)` is called as points finish."""
    if workers < 1:
        raise ValueError(f"workers: expected a positive integer, got {workers}")
    if backend not in ("local", "ray"):
        raise ValueError(f"backend: expected one of 'local', 'ray', got {backend!r}")
    validate(spec, points)
    folder = Path(out) / spec.name
    folder.mkdir(parents=True, exist_ok=True)
    threads = max(1, (os.cpu_count() or 1) // workers)
    jobs = [(spec.kind, p.run_id, p.config, str(folder), threads) for p in points]
    counts: Counter = Counter()
    notify = report or (lambda counts, running: None)
    if backend == "ray":
        _run_ray(jobs, workers, address, counts, notify)
    else:
        _run_local(jobs, workers, counts, notify)
    return SweepSummary(counts, folder)


def _run_local(jobs: list[tuple], workers: int, counts: Counter, notify: Report) -> None:
    if workers == 1:
        for job in jobs:
            notify(counts, 1)
            counts[run_point(*job)] += 1
        notify(counts, 0)
        return
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        pending = {pool.submit(run_point, *job) for job in jobs}
        while pending:
            notify(counts, min(workers, len(pending)))
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                counts[future.result() if future.exception() is None else "failed"] += 1
        notify(counts, 0)


def _run_ray(jobs: list[tuple], workers: int, address: str | None, counts: Counter, notify: Report) -> None:
    try:
        import ray
    except ImportError:
        raise ValueError("backend: 'ray' needs the ray extra: pip install 'tdlab[ray]'") from None
    started_here = not ray.is_initialized()
    if started_here:
        if address is None:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
    try:
        remote = ray.remote(num_cpus=1)(run_point)
        pending = [remote.remote(*job[:-1], 1) for job in jobs]
        while pending:
            notify(counts, min(workers, len(pending)))
            finished, pending = ray.wait(pending, num_returns=1)
            for ref in finished:
                try:
                    counts[ray.get(ref)] += 1
                except ray.exceptions.RayError:
                    counts["failed"] += 1
        notify(counts, 0)
    finally:
        if started_here:
            ray.shutdown()
