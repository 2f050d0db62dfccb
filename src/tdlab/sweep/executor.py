"""Running a sweep's points, resumably, in local processes or on a Ray cluster.

Every point is one run directory `<out>/<sweep name>/<run id>` with a stable id, so a rerun of the same spec
skips the finished runs (done, diverged), resumes the partial training runs from their last checkpoint (no metric
row lost or duplicated, see `tdlab.store.run`), and starts the rest. Catalogue experiments have no checkpoints: a
partial one is started again from scratch. All configs are validated before anything runs.

Fresh training points of one shape (configs equal outside `tdlab.ensemble.VARYING`: seed, learning rate, init
scale) are trained together as ensembles (`tdlab.ensemble.train_ensemble`), split into at least `workers` groups
of at most `MAX_MEMBERS`; each member still gets its own run directory and checkpoints, so a killed ensemble is
resumed member by member. Ensemble members agree with sequential runs to float rounding (about 1e-6), not bit for
bit, and in float32 a long trajectory can amplify that rounding (README, "Sweeps, ensembles, queries");
`ensemble=False` runs every point on its own.
"""

from __future__ import annotations

import math
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
MAX_MEMBERS = 64
"""The largest ensemble a sweep forms; bigger groups of one shape are split."""


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


def run_group(kind: str, run_ids: list[str], configs: list[dict[str, Any]], folder: str, threads: int = 0) -> list[str]:
    """Run one job: a single point (`run_point`), or fresh training points together as an ensemble; if the
    ensemble fails, its members are finished one by one (a member that fails alone too is "failed")."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    if len(run_ids) == 1:
        return [run_point(kind, run_ids[0], configs[0], folder)]
    from tdlab.ensemble import train_ensemble
    from tdlab.train import TrainConfig

    try:
        members = [TrainConfig.model_validate(config) for config in configs]
        return [run.status for run in train_ensemble(members, out=folder, run_ids=run_ids)]
    except Exception:  # fall back to the members one by one, each resumed from its own last checkpoint
        statuses = []
        for run_id, config in zip(run_ids, configs, strict=True):
            status = run_point(kind, run_id, config, folder)
            statuses.append(Run.open(Path(folder) / run_id).status if status == "skipped" else status)
        return statuses


def plan_jobs(
    kind: str, points: list[SweepPoint], folder: Path, workers: int, ensemble: bool = True
) -> list[tuple[list[str], list[dict[str, Any]]]]:
    """The jobs of a sweep as (run ids, configs): fresh training points of one shape grouped, the rest alone.

    A group of n points of one shape becomes max(ceil(n / MAX_MEMBERS), min(workers, n)) near-equal ensembles, so
    that every worker has work; points whose run directory exists (finished or partial) are always alone.
    """
    singles = [([p.run_id], [p.config]) for p in points]
    if kind != "train" or not ensemble:
        return singles
    from tdlab.ensemble import shape_key

    groups: dict[str, list[SweepPoint]] = {}
    jobs = []
    for point, single in zip(points, singles, strict=True):
        key = shape_key(point.config)
        if key is None or (folder / point.run_id).exists():
            jobs.append(single)
        else:
            groups.setdefault(key, []).append(point)
    for members in groups.values():
        count = max(math.ceil(len(members) / MAX_MEMBERS), min(workers, len(members)))
        for chunk in range(count):
            part = members[chunk::count]
            jobs.append(([p.run_id for p in part], [p.config for p in part]))
    return jobs


Report = Callable[[Counter, int], None]


def run_sweep(
    spec: SweepSpec,
    points: list[SweepPoint],
    out: str | Path,
    workers: int = 1,
    backend: Backend = "local",
    address: str | None = None,
    report: Report | None = None,
    ensemble: bool = True,
) -> SweepSummary:
    """Run all points into `out/<spec.name>/`; `report(counts, running)` is called as points finish.

    `ensemble`: group fresh training points of one shape into vmapped ensembles (see the module docstring).
    """
    if workers < 1:
        raise ValueError(f"workers: expected a positive integer, got {workers}")
    if backend not in ("local", "ray"):
        raise ValueError(f"backend: expected one of 'local', 'ray', got {backend!r}")
    validate(spec, points)
    folder = Path(out) / spec.name
    folder.mkdir(parents=True, exist_ok=True)
    threads = max(1, (os.cpu_count() or 1) // workers)
    jobs = [
        (spec.kind, ids, configs, str(folder), threads)
        for ids, configs in plan_jobs(spec.kind, points, folder, workers, ensemble)
    ]
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
            notify(counts, len(job[1]))
            counts.update(run_group(*job))
        notify(counts, 0)
        return
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        pending = {pool.submit(run_group, *job): len(job[1]) for job in jobs}
        while pending:
            notify(counts, _running(list(pending.values()), workers))
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                size = pending.pop(future)
                counts.update(future.result() if future.exception() is None else ["failed"] * size)
        notify(counts, 0)


def _running(sizes: list[int], workers: int) -> int:
    """Points in flight: the jobs are started in order, `workers` at a time."""
    return sum(sizes[:workers])


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
        remote = ray.remote(num_cpus=1)(run_group)
        pending = {remote.remote(*job[:-1], 1): len(job[1]) for job in jobs}
        while pending:
            notify(counts, _running(list(pending.values()), workers))
            finished, _ = ray.wait(list(pending), num_returns=1)
            for ref in finished:
                size = pending.pop(ref)
                try:
                    counts.update(ray.get(ref))
                except ray.exceptions.RayError:
                    counts["failed"] += size
        notify(counts, 0)
    finally:
        if started_here:
            ray.shutdown()
