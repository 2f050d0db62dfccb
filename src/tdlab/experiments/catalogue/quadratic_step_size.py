"""GD on a quadratic: the step size sets each mode's factor 1 - eta lambda; GD is stable iff eta < 2/L.

The measurement is the real iteration: `torch.optim.SGD` (no momentum: plain gradient descent; many step sizes
at once, see `descend` for the parameter mapping) on f(w) = 1/2 w^T A w in float64, with the exact gradient
A w, A = Q diag(lambda) Q^T for a random rotation Q and eigenvalues in [mu, L] = [1/kappa, 1] (evenly spaced
by default). Rates are read from the error norm ||w_t|| (the minimum is 0), eigen-modes from the projections
q_i^T w_t; neither uses the closed forms of `tdlab.theory.quadratic`, which the checks then compare against.
A rate is an asymptotic quantity: the fit starts after `warmup` steps, once the slowest mode dominates ||w_t||
(eigenvalues crowding at mu, as with `spacing="geometric"`, need a longer warmup).

These helpers (`QuadraticRun`, `descend`, `fitted_rate`, `edge_of_stability`, `rotated_quadratics`,
`spectrum`) are shared with the `momentum` experiment.

Long runs would leave float64 (rates down to 1/3 per step, growth up to 1.5 per step), so `descend` rescales
the iterate (and the momentum buffer) to unit norm after every step and keeps the logarithm of the scale: the
update is linear and homogeneous in (w, buffer), so the rescaled run is the same run up to that scalar (the
renormalisation of Benettin et al. 1980 for Lyapunov exponents).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from numpy.typing import NDArray
from pydantic import Field, model_validator
from torch import Tensor

from tdlab.experiments.base import Check, Context, Experiment, ExperimentConfig, Result, legacy
from tdlab.theory import quadratic as theory

Kappa = Annotated[float, Field(gt=1.0)]


# ------------------------------------------------------------------------------------------ measurement
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


# --------------------------------------------------------------------------------------------- config
class QuadraticStepSizeConfig(ExperimentConfig):
    """GD on f(w) = 1/2 w^T A w with eigenvalues in [1/kappa, 1] (L = 1, so eta is eta L)."""

    dim: int = Field(8, ge=2, description="dimension d of the quadratics (eigenvalues in [mu, L])")
    spacing: Literal["linear", "geometric"] = Field(
        "linear", description="how the eigenvalues fill [mu, L] (geometric crowds them near mu: slower to measure)"
    )
    kappas: tuple[Kappa, ...] = Field((10.0, 100.0, 1000.0), min_length=1, description="condition numbers L/mu")
    eta_points: int = Field(40, ge=2, description="step sizes in the grid of eta L in (0, eta_max]")
    eta_max: float = Field(2.5, gt=2.0, le=4.0, description="largest eta L of the grid (> 2: past the edge)")
    best_step_kappas: tuple[Kappa, ...] = Field(
        (2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0),
        min_length=2,
        description="condition numbers at which the rate of the best step 2/(L + mu) is measured",
    )
    steps: int = Field(1500, ge=10, description="GD steps per rate measurement")
    warmup: int = Field(
        500, ge=0, description="steps discarded before fitting the rate (until the slowest mode dominates)"
    )
    edge_steps: int = Field(1000, ge=10, description="GD steps per probe when locating the edge of stability")
    edge_rounds: int = Field(3, ge=1, le=10, description="rounds of multisection of the bracket [0, 4/L]")
    edge_points: int = Field(31, ge=1, le=256, description="step sizes probed per round (1: bisection)")
    mode_eigenvalues: tuple[Annotated[float, Field(gt=0.0)], ...] = Field(
        (0.5, 1.0, 2.0, 3.0, 3.8), min_length=2, description="the spectrum of the mode-order quadratic"
    )
    mode_eta: float = Field(0.44, gt=0.0, description="step of the mode-order run (medium: near 2/L)")
    mode_tolerance: float = Field(1e-6, gt=0.0, lt=1.0, description="a mode has converged below this error")
    mode_steps: int = Field(80, ge=2, description="steps of the mode-order run")
    regime_eta_lambdas: tuple[Annotated[float, Field(gt=0.0)], ...] = Field(
        (0.4, 1.0, 1.6, 2.1), min_length=1, description="eta lambda of the regime panels (one mode)"
    )
    regime_steps: int = Field(20, ge=2, description="steps shown per regime panel")

    @model_validator(mode="after")
    def _consistent(self) -> QuadraticStepSizeConfig:
        if self.warmup >= self.steps - 1:
            raise ValueError(f"warmup: expected fewer than steps - 1 = {self.steps - 1}, got {self.warmup}")
        if self.mode_eta * max(self.mode_eigenvalues) >= 2.0:
            raise ValueError(
                f"mode_eta: expected below 2/max(mode_eigenvalues) = {2.0 / max(self.mode_eigenvalues):g} "
                f"(a stable step), got {self.mode_eta}"
            )
        return self


# ------------------------------------------------------------------------------------------------ run
def run(config: QuadraticStepSizeConfig, context: Context) -> Result:
    """Measure rates, the edge of stability, the regimes and the order of convergence of modes."""
    device, dtype = context.device, torch.float64
    generator = torch.Generator().manual_seed(config.seed)
    rows: list[dict[str, float]] = []
    checks: list[Check] = []

    # -- rates over the (eta, kappa) grid and at the best step 2/(L + mu): one row per (eta, kappa)
    kappas, best_kappas = np.array(config.kappas), np.array(config.best_step_kappas)
    etas = np.linspace(config.eta_max / config.eta_points, config.eta_max, config.eta_points)
    spectra = torch.stack([spectrum(k, config.dim, config.spacing) for k in kappas])
    A, _ = rotated_quadratics(spectra, generator)
    start = torch.randn(len(kappas), config.dim, generator=generator, dtype=dtype)
    best_spectra = torch.stack([spectrum(k, config.dim, config.spacing) for k in best_kappas])
    A_best, _ = rotated_quadratics(best_spectra, generator)
    start_best = torch.randn(len(best_kappas), config.dim, generator=generator, dtype=dtype)
    best_etas = np.array([theory.gd_best_step(1.0 / k, 1.0) for k in best_kappas])
    grid_run = QuadraticRun(
        A.repeat(len(etas), 1, 1).to(device),
        start.repeat(len(etas), 1).to(device),
        torch.as_tensor(etas, dtype=dtype).repeat_interleave(len(kappas)).to(device),
    )
    best_run = QuadraticRun(A_best.to(device), start_best.to(device), torch.as_tensor(best_etas, device=device))
    grid_path, best_path = descend([grid_run, best_run], config.steps)
    grid = fitted_rate(grid_path.log_error(), config.warmup).reshape(len(etas), len(kappas))
    grid_theory = np.stack([theory.gd_rate(etas, values.numpy()) for values in spectra], axis=1)
    best = fitted_rate(best_path.log_error(), config.warmup)
    best_theory = theory.gd_best_rate(best_kappas)
    for i, eta in enumerate(etas):
        for j, kappa in enumerate(kappas):
            rows += [
                {"name": "rate", "value": grid[i, j], "eta": eta, "kappa": kappa},
                {"name": "rate_theory", "value": grid_theory[i, j], "eta": eta, "kappa": kappa},
            ]
    for kappa, eta, measured, predicted in zip(best_kappas, best_etas, best, best_theory, strict=True):
        rows += [
            {"name": "best_step_rate", "value": measured, "eta": eta, "kappa": kappa},
            {"name": "best_step_rate_theory", "value": predicted, "eta": eta, "kappa": kappa},
        ]
    checks += _rate_checks(config, etas, kappas, grid, grid_theory, best_kappas, best, best_theory)

    # -- the edge of stability, located on the measured growth of the error
    (edges,) = edge_of_stability(
        [QuadraticRun(A.to(device), start.to(device), 1.0)],
        0.0,
        4.0,
        config.edge_steps,
        config.edge_rounds,
        config.edge_points,
    )
    width = 4.0 / (config.edge_points + 1) ** config.edge_rounds
    for kappa, edge in zip(kappas, edges, strict=True):
        rows.append({"name": "stability_edge", "value": edge, "kappa": kappa})
        checks.append(
            Check.relative(
                f"edge of stability eta_c L (kappa = {kappa:g})",
                float(edge),
                theory.gd_stability_threshold(1.0),
                0.01,
                detail=f"{config.edge_rounds} rounds x {config.edge_points} step sizes in [0, 4/L]; unstable when the "
                f"rate fitted over the last {config.edge_steps - config.edge_steps // 2} of {config.edge_steps} "
                f"steps exceeds 1; bracket width {width:.1e}; theory 2/L",
            )
        )

    # -- one mode through its regimes as eta grows
    regime_h = torch.tensor(config.regime_eta_lambdas, dtype=dtype, device=device)
    ones = torch.ones(len(regime_h), 1, dtype=dtype, device=device)
    (regime_path,) = descend(
        [QuadraticRun(ones.unsqueeze(-1), ones, regime_h)], config.regime_steps, keep_iterates=True
    )
    regime_errors = regime_path.iterates()[:, :, 0].T.cpu().numpy()  # (regimes, steps + 1)
    measured_regimes = [_classify(e) for e in regime_errors]
    expected_regimes = [theory.gd_regime(h, 1.0) for h in config.regime_eta_lambdas]
    for h, e in zip(config.regime_eta_lambdas, regime_errors, strict=True):
        rows += [{"name": "regime_error", "value": v, "eta": h, "eigenvalue": 1.0, "step": t} for t, v in enumerate(e)]
    checks.append(
        Check.holds(
            "regime of one mode read from its trajectory (sign pattern, growth)",
            measured_regimes == expected_regimes,
            detail=f"eta lambda {list(config.regime_eta_lambdas)}: measured {measured_regimes}, "
            f"theory {expected_regimes}",
        )
    )

    # -- per-mode errors, and the order in which modes converge at a medium step
    eigenvalues = np.array(config.mode_eigenvalues)
    A_mode, Q_mode = rotated_quadratics(torch.as_tensor(eigenvalues, dtype=dtype).unsqueeze(0), generator)
    start_mode = torch.randn(1, len(eigenvalues), generator=generator, dtype=dtype)
    middle = len(eigenvalues) // 2
    mode_run = QuadraticRun(
        A_mode.expand(2, -1, -1).to(device),
        start_mode.expand(2, -1).to(device),
        torch.tensor([config.mode_eta, 1.0 / eigenvalues[middle]], dtype=dtype, device=device),
    )
    (mode_path,) = descend([mode_run], config.mode_steps, keep_iterates=True)
    modes = (mode_path.iterates() @ Q_mode[0].to(device)).cpu().numpy()  # q_i^T w_t: (steps + 1, 2, modes)
    relative = modes[:, 0] / modes[0, 0]
    expected = np.stack([theory.gd_mode_error(config.mode_eta, v, config.mode_steps) for v in eigenvalues], 1)
    converged = np.abs(relative) <= config.mode_tolerance
    measured_steps = np.where(converged.any(axis=0), converged.argmax(axis=0), np.inf)
    theory_steps = theory.gd_steps_to_tolerance(config.mode_eta, eigenvalues, config.mode_tolerance)
    factors = np.abs(theory.gd_factor(config.mode_eta, eigenvalues))
    for i, v in enumerate(eigenvalues):
        rows += [
            {"name": "mode_error", "value": abs(relative[t, i]), "eta": config.mode_eta, "eigenvalue": v, "step": t}
            for t in range(config.mode_steps + 1)
        ]
        rows.append({"name": "steps_to_tolerance", "value": measured_steps[i], "eta": config.mode_eta, "eigenvalue": v})
    checks.append(
        Check.at_most(
            "max over modes and t of |e_i(t)/e_i(0) - (1 - eta lambda_i)^t|",
            float(np.abs(relative - expected).max()),
            1e-10,
            detail=f"eta = {config.mode_eta:g}, {config.mode_steps} steps; float64 rounding is ~1e-15 per step",
        )
    )
    ranked = np.argsort(measured_steps, kind="stable")
    order = [float(v) for v in eigenvalues[ranked]]
    predicted_order = [float(v) for v in eigenvalues[np.argsort(factors, kind="stable")]]
    checks.append(
        Check.holds(
            "modes converge in the order of |1 - eta lambda_i|",
            order == predicted_order and bool(np.all(measured_steps == theory_steps)),
            detail=f"eta = {config.mode_eta:g}, tolerance {config.mode_tolerance:g}: eigenvalues in measured "
            f"order {order} (steps {measured_steps[ranked].tolist()}), by factor {predicted_order}; steps "
            f"predicted by ceil(log tol/log|1 - eta lambda|) {theory_steps[ranked].tolist()}",
        )
    )
    one_step = modes[:2, 1, middle]
    checks.append(
        Check.at_most(
            "mode error after one step at eta = 1/lambda",
            float(abs(one_step[1] / one_step[0])),
            1e-12,
            detail=f"lambda = {eigenvalues[middle]:g} of the mode-order quadratic; theory 0, up to float64 rounding",
        )
    )

    figures = {
        "regimes": _regimes_figure(config, regime_errors, measured_regimes),
        "mode_order": _mode_order_figure(config, relative, factors),
        "rate_vs_eta": _rate_figure(etas, kappas, grid, spectra.numpy()),
        "best_step_rate": _best_step_figure(best_kappas, best),
    }
    return Result(metrics=pd.DataFrame(rows), checks=checks, figures=figures)


def _rate_checks(
    config: QuadraticStepSizeConfig,
    etas: NDArray[np.float64],
    kappas: NDArray[np.float64],
    grid: NDArray[np.float64],
    grid_theory: NDArray[np.float64],
    best_kappas: NDArray[np.float64],
    best: NDArray[np.float64],
    best_theory: NDArray[np.float64],
) -> list[Check]:
    """Measured rates against max_i |1 - eta lambda_i| and (kappa - 1)/(kappa + 1), tolerance 1% (the claim)."""
    fit = f"rate = exp(least-squares slope of log||w_t||, t in [{config.warmup}, {config.steps}])"
    edge = theory.gd_stability_threshold(1.0)
    error = np.abs(grid / grid_theory - 1.0)
    at_edge = np.isclose(etas, edge, rtol=1e-9, atol=0.0)  # rate 1: no progress to compare
    stable, converging = (etas < edge) | at_edge, (etas < edge) & ~at_edge
    worst = np.unravel_index(np.argmax(np.where(stable[:, None], error, -1.0)), error.shape)
    progress = np.abs((1.0 - grid[converging]) / (1.0 - grid_theory[converging]) - 1.0)
    best_error = np.abs(best / best_theory - 1.0)
    checks = [
        Check.at_most(
            "rate vs max_i |1 - eta lambda_i| (eta <= 2/L), worst relative error",
            float(error[stable].max()),
            0.01,
            detail=f"{stable.sum() * len(kappas)} (eta, kappa) points, worst at eta L = {etas[worst[0]]:.3g}, "
            f"kappa = {kappas[worst[1]]:g}; {fit}",
        ),
        Check.at_most(
            "per-step progress 1 - rate vs 1 - max_i |1 - eta lambda_i| (eta < 2/L), worst relative error",
            float(progress.max()),
            0.01,
            detail="stricter than the rate itself where the rate is near 1 (large kappa, small eta): the "
            "slowest mode must dominate ||w_t|| within the fitting window",
        ),
        Check.at_most(
            "rate at eta = 2/(L + mu) vs (kappa - 1)/(kappa + 1), worst relative error",
            float(best_error.max()),
            0.01,
            detail=f"kappa in {best_kappas.tolist()}; worst at kappa = {best_kappas[np.argmax(best_error)]:g}; "
            f"worst relative error of 1 - rate {np.abs((1 - best) / (1 - best_theory) - 1).max():.2g}",
        ),
    ]
    if (~stable).any():  # eta > 2/L
        checks.append(
            Check.at_most(
                "divergence rate vs |1 - eta L| (eta > 2/L), worst relative error",
                float(error[~stable].max()),
                0.01,
                detail=f"{(~stable).sum() * len(kappas)} (eta, kappa) points; {fit}",
            )
        )
    return checks


def _classify(errors: NDArray[np.float64]) -> str:
    """The regime a measured one-mode trajectory e_0, e_1, ... shows (names of `theory.gd_regime`)."""
    size = np.abs(errors)
    if size[1] <= 1e-12 * size[0]:
        return "one-step"
    flips = bool(np.all(np.sign(errors[1:]) == -np.sign(errors[:-1])))
    if not flips:
        return "monotone" if np.all(errors > 0) and np.all(np.diff(size) < 0) else "unclassified"
    if np.all(np.diff(size) < 0):
        return "oscillating"
    if np.all(np.diff(size) > 0):
        return "diverging"
    return "period-two" if np.allclose(size, size[0], rtol=1e-9) else "unclassified"


# -------------------------------------------------------------------------------------------- figures
def _regimes_figure(config: QuadraticStepSizeConfig, errors: list[NDArray[np.float64]], regimes: list[str]) -> Figure:
    n = len(errors)
    cols = min(n, 2)
    nrows = (n + cols - 1) // cols
    fig = Figure(figsize=(5.0 * cols, 3.2 * nrows), layout="constrained")
    axes = fig.subplots(nrows, cols, squeeze=False).ravel()
    t = np.arange(config.regime_steps + 1)
    for ax, h, e, regime in zip(axes, config.regime_eta_lambdas, errors, regimes, strict=False):
        ax.axhline(0.0, color="0.7", lw=0.8)
        ax.plot(
            t,
            theory.gd_mode_error(h, 1.0, config.regime_steps),
            "-",
            color="C0",
            lw=1.2,
            label=r"theory $(1-\eta\lambda)^t$",
        )
        ax.plot(t, e, "o", color="C1", ms=4, mfc="none", label="measured (torch SGD)")
        ax.set_title(rf"$\eta\lambda = {h:g}$: {regime} (factor $1-\eta\lambda = {1 - h:.2g}$)")
        ax.set_xlabel("step t")
        ax.set_ylabel(r"$e(t)/e(0)$")
    for ax in axes[n:]:
        ax.set_visible(False)
    axes[0].legend(loc="best", fontsize=8)
    fig.suptitle("One mode of GD as the step grows: monotone, one step, oscillating, diverging")
    return fig


def _mode_order_figure(
    config: QuadraticStepSizeConfig, relative: NDArray[np.float64], factors: NDArray[np.float64]
) -> Figure:
    fig = Figure(figsize=(7.0, 4.5), layout="constrained")
    ax = fig.subplots()
    t = np.arange(config.mode_steps + 1)
    for i, (v, f) in enumerate(zip(config.mode_eigenvalues, factors, strict=True)):
        ax.semilogy(t, f**t, "-", color=f"C{i}", lw=1.0)
        ax.semilogy(
            t,
            np.abs(relative[:, i]),
            "o",
            color=f"C{i}",
            ms=3,
            mfc="none",
            label=rf"$\lambda={v:g}$, $|1-\eta\lambda|={f:.2f}$",
        )
    ax.axhline(config.mode_tolerance, color="0.4", ls=":", lw=1.0, label=f"tolerance {config.mode_tolerance:g}")
    ax.set_ylim(config.mode_tolerance * 1e-3, 2.0)
    ax.set_xlabel("step t")
    ax.set_ylabel(r"$|e_i(t)/e_i(0)|$ (markers measured, lines theory)")
    ax.set_title(
        rf"GD at $\eta = {config.mode_eta:g}$ ($\eta L = {config.mode_eta * max(config.mode_eigenvalues):.2f}$): "
        "the smallest factor converges first"
    )
    ax.legend(fontsize=8)
    return fig


def _rate_figure(
    etas: NDArray[np.float64],
    kappas: NDArray[np.float64],
    grid: NDArray[np.float64],
    spectra: NDArray[np.float64],
) -> Figure:
    fig = Figure(figsize=(12.0, 4.6), layout="constrained")
    left, right = fig.subplots(1, 2)
    fine = np.linspace(etas[0] / 4, etas[-1], 600)
    below = fine < 2.0
    converging = (etas < 2.0) & ~np.isclose(etas, 2.0, rtol=1e-9, atol=0.0)  # at 2/L the progress is 0
    for j, kappa in enumerate(kappas):
        rate = theory.gd_rate(fine, spectra[j])
        best = (2 / (1 + 1 / kappa), float(theory.gd_best_rate(kappa)))
        left.plot(fine, rate, "-", color=f"C{j}", lw=1.2)
        left.plot(etas, grid[:, j], "o", color=f"C{j}", ms=4, mfc="none", label=rf"$\kappa = {kappa:g}$")
        left.plot(best[0], best[1], "*", color=f"C{j}", ms=9)
        right.semilogy(fine[below], 1 - rate[below], "-", color=f"C{j}", lw=1.2)
        right.semilogy(etas[converging], 1 - grid[converging, j], "o", color=f"C{j}", ms=4, mfc="none")
        right.semilogy(best[0], 1 - best[1], "*", color=f"C{j}", ms=9)
    for ax in (left, right):
        ax.axvline(2.0, color="k", ls="--", lw=1.0, label=r"$\eta = 2/L$")
        ax.set_xlabel(r"step size $\eta L$")
    left.axhline(1.0, color="0.6", ls=":", lw=1.0)
    left.plot([], [], "-", color="0.3", label=r"theory $\max_i|1-\eta\lambda_i|$")
    left.plot([], [], "*", color="0.3", label=r"best step $2/(L+\mu)$")
    left.set_ylabel("rate per step (markers: measured)")
    left.set_title("rate vs step size: the edge at 2/L")
    left.legend(fontsize=8, loc="upper left")
    right.set_ylabel(r"$1 -$ rate (per-step progress, $\eta < 2/L$)")
    right.set_title(r"below the edge: progress $\eta\mu$, then $2 - \eta L$")
    fig.suptitle(r"GD on quadratics with eigenvalues in $[\mu, L]$: measured (markers) vs theory (lines)")
    return fig


def _best_step_figure(kappas: NDArray[np.float64], rates: NDArray[np.float64]) -> Figure:
    fig = Figure(figsize=(10.0, 4.0), layout="constrained")
    left, right = fig.subplots(1, 2)
    fine = np.geomspace(kappas.min(), kappas.max(), 300)
    left.semilogx(fine, theory.gd_best_rate(fine), "-", color="C0", label=r"theory $(\kappa-1)/(\kappa+1)$")
    left.semilogx(kappas, rates, "o", color="C1", mfc="none", label="measured")
    left.set_xlabel(r"condition number $\kappa = L/\mu$")
    left.set_ylabel(r"rate at $\eta = 2/(L+\mu)$")
    left.legend()
    right.loglog(fine, 1 - theory.gd_best_rate(fine), "-", color="C0", label=r"theory $2/(\kappa+1)$")
    right.loglog(kappas, 1 - rates, "o", color="C1", mfc="none", label="measured")
    right.set_xlabel(r"condition number $\kappa = L/\mu$")
    right.set_ylabel("1 - rate (progress per step)")
    right.legend()
    fig.suptitle("GD at the best fixed step: the rate tends to 1 as the conditioning worsens")
    return fig


EXPERIMENT = Experiment(
    name="quadratic-step-size",
    claim="On a quadratic with eigenvalues in [mu, L], each eigen-direction of GD contracts by 1 - eta lambda per "
    "step: GD is stable iff eta < 2/L, diverges at the rate |1 - eta L| beyond, and the best fixed step "
    "2/(L + mu) gives the rate (kappa - 1)/(kappa + 1).",
    config=QuadraticStepSizeConfig,
    **legacy(run),
    presets={
        "full": {
            "dim": 20,
            "kappas": (3.0, 10.0, 30.0, 100.0, 300.0, 1000.0, 10000.0),
            "eta_points": 120,
            "best_step_kappas": tuple(float(k) for k in np.geomspace(1.5, 1e4, 16).round(3)),
            "steps": 12000,
            "warmup": 6000,
            "edge_steps": 4000,
            "edge_rounds": 4,
        }
    },
    references=(
        "Polyak (1987), Introduction to Optimization",
        "Nesterov (2004), Introductory Lectures on Convex Optimization, Thm 2.1.15",
        "Goh (2017), Why Momentum Really Works, Distill",
    ),
    part="optimisation",
)
