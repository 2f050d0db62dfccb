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

Two sweeps of one spec may run at once: a run has one writer (`tdlab.store.lock`), and a point whose run another
live process owns is left to it and counted "busy" (`SweepSummary.busy` names the owners), never resumed under it.

Ctrl-C (SIGINT, to the sweep's process or to its whole process group as a terminal sends it) stops the sweep
within seconds: no further point is started, the points in flight are interrupted (in local workers a training
run records `failed: interrupted` after its last checkpoint; a worker that does not end within `STOP_GRACE_S` is
killed, and Ray tasks are killed with the Ray instance, leaving `running`), and `run_sweep` raises
`SweepInterrupted`. Finished runs stay done; a rerun of the spec
resumes the partial ones and starts the rest, losing and duplicating no row.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import shutil
import signal
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from multiprocessing import active_children, get_context
from pathlib import Path
from typing import Any, Literal

from tdlab.config import configure_threads, worker_threads
from tdlab.store import Run
from tdlab.store.lock import Owner, RunBusyError, read_owner
from tdlab.sweep.spec import SweepPoint, SweepSpec

Backend = Literal["local", "ray"]
FINISHED = ("done", "diverged")
MAX_MEMBERS = 64
"""The largest ensemble a sweep forms; bigger groups of one shape are split."""
STOP_GRACE_S = 10.0
"""After Ctrl-C, how long the points in flight have to record their interruption before their workers are killed."""


@dataclass
class SweepSummary:
    """Counts of the points by outcome: "skipped" ones were already finished before this invocation, "busy" ones
    are owned by another live process (`busy`: run id -> its recorded owner, None if unreadable)."""

    counts: Counter
    folder: Path
    busy: dict[str, Owner | None] = field(default_factory=dict)


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped the sweep; `summary` counts the points that ended before it."""

    def __init__(self, summary: SweepSummary) -> None:
        super().__init__()
        self.summary = summary


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
    """Run (or resume, or skip) one point; returns its final status, "skipped" if it had finished before, or "busy"
    if another live process owns its run. Safe to call in a fresh process.

    An existing run is owned before its status is read, so that two sweeps never both continue it.
    """
    if threads:
        configure_threads(threads)  # torch's threads and the BLAS pools of NumPy and SciPy
    path = Path(folder) / run_id
    try:
        if not path.exists():
            return _start(kind, run_id, config, folder)
        run = Run.open(path).own()
        try:
            if run.status in FINISHED:
                return "skipped"
            if kind == "train":
                from tdlab.train import resume

                return resume(run).status
            shutil.rmtree(path)  # a partial experiment starts over (it has no checkpoints); still owned meanwhile
            return _start(kind, run_id, config, folder)
        finally:
            run.release()
    except RunBusyError:
        return "busy"


def _start(kind: str, run_id: str, config: dict[str, Any], folder: str) -> str:
    """Run a fresh point; "busy" if another process created its run first."""
    if kind == "train":
        from tdlab.train import TrainConfig, train

        try:
            run = train(TrainConfig.model_validate(config), out=folder, run_id=run_id)
        except FileExistsError:
            return "busy"
        run.release()
        return run.status
    from tdlab.experiments import run as run_experiment

    try:
        record = run_experiment(kind, out=folder, run_id=run_id, **config).run
    except FileExistsError:
        return "busy"
    except Exception:  # the run directory records the failure
        return "failed"
    return record.status


def run_group(kind: str, run_ids: list[str], configs: list[dict[str, Any]], folder: str, threads: int = 0) -> list[str]:
    """Run one job: a single point (`run_point`), or fresh training points together as an ensemble; if the
    ensemble fails, its members are finished one by one (a member that fails alone too is "failed")."""
    if threads:
        configure_threads(threads)  # torch's threads and the BLAS pools of NumPy and SciPy
    if len(run_ids) == 1:
        return [run_point(kind, run_ids[0], configs[0], folder)]
    from tdlab.ensemble import train_ensemble
    from tdlab.train import TrainConfig

    try:
        members = [TrainConfig.model_validate(config) for config in configs]
        runs = train_ensemble(members, out=folder, run_ids=run_ids)
    except Exception:  # fall back to the members one by one, each resumed from its own last checkpoint
        statuses = []
        for run_id, config in zip(run_ids, configs, strict=True):
            path = Path(folder) / run_id
            last = read_owner(path) if path.exists() else None  # before `run_point` records itself as the owner
            status = run_point(kind, run_id, config, folder)
            if status == "skipped" and last is not None and last.is_this_process():
                status = Run.open(path).status  # finished by the failed ensemble (diverged), not by another sweep
            statuses.append(status)
        return statuses
    statuses = [run.status for run in runs]
    for run in runs:
        run.release()
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
Tally = Callable[[list[str], list[str]], None]


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
    threads = worker_threads(workers)
    jobs = [
        (spec.kind, ids, configs, str(folder), threads)
        for ids, configs in plan_jobs(spec.kind, points, folder, workers, ensemble)
    ]
    summary = SweepSummary(Counter(), folder)
    notify = report or (lambda counts, running: None)

    def tally(run_ids: list[str], statuses: list[str]) -> None:
        summary.counts.update(statuses)
        for run_id, status in zip(run_ids, statuses, strict=True):
            if status == "busy":
                summary.busy[run_id] = read_owner(folder / run_id)

    try:
        if backend == "ray":
            _run_ray(jobs, workers, address, summary.counts, tally, notify)
        else:
            _run_local(jobs, workers, summary.counts, tally, notify)
    except KeyboardInterrupt:
        raise SweepInterrupted(summary) from None
    return summary


def _run_local(jobs: list[tuple], workers: int, counts: Counter, tally: Tally, notify: Report) -> None:
    if workers == 1:  # in this process: Ctrl-C interrupts the point in flight, which records it
        for job in jobs:
            notify(counts, len(job[1]))
            tally(job[1], run_group(*job))
        notify(counts, 0)
        return
    before = {child.pid for child in active_children()}
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"), initializer=_start_worker)
    pending: dict[Future, list[str]] = {}
    try:
        for job in jobs:
            pending[pool.submit(_work, *job)] = job[1]
        while pending:
            notify(counts, _running([len(ids) for ids in pending.values()], workers))
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                ids = pending.pop(future)
                _tally_result(tally, ids, future)
        notify(counts, 0)
    except KeyboardInterrupt:
        with _sigint_ignored():  # a second Ctrl-C must not cut the stopping short
            pool.shutdown(wait=False, cancel_futures=True)
            workers_started = [child for child in active_children() if child.pid not in before]
            for worker in workers_started:  # they may not have seen the Ctrl-C: it can reach this process alone
                with contextlib.suppress(ProcessLookupError, TypeError):  # gone already, or not started (pid None)
                    os.kill(worker.pid, signal.SIGINT)
            ended, _ = wait(pending, timeout=STOP_GRACE_S)
            for future in ended:  # jobs that ended before the interruption
                _tally_result(tally, pending[future], future)
            for worker in workers_started:  # still training after the grace period: their runs stay `running`
                if worker.is_alive():
                    worker.kill()
        raise
    finally:
        pool.shutdown(wait=True)


def _tally_result(tally: Tally, ids: list[str], future: Future) -> None:
    """Count a finished job's statuses; a job cut short by Ctrl-C (None, or cancelled) counts as nothing."""
    if future.cancelled():
        return
    if future.exception() is not None:
        tally(ids, ["failed"] * len(ids))
    elif future.result() is not None:
        tally(ids, future.result())


_in_job = False  # in a worker process: whether a job is running there (see `_interrupted`)
_stopping = False  # in a worker process: Ctrl-C was seen, no further job is started


def _start_worker() -> None:
    """A local worker's initializer: Ctrl-C interrupts its job once and starts no other (`_interrupted`)."""
    signal.signal(signal.SIGINT, _interrupted)


def _interrupted(signum: int, frame: object) -> None:
    """A worker's SIGINT handler: interrupt the job in flight, which records the interruption in its runs, and
    start no further job; a second SIGINT (e.g. the one the sweep forwards after the terminal's) is ignored so that
    it cannot cut the recording short.

    The worker stays alive: a process that left the pool would break it, and the pool then terminates every other
    worker, possibly in the middle of recording its interruption."""
    global _stopping
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _stopping = True
    if _in_job:
        raise KeyboardInterrupt


def _work(*job: Any) -> list[str] | None:
    """`run_group` in a local worker; None if Ctrl-C interrupted the job or came before it started."""
    global _in_job
    _in_job = True  # before the check: a Ctrl-C from here on interrupts the job, one before it is seen by the check
    try:
        return None if _stopping else run_group(*job)
    except KeyboardInterrupt:
        return None  # the runs recorded it
    finally:
        _in_job = False


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """Ignore SIGINT in this process for the duration (only the main thread may change signal handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _running(sizes: list[int], workers: int) -> int:
    """Points in flight: the jobs are started in order, `workers` at a time."""
    return sum(sizes[:workers])


def _run_ray(
    jobs: list[tuple], workers: int, address: str | None, counts: Counter, tally: Tally, notify: Report
) -> None:
    """The jobs as Ray tasks, at most `workers` in flight (none waits in Ray's queue, so Ctrl-C has none to cancel).

    Ctrl-C: a Ray instance started here is shut down, which kills the tasks in flight (their runs stay `running`, a
    rerun resumes them). Ray workers do not see the terminal's SIGINT, and `ray.cancel` can crash the driver when
    it races with a task's completion (Ray 2.60, `task_manager.cc` "Tried to complete task that was not pending"),
    so tasks on a cluster this sweep joined are cancelled only then, with that risk.
    """
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
    remote = ray.remote(num_cpus=1)(run_group)
    waiting = iter(jobs)
    pending: dict[Any, list[str]] = {}
    try:
        for job in itertools.islice(waiting, workers):
            pending[remote.remote(*job[:-1], 1)] = job[1]
        while pending:
            notify(counts, sum(len(ids) for ids in pending.values()))
            finished, _ = ray.wait(list(pending), num_returns=1)
            for ref in finished:
                ids = pending.pop(ref)
                try:
                    tally(ids, ray.get(ref))
                except ray.exceptions.RayError:
                    tally(ids, ["failed"] * len(ids))
                for job in itertools.islice(waiting, 1):
                    pending[remote.remote(*job[:-1], 1)] = job[1]
        notify(counts, 0)
    except KeyboardInterrupt:
        with _sigint_ignored():
            ended, _ = ray.wait(list(pending), num_returns=len(pending), timeout=0) if pending else ([], [])
            for ref in ended:  # jobs that ended before the interruption
                with contextlib.suppress(ray.exceptions.RayError):
                    tally(pending[ref], ray.get(ref))
            if not started_here:
                for ref in pending:
                    ray.cancel(ref)
        raise
    finally:
        if started_here:
            ray.shutdown()
