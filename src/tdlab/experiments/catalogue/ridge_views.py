"""ridge-views: one estimator, six computations. Ridge regression is the same vector whichever way it is written.

For X (n x d), y and lambda > 0 the ridge solution argmin ||X w - y||^2 + lambda ||w||^2 is

1. primal: (X^T X + lambda I_d)^{-1} X^T y (a d x d solve);
2. dual / kernel: X^T (X X^T + lambda I_n)^{-1} y (an n x n solve; the push-through identity);
3. augmented data: ordinary least squares on X stacked over sqrt(lambda) I_d, y over zeros (QR);
4. fake features: the minimum-norm solution of [X, sqrt(lambda) I_n] (w, z) = y, keeping w (pseudo-inverse);
5. SVD filter: V diag(s / (s^2 + lambda)) U^T y, the least-squares solution with each direction shrunk by
   s^2 / (s^2 + lambda);
6. Bayes: the posterior mean (= MAP) of beta under beta ~ N(0, tau^2 I), y ~ N(X beta, sigma^2 I), with
   lambda = sigma^2 / tau^2, by conditioning the joint Gaussian of (beta, y) (Cholesky).

Each is computed by its own route (`tdlab.theory.least_squares`), in both regimes n > d and n < d, at several
lambda; the check is their largest relative distance ||w_a - w_b|| / ||w_SVD|| over all pairs. The figure shows
the filter phi_i = s_i (v_i^T w) / (u_i^T y) read off the primal solution direction by direction, against
s^2/lambda on a log axis: every direction of every problem and every lambda falls on s^2/(s^2 + lambda).
All closed forms (no training): the computations are the claim.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import combinations
from typing import Annotated

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter
from numpy.typing import NDArray
from pydantic import Field

from tdlab.experiments.base import Check, Context, Experiment, ExperimentConfig
from tdlab.experiments.tidy import select
from tdlab.theory import least_squares as theory

Array = NDArray[np.float64]
MARKERS = {"n > d": "o", "n < d": "s"}
VIEWS: dict[str, Callable[[Array, Array, float], Array]] = {
    "primal": theory.ridge_primal,
    "dual (kernel)": theory.ridge_dual,
    "augmented rows": theory.ridge_augmented,
    "fake features": theory.ridge_fake_features,
    "SVD filter": theory.ridge_svd,
    "posterior mean": lambda X, y, lam: theory.ridge_posterior_mean(X, y, noise_var=lam, prior_var=1.0),
}


class RidgeViewsConfig(ExperimentConfig):
    """Two Gaussian designs, one with n > d and one with n < d, and a few penalties."""

    n_tall: int = Field(60, ge=2, description="examples of the n > d problem")
    d_tall: int = Field(20, ge=1, description="features of the n > d problem")
    n_wide: int = Field(20, ge=1, description="examples of the n < d problem")
    d_wide: int = Field(60, ge=2, description="features of the n < d problem")
    lams: tuple[Annotated[float, Field(gt=0.0)], ...] = Field(
        (0.01, 1.0, 100.0), min_length=1, description="ridge penalties lambda > 0 (posterior: sigma^2/tau^2)"
    )
    noise: float = Field(0.5, ge=0.0, description="standard deviation of the label noise of the test problems")
    tolerance: float = Field(1e-10, gt=0.0, description="largest relative distance between two views")


def _regimes(config: RidgeViewsConfig) -> dict[str, tuple[int, int]]:
    return {"n > d": (config.n_tall, config.d_tall), "n < d": (config.n_wide, config.d_wide)}


def measure(config: RidgeViewsConfig, context: Context) -> pd.DataFrame:
    """Per regime and lambda: each view's distance to the SVD form ("relative_distance_to_svd"), every pair's
    ("relative_distance", columns view and other) and the filter read off the primal solution ("filter")."""
    rng = np.random.default_rng(config.seed)
    rows: list[dict[str, float | str]] = []
    for regime, (n, d) in _regimes(config).items():
        X = rng.standard_normal((n, d))
        y = X @ (rng.standard_normal(d) / np.sqrt(d)) + config.noise * rng.standard_normal(n)
        U, s, V = theory.thin_svd(X)
        for lam in config.lams:
            w = {view: solve(X, y, lam) for view, solve in VIEWS.items()}
            scale = np.linalg.norm(w["SVD filter"])
            ids = {"regime": regime, "lam": lam}
            rows += [
                {"name": "relative_distance_to_svd", "value": np.linalg.norm(w[v] - w["SVD filter"]) / scale, "view": v}
                | ids
                for v in VIEWS
            ]
            rows += [
                {"name": "relative_distance", "value": np.linalg.norm(w[a] - w[b]) / scale, "view": a, "other": b} | ids
                for a, b in combinations(VIEWS, 2)
            ]
            phi = s * (V.T @ w["primal"]) / (U.T @ y)
            rows += [
                {"name": "filter", "value": m, "s2_over_lam": r} | ids for r, m in zip(s**2 / lam, phi, strict=True)
            ]
    return pd.DataFrame(rows)


def checks(metrics: pd.DataFrame, config: RidgeViewsConfig) -> list[Check]:
    out = []
    for regime, (n, d) in _regimes(config).items():
        pairs = select(metrics, "relative_distance", regime=regime)
        worst = pairs.loc[pairs.value.idxmax()]
        out.append(
            Check.at_most(
                f"all six ridge views agree ({regime}: n = {n}, d = {d}), max relative distance between two views",
                float(worst.value),
                config.tolerance,
                detail=f"views {', '.join(VIEWS)}; ||w_a - w_b|| / ||w_SVD|| over all pairs and lambda in "
                f"{list(config.lams)}; worst: {worst.view} vs {worst.other}, lambda = {worst.lam:g}; float64; "
                f"tolerance {config.tolerance:g} from the issue",
            )
        )
        filt = select(metrics, "filter", regime=regime)
        out.append(
            Check.at_most(
                f"filter read off the solution vs s^2/(s^2 + lambda) ({regime}), max abs difference",
                float(np.abs(filt.value - filt.s2_over_lam / (1.0 + filt.s2_over_lam)).max()),
                config.tolerance,
                detail=f"phi_i = s_i (v_i^T w) / (u_i^T y) over {len(filt)} (direction, lambda) pairs",
            )
        )
    return out


def figures(metrics: pd.DataFrame, config: RidgeViewsConfig) -> dict[str, Figure]:
    return {"filter": _filter_figure(metrics, config), "agreement": _agreement_figure(metrics, config.tolerance)}


def _filter_figure(metrics: pd.DataFrame, config: RidgeViewsConfig) -> Figure:
    fig = Figure(figsize=(12.0, 4.6), layout="constrained")
    left, right = fig.subplots(1, 2)
    ratios = select(metrics, "filter").s2_over_lam.to_numpy()
    fine = np.geomspace(ratios.min() / 3, ratios.max() * 3, 400)
    left.semilogx(fine, fine / (1.0 + fine), "-", color="0.2", lw=1.2, label=r"theory $\rho/(1 + \rho)$")
    for regime in _regimes(config):
        for k, lam in enumerate(config.lams):
            chosen = select(metrics, "filter", regime=regime, lam=lam)
            r, measured = chosen.s2_over_lam.to_numpy(), chosen.value.to_numpy()
            left.semilogx(
                r, measured, MARKERS[regime], color=f"C{k}", ms=4, mfc="none", label=rf"{regime}, $\lambda = {lam:g}$"
            )
            s = np.sqrt(r * lam)
            s_fine = np.geomspace(s.min() / 2, s.max() * 2, 200)
            right.loglog(s_fine, s_fine / (s_fine**2 + lam), "-", color=f"C{k}", lw=1.0)
            right.loglog(s, measured / s, MARKERS[regime], color=f"C{k}", ms=4, mfc="none")
    left.set_xlabel(r"$\rho = s_i^2 / \lambda$")
    left.set_ylabel(r"filter $\phi_i = s_i\, v_i^\top w_\lambda / u_i^\top y$")
    left.set_title(r"ridge keeps the directions with $s^2 \gg \lambda$, kills those with $s^2 \ll \lambda$")
    left.legend(fontsize=7, ncols=2)
    for k, lam in enumerate(config.lams):
        right.plot([], [], "-", color=f"C{k}", label=rf"$s/(s^2 + \lambda)$, $\lambda = {lam:g}$")
    right.plot([], [], "o", color="0.3", mfc="none", label="measured, n > d")
    right.plot([], [], "s", color="0.3", mfc="none", label="measured, n < d")
    right.xaxis.set_minor_formatter(NullFormatter())
    right.set_xlabel(r"singular value $s_i$")
    right.set_ylabel(r"$v_i^\top w_\lambda / u_i^\top y$")
    right.set_title(r"the SVD view: $w_\lambda = V\,\mathrm{diag}(s/(s^2 + \lambda))\,U^\top y$")
    right.legend(fontsize=7)
    fig.suptitle("Ridge as a spectral filter, read off the computed solutions")
    return fig


def _agreement_figure(metrics: pd.DataFrame, tolerance: float) -> Figure:
    fig = Figure(figsize=(8.0, 4.2), layout="constrained")
    ax = fig.subplots()
    distances = select(metrics, "relative_distance_to_svd")
    distances = distances[distances["view"] != "SVD filter"]
    worst = distances.groupby(["view", "regime"], sort=False)["value"].max().unstack("regime")
    positions = np.arange(len(worst))
    for k, regime in enumerate(worst.columns):
        floor = np.maximum(worst[regime].to_numpy(), 1e-18)
        ax.bar(positions + (k - 0.5) * 0.38, floor, width=0.38, color=f"C{k}", label=regime)
    ax.set_yscale("log")
    ax.axhline(tolerance, color="k", ls="--", lw=1.0, label=f"tolerance {tolerance:g}")
    ax.set_xticks(positions, worst.index, rotation=15)
    ax.set_ylabel(r"max over $\lambda$ of $\|w - w_{SVD}\| / \|w_{SVD}\|$")
    ax.set_title("Five other routes to ridge agree with the SVD form to rounding")
    ax.legend()
    return fig


EXPERIMENT = Experiment(
    name="ridge-views",
    claim="Ridge regression is one vector seen five ways: (X^T X + lambda I)^-1 X^T y = X^T (X X^T + lambda I)^-1 y, "
    "least squares on data augmented with sqrt(lambda) I, the minimum-norm solution with sqrt(lambda) I as fake "
    "features, the SVD filter s/(s^2 + lambda), and the posterior mean under a Gaussian prior.",
    config=RidgeViewsConfig,
    measure=measure,
    checks=checks,
    figures=figures,
    presets={"full": {"n_tall": 400, "d_tall": 100, "n_wide": 100, "d_wide": 400, "lams": (1e-3, 0.1, 10.0, 1e3)}},
    references=(
        "Hoerl & Kennard (1970), Ridge regression: biased estimation for nonorthogonal problems, Technometrics",
        "Tikhonov (1963), Solution of incorrectly formulated problems and the regularization method",
        "Hastie, Tibshirani & Friedman (2009), The Elements of Statistical Learning, Sec. 3.4.1 and Ex. 3.12",
        "Bishop (2006), Pattern Recognition and Machine Learning, Sec. 3.3",
        "Kobak, Lomond & Sanchez (2020), The optimal ridge penalty for real-world high-dimensional data can be zero "
        "or negative due to the implicit ridge regularization, JMLR 21",
    ),
    part="linear models",
)
