"""Sweep throughput on this machine: local processes against a local Ray, with and without ensembles.

One sweep (a small MLP on mnist1d, SGD with momentum, a grid of learning rates times seeds, the loss probe every
50 steps) run four ways into fresh folders: `local` and `ray` backends with the same number of workers, each with
fresh runs of one shape grouped into vmapped ensembles and with every run alone. Printed: wall time (Ray's start-up
included, as a user pays it), runs per second, and each way's throughput relative to local processes without
ensembles.

    python benchmarks/bench_sweep.py [--workers 2] [--lrs 4] [--seeds 4] [--steps 300]
"""

from __future__ import annotations

import argparse
import tempfile
import time

from rich.console import Console
from rich.table import Table

from tdlab.sweep import SweepSpec, expand, run_sweep

BASE = {
    "steps": 300,
    "batch_size": 64,
    "checkpoint_every": 100,
    "data": {"name": "mnist1d", "n_train": 2000, "n_test": 500},
    "model": {"name": "mlp", "width": 64, "depth": 2, "activation": "relu"},
    "optimizer": {"name": "sgd", "lr": 0.01, "momentum": 0.9},
    "probes": [{"name": "loss", "every": 50}],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--lrs", type=int, default=4, help="learning rates in the grid")
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()
    lrs = [0.005 * 2**i for i in range(args.lrs)]
    spec = SweepSpec(name="bench", grid={"optimizer.lr": lrs}, seeds=list(range(args.seeds)))
    points = expand(spec, {**BASE, "steps": args.steps})
    ways = [("local", False), ("local", True), ("ray", False), ("ray", True)]
    table = Table(title=f"sweep of {len(points)} runs x {args.steps} steps, {args.workers} workers")
    for column in ("backend", "ensembles", "wall (s)", "runs / s", "vs local alone"):
        table.add_column(column)
    baseline = None
    for backend, ensemble in ways:
        with tempfile.TemporaryDirectory() as out:
            began = time.perf_counter()
            summary = run_sweep(spec, points, out, workers=args.workers, backend=backend, ensemble=ensemble)
            wall = time.perf_counter() - began
        if summary.counts.get("done", 0) != len(points):
            raise RuntimeError(f"{backend}: expected {len(points)} done runs, got {dict(summary.counts)}")
        baseline = baseline or wall
        table.add_row(
            backend, "yes" if ensemble else "no", f"{wall:.1f}", f"{len(points) / wall:.2f}", f"{baseline / wall:.2f}x"
        )
    Console().print(table)


if __name__ == "__main__":
    main()
