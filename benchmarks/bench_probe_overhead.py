"""Training-time overhead of the sharpness probe (every 10 steps, Lanczos warm-started) against plain training.

Both loops run side by side in one process on the same model, data and batches, in alternation: plain SGD steps, and
the same steps inside `ProbeSet.step` with a `Sharpness` probe, stopped by its default rule (the estimated
eigenvalue error, tol 1e-4), by the residual bound at tol 1e-3, by the change of the Ritz value (`criterion="ritz"`,
tol 1e-3; see `tdlab.curvature.hessian_eigs`), or after a fixed budget of two products or one per warm measurement
(`warm_products`; 1: the power iteration carried across measurements); the last four rules multiply by the Hessian
through differences of gradients (`hvp="central"` or `"forward"`, `tdlab.curvature.DifferenceHessianOperator`)
instead of exact products. One more untimed run per rule measures a
tight reference (residual rule, tol 1e-6) right after each measurement: the "error" column is the median (and
largest) relative error of the probe's sharpness over the warm measurements. Two models (a 40-128-128-128-10 tanh
MLP on MNIST-1D and a 2-layer causal transformer on token sequences) in two regimes: full batch (the edge-of-
stability setting, where sharpness is measured on the training set itself) and mini-batches with sharpness on a
fixed subset. The ratio is given over the whole run and without the step of the first measurement, which starts
from a random vector and takes tens of products (the steady state of a run long enough to spread it thin). The
target of the issue is an overhead of at most 1.5x.

    python benchmarks/bench_probe_overhead.py [--device auto] [--steps 200] [--repeats 3] [--models mlp,transformer]
                                            [--rules 'ritz tol 1e-3,1 warm product (power step)']
                                            [--regimes 'full batch,mini-batch']
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from collections.abc import Callable

import pandas as pd
import torch
from rich.console import Console
from rich.table import Table
from torch import nn

from tdlab.config import resolve_device
from tdlab.data import loss_for, mnist1d
from tdlab.models import MLP
from tdlab.models.transformer import CausalTransformer
from tdlab.probes import ProbeSet, Sharpness
from tdlab.train.batches import batch_indices


class TokenLoss(nn.Module):
    """Cross-entropy over all positions of (B, T, V) logits and (B, T) targets."""

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def problem(name: str, device: torch.device, full_batch: bool) -> tuple[Callable[[], nn.Module], nn.Module, tuple]:
    """(a model factory, the loss, the training data (X, y)) of `name`: "mlp" (40-128-128-128-10 tanh on
    MNIST-1D, 1000 examples full-batch or 4000 in mini-batches) or "transformer" (2 layers, d_model 64, 4 heads,
    vocabulary 32, on 256 (full batch) or 1024 arithmetic sequences of 16 tokens)."""
    if name == "mlp":
        data = mnist1d(n_train=1000 if full_batch else 4000, n_test=200).to(device)
        return (
            lambda: MLP(data.in_features, data.out_features, width=128, depth=3, activation="tanh", seed=0).to(device),
            loss_for(data.task),
            data.train,
        )
    count, length, vocab = (256 if full_batch else 1024), 16, 32
    generator = torch.Generator().manual_seed(0)
    start = torch.randint(0, vocab, (count, 1), generator=generator)
    step = torch.randint(1, 4, (count, 1), generator=generator)
    tokens = ((start + step * torch.arange(length + 1)) % vocab).to(device)

    def model() -> nn.Module:
        torch.manual_seed(0)
        return CausalTransformer(vocab, d_model=64, num_heads=4, num_layers=2, max_length=length).to(device)

    return model, TokenLoss(), (tokens[:, :-1], tokens[:, 1:])


def _loop(model, loss_fn, data, batch_size, steps, lr, probes=None, reference=None) -> tuple[list[float], int | None]:
    """Seconds of each of `steps` SGD steps, inside `probes.step` when probes are given, and the index of the first
    step at which the probes measured (None without probes); `reference` (a ProbeSet, untimed use only) measures
    right after every step the probes measured."""
    X, y = data
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    seconds, first = [], None
    for step in range(steps):
        began = time.perf_counter()
        idx = batch_indices(X.shape[0], batch_size, seed=0, step=step)
        xb, yb = (X, y) if idx is None else (X[idx.to(X.device)], y[idx.to(X.device)])
        if probes is None:
            _update(model, optimizer, loss_fn, xb, yb)
        else:
            with probes.step(step + 1, batch=(xb, yb), optimizer=optimizer) as measured:
                _update(model, optimizer, loss_fn, xb, yb)
            first = step if first is None and measured else first
        if X.device.type == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - began)
        if reference is not None and measured:
            reference.measure(step + 1)
    return seconds, first


def _update(model, optimizer, loss_fn, xb, yb) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss_fn(model(xb), yb).backward()
    optimizer.step()


def _sharpness(frame: pd.DataFrame) -> pd.Series:
    return frame[frame["name"] == "sharpness"].set_index("step")["value"]


def measure(
    device: torch.device, name: str, steps: int, repeats: int, full_batch: bool, rule: dict
) -> dict[str, float]:
    """Median times of plain and probed training over `repeats` alternating rounds, their ratio with and without
    the step of the first (cold) measurement (the latter: the steady state of a long run), the mean products per warm
    measurement, and, from one more (untimed) run with a tight reference measured at the same points (residual
    rule, tol 1e-6), the median and largest relative error of the probe's sharpness over the warm measurements."""
    make, loss_fn, data = problem(name, device, full_batch)
    batch_size = None if full_batch else (128 if name == "mlp" else 32)
    subset = None if full_batch else (512 if name == "mlp" else 128)
    lr = 0.05 if name == "mlp" else 0.1
    plain, probed, plain_warm, probed_warm, matvecs = [], [], [], [], []
    for _ in range(repeats):  # the two sides alternate, so that a change of load hits both
        plain_steps, _ = _loop(make(), loss_fn, data, batch_size, steps, lr)
        model = make()
        probes = ProbeSet([Sharpness(every=10, subset=subset, **rule)], model, loss_fn, train=data)
        probed_steps, cold = _loop(model, loss_fn, data, batch_size, steps, lr, probes=probes)
        plain.append(sum(plain_steps))
        probed.append(sum(probed_steps))
        plain_warm.append(sum(plain_steps) - plain_steps[cold])  # without the step of the cold measurement
        probed_warm.append(sum(probed_steps) - probed_steps[cold])
        frame = probes.to_frame()
        matvecs.append(frame.loc[frame["name"] == "sharpness/matvecs", "value"].iloc[1:].mean())
    model = make()
    probes = ProbeSet([Sharpness(every=10, subset=subset, **rule)], model, loss_fn, train=data)
    tight = Sharpness(every=10, subset=subset, criterion="residual", tol=1e-6, max_iter=500)
    reference = ProbeSet([tight], model, loss_fn, train=data)
    _loop(model, loss_fn, data, batch_size, steps, lr, probes=probes, reference=reference)
    estimate, truth = _sharpness(probes.to_frame()), _sharpness(reference.to_frame())
    error = ((estimate - truth).abs() / truth.abs()).iloc[1:]  # the warm measurements
    return {
        "plain_s": statistics.median(plain),
        "probed_s": statistics.median(probed),
        "ratio": statistics.median(probed) / statistics.median(plain),
        "warm_ratio": statistics.median(probed_warm) / statistics.median(plain_warm),
        "warm_matvecs": statistics.mean(matvecs),
        "median_error": float(error.median()),
        "worst_error": float(error.max()),
    }


RULES = {
    "default: eigenvalue tol 1e-4": {},
    "residual tol 1e-3": {"criterion": "residual", "tol": 1e-3},
    "ritz tol 1e-3": {"criterion": "ritz", "tol": 1e-3},
    "2 warm products": {"warm_products": 2},
    "1 warm product (power step)": {"warm_products": 1},
    "ritz tol 1e-3 (central differences)": {"criterion": "ritz", "tol": 1e-3, "hvp": "central"},
    "ritz tol 1e-3 (forward differences)": {"criterion": "ritz", "tol": 1e-3, "hvp": "forward"},
    "2 warm products (forward differences)": {"warm_products": 2, "hvp": "forward"},
    "1 warm product (forward differences)": {"warm_products": 1, "hvp": "forward"},
}

REGIMES = (("full batch", True), ("mini-batch, sharpness on a subset", False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", default="mlp,transformer")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--rules", default=",".join(RULES), help=f"comma-separated of {list(RULES)}")
    parser.add_argument("--regimes", default="full batch,mini-batch", help="comma-separated of full batch, mini-batch")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    table = Table(title=f"sharpness probe every 10 steps vs plain training ({device}, {args.steps} steps)")
    columns = (
        "model",
        "regime",
        "stopping rule",
        "plain (s)",
        "with probe (s)",
        "ratio",
        "ratio w/o cold start",
        "HVPs per warm",
        "error",
    )
    for column in columns:
        table.add_column(column)
    regimes = [regime for regime in REGIMES if regime[0].split(",")[0] in args.regimes.split(",")]
    for name in args.models.split(","):
        for (regime, full_batch), rule_name in itertools.product(regimes, args.rules.split(",")):
            m = measure(device, name, args.steps, args.repeats, full_batch, RULES[rule_name])
            table.add_row(
                name,
                regime,
                rule_name,
                f"{m['plain_s']:.2f}",
                f"{m['probed_s']:.2f}",
                f"{m['ratio']:.2f}x",
                f"{m['warm_ratio']:.2f}x",
                f"{m['warm_matvecs']:.1f}",
                f"{m['median_error']:.1e} (worst {m['worst_error']:.1e})",
            )
    Console(width=200).print(table)
    Console().print("target: ratio <= 1.5x")


if __name__ == "__main__":
    main()
