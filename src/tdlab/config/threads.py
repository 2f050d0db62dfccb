"""How many CPU threads tdlab's tensor work may use: the cores this process may really run on."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from threadpoolctl import threadpool_limits

_CGROUP = Path("/sys/fs/cgroup")


def _cgroup_quota(root: Path = _CGROUP) -> float | None:
    """CPUs granted by a cgroup CPU quota (cgroup v2 `cpu.max`, or v1 `cpu.cfs_quota_us / cpu.cfs_period_us`),
    None without one."""
    v2 = root / "cpu.max"
    try:
        if v2.is_file():
            quota, period = v2.read_text().split()[:2]
            return None if quota == "max" else int(quota) / int(period)
        quota_file, period_file = root / "cpu" / "cpu.cfs_quota_us", root / "cpu" / "cpu.cfs_period_us"
        if quota_file.is_file() and period_file.is_file():
            quota_us = int(quota_file.read_text())
            return None if quota_us <= 0 else quota_us / int(period_file.read_text())
    except (OSError, ValueError):
        return None
    return None


def usable_cores(root: Path = _CGROUP) -> int:
    """The CPUs this process may run on: its affinity mask (`taskset`, a container's cpuset) capped by a cgroup
    CPU quota (a container's `--cpus`), rounded up, at least 1. torch's own default counts the machine's cores,
    so a process given 2 of 64 cores would start 64 threads that take turns on 2.

    Example:
        >>> 1 <= usable_cores() <= os.cpu_count()
        True
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    quota = _cgroup_quota(root)
    if quota is not None:
        cores = min(cores, math.ceil(quota))
    return max(1, cores)


def _pinned() -> int | None:
    """The thread count that `TDLAB_THREADS` pins, or None."""
    env = os.environ.get("TDLAB_THREADS", "")
    if env and not (env.isdigit() and int(env) >= 1):
        raise ValueError(f"TDLAB_THREADS: expected a positive integer, got {env!r}")
    return int(env) if env else None


def worker_threads(workers: int) -> int:
    """Threads for each of `workers` processes sharing this machine: `TDLAB_THREADS` if set, else an equal share
    of `usable_cores()`, at least 1.

    Example:
        >>> worker_threads(1) == (_pinned() or usable_cores())
        True
    """
    return _pinned() or max(1, usable_cores() // workers)


def configure_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads and the BLAS pools of NumPy and SciPy (OpenBLAS, MKL, BLIS, through
    threadpoolctl) to `threads`, or by default to `usable_cores()`; returns the number set.

    Called by the `tdlab` command at start (`TDLAB_THREADS` overrides it); a library user keeps torch's own
    setting unless they call it. NumPy's OpenBLAS otherwise starts one thread per core of the machine, whatever
    the process may use: on 2 shared cores a 12840 x 40 QR took 1.5 s against 0.03 s on one thread.

    Example:
        >>> before = torch.get_num_threads()
        >>> configure_threads(1), torch.get_num_threads()
        (1, 1)
        >>> configure_threads(before) == before
        True
    """
    if threads is None:
        threads = _pinned() or usable_cores()
    if not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads: expected a positive integer, got {threads!r}")
    torch.set_num_threads(threads)
    threadpool_limits(threads, user_api="blas")
    return threads


@contextmanager
def one_thread() -> Iterator[None]:
    """torch and the BLAS pools on one CPU thread inside, the caller's counts restored after: for work made of
    many small tensor operations (small networks, L-BFGS on a few thousand parameters), which a second thread
    only slows, and on a busy machine badly (measured on 2 shared cores: a forward and backward pass of an
    8 x 24 MLP on 64 examples 1.6 ms on one thread, 10-300 ms on two).

    Example:
        >>> before = torch.get_num_threads()
        >>> with one_thread():
        ...     torch.get_num_threads()
        1
        >>> torch.get_num_threads() == before
        True
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1, user_api="blas"):
            yield
    finally:
        torch.set_num_threads(before)
