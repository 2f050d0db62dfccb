"""Momentum on ill-conditioned quadratics, and the noise floor of SGD with a constant step.

Every run is `torch.optim.SGD` in float64. Parameter mapping: `SGD(lr=eta, momentum=beta)` keeps
b_t = beta b_{t-1} + g_t and steps w_{t+1} = w_t - eta b_t, which is Polyak's heavy ball
w_{t+1} = w_t - eta g_t + beta (w_t - w_{t-1}) (velocity v_t = -eta b_t); with `nesterov=True` it steps
w_{t+1} = w_t - eta (g_t + beta b_t), Nesterov's method (Sutskever et al. 2013 form) written for the look-ahead
point y_t = x_t + beta (x_t - x_{t-1}), whose recursion `tdlab.theory.momentum.nesterov_matrix` states. Many
step sizes run as rows of one tensor (`SGD(lr=1)` on eta_r f_r, the same iterates; see
`tdlab.optim.quadratics.descend`), and the Robbins-Monro schedule eta_t = eta_0 t_0/(t + t_0) is
`torch.optim.lr_scheduler.LambdaLR`. The iterations stay hand-written rather than `tdlab.train.fit`: they are the
recursions on a quadratic (or a linear function) whose laws are the claim, thousands of Monte Carlo chains at once.

Parts: (1) tuned heavy ball and Nesterov reach the rates (sqrt(kappa) - 1)/(sqrt(kappa) + 1) and
1 - 1/sqrt(kappa); (2) each eigen-direction is a 2x2 linear system whose spectral radius is the measured rate;
(3) under a constant gradient the step tends to -eta g/(1 - beta); (4) heavy ball is stable iff
eta lambda < 2 (1 + beta), Nesterov iff eta lambda < 2 (1 + beta)/(1 + 2 beta); (5) with additive gradient noise
the iterates settle to the stationary variances of `tdlab.theory.sgd_noise`, smaller with momentum at the same
effective step eta/(1 - beta) and with iterate averaging; (6) per-example SGD on least squares converges with
a constant step only when the model interpolates; otherwise it plateaus, and eta_t ~ 1/t brings the error
down as 1/t.
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from numpy.typing import NDArray
from pydantic import Field, model_validator

from tdlab.experiments.base import Check, Context, Experiment, ExperimentConfig
from tdlab.experiments.tidy import rows, series, table, value
from tdlab.optim.quadratics import QuadraticRun, descend, edge_of_stability, fitted_rate, rotated_quadratics, spectrum
from tdlab.theory import momentum as theory
from tdlab.theory import quadratic as gd_theory
from tdlab.theory import sgd_noise

Kappa = Annotated[float, Field(gt=1.0)]
Beta = Annotated[float, Field(gt=0.0, lt=1.0)]
Positive = Annotated[float, Field(gt=0.0)]
Arrays = dict[str, Any]
METHODS = ("heavy ball", "nesterov")
RATE = {"heavy ball": theory.heavy_ball_rate, "nesterov": theory.nesterov_rate}
EDGE = {"heavy ball": theory.heavy_ball_stability_threshold, "nesterov": theory.nesterov_stability_threshold}
TUNED = {"gd": gd_theory.gd_best_rate, "heavy ball": theory.polyak_rate, "nesterov": theory.nesterov_tuned_rate}
REGIMES = ("constant step", "1/t step", "constant step, interpolating")
NOISE = ("sgd", "heavy", "average")


class MomentumConfig(ExperimentConfig):
    """Quadratics with eigenvalues evenly spaced in [1/kappa, 1] (L = 1); noise and least-squares settings."""

    dim: int = Field(8, ge=2, description="dimension of the quadratics of the tuned-rate runs")
    kappas: tuple[Kappa, ...] = Field((10.0, 100.0, 1000.0), min_length=1, description="condition numbers")
    curve_kappa: Kappa = Field(100.0, description="the condition number of the error-curve figure (in kappas)")
    steps: int = Field(1500, ge=10, description="steps per rate measurement")
    warmup: int = Field(500, ge=0, description="steps discarded before fitting a rate")
    betas: tuple[Beta, ...] = Field((0.3, 0.6, 0.9), min_length=1, description="momenta of the 2x2 rate grid")
    h_points: int = Field(24, ge=2, description="values of eta lambda per (method, beta) in the rate grid")
    h_overshoot: float = Field(1.15, gt=1.0, le=2.0, description="the grid of eta lambda ends at this x the edge")
    edge_steps: int = Field(400, ge=10, description="steps per probe when locating the edge of stability")
    edge_rounds: int = Field(3, ge=1, le=10, description="rounds of multisection of the bracket [0, 8]")
    edge_points: int = Field(31, ge=1, le=256, description="step sizes probed per round (1: bisection)")
    velocity_betas: tuple[Annotated[float, Field(ge=0.0, lt=1.0)], ...] = Field(
        (0.0, 0.5, 0.9, 0.99), min_length=1, description="momenta of the constant-gradient runs"
    )
    velocity_lr: Positive = Field(0.1, description="step size of the constant-gradient runs")
    velocity_steps: int = Field(3000, ge=10, description="steps of the constant-gradient runs")
    noise_eigenvalues: tuple[Positive, ...] = Field(
        (1.0, 0.5, 0.2, 0.1), min_length=1, description="spectrum of the noisy quadratic"
    )
    noise_std: Positive = Field(1.0, description="s: gradient noise xi ~ N(0, s^2 I)")
    noise_etas: tuple[Positive, ...] = Field(
        (0.25, 0.75, 1.25, 1.75), min_length=1, description="effective steps eta/(1 - beta), below 2/max lambda"
    )
    noise_beta: Beta = Field(0.9, description="momentum of the noisy heavy-ball chains")
    chains: int = Field(500, ge=2, description="independent noisy chains per step size")
    burn_in: int = Field(500, ge=0, description="noisy steps discarded before measuring")
    noise_steps: int = Field(2000, ge=10, description="noisy steps measured after the burn-in")
    average_window: int = Field(100, ge=1, description="K: iterates per average (tail averaging)")
    ls_examples: int = Field(32, ge=2, description="n: examples of the least-squares problem")
    ls_dim: int = Field(4, ge=1, description="d: parameters of the least-squares problem (< n)")
    label_noise: Positive = Field(0.5, description="std of the label noise of the non-interpolating problem")
    ls_eta: Positive = Field(0.05, description="constant step of per-example SGD on least squares")
    ls_steps: int = Field(4000, ge=100, description="per-example SGD steps")
    ls_chains: int = Field(2000, ge=100, description="independent per-example SGD chains (a multiple of 10)")

    @model_validator(mode="after")
    def _consistent(self) -> MomentumConfig:
        if self.warmup >= self.steps - 1:
            raise ValueError(f"warmup: expected fewer than steps - 1 = {self.steps - 1}, got {self.warmup}")
        if self.curve_kappa not in self.kappas:
            raise ValueError(f"curve_kappa: expected one of kappas {list(self.kappas)}, got {self.curve_kappa}")
        if max(self.noise_etas) * max(self.noise_eigenvalues) >= 2.0:
            raise ValueError(
                f"noise_etas: expected below 2/max(noise_eigenvalues) = {2 / max(self.noise_eigenvalues):g} "
                f"(SGD must be stable), got {list(self.noise_etas)}"
            )
        if self.ls_chains % 10:
            raise ValueError(f"ls_chains: expected a multiple of 10 (ten batches for error bars), got {self.ls_chains}")
        if self.average_window > self.noise_steps:
            raise ValueError(
                f"average_window: expected at most noise_steps = {self.noise_steps}, got {self.average_window}"
            )
        if self.ls_dim >= self.ls_examples:
            raise ValueError(f"ls_dim: expected fewer than ls_examples = {self.ls_examples}, got {self.ls_dim}")
        for field in ("kappas", "betas", "velocity_betas", "noise_eigenvalues", "noise_etas"):
            if len(set(getattr(self, field))) < len(getattr(self, field)):
                raise ValueError(f"{field}: expected distinct values, got {list(getattr(self, field))}")
        return self


def _h_grid(config: MomentumConfig, method: str, beta: float) -> NDArray[np.float64]:
    """The values of eta lambda of the rate grid: h_points up to h_overshoot x the edge."""
    return np.linspace(1, config.h_points, config.h_points) * config.h_overshoot * EDGE[method](beta) / config.h_points


# ------------------------------------------------------------------------------------------------ measure
def measure(config: MomentumConfig, context: Context) -> pd.DataFrame:
    """Tuned and grid rates, edges, terminal velocities, stationary variances and SGD error curves (see each part)."""
    generator = torch.Generator().manual_seed(config.seed)
    parts = [_tuned_rates(config, context, generator), _velocity(config, context, generator)]
    parts += [_one_mode(config, context), _stationary_variance(config, context)]
    return pd.concat([*parts, _least_squares(config, context, generator)], ignore_index=True)


def _tuned_rates(config: MomentumConfig, context: Context, generator: torch.Generator) -> pd.DataFrame:
    """GD at 2/(L + mu), heavy ball with Polyak's tuning, Nesterov with (1/L, (sqrt k - 1)/(sqrt k + 1)).

    Rows `tuned_rate` (method, kappa) and, at `curve_kappa`, `log_error` log(||w_t||/||w_0||) (method, step)."""
    device, dtype = context.device, torch.float64
    kappas = np.array(config.kappas)
    A, _ = rotated_quadratics(torch.stack([spectrum(k, config.dim) for k in kappas]), generator)
    start = torch.randn(len(kappas), config.dim, generator=generator, dtype=dtype)
    A, start = A.to(device), start.to(device)
    gd_steps = torch.tensor([gd_theory.gd_best_step(1 / k, 1.0) for k in kappas], dtype=dtype, device=device)
    runs = [QuadraticRun(A, start, gd_steps)]
    for j, kappa in enumerate(kappas):
        for method, parameters in (("heavy ball", theory.polyak_parameters), ("nesterov", theory.nesterov_parameters)):
            eta, beta = parameters(1 / kappa, 1.0)
            runs.append(QuadraticRun(A[j : j + 1], start[j : j + 1], eta, beta, nesterov=method == "nesterov"))
    paths = descend(runs, config.steps)
    rates = np.concatenate([fitted_rate(p.log_error(), config.warmup) for p in paths])
    errors = torch.cat([p.log_error() for p in paths], dim=1).cpu().numpy()  # gd per kappa, then (hb, nesterov)
    j, n = config.kappas.index(config.curve_kappa), len(kappas)
    columns = {"gd": j, "heavy ball": n + 2 * j, "nesterov": n + 2 * j + 1}
    frames = [rows("tuned_rate", rates[:n], method="gd", kappa=kappas)]
    frames += [rows("tuned_rate", rates[n + k :: 2], method=m, kappa=kappas) for k, m in enumerate(METHODS)]
    steps = np.arange(config.steps + 1)
    frames += [rows("log_error", errors[:, c] - errors[0, c], method=m, step=steps) for m, c in columns.items()]
    return pd.concat(frames)


def _one_mode(config: MomentumConfig, context: Context) -> pd.DataFrame:
    """One eigen-direction (lambda = 1) per (method, beta): the fitted rate over a grid of eta lambda (`rate`,
    with method, beta, eta_lambda) and the largest stable eta lambda on the measured growth (`stability_edge`)."""
    device, dtype = context.device, torch.float64
    pairs = [(method, beta) for method in METHODS for beta in config.betas]
    grid = []
    for method, beta in pairs:
        h = torch.as_tensor(_h_grid(config, method, beta), device=device)
        ones = torch.ones(len(h), 1, dtype=dtype, device=device)
        grid.append(QuadraticRun(ones.unsqueeze(-1), ones, h, beta, method == "nesterov"))
    rates = [fitted_rate(path.log_error(), config.warmup) for path in descend(grid, config.steps)]
    one = torch.ones(1, 1, dtype=dtype, device=device)
    probes = [QuadraticRun(one.unsqueeze(-1), one, 1.0, beta, method == "nesterov") for method, beta in pairs]
    edges = edge_of_stability(probes, 0.0, 8.0, config.edge_steps, config.edge_rounds, config.edge_points)
    frames = [
        rows("rate", r, method=m, beta=b, eta_lambda=_h_grid(config, m, b))
        for (m, b), r in zip(pairs, rates, strict=True)
    ]
    frames += [rows("stability_edge", e, method=m, beta=b) for (m, b), e in zip(pairs, edges, strict=True)]
    return pd.concat(frames)


def _velocity(config: MomentumConfig, context: Context, generator: torch.Generator) -> pd.DataFrame:
    """Heavy ball under a constant gradient g, one `SGD` parameter group per beta: `velocity` (beta, step t), the
    step w_t - w_{t-1} along -g in units of eta |g|; `last_step` (beta, index) and `gradient` g (index)."""
    device, dtype, betas = context.device, torch.float64, config.velocity_betas
    g = torch.randn(3, generator=generator, dtype=dtype).to(device)
    W = torch.zeros(len(betas), 3, dtype=dtype, device=device)
    params = list(W)  # views: one parameter group per beta, updated in place in W
    optimizer = torch.optim.SGD(
        [{"params": [p], "momentum": b} for p, b in zip(params, betas, strict=True)], config.velocity_lr
    )
    for p in params:
        p.grad = g.clone()
    steps = torch.empty(config.velocity_steps, len(betas), 3, dtype=dtype, device=device)
    with torch.no_grad():
        for t in range(config.velocity_steps):
            previous = W.clone()
            optimizer.step()
            torch.sub(W, previous, out=steps[t])
    steps, g_ = steps.cpu().numpy(), g.cpu().numpy()
    along = -(steps @ g_) / (config.velocity_lr * g_ @ g_)
    index, t = np.arange(3), np.arange(1, config.velocity_steps + 1)[:, None]
    return pd.concat(
        [
            rows("velocity", along, beta=np.array(betas), step=t),
            rows("last_step", steps[-1], beta=np.array(betas)[:, None], index=index),
            rows("gradient", g_, index=index),
        ]
    )


# ---------------------------------------------------------------------------------------------- noise
def _stationary_variance(config: MomentumConfig, context: Context) -> pd.DataFrame:
    """Chains of SGD and heavy ball (same effective step) with additive gradient noise, started at the minimum.

    The quadratic is diagonal, f(w) = 1/2 sum_i lambda_i w_i^2, so its eigen-directions are the coordinates; with
    isotropic noise N(0, s^2 I) any rotation of it gives the same law along each eigen-direction. Rows
    `{sgd,heavy,average}_variance` (eta, eigenvalue): the mean over chains; `..._variance_se` its standard error.
    """
    device, dtype = context.device, torch.float64
    lam = np.array(config.noise_eigenvalues)
    curvature = torch.as_tensor(lam, dtype=dtype, device=device)
    etas, beta, chains, d = np.array(config.noise_etas), config.noise_beta, config.chains, len(lam)
    # SGD(lr=1) on eta f: rows carry their own steps, eta (SGD) and (1 - beta) eta (heavy ball)
    lr = torch.as_tensor(etas, dtype=dtype, device=device).repeat_interleave(chains).unsqueeze(-1)
    lr = torch.stack([lr, (1 - beta) * lr])
    W = torch.zeros(2, len(etas) * chains, d, dtype=dtype, device=device)
    sgd, heavy = W  # views: SGD chains and heavy-ball chains
    gradient = torch.zeros_like(W)
    sgd.grad, heavy.grad = gradient
    optimizer = torch.optim.SGD([{"params": [sgd]}, {"params": [heavy], "momentum": beta}], lr=1.0)
    noise = torch.Generator(device=device).manual_seed(config.seed + 1)
    total = config.burn_in + config.noise_steps
    xi = torch.empty(min(total, 100), *W.shape, dtype=dtype, device=device)  # noise drawn 100 steps at a time
    second = {"sgd": torch.zeros_like(sgd), "heavy": torch.zeros_like(sgd), "average": torch.zeros_like(sgd)}
    block = torch.zeros_like(sgd)
    K = config.average_window
    blocks = config.noise_steps // K
    with torch.no_grad():
        for t in context.track(range(total), "noisy chains"):
            if t % len(xi) == 0:
                torch.randn(xi.shape, generator=noise, dtype=dtype, device=device, out=xi)
            torch.mul(lr, W * curvature + config.noise_std * xi[t % len(xi)], out=gradient)
            optimizer.step()
            if t < config.burn_in:
                continue
            second["sgd"] += sgd**2
            second["heavy"] += heavy**2
            if t - config.burn_in < blocks * K:
                block += sgd
                if (t - config.burn_in + 1) % K == 0:
                    second["average"] += (block / K) ** 2
                    block.zero_()
    counts = {"sgd": config.noise_steps, "heavy": config.noise_steps, "average": blocks}
    frames = []
    for key, sums in second.items():
        per_chain = (sums / counts[key]).view(len(etas), chains, d).cpu().numpy()
        se = per_chain.std(axis=1, ddof=1) / np.sqrt(chains)
        frames += [
            rows(f"{key}_variance", per_chain.mean(axis=1), eta=etas[:, None], eigenvalue=lam),
            rows(f"{key}_variance_se", se, eta=etas[:, None], eigenvalue=lam),
        ]
    return pd.concat(frames)


def _least_squares(config: MomentumConfig, context: Context, generator: torch.Generator) -> pd.DataFrame:
    """Per-example SGD on least squares: constant step (noisy labels), eta_t ~ 1/t (noisy), constant (clean).

    Rows `mse` E||w_t - w*||^2 over the chains and `mse_theory` the exact moment recursion (regime, step);
    `mse_batch` (batch, step) for the 1/t step, ten batches of chains; scalars: `plateau_mse` (per-chain mean of the
    constant step's second half, `plateau_mse_se` its standard error), `stationary_mse` and `contraction` (the exact
    plateau and second-moment factor of this problem), `t0` (eta_t = eta t0/(t + t0)).
    """
    device, dtype = context.device, torch.float64
    n, d, chains = config.ls_examples, config.ls_dim, config.ls_chains
    X = torch.randn(n, d, generator=generator, dtype=dtype)
    w_true = torch.randn(d, generator=generator, dtype=dtype)
    y_clean = X @ w_true
    y_noisy = y_clean + config.label_noise * torch.randn(n, generator=generator, dtype=dtype)
    w_ls = torch.linalg.lstsq(X, y_noisy.unsqueeze(-1)).solution.squeeze(-1)
    lam_min = float(torch.linalg.eigvalsh(X.T @ X / n)[0])
    scale = 2.0 / lam_min  # eta_t = scale/(t + t0): 2 scale lambda_min = 4 > 1, so the 1/t term dominates
    t0 = scale / config.ls_eta
    targets = torch.stack([y_noisy, y_noisy, y_clean]).to(device)
    optimum = torch.stack([w_ls, w_ls, w_true]).to(device).unsqueeze(1)
    X_ = X.to(device)
    W = torch.zeros(3, chains, d, dtype=dtype, device=device)
    gradient = torch.zeros_like(W)
    params = list(W)  # views: one parameter group per regime, updated in place in W
    for p, g in zip(params, gradient, strict=True):
        p.grad = g
    optimizer = torch.optim.SGD([{"params": [p]} for p in params], lr=config.ls_eta)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, [lambda t: 1.0, lambda t: t0 / (t + t0), lambda t: 1.0])
    sampler = torch.Generator(device=device).manual_seed(config.seed + 2)
    mse = torch.empty(config.ls_steps + 1, 3, 10, dtype=dtype, device=device)  # ten batches of chains
    tail = torch.zeros(chains, dtype=dtype, device=device)  # per-chain sum of ||e_t||^2, constant step, second half

    def record(t: int) -> None:
        squared = ((W - optimum) ** 2).sum(-1)
        mse[t] = squared.view(3, 10, chains // 10).mean(-1)
        if t > config.ls_steps // 2:
            tail.add_(squared[0])

    with torch.no_grad():
        record(0)
        for t in context.track(range(config.ls_steps), "per-example SGD"):
            index = torch.randint(n, (3, chains), generator=sampler, device=device)
            x = X_.index_select(0, index.ravel()).view(3, chains, d)
            gradient.copy_(x * ((x * W).sum(-1) - targets.gather(1, index)).unsqueeze(-1))
            optimizer.step()
            schedule.step()
            record(t + 1)
    batches = mse.cpu().numpy()
    X_np, y_np, w0 = X.numpy(), y_noisy.numpy(), np.zeros(d)
    constant = np.full(config.ls_steps, config.ls_eta)
    exact = [
        sgd_noise.least_squares_sgd_mse(X_np, y_np, w0, constant),
        sgd_noise.least_squares_sgd_mse(X_np, y_np, w0, scale / (np.arange(config.ls_steps) + t0)),
        sgd_noise.least_squares_sgd_mse(X_np, y_clean.numpy(), w0, constant),
    ]
    per_chain = tail.cpu().numpy() / (config.ls_steps - config.ls_steps // 2)
    t, regimes = np.arange(config.ls_steps + 1), np.array(REGIMES)
    scalars = {
        "plateau_mse": per_chain.mean(),
        "plateau_mse_se": per_chain.std(ddof=1) / np.sqrt(chains),
        "stationary_mse": sgd_noise.least_squares_sgd_stationary_mse(X_np, y_np, config.ls_eta),
        "contraction": sgd_noise.least_squares_sgd_contraction(X_np, config.ls_eta),
        "t0": t0,
    }
    return pd.concat(
        [
            rows("mse", batches.mean(axis=2), regime=regimes, step=t[:, None]),
            rows("mse_theory", np.stack(exact, axis=1), regime=regimes, step=t[:, None]),
            rows("mse_batch", batches[:, 1], regime=REGIMES[1], batch=np.arange(10), step=t[:, None]),
            *(rows(name, number) for name, number in scalars.items()),
        ]
    )


def _measured(metrics: pd.DataFrame, config: MomentumConfig) -> Arrays:
    """The metrics as arrays in the config's orders (what the checks and figures read)."""

    def ordered(name: str, index: str, index_order: Any, columns: str, column_order: Any = None) -> NDArray[np.float64]:
        frame = table(metrics, name, index, columns).loc[list(index_order)]
        return (frame if column_order is None else frame[list(column_order)]).to_numpy()

    pairs = [(method, beta) for method in METHODS for beta in config.betas]
    m: Arrays = {
        "tuned": dict(zip(TUNED, ordered("tuned_rate", "method", TUNED, "kappa", config.kappas), strict=True)),
        "curves": {method: series(metrics, "log_error", method=method)[1] for method in TUNED},
        "grid": {(k, b): series(metrics, "rate", "eta_lambda", method=k, beta=b) for k, b in pairs},
        "edges": {(k, b): value(metrics, "stability_edge", method=k, beta=b) for k, b in pairs},
        "velocity": ordered("velocity", "beta", config.velocity_betas, "step").T,
        "last_step": ordered("last_step", "beta", config.velocity_betas, "index"),
        "gradient": series(metrics, "gradient", "index")[1],
        "mse": ordered("mse", "regime", REGIMES, "step").T,
        "mse_theory": ordered("mse_theory", "regime", REGIMES, "step").T,
        "mse_batch": ordered("mse_batch", "batch", range(10), "step").T,
    }
    for key in NOISE:
        for suffix in ("", "_se"):
            name = f"{key}_variance{suffix}"
            m[key + suffix] = ordered(name, "eta", config.noise_etas, "eigenvalue", config.noise_eigenvalues)
    for name in ("plateau_mse", "plateau_mse_se", "stationary_mse", "contraction", "t0"):
        m[name] = value(metrics, name)
    return m


# ------------------------------------------------------------------------------------------------- checks
def checks(metrics: pd.DataFrame, config: MomentumConfig) -> list[Check]:
    """Each measured rate, edge, velocity, variance and error curve against its closed form (see each check)."""
    m = _measured(metrics, config)
    return [*_rate_checks(config, m), *_noise_checks(config, m), *_least_squares_checks(config, m)]


def _rate_checks(config: MomentumConfig, m: Arrays) -> list[Check]:
    """Tuned rates (2%), the 2x2 spectral radii (2%), the terminal velocity (1e-6) and the edges (1%)."""
    kappas, result = np.array(config.kappas), []
    fit = f"rate = exp(least-squares slope of log||w_t||, t in [{config.warmup}, {config.steps}]), d = {config.dim}"
    for method, formula in (("heavy ball", "(sqrt k - 1)/(sqrt k + 1)"), ("nesterov", "1 - 1/sqrt k")):
        for kappa, measured, predicted in zip(kappas, m["tuned"][method], TUNED[method](kappas), strict=True):
            result.append(
                Check.relative(
                    f"tuned {method} rate vs {formula} (kappa = {kappa:g})",
                    float(measured),
                    float(predicted),
                    0.02,
                    detail=f"{fit}; relative error of 1 - rate {abs((1 - measured) / (1 - predicted) - 1):.2g} (double "
                    "roots at the extreme modes make the error ~ t rho^t, biasing a finite fit)",
                )
            )
    for method in METHODS:
        # relative error; a point where the theory rate is exactly 0 (Nesterov at eta lambda = 1) must measure 0
        errors, progress = [], []
        for beta in config.betas:
            h, measured = m["grid"][method, beta]
            predicted = RATE[method](1.0, beta, h)
            errors.append(np.abs(measured - predicted) / np.where(predicted > 0, predicted, 1.0))
            progress.append(np.abs((1 - measured) / (1 - predicted) - 1)[predicted < 1])
        result.append(
            Check.at_most(
                f"{method}: measured rate vs spectral radius of the 2x2 matrix, worst relative error",
                float(np.concatenate(errors).max()),
                0.02,
                detail=f"betas {list(config.betas)} x {config.h_points} values of eta lambda up to "
                f"{config.h_overshoot:g} x the edge (divergent ones included); worst relative error of 1 - rate "
                f"over the converging points {np.concatenate(progress).max():.2g}",
            )
        )
    expected = [theory.terminal_velocity(config.velocity_lr, beta, m["gradient"]) for beta in config.velocity_betas]
    result.append(
        Check.at_most(
            "step under a constant gradient vs -eta g/(1 - beta), worst absolute error",
            float(np.abs(m["last_step"] - np.array(expected)).max()),
            1e-6,
            detail=f"eta = {config.velocity_lr:g}, betas {list(config.velocity_betas)}, after {config.velocity_steps} "
            f"steps (transient beta^t = {max(config.velocity_betas) ** config.velocity_steps:.1e} of it left)",
        )
    )
    width = 8.0 / (config.edge_points + 1) ** config.edge_rounds
    formulas = {"heavy ball": "2(1 + beta)", "nesterov": "2(1 + beta)/(1 + 2 beta)"}
    for method in METHODS:
        for beta in config.betas:
            result.append(
                Check.relative(
                    f"{method} edge of stability eta lambda vs {formulas[method]} (beta = {beta:g})",
                    m["edges"][(method, beta)],
                    EDGE[method](beta),
                    0.01,
                    detail=f"{config.edge_rounds} rounds x {config.edge_points} step sizes in [0, 8]; unstable when "
                    f"the rate fitted over the last {config.edge_steps - config.edge_steps // 2} of "
                    f"{config.edge_steps} steps exceeds 1; bracket width {width:.1e}",
                )
            )
    return result


def _noise_checks(config: MomentumConfig, m: Arrays) -> list[Check]:
    """Measured stationary variances against the AR(1)/AR(2) formulas, worst relative error 10%, and orderings."""
    beta, K, blocks = config.noise_beta, config.average_window, config.noise_steps // config.average_window
    lam, s2, etas, result = np.array(config.noise_eigenvalues), config.noise_std**2, config.noise_etas, []
    expected = {
        "sgd": np.stack([sgd_noise.sgd_stationary_variance(e, lam, s2) for e in etas]),
        "heavy": np.stack([sgd_noise.heavy_ball_stationary_variance((1 - beta) * e, beta, lam, s2) for e in etas]),
        "average": np.stack([sgd_noise.averaged_iterate_variance(e, lam, s2, K) for e in etas]),
    }
    labels = {
        "sgd": ("SGD stationary variance vs eta s^2/(lambda (2 - eta lambda))", f"{config.noise_steps} steps"),
        "heavy": (
            f"heavy ball (beta = {beta:g}, eta = (1 - beta) eta_eff) stationary variance vs "
            "eta s^2 (1 + beta)/(lambda (1 - beta)(2(1 + beta) - eta lambda))",
            f"{config.noise_steps} steps; the AR(2) variance, equal to the 2x2 Lyapunov solution",
        ),
        "average": (
            f"variance of the mean of K = {K} SGD iterates vs the AR(1) formula",
            f"{blocks} consecutive blocks of K per chain",
        ),
    }
    for key, (name, how) in labels.items():
        result.append(
            Check.at_most(
                f"{name}, worst relative error",
                float(np.abs(m[key] / expected[key] - 1).max()),
                0.10,
                detail=f"{len(config.noise_etas)} effective steps x {len(config.noise_eigenvalues)} eigen-directions, "
                f"{config.chains} chains started at the minimum, {config.burn_in} burn-in steps, {how}; Monte Carlo "
                f"standard error (spread across chains) at most {(m[key + '_se'] / expected[key]).max():.1%} of the "
                "theory",
            )
        )
    ratio = expected["heavy"] / expected["sgd"]
    clear = ratio < 0.9
    result.append(
        Check.holds(
            "at the same effective step eta/(1 - beta), momentum shrinks the stationary variance",
            bool(np.all(m["heavy"][clear] < m["sgd"][clear])),
            detail=f"measured heavy ball < SGD at the {clear.sum()} (eta, lambda) with theory ratio < 0.9 (ratios "
            f"{ratio[clear].min():.2f}..{ratio[clear].max():.2f}); at the same raw eta it grows ~(1 + beta)/(1 - beta)",
        )
    )
    result.append(
        Check.holds(
            "averaging K iterates shrinks the variance",
            bool(np.all(m["average"] < m["sgd"])),
            detail=f"measured at all {m['sgd'].size} (eta, lambda); the theory tends to s^2/(lambda^2 K)",
        )
    )
    return result


def _least_squares_checks(config: MomentumConfig, m: Arrays) -> list[Check]:
    """The constant step's plateau (10%), the 1/t decay (slope -1 +- 0.05, level 10%), interpolation's rate (2%)."""
    measured, exact, plateau, t0 = m["mse"], m["mse_theory"], m["stationary_mse"], m["t0"]
    half, chains = config.ls_steps - config.ls_steps // 2, config.ls_chains
    result = [
        Check.relative(
            "constant step: plateau of E||w_t - w_LS||^2 vs the exact stationary second moment",
            m["plateau_mse"],
            plateau,
            0.10,
            detail=f"eta = {config.ls_eta:g}, n = {config.ls_examples}, d = {config.ls_dim}, label noise "
            f"{config.label_noise:g}; mean over {chains} chains and the last {half} steps; Monte Carlo standard "
            f"error {m['plateau_mse_se'] / plateau:.1%}",
        )
    ]
    t = np.arange(config.ls_steps + 1)
    window = t >= config.ls_steps // 10
    x_fit = np.log(t[window] + t0)
    slope, exact_slope = (float(np.polyfit(x_fit, np.log(curve[window, 1]), 1)[0]) for curve in (measured, exact))
    batch_slopes = [np.polyfit(x_fit, np.log(m["mse_batch"][window, b]), 1)[0] for b in range(10)]
    scale = t0 * config.ls_eta
    result.append(
        Check.absolute(
            "eta_t ~ 1/t: log-log slope of E||w_t - w_LS||^2 against t + t0",
            slope,
            -1.0,
            0.05,
            detail=f"eta_t = {scale:.3g}/(t + {t0:.3g}), fit over t in [{config.ls_steps // 10}, {config.ls_steps}]; "
            f"tolerance 0.05 = room for the finite-t correction O(eta_t lambda) of the exact moment recursion (its "
            f"slope over this window: {exact_slope:.3f}) and the Monte Carlo standard error of the fit "
            f"({np.std(batch_slopes, ddof=1) / np.sqrt(10):.3f}, from ten batches of chains)",
        )
    )
    late = slice(config.ls_steps - config.ls_steps // 10, None)
    level, level_exact = measured[late, 1].mean(), exact[late, 1].mean()
    level_se = m["mse_batch"][late].mean(axis=0).std(ddof=1) / np.sqrt(10)
    result.append(
        Check.relative(
            "eta_t ~ 1/t: E||w_t - w_LS||^2 over the last tenth of the run vs the exact moment recursion",
            float(level),
            float(level_exact),
            0.10,
            detail=f"Monte Carlo standard error {level_se / level_exact:.1%} (ten batches of {chains // 10} chains)",
        )
    )
    result.append(
        Check.holds(
            "eta_t ~ 1/t keeps falling below the constant step's plateau",
            bool(measured[-1, 1] < 0.5 * plateau and measured[-1, 1] < measured[config.ls_steps // 2, 1]),
            detail=f"E||e||^2 at t = {config.ls_steps}: {measured[-1, 1]:.3g} (1/t step) vs plateau {plateau:.3g}",
        )
    )
    # interpolation: linear convergence of the mean square error at the rate of the second-moment operator
    floor = measured[:, 2] > 1e-20 * measured[0, 2]
    end = int(np.argmin(floor)) if not floor.all() else config.ls_steps + 1
    begin = end // 4
    result.append(
        Check.relative(
            "interpolating: per-step factor of E||w_t - w*||^2 vs the second-moment operator's spectral radius",
            float(np.exp(np.polyfit(t[begin:end], np.log(measured[begin:end, 2]), 1)[0])),
            m["contraction"],
            0.02,
            detail=f"constant eta = {config.ls_eta:g}, fit over t in [{begin}, {end}) (until E||e||^2 < 1e-20 of "
            f"its start); E||e||^2 at t = {config.ls_steps}: {measured[-1, 2]:.1e} of its start "
            f"{measured[0, 2]:.3g}",
        )
    )
    return result


# -------------------------------------------------------------------------------------------- figures
def figures(metrics: pd.DataFrame, config: MomentumConfig) -> dict[str, Figure]:
    """Error curves of the tuned methods, rates vs eta lambda and kappa, SGD on least squares, the noise floor and
    the terminal velocity."""
    m = _measured(metrics, config)
    return {
        "error_curves": _error_figure(config, m),
        "rates": _rates_figure(config, m),
        "sgd_error": _sgd_figure(config, m),
        "stationary_variance": _variance_figure(config, m),
        "terminal_velocity": _velocity_figure(config, m["velocity"]),
    }


def _error_figure(config: MomentumConfig, m: Arrays) -> Figure:
    kappa = config.curve_kappa
    horizon = int(min(config.steps, np.ceil(np.log(1e-12) / np.log(theory.polyak_rate(kappa)))))
    t = np.arange(horizon + 1)
    fig = Figure(figsize=(7.0, 4.5), layout="constrained")
    ax = fig.subplots()
    every = max(1, horizon // 60)
    labels = {"gd": "GD, $\\eta = 2/(L+\\mu)$", "heavy ball": "heavy ball (Polyak)", "nesterov": "Nesterov"}
    for i, method in enumerate(("gd", "heavy ball", "nesterov")):
        curve = np.exp(m["curves"][method][: horizon + 1])
        rho = float(TUNED[method](kappa))
        ax.semilogy(
            t[::every], curve[::every], "o", color=f"C{i}", ms=3, mfc="none", label=f"{labels[method]}: measured"
        )
        anchor = min(config.warmup, horizon) // 2
        ax.semilogy(
            t, curve[anchor] * rho ** (t - anchor), "-", color=f"C{i}", lw=1.0, label=f"theory slope: rate {rho:.3f}"
        )
    ax.set_ylim(1e-13, 3.0)
    ax.set_xlabel("step t")
    ax.set_ylabel(r"$\|w_t - w^*\| / \|w_0 - w^*\|$")
    ax.set_title(
        rf"Quadratic with $\kappa = {kappa:g}$ (d = {config.dim}): momentum turns $\kappa$ into $\sqrt{{\kappa}}$"
    )
    ax.legend(fontsize=8)
    return fig


def _rates_figure(config: MomentumConfig, m: Arrays) -> Figure:
    fig = Figure(figsize=(15.0, 4.6), layout="constrained")
    axes = fig.subplots(1, 3)
    for ax, method in zip(axes[:2], METHODS, strict=True):
        rate, edge = RATE[method], EDGE[method]
        for i, beta in enumerate(config.betas):
            h, measured = m["grid"][method, beta]
            fine = np.linspace(h[0] / 4, h[-1], 800)
            ax.plot(fine, rate(1.0, beta, fine), "-", color=f"C{i}", lw=1.0)
            ax.plot(h, measured, "o", color=f"C{i}", ms=4, mfc="none", label=rf"$\beta = {beta:g}$")
            ax.axvline(edge(beta), color=f"C{i}", ls=":", lw=1.0)
        ax.axhline(1.0, color="0.6", lw=0.8)
        ax.set_ylim(0.0, 1.6)
        ax.set_xlabel(r"$\eta\lambda$")
        ax.set_ylabel("rate per step (markers measured)")
        formula = r"2(1+\beta)" if method == "heavy ball" else r"2(1+\beta)/(1+2\beta)"
        ax.plot([], [], "-", color="0.3", lw=1.0, label="spectral radius of the 2x2 matrix")
        ax.plot([], [], ":", color="0.3", lw=1.0, label=f"edge $\\eta\\lambda = {formula}$")
        ax.set_title(f"{method}: one eigen-direction")
        ax.legend(fontsize=8, loc="lower right")
    ax = axes[2]
    kappas = np.array(config.kappas)
    fine = np.geomspace(kappas.min() / 2, kappas.max() * 2, 200)
    curves = {
        "gd": (gd_theory.gd_best_rate, r"GD $2/(\kappa+1)$"),
        "heavy ball": (theory.polyak_rate, r"heavy ball $2/(\sqrt{\kappa}+1)$"),
        "nesterov": (theory.nesterov_tuned_rate, r"Nesterov $1/\sqrt{\kappa}$"),
    }
    for i, (method, (formula, label)) in enumerate(curves.items()):
        ax.loglog(fine, 1 - formula(fine), "-", color=f"C{i}", lw=1.0, label=label)
        ax.loglog(kappas, 1 - m["tuned"][method], "o", color=f"C{i}", mfc="none")
    ax.set_xlabel(r"condition number $\kappa$")
    ax.set_ylabel("1 - rate (progress per step)")
    ax.set_title(f"tuned methods, d = {config.dim}")
    fig.suptitle("Rates of momentum methods on quadratics: markers measured (torch.optim.SGD), lines theory")
    ax.legend(fontsize=8)
    return fig


def _sgd_figure(config: MomentumConfig, m: Arrays) -> Figure:
    measured, exact = m["mse"], m["mse_theory"]
    t = np.arange(len(measured))
    marks = np.unique(np.geomspace(1, len(t) - 1, 60).astype(int))
    fig = Figure(figsize=(7.5, 4.8), layout="constrained")
    ax = fig.subplots()
    names = ("constant step", r"$\eta_t \propto 1/t$", "constant step, interpolating (no label noise)")
    for k, name in enumerate(names):
        keep = measured[marks, k] > 0
        ax.loglog(t[1:], exact[1:, k], "-", color=f"C{k}", lw=1.0)
        ax.loglog(marks[keep], measured[marks, k][keep], "o", color=f"C{k}", ms=4, mfc="none", label=f"{name}")
    ax.axhline(m["stationary_mse"], color="C0", ls=":", lw=1.0, label="stationary level (theory)")
    reference = exact[-1, 1] * (len(t) - 1 + m["t0"]) / (t[1:] + m["t0"])
    ax.loglog(t[1:], reference, "--", color="0.5", lw=0.8, label=r"slope $-1$")
    ax.set_ylim(max(1e-12, measured[:, 2][measured[:, 2] > 0].min() / 10), measured[0].max() * 3)
    ax.set_xlabel("step t")
    ax.set_ylabel(r"$E\|w_t - w^*\|^2$ (markers measured, lines exact recursion)")
    ax.set_title(f"Per-example SGD on least squares (n = {config.ls_examples}, d = {config.ls_dim})")
    ax.legend(fontsize=8)
    return fig


def _variance_figure(config: MomentumConfig, v: Arrays) -> Figure:
    lam, etas = np.array(config.noise_eigenvalues), np.array(config.noise_etas)
    beta, K = config.noise_beta, config.average_window
    s2 = config.noise_std**2
    h = etas[:, None] * lam[None, :]  # effective eta lambda
    fine = np.geomspace(h.min() / 1.5, 1.95, 300)
    fig = Figure(figsize=(7.5, 4.8), layout="constrained")
    ax = fig.subplots()
    normalise = lam[None, :] / (etas[:, None] * s2)  # V lambda/(eta s^2): a function of eta lambda only
    curves = {  # theory of V lambda/(eta_eff s^2) as a function of h = eta_eff lambda, marker, label
        "sgd": (1 / (2 - fine), "o", "SGD"),
        "heavy": (
            (1 + beta) / (2 * (1 + beta) - (1 - beta) * fine),
            "s",
            rf"heavy ball $\beta = {beta:g}$, $\eta = (1-\beta)\eta_{{eff}}$",
        ),
        "average": (
            sgd_noise.averaged_iterate_variance(1.0, fine, s2, K) * fine,
            "^",
            f"SGD, mean of K = {K} iterates",
        ),
    }
    for i, (key, (curve, marker, label)) in enumerate(curves.items()):
        ax.loglog(fine, curve, "-", color=f"C{i}", lw=1.0)
        ax.loglog(h.ravel(), (v[key] * normalise).ravel(), marker, color=f"C{i}", mfc="none", label=label)
    ax.set_xlabel(r"effective step $\eta_{eff}\lambda$ ($\eta_{eff} = \eta/(1-\beta)$)")
    ax.set_ylabel(r"stationary variance $\times \lambda/(\eta_{eff} s^2)$")
    ax.set_title("Noise floor of constant-step SGD (markers measured, lines theory)")
    ax.legend(fontsize=8)
    return fig


def _velocity_figure(config: MomentumConfig, steps: NDArray[np.float64]) -> Figure:
    """`steps`: (step, beta), the step along -g in units of eta |g|."""
    t = np.arange(1, len(steps) + 1)
    marks = np.unique(np.geomspace(1, len(t), 50).astype(int)) - 1
    fig = Figure(figsize=(7.0, 4.5), layout="constrained")
    ax = fig.subplots()
    for k, beta in enumerate(config.velocity_betas):
        ax.semilogx(t, (1 - beta**t) / (1 - beta), "-", color=f"C{k}", lw=1.0)
        ax.semilogx(t[marks], steps[marks, k], "o", color=f"C{k}", ms=3, mfc="none", label=rf"$\beta = {beta:g}$")
        ax.axhline(1 / (1 - beta), color=f"C{k}", ls=":", lw=0.8)
    ax.set_yscale("log")
    ax.set_xlabel("step t")
    ax.set_ylabel(r"step $|w_{t} - w_{t-1}|$ in units of $\eta |g|$")
    ax.set_title(r"Constant gradient: the step grows to $\eta g/(1-\beta)$ (lines $(1-\beta^t)/(1-\beta)$)")
    ax.legend(fontsize=8)
    return fig


EXPERIMENT = Experiment(
    name="momentum",
    claim="Heavy ball with Polyak's tuning converges at (sqrt(kappa) - 1)/(sqrt(kappa) + 1), each eigen-direction "
    "following a 2x2 linear system, stable iff eta lambda < 2(1 + beta); with gradient noise a constant step "
    "leaves a stationary variance eta s^2/(lambda (2 - eta lambda)), so SGD converges with a constant step only "
    "when the model interpolates and otherwise needs eta_t ~ 1/t.",
    config=MomentumConfig,
    measure=measure,
    checks=checks,
    figures=figures,
    presets={
        "full": {
            "dim": 20,
            "kappas": (10.0, 100.0, 1000.0, 10000.0),
            "steps": 6000,
            "warmup": 2000,
            "betas": (0.1, 0.3, 0.5, 0.7, 0.9, 0.99),
            "h_points": 80,
            "edge_steps": 2000,
            "edge_rounds": 4,
            "noise_etas": (0.1, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 1.9),
            "chains": 4000,
            "burn_in": 2000,
            "noise_steps": 8000,
            "average_window": 400,
            "ls_steps": 40000,
        }
    },
    references=(
        "Polyak (1964), Some methods of speeding up the convergence of iteration methods",
        "Nesterov (1983), A method for solving the convex programming problem with convergence rate O(1/k^2)",
        "Sutskever, Martens, Dahl & Hinton (2013), On the importance of initialization and momentum in deep learning",
        "Goh (2017), Why Momentum Really Works, Distill",
        "Robbins & Monro (1951), A stochastic approximation method",
        "Polyak & Juditsky (1992), Acceleration of stochastic approximation by averaging",
        "Ma, Bassily & Belkin (2018), The power of interpolation",
    ),
    part="optimisation",
)
