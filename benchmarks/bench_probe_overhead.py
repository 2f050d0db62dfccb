"""Training-time overhead of the sharpness probe (every 10 steps, Lanczos warm-started) against plain training.

Both loops run side by side in one process on the same model, data and batches: plain SGD steps, and the same
steps inside `ProbeSet.step` with a `Sharpness` probe at tol 1e-3, stopped by the residual bound or by the change
of the Ritz value (`criterion="ritz"`, see `tdlab.curvature.hessian_eigs`). Two regimes: full-batch GD (the
edge-of-stability setting, where sharpness is measured on the training set itself) and mini-batch SGD with
sharpness on a fixed subset.
The target of the issue is an overhead of at most 1.5x.

    python benchmarks/bench_probe_overhead.py [--device auto] [--steps 200] [--repeats 3]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time

import torch
from rich.console import Console
from rich.table import Table

from tdlab.config import resolve_device
from tdlab.data import loss_for, mnist1d
from tdlab.models import MLP
from tdlab.probes import ProbeSet, Sharpness
from tdlab.train.batches import batch_indices


def _update(model, optimizer, loss_fn, xb, yb) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss_fn(model(xb), yb).backward()
    optimizer.step()


def _loop(model, data, batch_size, steps, lr, probes=None) -> float:
    X, y = data.train
    loss_fn = loss_for(data.task)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    began = time.perf_counter()
    for step in range(steps):
        idx = batch_indices(X.shape[0], batch_size, seed=0, step=step)
        xb, yb = (X, y) if idx is None else (X[idx.to(X.device)], y[idx.to(X.device)])

        if probes is None:
            _update(model, optimizer, loss_fn, xb, yb)
        else:
            with probes.step(step + 1, batch=(xb, yb), optimizer=optimizer):
                _update(model, optimizer, loss_fn, xb, yb)
    if X.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - began


def measure(device: torch.device, steps: int, repeats: int, full_batch: bool, criterion: str) -> dict[str, float]:
    data = mnist1d(n_train=1000 if full_batch else 4000, n_test=200).to(device)
    batch_size = None if full_batch else 128
    subset = None if full_batch else 512
    plain, probed, matvecs = [], [], []
    for _ in range(repeats):
        model = MLP(data.in_features, data.out_features, width=128, depth=3, activation="tanh", seed=0).to(device)
        plain.append(_loop(model, data, batch_size, steps, lr=0.05))
        model = MLP(data.in_features, data.out_features, width=128, depth=3, activation="tanh", seed=0).to(device)
        probe = Sharpness(every=10, tol=1e-3, subset=subset, criterion=criterion)
        probes = ProbeSet([probe], model, loss_for(data.task), train=data.train)
        probed.append(_loop(model, data, batch_size, steps, lr=0.05, probes=probes))
        frame = probes.to_frame()
        matvecs.append(frame.loc[frame["name"] == "sharpness/matvecs", "value"].iloc[1:].mean())
    return {
        "plain_s": statistics.median(plain),
        "probed_s": statistics.median(probed),
        "ratio": statistics.median(probed) / statistics.median(plain),
        "warm_matvecs": statistics.mean(matvecs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    device = resolve_device(args.device)
    table = Table(title=f"sharpness probe every 10 steps vs plain training ({device}, {args.steps} steps)")
    for column in ("regime", "stopping rule", "plain (s)", "with probe (s)", "ratio", "HVPs per warm measurement"):
        table.add_column(column)
    regimes = (("full-batch GD, 1000 examples", True), ("SGD batch 128, sharpness on 512", False))
    for (name, full_batch), criterion in itertools.product(regimes, ("residual", "ritz")):
        m = measure(device, args.steps, args.repeats, full_batch, criterion)
        table.add_row(
            name,
            f"{criterion}, tol 1e-3",
            f"{m['plain_s']:.2f}",
            f"{m['probed_s']:.2f}",
            f"{m['ratio']:.2f}x",
            f"{m['warm_matvecs']:.1f}",
        )
    Console().print(table)
    Console().print("target: ratio <= 1.5x")


if __name__ == "__main__":
    main()
