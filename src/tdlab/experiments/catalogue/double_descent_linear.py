"""double-descent-linear: the test risk of minimum-norm least squares against gamma = p/n peaks at the interpolation
threshold gamma = 1 and descends again beyond it; optimally tuned ridge has no peak.

Setting of Hastie, Montanari, Rosset & Tibshirani (2019/2022), isotropic case: x ~ N(0, I_p), y = x^T beta + eps,
||beta|| = r, Var(eps) = sigma^2, n examples, p features. Measured: for each of `designs` draws of a Gaussian
design X (n x p_max) and `replicates` draws of (beta, eps) per design, the minimum-norm least-squares solution X^+ y
on the first p columns (`tdlab.theory.least_squares.min_norm_least_squares`, float64) and its exact excess test
risk ||w - beta||^2 = E_x (x^T (w - beta))^2 (exact because the test inputs are isotropic); the same for ridge
(X^T X / n + lambda* I)^{-1} X^T y / n at the optimal penalty lambda* = sigma^2 gamma / r^2. Nested designs (the
first p columns of one matrix, beta_p the normalised first p coordinates of one Gaussian vector) make the curve
smooth in gamma, as in a feature-selection sweep.

Theory (`tdlab.theory.random_matrix`): the asymptotic risks of Hastie et al. (Thm. 1) and of optimally tuned ridge
(Dobriban & Wager 2018), and the exact finite-n risk of the minimum-norm solution (inverse-Wishart mean) drawn for
comparison near the threshold, where the asymptotic formula is not checked (|gamma - 1| <= 0.15).

The lectures' explanation of the peak: the variance part of the risk is sigma^2 tr((X^T X)^+) = (sigma^2 / n) sum of
1/lambda_i over the non-zero eigenvalues lambda_i of the sample covariance X^T X / n (its non-zero eigenvalues are
those of X X^T / n), and the smallest of them goes to 0 at p = n. Measured: that smallest non-zero eigenvalue
lambda_min, from the smaller Gram matrix of the first p columns of the first `spectrum_designs` designs. Theory: the
Marchenko-Pastur lower edge (1 - sqrt(gamma))^2 (on both sides of gamma = 1), which n = 200 overshoots by the
Tracy-Widom fluctuation of the edge, O(n^(-2/3)): 5-20% outside the band. The check therefore uses the finite-n
centring of that edge (Ma 2012, Feldheim & Sodin 2010): with a = max(n, p) - 1/2, b = min(n, p) - 1/2,
(mu - n lambda_min) / sigma_TW -> TW1, mu = (sqrt(a) - sqrt(b))^2, sigma_TW = (sqrt(a) - sqrt(b))
(1/sqrt(b) - 1/sqrt(a))^(1/3), so E lambda_min ~ (mu + 1.2065 sigma_TW) / n (-1.2065: the mean of TW1). How the
checks fail: counting the zero eigenvalues of X^T X for p > n, or not dividing by n, misses by 100% or a factor n;
the plain Marchenko-Pastur edge misses by up to 19% at n = 200 (seed 0); a risk peak away from the gamma of the
smallest lambda_min (a solver with an implicit ridge, or a peak claimed elsewhere) fails the coincidence check.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from pydantic import Field, model_validator

from tdlab.experiments.base import Check, Context, Experiment, ExperimentConfig
from tdlab.theory import random_matrix as theory
from tdlab.theory.least_squares import min_norm_least_squares, ridge_dual, ridge_primal

TW1_MEAN = 1.2065  # minus the mean of the Tracy-Widom GOE law: E lambda_min lies this many sigma_TW above mu


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
    spectrum_designs: int = Field(
        8, ge=1, description="designs (the first ones) whose smallest non-zero eigenvalue of X^T X / n is measured"
    )

    @model_validator(mode="after")
    def _consistent(self) -> DoubleDescentLinearConfig:
        if not self.band[0] < 1.0 < self.band[1]:
            raise ValueError(f"band: expected an interval around 1, got {self.band}")
        ps = [round(g * self.n) for g in self.gammas]
        if any(abs(p - self.n) <= 1 for p in ps) or any(p < 1 for p in ps):
            raise ValueError(f"gammas: expected every p = round(gamma n) >= 1 and |p - n| >= 2, got p = {ps}")
        return self


def measure(config: DoubleDescentLinearConfig, context: Context) -> pd.DataFrame:
    """Excess risks ||w - beta||^2 of minimum-norm least squares and of ridge at lambda*, for every gamma: means over
    designs of the mean over (beta, noise) draws, and their standard errors over designs; "lambda_min", the mean
    over the first `spectrum_designs` designs of the smallest non-zero eigenvalue of X^T X / n, with its theories
    "lambda_min_mp" (Marchenko-Pastur edge) and "lambda_min_finite_n" (with the Tracy-Widom mean, docstring)."""
    generator = torch.Generator().manual_seed(config.seed)
    n, R, D = config.n, config.replicates, config.designs
    ps = np.array([round(g * n) for g in sorted(config.gammas)])
    r2, s2 = config.signal**2, config.noise**2
    risks = np.zeros((2, D, len(ps)))  # minimum norm, ridge
    spectra = min(config.spectrum_designs, D)
    smallest = np.zeros((spectra, len(ps)))
    for design in context.track(range(D), "designs"):
        X, G, E = (
            torch.randn(*shape, generator=generator, dtype=torch.float64).numpy()
            for shape in ((n, ps.max()), (ps.max(), R), (n, R))
        )
        for k, p in enumerate(ps.tolist()):
            if design < spectra:  # the smallest of the min(n, p) non-zero eigenvalues of X^T X / n (or X X^T / n)
                Xp = X[:, :p]
                smallest[design, k] = np.linalg.eigvalsh(Xp.T @ Xp if p < n else Xp @ Xp.T)[0] / n
            beta = config.signal * G[:p] / np.linalg.norm(G[:p], axis=0, keepdims=True)
            Y = X[:, :p] @ beta + config.noise * E
            ridge = ridge_primal if p <= n else ridge_dual  # (X^T X / n + lambda I)^-1 X^T Y / n, the cheaper form
            lam = n * float(theory.optimal_ridge_penalty(p / n, r2, s2))
            for i, w in enumerate((min_norm_least_squares(X[:, :p], Y), ridge(X[:, :p], Y, lam))):
                risks[i, design, k] = np.square(w - beta).sum(axis=0).mean()
    mean, se = risks.mean(axis=1), risks.std(axis=1, ddof=1) / np.sqrt(D)
    gamma = ps / n
    a, b = np.maximum(n, ps) - 0.5, np.minimum(n, ps) - 0.5
    mu, scale = (np.sqrt(a) - np.sqrt(b)) ** 2, (np.sqrt(a) - np.sqrt(b)) * (1 / np.sqrt(b) - 1 / np.sqrt(a)) ** (1 / 3)
    values = {
        "min_norm_risk": mean[0],
        "min_norm_risk_se": se[0],
        "min_norm_risk_theory": theory.ridgeless_risk(gamma, r2, s2),
        "min_norm_risk_finite_n": theory.ridgeless_risk_finite(n, ps, r2, s2),
        "ridge_risk": mean[1],
        "ridge_risk_se": se[1],
        "ridge_risk_theory": theory.optimal_ridge_risk(gamma, r2, s2),
        "lambda_min": smallest.mean(axis=0),
        "lambda_min_mp": (1.0 - np.sqrt(gamma)) ** 2,
        "lambda_min_finite_n": (mu + TW1_MEAN * scale) / n,
    }
    return pd.DataFrame({"gamma": gamma, "p": ps, **values}).melt(id_vars=["gamma", "p"], var_name="name")


def checks(metrics: pd.DataFrame, config: DoubleDescentLinearConfig) -> list[Check]:
    """Hastie et al.'s asymptotic risk outside the band around the peak, and optimal ridge: monotone, on its theory."""
    table = metrics.pivot_table(index="gamma", columns="name", values="value")
    gamma_p, out = table.index.to_numpy(), []
    draws = (
        f"{config.designs} designs x {config.replicates} draws of (beta, noise), n = {config.n}, "
        f"r = {config.signal:g}, sigma = {config.noise:g}"
    )
    outside = (gamma_p < config.band[0]) | (gamma_p > config.band[1])
    error = np.abs(table["min_norm_risk"] / table["min_norm_risk_theory"] - 1.0).to_numpy()
    for side, mask in (("gamma < 1", outside & (gamma_p < 1)), ("gamma > 1", outside & (gamma_p > 1))):
        if not mask.any():
            continue
        worst = int(np.flatnonzero(mask)[np.argmax(error[mask])])
        row = table.iloc[worst]
        out.append(
            Check.at_most(
                f"minimum-norm risk vs Hastie et al. ({side}, outside {list(config.band)}), worst relative error",
                float(error[mask].max()),
                config.tolerance,
                detail=f"{mask.sum()} values of gamma; worst at gamma = {gamma_p[worst]:.3g}: measured "
                f"{row.min_norm_risk:.4g} +- {row.min_norm_risk_se:.2g} (s.e. over designs), theory "
                f"{row.min_norm_risk_theory:.4g} (finite-n exact {row.min_norm_risk_finite_n:.4g}); {draws}; "
                "tolerance 10% from the issue",
            )
        )
    increments = np.diff(table["ridge_risk"])
    out.append(
        Check.holds(
            "optimally tuned ridge risk is monotone (increasing) in gamma: no peak",
            bool(np.all(increments > 0)),
            detail=f"smallest increment between neighbouring gammas {increments.min():.3g}; ridge at "
            f"lambda* = sigma^2 gamma / r^2; {draws}",
            measured=float(increments.min()),
        )
    )
    ridge_error = np.abs(table["ridge_risk"] / table["ridge_risk_theory"] - 1.0).to_numpy()
    out.append(
        Check.at_most(
            "optimal ridge risk vs sigma^2 gamma m(-lambda*) (Dobriban & Wager 2018), worst relative error",
            float(ridge_error.max()),
            config.tolerance,
            detail=f"all {len(gamma_p)} gammas (ridge has no peak); worst at gamma = "
            f"{gamma_p[np.argmax(ridge_error)]:.3g}; {draws}; tolerance 10% as for the minimum-norm risk",
        )
    )
    lam, lam_theory = table["lambda_min"].to_numpy(), table["lambda_min_finite_n"].to_numpy()
    lam_error, edge = np.abs(lam / lam_theory - 1.0), table["lambda_min_mp"].to_numpy()
    worst = int(np.flatnonzero(outside)[np.argmax(lam_error[outside])])
    spectra = f"mean over {min(config.spectrum_designs, config.designs)} designs, n = {config.n}"
    out.append(
        Check.at_most(
            f"smallest non-zero eigenvalue of X^T X / n vs the Marchenko-Pastur edge (1 - sqrt(gamma))^2 with its "
            f"Tracy-Widom finite-n mean, outside {list(config.band)}, worst relative error",
            float(lam_error[outside].max()),
            config.tolerance,
            detail=f"{outside.sum()} values of gamma; worst at gamma = {gamma_p[worst]:.3g}: measured "
            f"{lam[worst]:.4g}, theory {lam_theory[worst]:.4g} (asymptotic edge {edge[worst]:.4g}; the plain edge "
            f"misses by up to {np.abs(lam / edge - 1)[outside].max():.0%}); "
            f"{spectra}; tolerance 10% as for the risks; fails if zero eigenvalues are counted (p > n) or n is "
            "dropped",
        )
    )
    below, above = gamma_p[gamma_p < 1].max(), gamma_p[gamma_p > 1].min()
    dip, peak = gamma_p[np.argmin(lam)], gamma_p[np.argmax(table["min_norm_risk"].to_numpy())]
    out.append(
        Check.holds(
            "the smallest non-zero eigenvalue is smallest, and the minimum-norm risk peaks, at the same gamma, "
            "adjacent to the threshold gamma = 1",
            dip == peak and dip in (below, above),
            detail=f"lambda_min smallest at gamma = {dip:.3g} ({lam.min():.3g}; at the ends {lam[0]:.3g}, "
            f"{lam[-1]:.3g}), risk largest at gamma = {peak:.3g}; the swept gammas next to 1 are {below:.3g} and "
            f"{above:.3g}; fails if the peak and the spectral dip part, or lie away from the threshold; {spectra}",
            measured=float(peak),
        )
    )
    return out


def figures(metrics: pd.DataFrame, config: DoubleDescentLinearConfig) -> dict[str, Figure]:
    """Measured risks with their theory curves (asymptotic, exact finite-n, optimal ridge), log and linear scale."""
    table = metrics.pivot_table(index="gamma", columns="name", values="value")
    gammas, r2, s2, n = table.index.to_numpy(), config.signal**2, config.noise**2, config.n
    fig = Figure(figsize=(12.0, 4.8), layout="constrained")
    fine = np.concatenate([np.linspace(gammas.min() * 0.8, 0.985, 300), np.linspace(1.015, gammas.max() * 1.05, 300)])
    p_fine = np.unique(np.round(fine * n))
    p_fine = p_fine[np.abs(p_fine - n) >= 2]
    finite = theory.ridgeless_risk_finite(n, p_fine, r2, s2)
    for ax, log in zip(fig.subplots(1, 2), (True, False), strict=True):
        ax.axvspan(*config.band, color="0.92", zorder=0, label="not checked (finite-n peak)")
        asymptotic = theory.ridgeless_risk(fine, r2, s2)
        labels = ("minimum norm: Hastie et al. (asymptotic)", f"minimum norm: exact at n = {n}")
        for k, (mask, exact) in enumerate(((fine < 1, p_fine < n), (fine > 1, p_fine > n))):  # apart at the pole
            ax.plot(fine[mask], asymptotic[mask], "-", color="C0", lw=1.3, label=None if k else labels[0])
            ax.plot(p_fine[exact] / n, finite[exact], ":", color="C0", lw=1.0, label=None if k else labels[1])
        ridge_label = r"optimal ridge $\sigma^2\gamma\, m(-\lambda^*)$"
        ax.plot(fine, theory.optimal_ridge_risk(fine, r2, s2), "--", color="C1", lw=1.3, label=ridge_label)
        for name, fmt, ms, color, label in (
            ("min_norm", "o", 5, "C0", "minimum norm"),
            ("ridge", "s", 4, "C1", "optimal ridge"),
        ):
            mean, se = table[f"{name}_risk"], table[f"{name}_risk_se"]
            ax.errorbar(
                gammas, mean, yerr=se, fmt=fmt, color=color, ms=ms, mfc="none", capsize=2, label=f"{label}: measured"
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
        rf"Minimum-norm least squares on isotropic Gaussian features (n = {n}, "
        rf"$\|\beta\| = {config.signal:g}$, $\sigma = {config.noise:g}$)"
    )
    return {"double_descent": fig}


EXPERIMENT = Experiment(
    name="double-descent-linear",
    claim="The test risk of minimum-norm least squares on isotropic features is sigma^2 gamma/(1 - gamma) below the "
    "interpolation threshold gamma = p/n = 1 and r^2 (1 - 1/gamma) + sigma^2/(gamma - 1) above it: it peaks at "
    "gamma = 1 and descends again; optimally tuned ridge removes the peak.",
    config=DoubleDescentLinearConfig,
    measure=measure,
    checks=checks,
    figures=figures,
    presets={
        "full": {
            "n": 1000,
            "designs": 20,
            "replicates": 64,
            "spectrum_designs": 4,
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
