"""GD on a quadratic: the step size sets each mode's factor 1 - eta lambda; GD is stable iff eta < 2/L.

The measurement is the real iteration: `torch.optim.SGD` (no momentum: plain gradient descent; many step sizes
at once) on f(w) = 1/2 w^T A w in float64 with the exact gradient A w, A = Q diag(lambda) Q^T for a random rotation
Q and eigenvalues in [mu, L] = [1/kappa, 1] (evenly spaced by default), through `tdlab.optim.quadratics.descend`.
The trajectory on the quadratic is the claim itself, so it is run there by hand rather than by `tdlab.train.fit`.
Rates are read from the error norm ||w_t|| (the minimum is 0), eigen-modes from the projections q_i^T w_t; neither
uses the closed forms of `tdlab.theory.quadratic` (Polyak 1987; Nesterov 2004, Thm 2.1.15: e_i(t) =
(1 - eta lambda_i)^t e_i(0), rate max_i |1 - eta lambda_i|, best step 2/(L + mu) with rate (kappa - 1)/(kappa + 1)),
which the checks then compare against. A rate is an asymptotic quantity: the fit starts after `warmup` steps, once
the slowest mode dominates ||w_t|| (eigenvalues crowding at mu, as with `spacing="geometric"`, need a longer warmup).
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from numpy.typing import NDArray
from pydantic import Field, model_validator

from tdlab.experiments.base import Check, Context, Experiment, ExperimentConfig
from tdlab.experiments.tidy import rows, series, table, value
from tdlab.optim.quadratics import QuadraticRun, descend, edge_of_stability, fitted_rate, rotated_quadratics, spectrum
from tdlab.theory import quadratic as theory

Kappa = Annotated[float, Field(gt=1.0)]


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
        for field in ("kappas", "best_step_kappas", "mode_eigenvalues", "regime_eta_lambdas"):
            if len(set(getattr(self, field))) < len(getattr(self, field)):
                raise ValueError(f"{field}: expected distinct values, got {list(getattr(self, field))}")
        return self


def _etas(config: QuadraticStepSizeConfig) -> NDArray[np.float64]:
    return np.linspace(config.eta_max / config.eta_points, config.eta_max, config.eta_points)


def _spectra(kappas: tuple[float, ...], config: QuadraticStepSizeConfig) -> torch.Tensor:
    return torch.stack([spectrum(k, config.dim, config.spacing) for k in kappas])


# ----------------------------------------------------------------------------------------------- measure
def measure(config: QuadraticStepSizeConfig, context: Context) -> pd.DataFrame:
    """Rates over (eta, kappa) and at 2/(L + mu), the edge of stability, one mode's regimes, per-mode errors.

    Rows: `rate` (eta, kappa), `best_step_rate` (eta, kappa), `stability_edge` (kappa), `regime_error` e(t)/e(0)
    (eta = eta lambda, step), `mode_error` e_i(t)/e_i(0) at `mode_eta` (eigenvalue, step) and
    `one_step_mode_error` for the middle eigenvalue at eta = 1/lambda (step).
    """
    device, dtype = context.device, torch.float64
    generator = torch.Generator().manual_seed(config.seed)
    kappas, best_kappas, etas = config.kappas, config.best_step_kappas, _etas(config)
    A, _ = rotated_quadratics(_spectra(kappas, config), generator)
    start = torch.randn(len(kappas), config.dim, generator=generator, dtype=dtype)
    A_best, _ = rotated_quadratics(_spectra(best_kappas, config), generator)
    start_best = torch.randn(len(best_kappas), config.dim, generator=generator, dtype=dtype)
    best_etas = [theory.gd_best_step(1.0 / k, 1.0) for k in best_kappas]
    grid_run = QuadraticRun(
        A.repeat(len(etas), 1, 1).to(device),
        start.repeat(len(etas), 1).to(device),
        torch.as_tensor(etas, dtype=dtype).repeat_interleave(len(kappas)).to(device),
    )
    best_run = QuadraticRun(
        A_best.to(device), start_best.to(device), torch.as_tensor(best_etas, dtype=dtype, device=device)
    )
    grid_path, best_path = descend([grid_run, best_run], config.steps)
    grid = fitted_rate(grid_path.log_error(), config.warmup).reshape(len(etas), len(kappas))
    best = fitted_rate(best_path.log_error(), config.warmup)
    (edges,) = edge_of_stability(  # located on the measured growth of the error
        [QuadraticRun(A.to(device), start.to(device), 1.0)],
        0.0,
        4.0,
        config.edge_steps,
        config.edge_rounds,
        config.edge_points,
    )

    # -- one mode through its regimes as eta grows
    regime_h = torch.tensor(config.regime_eta_lambdas, dtype=dtype, device=device)
    ones = torch.ones(len(regime_h), 1, dtype=dtype, device=device)
    (regime_path,) = descend([QuadraticRun(ones.unsqueeze(-1), ones, regime_h)], config.regime_steps, True)
    regimes = regime_path.iterates()[:, :, 0].T.cpu().numpy()  # (regimes, steps + 1)

    # -- per-mode errors at a medium step, and the middle mode at eta = 1/lambda
    eigenvalues = np.array(config.mode_eigenvalues)
    A_mode, Q_mode = rotated_quadratics(torch.as_tensor(eigenvalues, dtype=dtype).unsqueeze(0), generator)
    start_mode = torch.randn(1, len(eigenvalues), generator=generator, dtype=dtype)
    middle = eigenvalues[len(eigenvalues) // 2]
    mode_run = QuadraticRun(
        A_mode.expand(2, -1, -1).to(device),
        start_mode.expand(2, -1).to(device),
        torch.tensor([config.mode_eta, 1.0 / middle], dtype=dtype, device=device),
    )
    (mode_path,) = descend([mode_run], config.mode_steps, keep_iterates=True)
    modes = (mode_path.iterates() @ Q_mode[0].to(device)).cpu().numpy()  # q_i^T w_t: (steps + 1, 2, modes)
    relative = (modes / modes[0]).transpose(1, 2, 0)  # (run, mode, step)
    t_regime, t_mode, lam = np.arange(config.regime_steps + 1), np.arange(config.mode_steps + 1), eigenvalues[:, None]
    return pd.concat(
        [
            rows("rate", grid, eta=etas[:, None], kappa=np.array(kappas)),
            rows("best_step_rate", best, eta=best_etas, kappa=best_kappas),
            rows("stability_edge", edges, kappa=kappas),
            rows("regime_error", regimes, eta=np.array(config.regime_eta_lambdas)[:, None], step=t_regime),
            rows("mode_error", relative[0], eta=config.mode_eta, eigenvalue=lam, step=t_mode),
            rows("one_step_mode_error", relative[1, len(lam) // 2], eta=1 / middle, eigenvalue=middle, step=t_mode),
        ],
        ignore_index=True,
    )


def _measured(metrics: pd.DataFrame, config: QuadraticStepSizeConfig) -> dict[str, NDArray[np.float64]]:
    """The metrics as arrays, in the config's orders: etas, rate grid (eta, kappa), best-step rates, edges (kappa),
    regime errors (panel, step), mode errors (step, mode) and the one-step errors (step)."""

    grid = table(metrics, "rate", "eta", "kappa")[list(config.kappas)]
    return {
        "etas": grid.index.to_numpy(),
        "grid": grid.to_numpy(),
        "best": np.array([value(metrics, "best_step_rate", kappa=k) for k in config.best_step_kappas]),
        "edges": np.array([value(metrics, "stability_edge", kappa=k) for k in config.kappas]),
        "regimes": table(metrics, "regime_error", "eta", "step").loc[list(config.regime_eta_lambdas)].to_numpy(),
        "modes": table(metrics, "mode_error", "eigenvalue", "step").loc[list(config.mode_eigenvalues)].to_numpy().T,
        "one_step": series(metrics, "one_step_mode_error")[1],
    }


# ------------------------------------------------------------------------------------------------- checks
def checks(metrics: pd.DataFrame, config: QuadraticStepSizeConfig) -> list[Check]:
    """Rates against max_i |1 - eta lambda_i| and (kappa - 1)/(kappa + 1), the edge against 2/L (tolerance 1%: the
    claim); the regimes and the order in which the modes converge against the factors 1 - eta lambda_i."""
    m = _measured(metrics, config)
    etas, grid, best = m["etas"], m["grid"], m["best"]
    kappas, best_kappas = np.array(config.kappas), np.array(config.best_step_kappas)
    grid_theory = np.stack([theory.gd_rate(etas, values.numpy()) for values in _spectra(config.kappas, config)], axis=1)
    best_theory = theory.gd_best_rate(best_kappas)
    fit = f"rate = exp(least-squares slope of log||w_t||, t in [{config.warmup}, {config.steps}])"
    edge = theory.gd_stability_threshold(1.0)
    error = np.abs(grid / grid_theory - 1.0)
    at_edge = np.isclose(etas, edge, rtol=1e-9, atol=0.0)  # rate 1: no progress to compare
    stable, converging = (etas < edge) | at_edge, (etas < edge) & ~at_edge
    worst = np.unravel_index(np.argmax(np.where(stable[:, None], error, -1.0)), error.shape)
    progress = np.abs((1.0 - grid[converging]) / (1.0 - grid_theory[converging]) - 1.0)
    best_error = np.abs(best / best_theory - 1.0)
    result = [
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
        result.append(
            Check.at_most(
                "divergence rate vs |1 - eta L| (eta > 2/L), worst relative error",
                float(error[~stable].max()),
                0.01,
                detail=f"{(~stable).sum() * len(kappas)} (eta, kappa) points; {fit}",
            )
        )
    width = 4.0 / (config.edge_points + 1) ** config.edge_rounds
    for kappa, measured in zip(config.kappas, m["edges"], strict=True):
        result.append(
            Check.relative(
                f"edge of stability eta_c L (kappa = {kappa:g})",
                float(measured),
                edge,
                0.01,
                detail=f"{config.edge_rounds} rounds x {config.edge_points} step sizes in [0, 4/L]; unstable when the "
                f"rate fitted over the last {config.edge_steps - config.edge_steps // 2} of {config.edge_steps} "
                f"steps exceeds 1; bracket width {width:.1e}; theory 2/L",
            )
        )

    measured_regimes = [_classify(e) for e in m["regimes"]]
    expected_regimes = [theory.gd_regime(h, 1.0) for h in config.regime_eta_lambdas]
    result.append(
        Check.holds(
            "regime of one mode read from its trajectory (sign pattern, growth)",
            measured_regimes == expected_regimes,
            detail=f"eta lambda {list(config.regime_eta_lambdas)}: measured {measured_regimes}, "
            f"theory {expected_regimes}",
        )
    )

    eigenvalues, relative = np.array(config.mode_eigenvalues), m["modes"]
    expected = np.stack([theory.gd_mode_error(config.mode_eta, v, config.mode_steps) for v in eigenvalues], 1)
    converged = np.abs(relative) <= config.mode_tolerance
    measured_steps = np.where(converged.any(axis=0), converged.argmax(axis=0), np.inf)
    theory_steps = theory.gd_steps_to_tolerance(config.mode_eta, eigenvalues, config.mode_tolerance)
    factors = np.abs(theory.gd_factor(config.mode_eta, eigenvalues))
    result.append(
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
    result.append(
        Check.holds(
            "modes converge in the order of |1 - eta lambda_i|",
            order == predicted_order and bool(np.all(measured_steps == theory_steps)),
            detail=f"eta = {config.mode_eta:g}, tolerance {config.mode_tolerance:g}: eigenvalues in measured "
            f"order {order} (steps {measured_steps[ranked].tolist()}), by factor {predicted_order}; steps "
            f"predicted by ceil(log tol/log|1 - eta lambda|) {theory_steps[ranked].tolist()}",
        )
    )
    result.append(
        Check.at_most(
            "mode error after one step at eta = 1/lambda",
            float(abs(m["one_step"][1])),
            1e-12,
            detail=f"lambda = {eigenvalues[len(eigenvalues) // 2]:g} of the mode-order quadratic; theory 0, up to "
            "float64 rounding",
        )
    )
    return result


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
def figures(metrics: pd.DataFrame, config: QuadraticStepSizeConfig) -> dict[str, Figure]:
    """The regimes of one mode, the order of the modes, rate vs eta, and the rate at the best step."""
    m = _measured(metrics, config)
    spectra = _spectra(config.kappas, config).numpy()
    return {
        "regimes": _regimes_figure(config, m["regimes"], [_classify(e) for e in m["regimes"]]),
        "mode_order": _mode_order_figure(config, m["modes"]),
        "rate_vs_eta": _rate_figure(m["etas"], np.array(config.kappas), m["grid"], spectra),
        "best_step_rate": _best_step_figure(np.array(config.best_step_kappas), m["best"]),
    }


def _regimes_figure(config: QuadraticStepSizeConfig, errors: NDArray[np.float64], regimes: list[str]) -> Figure:
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


def _mode_order_figure(config: QuadraticStepSizeConfig, relative: NDArray[np.float64]) -> Figure:
    factors = np.abs(theory.gd_factor(config.mode_eta, np.array(config.mode_eigenvalues)))
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
    measure=measure,
    checks=checks,
    figures=figures,
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
