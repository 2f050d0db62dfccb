"""How tdlab's CPU work degrades when the machine is shared: idle against loaded, per thread setting.

One fixed workload (full-batch GD on a 40-256-256-10 tanh MLP over 1000 MNIST-1D examples, with the sharpness
probe every 10 steps, through `tdlab.train.fit`) runs in a fresh process pinned to `--cores`, alone and then beside
`--load` busy processes pinned to the same cores, for each setting of the OpenMP wait policy and the thread count:

- torch's default (threads = cores in the affinity mask; libgomp lets idle threads spin before they sleep);
- `OMP_WAIT_POLICY=PASSIVE` (idle threads sleep at once);
- one thread;
- `tdlab.config.configure_threads()` (what `tdlab` does at start; see its docstring).

If the scheduler shared the cores fairly between runnable threads, a workload of T threads beside L busy
processes on C cores would slow down by (L + T) / max(C, T) over its idle time ("fair" below). A ratio far above
that means time lost to threads that wait on each other (a spinning thread holds a core that the thread it
waits for needs).

    python benchmarks/bench_contention.py [--cores 0,1] [--load 8] [--steps 100] [--limit 300]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import subprocess
import sys
import time

from rich.console import Console
from rich.table import Table

WORKLOAD = """
import os, sys, time
import torch
from torch import nn
if {threads} == -1:
    from tdlab.config import configure_threads
    configure_threads()
elif {threads}:
    torch.set_num_threads({threads})
from tdlab.data import mnist1d
from tdlab.probes import ProbeSet, Sharpness
from tdlab.train import fit
torch.manual_seed(0)
data = mnist1d(n_train=1000, n_test=10)
model = nn.Sequential(nn.Linear(40, 256), nn.Tanh(), nn.Linear(256, 256), nn.Tanh(), nn.Linear(256, 10))
probes = ProbeSet([Sharpness(every=10)], model, nn.CrossEntropyLoss(), train=data.train)
optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
began = time.perf_counter()
fit(model, nn.CrossEntropyLoss(), data.train, optimizer, {steps}, probes=probes)
print(time.perf_counter() - began, torch.get_num_threads())
"""

SETTINGS = {
    "torch default": ({}, 0),
    "OMP_WAIT_POLICY=PASSIVE": ({"OMP_WAIT_POLICY": "PASSIVE"}, 0),
    "GOMP_SPINCOUNT=10000": ({"GOMP_SPINCOUNT": "10000"}, 0),
    "GOMP_SPINCOUNT=1000": ({"GOMP_SPINCOUNT": "1000"}, 0),
    "1 thread": ({}, 1),
}


def spin(cores: set[int]) -> None:
    os.sched_setaffinity(0, cores)
    while True:
        pass


def workload(cores: set[int], env: dict[str, str], threads: int, steps: int, limit: float) -> tuple[float, int]:
    """Seconds of the workload in a fresh process pinned to `cores` (inf past `limit`), and torch's threads."""
    code = WORKLOAD.format(threads=threads, steps=steps)
    try:
        out = subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            check=True,
            timeout=limit,
            preexec_fn=lambda: os.sched_setaffinity(0, cores),
        ).stdout.split()
    except subprocess.TimeoutExpired:
        return float("inf"), threads
    return float(out[0]), int(out[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cores", default="0,1", help="CPUs the workload and the load share")
    parser.add_argument("--load", type=int, default=8, help="busy processes beside the workload")
    parser.add_argument("--steps", type=int, default=100, help="GD steps of the workload")
    parser.add_argument("--limit", type=float, default=300.0, help="seconds after which a run is stopped (inf)")
    args = parser.parse_args()
    cores = {int(c) for c in args.cores.split(",")}
    console = Console(width=140)
    idle, loaded = {}, {}
    for name, (env, threads) in SETTINGS.items():
        idle[name] = workload(cores, env, threads, args.steps, args.limit)
        console.print(f"idle, {name}: {idle[name][0]:.2f} s")
    spinners = [multiprocessing.Process(target=spin, args=(cores,), daemon=True) for _ in range(args.load)]
    for process in spinners:
        process.start()
    time.sleep(1.0)
    try:
        for name, (env, threads) in SETTINGS.items():
            loaded[name] = workload(cores, env, threads, args.steps, args.limit)
            console.print(f"loaded, {name}: {loaded[name][0]:.2f} s")
    finally:
        for process in spinners:
            process.terminate()
    title = f"{args.steps} GD steps + sharpness every 10, on cores {sorted(cores)}, beside {args.load} busy"
    table = Table(title=title)
    for column in ("setting", "threads", "idle s", "loaded s", "loaded / idle", "fair"):
        table.add_column(column, justify="right")
    for name in SETTINGS:
        (quiet, threads), (busy, _) = idle[name], loaded[name]
        fair = (args.load + threads) / max(len(cores), threads)
        table.add_row(name, str(threads), f"{quiet:.2f}", f"{busy:.2f}", f"{busy / quiet:.1f}x", f"{fair:.1f}x")
    console.print(table)


if __name__ == "__main__":
    main()
