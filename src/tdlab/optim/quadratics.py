"""Gradient descent and momentum on many quadratics at once, as `torch.optim.SGD` runs them.

The measurement harness of the quadratic experiments (`quadratic-step-size`, `momentum`): f_r(w) = 1/2 w^T A_r w
(minimum 0) with the exact gradient A_r w, A_r = Q_r diag(lambda_r) Q_r^T for a Haar-random rotation Q_r, run by
`torch.optim.SGD` (plain, heavy ball, Nesterov) in float64 with one step size per row. Rates are read from the
error norm ||w_t|| (`fitted_rate`), the edge of stability from the measured growth (`edge_of_stability`); neither
uses the closed forms of `tdlab.theory.quadratic` / `tdlab.theory.momentum`, which the experiments compare against.

Long runs would leave float64 (rates down to 1/3 per step, growth up to 1.5 per step), so `descend` rescales the
iterate (and the momentum buffer) to unit norm after every step and keeps the logarithm of the scale: the update is
linear and homogeneous in (w, buffer), so the rescaled run is the same run up to that scalar (the renormalisation of
Benettin et al. 1980 for Lyapunov exponents).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor

__all__ = [
    "QuadraticRun",
    "Trajectory",
    "descend",
    "edge_of_stability",
    "fitted_rate",
    "random_rotations",
    "rotated_quadratics",
    "spectrum",
]


@dataclass(frozen=True)
class QuadraticRun:
    """Independent quadratics f_r(w) = 1/2 w^T A_r w (minimum 0), each with its own step size, under one
    `torch.optim.SGD` setting.

    hessians: (rows, d, d) symmetric matrices A_r; start: (rows, d) initial points; lr: the step size eta_r of
    each row, shape (rows,), or one float for all; momentum, nesterov: the `torch.optim.SGD` options
    (dampening 0).
    """

    hessians: Tensor
    start: Tensor
    lr: Tensor | float
    momentum: float = 0.0
    nesterov: bool = False


@dataclass(frozen=True)
class Trajectory:
    """A run's error norms log ||w_t|| for t = 0..steps, shape (steps + 1, rows) (-inf where w_t = 0 exactly),
    and, when kept, the directions w_t/||w_t||, shape (steps + 1, rows, d): stored apart so that decay and
    growth never leave float64."""

    log_norm: Tensor
    direction: Tensor | None = None

    def log_error(self) -> Tensor:
        """log ||w_t||: the log of the distance to the minimum 0."""
        return self.log_norm

    def iterates(self) -> Tensor:
        """w_t itself (under- or overflows where the run has left float64's range); needs `keep_iterates`."""
        if self.direction is None:
            raise ValueError(
                "iterates: the run was made with keep_iterates=False; run descend(..., keep_iterates=True)"
            )
        return self.direction * self.log_norm.exp().unsqueeze(-1)


def descend(runs: Sequence[QuadraticRun], steps: int, keep_iterates: bool = False) -> list[Trajectory]:
    """Run `torch.optim.SGD` for `steps` steps, one parameter group per run, and return each run's trajectory.

    Parameter mapping: a run is one parameter group with lr = 1 whose row r receives the gradient
    eta_r A_r w_r, i.e. `SGD(lr=1)` on eta_r f_r, which is `SGD(lr=eta_r)` on f_r: with momentum beta the
    buffer b_t = beta b_{t-1} + eta_r g_t is eta_r times the buffer of lr = eta_r and the step is the same
    (heavy ball w_{t+1} = w_t - eta g_t + beta (w_t - w_{t-1}); with nesterov=True the look-ahead form of
    Nesterov's method, see `tdlab.theory.momentum`). So many step sizes share one tensor and one step().
    After each step every row of the iterate and of its momentum buffer is divided by the row's norm ||w_r||
    (left as is where it is 0) and the log of the scale is kept: exact, since the update is linear and
    homogeneous in (w, buffer). All runs must share the dimension d: their rows live in one tensor, each run's
    parameter being a slice of it, so that gradients and rescaling are one batched operation per step.
    `keep_iterates` also stores every direction w_t/||w_t|| (memory steps x rows x d).

    Example:
        >>> A = torch.tensor([[[2.0]]], dtype=torch.float64)
        >>> run = QuadraticRun(A, torch.ones(1, 1, dtype=torch.float64), lr=0.25)
        >>> (path,) = descend([run], steps=2, keep_iterates=True)
        >>> path.iterates()[:, 0, 0].tolist()  # (1 - 0.25 * 2)^t
        [1.0, 0.5, 0.25]
    """
    if steps < 1:
        raise ValueError(f"steps: expected a positive integer, got {steps}")
    dims = {run.start.shape[-1] for run in runs}
    if len(dims) != 1:
        raise ValueError(f"runs: expected one dimension d shared by all runs, got {sorted(dims)}")
    W = torch.cat([run.start.detach() for run in runs]).clone()
    hessians = torch.cat([run.hessians for run in runs])
    etas = torch.cat(
        [torch.as_tensor(run.lr, dtype=W.dtype, device=W.device).expand(run.start.shape[0]) for run in runs]
    ).unsqueeze(-1)
    bounds = np.cumsum([0] + [run.start.shape[0] for run in runs])
    params = [W[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]  # views into W: leaves of no graph
    gradient = torch.zeros_like(W)
    for p, a, b in zip(params, bounds[:-1], bounds[1:], strict=True):
        p.grad = gradient[a:b]
    optimizer = torch.optim.SGD(
        [
            {"params": [p], "momentum": run.momentum, "nesterov": run.nesterov}
            for p, run in zip(params, runs, strict=True)
        ],
        lr=1.0,
    )
    norms: list[Tensor] = []  # ||W|| before each rescaling: ||w_t|| over the product of the earlier scales
    directions: list[Tensor] = []

    def rescale() -> None:
        norm = W.norm(dim=-1, keepdim=True)
        norms.append(norm.squeeze(-1))
        norm = torch.where(norm > 0, norm, torch.ones_like(norm))
        W.div_(norm)
        for p, a, b in zip(params, bounds[:-1], bounds[1:], strict=True):
            buffer = optimizer.state[p].get("momentum_buffer")
            if buffer is not None:
                buffer.div_(norm[a:b])
        if keep_iterates:
            directions.append(W.clone())

    with torch.no_grad():
        rescale()
        for _ in range(steps):
            # A w as a broadcast product and a sum: a batched matmul of tiny matrices would go multi-threaded
            torch.mul(etas, (hessians * W.unsqueeze(-2)).sum(-1), out=gradient)
            optimizer.step()
            rescale()
    raw = torch.stack(norms)
    used = torch.where(raw > 0, raw, torch.ones_like(raw)).log()
    log_norm = raw.log() + torch.cat([torch.zeros_like(used[:1]), used[:-1].cumsum(dim=0)])
    direction = torch.stack(directions) if keep_iterates else None
    return [
        Trajectory(log_norm[:, a:b], None if direction is None else direction[:, a:b])
        for a, b in zip(bounds[:-1], bounds[1:], strict=True)
    ]


def fitted_rate(log_error: Tensor, start: int) -> NDArray[np.float64]:
    """exp of the least-squares slope of log ||w_t|| against t over t >= start, per row: the measured rate.

    0 for a row whose error reached exactly 0.

    Example:
        >>> t = torch.arange(10, dtype=torch.float64)
        >>> fitted_rate((t * np.log(0.5)).unsqueeze(-1), start=2).round(12).tolist()
        [0.5]
    """
    window = log_error[start:]
    if window.shape[0] < 2:
        raise ValueError(f"start: expected at least two points after it, got {window.shape[0]}")
    t = torch.arange(window.shape[0], dtype=window.dtype, device=window.device).unsqueeze(-1)
    finite = torch.isfinite(window).all(dim=0)
    safe = torch.where(finite, window, torch.zeros_like(window))
    centred = t - t.mean()
    slope = (centred * (safe - safe.mean(dim=0))).sum(dim=0) / (centred**2).sum()
    return torch.where(finite, slope.exp(), torch.zeros_like(slope)).cpu().numpy()


def edge_of_stability(
    runs: Sequence[QuadraticRun], low: float, high: float, steps: int, rounds: int, points: int
) -> list[NDArray[np.float64]]:
    """The step size at which the error of each row of each run stops shrinking and starts to grow.

    Multisection (bisection is points = 1) on the measured growth: each round runs `points` step sizes evenly
    spaced inside every row's bracket (all at once, as extra rows) for `steps` steps; a step size is unstable
    when the rate fitted over the second half exceeds 1. The bracket shrinks to the first unstable candidate
    and the one before it, by a factor points + 1 per round. Assumes stability below the edge and instability
    above, with `low` stable and `high` unstable; the runs' own `lr` is ignored. Returns the bracket midpoints.

    Example:
        >>> A, w0 = torch.tensor([[[4.0]]], dtype=torch.float64), torch.ones(1, 1, dtype=torch.float64)
        >>> edge_of_stability([QuadraticRun(A, w0, lr=1.0)], 0.0, 1.0, steps=50, rounds=4, points=9)[0].round(4)
        array([0.5])
    """
    brackets = [np.array([[low, high]] * run.start.shape[0], dtype=float) for run in runs]
    fractions = np.arange(1, points + 1) / (points + 1)
    for _ in range(rounds):
        candidates = [b[:, :1] + (b[:, 1:] - b[:, :1]) * fractions for b in brackets]  # (rows, points)
        trials = [
            QuadraticRun(
                run.hessians.repeat_interleave(points, dim=0),
                run.start.repeat_interleave(points, dim=0),
                torch.as_tensor(c.ravel(), dtype=run.start.dtype, device=run.start.device),
                run.momentum,
                run.nesterov,
            )
            for run, c in zip(runs, candidates, strict=True)
        ]
        for path, c, bracket in zip(descend(trials, steps), candidates, brackets, strict=True):
            unstable = fitted_rate(path.log_error(), steps // 2).reshape(c.shape) > 1.0
            first = np.where(unstable.any(axis=1), unstable.argmax(axis=1), points)
            rows = np.arange(len(c))
            padded = np.concatenate([bracket[:, :1], c, bracket[:, 1:]], axis=1)
            bracket[:, 0], bracket[:, 1] = padded[rows, first], padded[rows, first + 1]
    return [b.mean(axis=1) for b in brackets]


def random_rotations(rows: int, dim: int, generator: torch.Generator) -> Tensor:
    """`rows` Haar-random orthogonal (dim x dim) matrices in float64 on the CPU (QR of a Gaussian matrix with
    the signs of R's diagonal moved into Q; Mezzadri 2007, "How to generate random matrices from the classical
    compact groups").

    Example:
        >>> Q = random_rotations(2, 3, torch.Generator().manual_seed(0))
        >>> torch.allclose(Q @ Q.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand(2, 3, 3))
        True
    """
    gaussian = torch.randn(rows, dim, dim, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(gaussian)
    return q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)


def rotated_quadratics(eigenvalues: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """(A, Q) with A_r = Q_r diag(eigenvalues_r) Q_r^T for each row of `eigenvalues` (rows, d); CPU float64.

    Example:
        >>> A, Q = rotated_quadratics(torch.tensor([[1.0, 3.0]], dtype=torch.float64), torch.Generator())
        >>> torch.linalg.eigvalsh(A).round(decimals=12).tolist()
        [[1.0, 3.0]]
    """
    Q = random_rotations(eigenvalues.shape[0], eigenvalues.shape[1], generator)
    return Q @ torch.diag_embed(eigenvalues) @ Q.transpose(-1, -2), Q


def spectrum(kappa: float, dim: int, spacing: str = "linear") -> Tensor:
    """`dim` eigenvalues from mu = 1/kappa to L = 1, evenly ("linear") or geometrically spaced; float64, CPU.

    Example:
        >>> spectrum(4.0, 3).tolist(), spectrum(4.0, 3, "geometric").tolist()
        ([0.25, 0.625, 1.0], [0.25, 0.5, 1.0])
    """
    if spacing not in ("linear", "geometric"):
        raise ValueError(f"spacing: expected one of 'linear', 'geometric', got {spacing!r}")
    if spacing == "linear":
        return torch.linspace(1.0 / kappa, 1.0, dim, dtype=torch.float64)
    return torch.logspace(-np.log10(kappa), 0.0, dim, dtype=torch.float64)
