"""Ensemble throughput: N members trained at once (`tdlab.ensemble`) against N sequential runs of the same configs.

A small MLP (40-64-64-10, ReLU) on mnist1d, SGD with momentum, mini-batches of 64, each member with its own seed
and learning rate; without probes, with the default probe of `tdlab train` (train and test loss and accuracy every
10 steps) or with the sharpness (Lanczos on 512 train points every 10 steps), both of which the ensemble measures
for all members at once; both sides write their run directories.
This machine's speed drifts by tens of percent over minutes, so the two sides are timed in alternation: each
round trains the ensemble of N, then `--sequential` lone runs (N times their mean is the sequential time of that
round); the speed-up printed is the median over `--rounds` rounds of the rounds' ratios.

    python benchmarks/bench_ensemble.py [--steps 500] [--members 8 32 128] [--probes none loss sharpness]
                                         [--rounds 3] [--sequential 4] [--vmap]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time

import torch
from rich.console import Console
from rich.table import Table

from tdlab.ensemble import train_ensemble
from tdlab.train import TrainConfig, train

PROBES = {
    "none": [],
    "loss": [{"name": "loss", "every": 10}],
    "sharpness": [{"name": "sharpness", "every": 10, "subset": 512}],
}


def config(seed: int, steps: int, device: str, probes: str = "none") -> TrainConfig:
    return TrainConfig.model_validate(
        {
            "seed": seed,
            "device": device,
            "steps": steps,
            "batch_size": 64,
            "checkpoint_every": steps,
            "data": {"name": "mnist1d", "n_train": 4000, "n_test": 1000},
            "model": {"name": "mlp", "width": 64, "depth": 2, "activation": "relu"},
            "optimizer": {"name": "sgd", "lr": 0.01 * (1 + seed % 5), "momentum": 0.9},
            "probes": PROBES[probes],
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--members", type=int, nargs="+", default=[8, 32, 128])
    parser.add_argument("--probes", nargs="+", default=["none", "loss"], choices=list(PROBES))
    parser.add_argument("--vmap", action="store_true", help="evaluate the members through vmap, not stacked layers")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sequential", type=int, default=4, help="lone runs timed per round")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as out:
        train(config(0, 10, args.device), out=out)  # warm-up: data generation, imports
        train_ensemble([config(seed, 10, args.device) for seed in range(8)], out=out)
        title = (
            f"ensemble vs sequential, {args.steps} steps, {torch.get_num_threads()} threads (target >= 8x at N = 32)"
        )
        table = Table(title=title)
        for column in ("probes", "members N", "sequential N runs (s)", "ensemble (s)", "speed-up (rounds)"):
            table.add_column(column)
        for probes, n in itertools.product(args.probes, args.members):
            sequential, together, ratios = [], [], []
            for round_ in range(args.rounds):
                began = time.perf_counter()
                train_ensemble(
                    [config(seed, args.steps, args.device, probes) for seed in range(n)], out=out, vmap=args.vmap
                )
                together.append(time.perf_counter() - began)
                began = time.perf_counter()
                for k in range(args.sequential):
                    train(config((round_ * args.sequential + k) % n, args.steps, args.device, probes), out=out)
                sequential.append(n * (time.perf_counter() - began) / args.sequential)
                ratios.append(sequential[-1] / together[-1])
            table.add_row(
                probes,
                str(n),
                f"{statistics.median(sequential):.1f}",
                f"{statistics.median(together):.2f}",
                f"{statistics.median(ratios):.1f}x ({', '.join(f'{r:.1f}' for r in ratios)})",
            )
        Console().print(table)


if __name__ == "__main__":
    main()
