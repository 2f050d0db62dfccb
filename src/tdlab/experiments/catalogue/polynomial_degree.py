"""polynomial-degree: fitting noisy samples of a cubic with polynomials of growing degree: underfit, right fit,
overfit, and then, far past the interpolation threshold, minimum-norm fits that come down again.

Features are the Legendre polynomials P_0..P_k (|P_j| <= 1 on [-1, 1]) at n inputs drawn uniformly on [-1, 1]
as a jittered grid (one uniform point in each of n equal cells: uniform marginally, but never two points so close
that the design up to p = n loses float64 accuracy, as i.i.d. points do); targets y = f(x) + sigma eps with a
cubic f. For p = k + 1 <= n parameters the fit is least squares (QR, float64),
for p > n the minimum-norm interpolant (QR of the transposed design). Measured over several training sets: the
training error (mean squared residual) and the test error (mean squared distance to f on a fine grid of [-1, 1],
i.e. the excess risk under uniform inputs).

Theory: nested least-squares models can only lower the training error; once the degree reaches the truth's the
residual is pure projected noise, E[train error] = sigma^2 (n - p) / n (`tdlab.theory.least_squares`), and it
vanishes at p = n (interpolation). The test error is smallest at the true degree; it explodes at the
interpolation threshold and, with the minimum-norm choice among interpolants, comes down again (Belkin, Hsu, Ma &
Mandal 2019, "Reconciling modern machine-learning practice and the classical bias-variance trade-off").

The claim "lowest at the true degree" is pinned two ways: the degree of the lowest mean test error must BE 3
(tolerance 0: a best degree of 2 or 4 fails), and on the same training sets the test error at degree 3 must be
below those at degrees 2 and 4 by one-sided paired Wilcoxon signed-rank tests at alpha = 0.05 each (a true degree
of 2 or 4, an underfit of the cubic or a fit that gains from an extra noise direction, fails).
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from numpy.polynomial import legendre
from numpy.typing import NDArray
from pydantic import Field, model_validator
from scipy.stats import wilcoxon
from torch import Tensor

from tdlab.experiments.base import Check, Context, Experiment, ExperimentConfig
from tdlab.experiments.tidy import select, series, table
from tdlab.theory.least_squares import residual_mean_square

Array = NDArray[np.float64]


# ------------------------------------------------------------------------------------------ measurement
def least_squares_fit(A: Tensor, y: Tensor) -> Tensor:
    """The minimum-norm least-squares solution of A w = y by a QR factorisation (backward stable): R w = Q^T y
    for a tall full-rank A, w = Q R^{-T} y (Q, R from A^T) for a wide full-rank A.

    Example:
        >>> A = torch.tensor([[1.0, 1.0]], dtype=torch.float64)
        >>> least_squares_fit(A, torch.tensor([2.0], dtype=torch.float64)).round(decimals=12).tolist()
        [1.0, 1.0]
    """
    n, p = A.shape
    target = y.unsqueeze(-1)
    if p <= n:
        Q, R = torch.linalg.qr(A)
        return torch.linalg.solve_triangular(R, Q.T @ target, upper=True).squeeze(-1)
    Q, R = torch.linalg.qr(A.T)
    return (Q @ torch.linalg.solve_triangular(R.T, target, upper=False)).squeeze(-1)


def legendre_features(x: Array, degree: int) -> Array:
    """The design [P_0(x), ..., P_degree(x)] of Legendre polynomials, shape (len(x), degree + 1).

    Example:
        >>> legendre_features(np.array([0.5]), 2).tolist()  # 1, x, (3x^2 - 1)/2
        [[1.0, 0.5, -0.125]]
    """
    return legendre.legvander(np.asarray(x, dtype=float), degree)


# --------------------------------------------------------------------------------------------- config
class PolynomialDegreeConfig(ExperimentConfig):
    """The cubic, the sample, the degrees swept and the three degrees drawn."""

    n: int = Field(30, ge=6, description="training points, a jittered grid on [-1, 1]")
    noise: float = Field(0.3, gt=0.0, description="noise standard deviation sigma")
    cubic: tuple[float, float, float, float] = Field(
        (0.3, -1.5, 0.0, 2.0), description="coefficients c_0..c_3 of f(x) = c_0 + c_1 x + c_2 x^2 + c_3 x^3 (c_3 != 0)"
    )
    datasets: int = Field(20, ge=2, description="independent training sets averaged")
    far_degrees: tuple[Annotated[int, Field(ge=1)], ...] = Field(
        (40, 60, 100, 200, 400, 1000), description="degrees past the interpolation threshold (minimum-norm fits)"
    )
    shown: tuple[int, int, int] = Field((1, 3, 20), description="degrees of the underfit, right and overfit panels")
    grid: int = Field(400, ge=50, description="points of the test grid on [-1, 1]")

    @model_validator(mode="after")
    def _consistent(self) -> PolynomialDegreeConfig:
        if self.cubic[3] == 0:
            raise ValueError("cubic: expected a nonzero x^3 coefficient (a true cubic)")
        if any(k < self.n for k in self.far_degrees):
            raise ValueError(
                f"far_degrees: expected degrees >= n = {self.n} (past the threshold), got {self.far_degrees}"
            )
        if any(k < 0 or k >= self.n for k in self.shown):
            raise ValueError(f"shown: expected degrees in [0, n - 1 = {self.n - 1}], got {self.shown}")
        return self


# ------------------------------------------------------------------------------------------------ run
def measure(config: PolynomialDegreeConfig, context: Context) -> pd.DataFrame:
    """Fit every degree on every training set: the training and test errors per set ("train_error_set",
    "test_error_set", columns dataset and degree), the mean training and test errors and the median test error per
    degree; the first set ("sample", column x) and its fits on the test grid ("fit", columns degree and x) for the
    figures."""
    rng = np.random.default_rng(config.seed)
    degrees = np.array(list(range(config.n)) + sorted(config.far_degrees))
    top = int(degrees.max())
    f = np.polynomial.Polynomial(config.cubic)
    grid = np.linspace(-1.0, 1.0, config.grid)
    f_grid, grid_features = f(grid), torch.tensor(legendre_features(grid, top), device=context.device)
    train, test = np.zeros((2, config.datasets, len(degrees)))
    frames = []
    for s in context.track(range(config.datasets), "training sets"):
        x = -1.0 + 2.0 * (np.arange(config.n) + rng.uniform(0.0, 1.0, config.n)) / config.n
        y = f(x) + config.noise * rng.standard_normal(config.n)
        A = torch.tensor(legendre_features(x, top), device=context.device)
        y_t = torch.tensor(y, device=context.device)
        for j, k in enumerate(degrees):
            w = least_squares_fit(A[:, : k + 1], y_t)
            train[s, j] = (A[:, : k + 1] @ w - y_t).square().mean().item()
            prediction = (grid_features[:, : k + 1] @ w).cpu().numpy()
            test[s, j] = float(np.mean((prediction - f_grid) ** 2))
            if s == 0 and (k in config.shown or k == top):
                frames.append(pd.DataFrame({"name": "fit", "value": prediction, "degree": k, "x": grid}))
        if s == 0:
            frames.append(pd.DataFrame({"name": "sample", "value": y, "x": x}))
        frames.append(pd.DataFrame({"name": "train_error_set", "value": train[s], "degree": degrees, "dataset": s}))
        frames.append(pd.DataFrame({"name": "test_error_set", "value": test[s], "degree": degrees, "dataset": s}))
    for name, values in (
        ("train_error", train.mean(0)),
        ("test_error", test.mean(0)),
        ("test_error_median", np.median(test, 0)),
    ):
        frames.append(pd.DataFrame({"name": name, "value": values, "degree": degrees}))
    return pd.concat(frames, ignore_index=True)


def _per_degree(metrics: pd.DataFrame, name: str) -> pd.Series:
    return select(metrics, name).set_index("degree")["value"].sort_index()


def checks(metrics: pd.DataFrame, config: PolynomialDegreeConfig) -> list[Check]:
    per_set = table(metrics, "train_error_set", "dataset", "degree")
    train, test = _per_degree(metrics, "train_error"), _per_degree(metrics, "test_error")
    top = int(test.index.max())
    rounding = 1e-10 * float(np.mean(per_set[0].to_numpy()))
    expected = residual_mean_square(config.n, 4, config.noise**2)
    sd = config.noise**2 * np.sqrt(2.0 * (config.n - 4)) / config.n / np.sqrt(config.datasets)
    test_sets = table(metrics, "test_error_set", "dataset", "degree")
    p_values = {k: float(wilcoxon(test_sets[k], test_sets[3], alternative="greater").pvalue) for k in (2, 4)}
    lower = {k: int((test_sets[k] > test_sets[3]).sum()) for k in (2, 4)}
    return [
        Check.at_most(
            "training error non-increasing in the degree (largest increase, every training set)",
            float(np.diff(per_set.to_numpy(), axis=1).max()),
            rounding,
            detail=f"{config.datasets} sets x {len(test)} degrees (0..{config.n - 1} least squares, then "
            f"{list(config.far_degrees)} minimum norm); nested models: exact monotonicity, up to QR rounding "
            f"(tolerance 1e-10 x the degree-0 error)",
        ),
        Check.absolute(
            "degree with the lowest mean test error is the true degree 3",
            float(test.idxmin()),
            3.0,
            0.0,
            detail=f"mean over {config.datasets} sets of the squared distance to f on {config.grid} grid points; test "
            f"error at degrees 2, 3, 4: {test[2]:.3g}, {test[3]:.3g}, {test[4]:.3g}; at degree {top} (minimum norm): "
            f"{test[top]:.3g}; exact: a best degree of 2 or 4 fails",
        ),
        Check.at_most(
            "test error at degree 3 below degrees 2 and 4 on the same sets: one-sided paired Wilcoxon, alpha = 0.05 "
            "(larger p-value)",
            max(p_values.values()),
            0.05,
            detail=f"p-values vs degree 2: {p_values[2]:.2g}, vs degree 4: {p_values[4]:.2g} (alpha = 0.05 each); "
            f"degree 3 beats degree 2 on {lower[2]} and degree 4 on {lower[4]} of {config.datasets} training sets",
        ),
        Check.absolute(
            "training error at the true degree vs sigma^2 (n - 4) / n",
            float(train[3]),
            expected,
            3.5 * sd,
            detail=f"n = {config.n}, p = 4: the residual is the noise projected on n - p dimensions (chi-square "
            f"with n - p degrees of freedom); tolerance 3.5 standard errors of the mean over {config.datasets} sets",
        ),
        Check.holds(
            "past the threshold the minimum-norm test error comes down again (largest degree < degree n - 1)",
            bool(test[top] < test[config.n - 1]),
            detail=f"mean test error at degree {config.n - 1} (p = n, interpolation): {test[config.n - 1]:.3g}; "
            f"at degree {top}: {test[top]:.3g}",
            measured=float(test[top] / test[config.n - 1]),
        ),
    ]


def figures(metrics: pd.DataFrame, config: PolynomialDegreeConfig) -> dict[str, Figure]:
    return {"fits": _fits_figure(metrics, config), "errors": _errors_figure(metrics, config)}


# -------------------------------------------------------------------------------------------- figures
def _fits_figure(metrics: pd.DataFrame, config: PolynomialDegreeConfig) -> Figure:
    fits, sample = select(metrics, "fit"), select(metrics, "sample")
    x, y = sample.x.to_numpy(), sample.value.to_numpy()
    grid = np.linspace(-1.0, 1.0, config.grid)
    f_grid = np.polynomial.Polynomial(config.cubic)(grid)
    top = int(fits.degree.max())
    panels = [*config.shown, top]
    titles = ["underfit", "right fit", "overfit", "minimum norm, p >> n"]
    fig = Figure(figsize=(14.0, 3.8), layout="constrained")
    axes = fig.subplots(1, len(panels), sharey=True)
    for ax, k, title in zip(axes, panels, titles, strict=True):
        ax.plot(grid, f_grid, "-", color="0.3", lw=1.2, label="true cubic f")
        ax.plot(grid, series(metrics, "fit", "x", degree=k)[1], "-", color="C3", lw=1.2, label=f"fit, degree {k}")
        ax.plot(x, y, "o", color="C0", ms=4, mfc="none", label=f"{config.n} noisy samples")
        ax.set_title(f"degree {k}: {title}", fontsize=10)
        ax.set_xlabel("x")
        ax.legend(fontsize=7, loc="lower right")
    lo, hi = float(np.min(y)), float(np.max(y))
    axes[0].set_ylim(lo - 0.6 * (hi - lo), hi + 0.6 * (hi - lo))
    axes[0].set_ylabel("y")
    fig.suptitle("Polynomial fits of growing degree to noisy samples of a cubic (Legendre features)")
    return fig


def _errors_figure(metrics: pd.DataFrame, config: PolynomialDegreeConfig) -> Figure:
    fig = Figure(figsize=(8.5, 5.0), layout="constrained")
    ax = fig.subplots()
    test, test_median = _per_degree(metrics, "test_error"), _per_degree(metrics, "test_error_median").to_numpy()
    train, p = _per_degree(metrics, "train_error").to_numpy(), test.index.to_numpy() + 1
    ax.loglog(
        p, test.to_numpy(), "o-", color="C3", ms=4, mfc="none", lw=0.8, label="test error (mean over training sets)"
    )
    ax.loglog(p, test_median, "^", color="C1", ms=4, mfc="none", label="test error (median)")
    positive = train > 0
    ax.loglog(
        p[positive],
        np.maximum(train[positive], 1e-300),
        "s-",
        color="C0",
        ms=4,
        mfc="none",
        lw=0.8,
        label="training error (mean)",
    )
    theory_p = np.arange(4, config.n)
    ax.loglog(
        theory_p,
        [residual_mean_square(config.n, int(q), config.noise**2) for q in theory_p],
        "--",
        color="C0",
        lw=1.2,
        label=r"theory $\sigma^2 (n - p)/n$ (degree $\geq 3$)",
    )
    ax.axvline(config.n, color="k", ls=":", lw=1.0, label=f"interpolation threshold p = n = {config.n}")
    ax.axvline(4, color="C2", ls=":", lw=1.0, label="true degree 3 (p = 4)")
    ax.axhline(config.noise**2, color="0.6", ls="-.", lw=0.8, label=r"noise level $\sigma^2$")
    ax.set_ylim(1e-4, 1e3)
    ax.set_xlabel("number of parameters p = degree + 1")
    ax.set_ylabel("mean squared error")
    ax.set_title("Underfit, right fit, overfit, and the second descent of minimum-norm fits")
    ax.legend(fontsize=7, loc="upper right")
    return fig


EXPERIMENT = Experiment(
    name="polynomial-degree",
    claim="Fitting noisy samples of a cubic, polynomials of degree 1, 3 and 20 underfit, fit and overfit: the "
    "training error falls with the degree while the test error is lowest at the true degree; past the "
    "interpolation threshold the minimum-norm fits' test error comes down again.",
    config=PolynomialDegreeConfig,
    measure=measure,
    checks=checks,
    figures=figures,
    presets={"full": {"datasets": 200, "far_degrees": (40, 60, 100, 200, 400, 1000, 2000, 4000), "grid": 2000}},
    references=(
        "Bishop (2006), Pattern Recognition and Machine Learning, Sec. 1.1 (polynomial curve fitting)",
        "Hastie, Tibshirani & Friedman (2009), The Elements of Statistical Learning, Sec. 7.3",
        "Belkin, Hsu, Ma & Mandal (2019), Reconciling modern machine-learning practice and the classical "
        "bias-variance trade-off, PNAS 116(32)",
    ),
    part="linear models",
)
