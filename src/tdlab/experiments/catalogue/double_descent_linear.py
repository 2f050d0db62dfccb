"""double-descent-linear: the test risk of minimum-norm least squares against gamma = p/n peaks at the interpolation
threshold gamma = 1 and descends again beyond it; optimally tuned ridge has no peak.

Setting of Hastie, Montanari, Rosset & Tibshirani (2019/2022), isotropic case: x ~ N(0, I_p), y = x^T beta + eps,
||beta|| = r, Var(eps) = sigma^2, n examples, p features. Measured: for each of `designs` draws of a Gaussian
design X (n x p_max) and `replicates` draws of (beta, eps) per design, the minimum-norm least-squares solution
on the first p columns (normal equations: (X^T X)^{-1} X^T y below the threshold, X^T (X X^T)^{-1} y above, on the
experiment's device in float64) and its exact excess test risk ||w - beta||^2 = E_x (x^T (w - beta))^2 (exact
because the test inputs are isotropic); the same for ridge (X^T X / n + lambda* I)^{-1} X^T y / n at the optimal
penalty lambda* = sigma^2 gamma / r^2. Nested designs (the first p columns of one matrix, beta_p the normalised
first p coordinates of one Gaussian vector) make the curve smooth in gamma, as in a feature-selection sweep.

Theory (`tdlab.theory.random_matrix`): the asymptotic risks of Hastie et al. (Thm. 1) and of optimally tuned ridge
(Dobriban & Wager 2018), and the exact finite-n risk of the minimum-norm solution (inverse-Wishart mean) drawn for
comparison near the threshold, where the asymptotic formula is not checked (|gamma - 1| <= 0.15).
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from numpy.typing import NDArray
from pydantic import Field, model_validator
from torch import Tensor

from tdlab.experiments.base import Check, Context, Experiment, ExperimentConfig, Result, legacy
from tdlab.experiments.catalogue._solvers import min_norm_least_squares
from tdlab.theory import random_matrix as theory

Array = NDArray[np.float64]


# ------------------------------------------------------------------------------------------ measurement
def ridge_regression(X: Tensor, Y: Tensor, lam: float) -> Tensor:
    """Ridge (X^T X / n + lambda I)^{-1} X^T Y / n for a batch of designs (..., n, p), by the cheaper of the primal
    and the dual (kernel) form.

    Example:
        >>> X = torch.ones(2, 1, dtype=torch.float64)
        >>> ridge_regression(X, torch.ones(2, 1, dtype=torch.float64), 1.0).item()
        0.5
    """
    n, p = X.shape[-2:]
    if p <= n:
        eye = torch.eye(p, dtype=X.dtype, device=X.device)
        return torch.linalg.solve(X.mT @ X / n + lam * eye, X.mT @ Y / n)
    eye = torch.eye(n, dtype=X.dtype, device=X.device)
    return X.mT @ torch.linalg.solve(X @ X.mT / n + lam * eye, Y) / n


# --------------------------------------------------------------------------------------------- config
class DoubleDescentLinearConfig(ExperimentConfig):
    """The sweep over gamma = p/n at fixed n, and the draws averaged at each gamma."""

    n: int = Field(200, ge=10, description="training examples")
    gammas: tuple[Annotated[float, Field(gt=0.0)], ...] = Field(
        (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.05, 1.1, 1.2, 1.4, 1.6, 1.8, 2.0, 2.5, 3.0),
        min_length=3,
        description="ratios p/n (p = round(gamma n); p = n, n +- 1 are skipped: the risk is infinite there)",
    )
    designs: int = Field(8, ge=2, description="independent Gaussian designs X")
    replicates: int = Field(32, ge=1, description="draws of (beta, noise) per design")
    noise: float = Field(0.5, gt=0.0, description="noise standard deviation sigma")
    signal: float = Field(1.0, gt=0.0, description="signal strength r = ||beta||")
    band: tuple[float, float] = Field(
        (0.85, 1.15), description="gammas inside this interval are drawn but not checked (the peak: finite-n effects)"
    )
    tolerance: float = Field(0.10, gt=0.0, description="relative tolerance of measured vs asymptotic risk")

    @model_validator(mode="after")
    def _consistent(self) -> DoubleDescentLinearConfig:
        if not self.band[0] < 1.0 < self.band[1]:
            raise ValueError(f"band: expected an interval around 1, got {self.band}")
        ps = [round(g * self.n) for g in self.gammas]
        if any(abs(p - self.n) <= 1 for p in ps) or any(p < 1 for p in ps):
            raise ValueError(f"gammas: expected every p = round(gamma n) >= 1 and |p - n| >= 2, got p = {ps}")
        return self


# ------------------------------------------------------------------------------------------------ run
def run(config: DoubleDescentLinearConfig, context: Context) -> Result:
    """Sweep gamma, measure minimum-norm and optimal-ridge risks, compare with Hastie et al. (2019)."""
    device, dtype = context.device, torch.float64
    generator = torch.Generator().manual_seed(config.seed)
    n, R, D = config.n, config.replicates, config.designs
    gammas = np.array(sorted(config.gammas))
    ps = np.array([round(g * n) for g in gammas])
    r2, s2 = config.signal**2, config.noise**2
    ridgeless = np.zeros((D, len(ps)))
    ridge = np.zeros((D, len(ps)))
    for design in context.track(range(D), "designs"):
        X = torch.randn(n, int(ps.max()), generator=generator, dtype=dtype).to(device)
        G = torch.randn(int(ps.max()), R, generator=generator, dtype=dtype).to(device)
        E = config.noise * torch.randn(n, R, generator=generator, dtype=dtype).to(device)
        for k, p in enumerate(ps.tolist()):
            Xp = X[:, :p]
            beta = config.signal * G[:p] / G[:p].norm(dim=0, keepdim=True)
            Y = Xp @ beta + E
            ridgeless[design, k] = (min_norm_least_squares(Xp, Y) - beta).square().sum(dim=0).mean().item()
            lam = float(theory.optimal_ridge_penalty(p / n, r2, s2))
            ridge[design, k] = (ridge_regression(Xp, Y, lam) - beta).square().sum(dim=0).mean().item()
    gamma_p = ps / n
    measured, measured_se = ridgeless.mean(axis=0), ridgeless.std(axis=0, ddof=1) / np.sqrt(D)
    ridge_mean, ridge_se = ridge.mean(axis=0), ridge.std(axis=0, ddof=1) / np.sqrt(D)
    asymptotic = theory.ridgeless_risk(gamma_p, r2, s2)
    finite = theory.ridgeless_risk_finite(n, ps, r2, s2)
    ridge_theory = theory.optimal_ridge_risk(gamma_p, r2, s2)

    rows: list[dict[str, float | str]] = []
    for g, p, values in zip(
        gamma_p,
        ps,
        zip(measured, measured_se, asymptotic, finite, ridge_mean, ridge_se, ridge_theory, strict=True),
        strict=True,
    ):
        names = (
            "min_norm_risk",
            "min_norm_risk_se",
            "min_norm_risk_theory",
            "min_norm_risk_finite_n",
            "ridge_risk",
            "ridge_risk_se",
            "ridge_risk_theory",
        )
        rows += [
            {"name": name, "value": float(v), "gamma": float(g), "p": int(p)}
            for name, v in zip(names, values, strict=True)
        ]
    checks: list[Check] = []
    draws = f"{D} designs x {R} draws of (beta, noise), n = {n}, r = {config.signal:g}, sigma = {config.noise:g}"
    outside = (gamma_p < config.band[0]) | (gamma_p > config.band[1])
    error = np.abs(measured / asymptotic - 1.0)
    for side, mask in (("gamma < 1", outside & (gamma_p < 1)), ("gamma > 1", outside & (gamma_p > 1))):
        if not mask.any():
            continue
        worst = int(np.flatnonzero(mask)[np.argmax(error[mask])])
        checks.append(
            Check.at_most(
                f"minimum-norm risk vs Hastie et al. ({side}, outside {list(config.band)}), worst relative error",
                float(error[mask].max()),
                config.tolerance,
                detail=f"{mask.sum()} values of gamma; worst at gamma = {gamma_p[worst]:.3g}: measured "
                f"{measured[worst]:.4g} +- {measured_se[worst]:.2g} (s.e. over designs), theory "
                f"{asymptotic[worst]:.4g} "
                f"(finite-n exact {finite[worst]:.4g}); {draws}; tolerance 10% from the issue",
            )
        )
    increments = np.diff(ridge_mean)
    checks.append(
        Check.holds(
            "optimally tuned ridge risk is monotone (increasing) in gamma: no peak",
            bool(np.all(increments > 0)),
            detail=f"smallest increment between neighbouring gammas {increments.min():.3g}; ridge at "
            f"lambda* = sigma^2 gamma / r^2; {draws}",
            measured=float(increments.min()),
        )
    )
    ridge_error = np.abs(ridge_mean / ridge_theory - 1.0)
    checks.append(
        Check.at_most(
            "optimal ridge risk vs sigma^2 gamma m(-lambda*) (Dobriban & Wager 2018), worst relative error",
            float(ridge_error.max()),
            config.tolerance,
            detail=f"all {len(gamma_p)} gammas (ridge has no peak); worst at gamma = "
            f"{gamma_p[np.argmax(ridge_error)]:.3g}; {draws}; tolerance 10% as for the minimum-norm risk",
        )
    )
    figure = _risk_figure(gamma_p, measured, measured_se, ridge_mean, ridge_se, config)
    return Result(metrics=pd.DataFrame(rows), checks=checks, figures={"double_descent": figure})


# -------------------------------------------------------------------------------------------- figures
def _risk_figure(
    gammas: Array,
    measured: Array,
    measured_se: Array,
    ridge: Array,
    ridge_se: Array,
    config: DoubleDescentLinearConfig,
) -> Figure:
    r2, s2 = config.signal**2, config.noise**2
    fig = Figure(figsize=(12.0, 4.8), layout="constrained")
    axes = fig.subplots(1, 2)
    fine = np.concatenate([np.linspace(gammas.min() * 0.8, 0.985, 300), np.linspace(1.015, gammas.max() * 1.05, 300)])
    p_fine = np.unique(np.round(fine * config.n))
    p_fine = p_fine[np.abs(p_fine - config.n) >= 2]
    for ax, log in zip(axes, (True, False), strict=True):
        ax.axvspan(*config.band, color="0.92", zorder=0, label="not checked (finite-n peak)")
        under, over = fine < 1, fine > 1
        for k, mask in enumerate((under, over)):
            ax.plot(
                fine[mask],
                theory.ridgeless_risk(fine[mask], r2, s2),
                "-",
                color="C0",
                lw=1.3,
                label="minimum norm: Hastie et al. (asymptotic)" if k == 0 else None,
            )
        finite = theory.ridgeless_risk_finite(config.n, p_fine, r2, s2)
        for k, mask in enumerate((p_fine < config.n, p_fine > config.n)):
            ax.plot(
                p_fine[mask] / config.n,
                finite[mask],
                ":",
                color="C0",
                lw=1.0,
                label=f"minimum norm: exact at n = {config.n}" if k == 0 else None,
            )
        ax.errorbar(
            gammas,
            measured,
            yerr=measured_se,
            fmt="o",
            color="C0",
            ms=5,
            mfc="none",
            capsize=2,
            label="minimum norm: measured",
        )
        ax.plot(
            fine,
            theory.optimal_ridge_risk(fine, r2, s2),
            "--",
            color="C1",
            lw=1.3,
            label=r"optimal ridge $\sigma^2\gamma\, m(-\lambda^*)$",
        )
        ax.errorbar(
            gammas,
            ridge,
            yerr=ridge_se,
            fmt="s",
            color="C1",
            ms=4,
            mfc="none",
            capsize=2,
            label=r"optimal ridge: measured",
        )
        ax.axhline(r2, color="0.5", ls="-.", lw=0.8, label=r"null risk $r^2$ (w = 0)")
        ax.set_xlabel(r"$\gamma = p / n$")
        ax.set_ylabel(r"excess test risk $\|w - \beta\|^2$")
        if log:
            ax.set_yscale("log")
            ax.set_title("double descent of the minimum-norm interpolant")
            ax.legend(fontsize=7, loc="lower right")
        else:
            ax.set_ylim(0, 3.0 * r2)
            ax.set_title("the second descent, and optimal ridge without a peak")
    fig.suptitle(
        rf"Minimum-norm least squares on isotropic Gaussian features (n = {config.n}, "
        rf"$\|\beta\| = {config.signal:g}$, $\sigma = {config.noise:g}$)"
    )
    return fig


EXPERIMENT = Experiment(
    name="double-descent-linear",
    claim="The test risk of minimum-norm least squares on isotropic features is sigma^2 gamma/(1 - gamma) below the "
    "interpolation threshold gamma = p/n = 1 and r^2 (1 - 1/gamma) + sigma^2/(gamma - 1) above it: it peaks at "
    "gamma = 1 and descends again; optimally tuned ridge removes the peak.",
    config=DoubleDescentLinearConfig,
    **legacy(run),
    presets={
        "full": {
            "n": 1000,
            "designs": 20,
            "replicates": 64,
            "gammas": tuple(
                float(g) for g in np.round(np.concatenate([np.linspace(0.05, 0.95, 19), np.linspace(1.05, 4.0, 30)]), 3)
            ),
        }
    },
    references=(
        "Hastie, Montanari, Rosset & Tibshirani (2022), Surprises in high-dimensional ridgeless least squares "
        "interpolation, Ann. Statist. 50(2), Thm. 1",
        "Dobriban & Wager (2018), High-dimensional asymptotics of prediction: ridge regression and classification, "
        "Ann. Statist. 46(1)",
        "Belkin, Hsu & Xu (2020), Two models of double descent for weak features, SIAM J. Math. Data Sci. 2(4)",
        "Nakkiran, Venkat, Kakade & Ma (2021), Optimal regularization can mitigate double descent, ICLR",
    ),
    part="linear models",
)
