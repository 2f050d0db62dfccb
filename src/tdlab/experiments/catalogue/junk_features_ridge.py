r"""junk-features-ridge: many random "junk" features, fitted by minimum-norm least squares, regularise the signal
features like ridge regression with lambda = p sigma^2 (Kobak, Lomond & Sanchez 2020).

Signal features X (n x d, standard Gaussian), beta ~ N(0, signal / d I_d), y = X beta + noise; p junk features Z
(n x p) with iid N(0, sigma^2) entries, independent of y. The fit is the minimum-norm least-squares solution
(b, c) of [X, Z] (b, c) = y, measured by LAPACK's least-squares solver (`torch.linalg.lstsq`, driver gels, float64),
and, on a small case, by gradient descent from zero through `tdlab.train.fit`. Theory
(`tdlab.theory.junk_features`): b = X^T (X X^T + Z Z^T)^{-1} y and Z Z^T ~ p sigma^2 I_n, so b approaches ridge
b_lambda = X^T (X X^T + lambda I)^{-1} y = argmin ||X b - y||^2 + lambda ||b||^2 with lambda = p sigma^2 (the
*summed* squared error; lambda / n for the averaged loss). Two problems: n > d and d > n.

Measured: (1) b along a sweep of p at a fixed p sigma^2, several draws of Z each; (2) the implied lambda of b for
several (p, sigma) pairs: the ridge penalty whose solution is nearest to b, by a 1-D search over log lambda (a grid
over 12 decades around the scale of X X^T, refined by Brent's method), which never sees p sigma^2; (3) the excess
test risk, exact for isotropic x: ||b - beta||^2 with the junk coefficients dropped at test time, and
||b - beta||^2 + sigma^2 ||c||^2 with fresh junk features at test time (the model as fitted), for a sweep of sigma
at one p, over seeds (new X, beta, noise, Z); ridge's risk and residual sum of squares on a fine grid of lambda on
the same data, and the minimum-norm fit without junk (least squares for n > d, the interpolant for d > n);
(4) gradient descent on the augmented problem from zero and from a random initialisation.

Checks (each can fail, and how):

1. at fixed lambda = p sigma^2 the root-mean-square relative distance ||b - b_lambda|| / ||b_lambda|| falls like
   1/sqrt(p): the log-log slope against p is -1/2 within 0.15 (the fluctuation of Z Z^T around p sigma^2 I, to
   first order; the next order, O(1/p), steepens it slightly). A wrong lambda (sigma^2, or p sigma^2 off by n) puts
   b next to another ridge solution, at a distance that does not fall (slope ~0); a deterministic O(1/p) error
   would give -1;
2. its size at the largest p equals the first-order prediction sqrt((||M v||^2 + ||v||^2 ||M||_F^2) / p) /
   ||b_lambda|| within 15% (about four standard deviations over the draws): a wrong lambda misses it 10x;
3. the implied lambda (geometric mean over draws) equals p sigma^2 within 10% for every (p, sigma) pair and both
   problems; the finite-p theory (`junk_ridge_penalty_finite`) puts it at most n / p below (reported), and sigma^2
   alone or a factor n is off by p x or n x;
4. the test risk with the junk dropped follows ridge's risk curve at lambda = p sigma^2 within 10% (seed means,
   every sigma, both problems; the second-order excess E ||b - b_lambda||^2 is ~3% at p = 25 n): the curve is read
   off the ridge grid at the predicted lambda, so a wrong mapping reads it elsewhere (off by 30-130%);
5. the risk that fresh junk features add at test time, sigma^2 ||c||^2 (seed means), equals ridge's residual sum
   of squares ||y - X b_lambda||^2 / p at lambda = p sigma^2 within 10% (every sigma, both problems; the finite-p
   excess is <= n / p, 4% at p = 25 n): a wrong lambda reads the residual elsewhere (the residual grows with
   lambda), and a model without that cost (0) is off by 100%;
6. junk helps a noisy problem: with sigma chosen so that p sigma^2 is nearest the Bayes-optimal ridge penalty
   noise^2 d / signal, the risk with fresh junk is below the minimum-norm fit without junk (least squares when
   n > d, the interpolant when d > n), a one-sided paired t-test over seeds on log risk at alpha = 0.05 (the
   larger p-value of the two problems: an intersection-union test); junk that does not regularise gives p ~ 0.5;
7. gradient descent from zero on [X, Z] (`tdlab.train.fit`, full batch, step 1 / L) reaches the minimum-norm
   solution: relative distance <= 1e-9 after the configured steps (its rate (1 - eta mu)^t, mu the smallest
   non-zero curvature, is reported); GD from a random start w0 ends at the minimum-norm solution plus w0's
   component in the null space of [X, Z] instead (reported and drawn), so a non-zero start, too few steps or any
   weight decay fails it.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter
from numpy.typing import NDArray
from pydantic import Field, model_validator
from scipy import stats
from scipy.interpolate import CubicSpline
from scipy.optimize import minimize_scalar
from torch import Tensor

from tdlab.config.threads import one_thread
from tdlab.experiments.base import Check, Context, Experiment, ExperimentConfig
from tdlab.experiments.tidy import rows, select, series, table, value
from tdlab.models import LinearModel
from tdlab.theory.junk_features import (
    fresh_junk_risk,
    junk_fluctuation,
    junk_ridge_penalty,
    junk_ridge_penalty_finite,
)
from tdlab.theory.least_squares import ridge_dual
from tdlab.theory.random_matrix import optimal_ridge_penalty
from tdlab.train.trainer import fit

Array = NDArray[np.float64]
REGIMES = ("n > d", "d > n")
# Tolerances, from 40-150 simulated repetitions of the quick run (other draws of X, beta, noise and Z), n > d the
# noisier problem. 99th percentiles: 0.09 of |slope + 1/2| (mean slope -0.534: the O(1/p) term steepens it at
# p = 10 n); 0.11 of |size ratio - 1| (standard deviation 0.04); 0.073 of the worst risk ratio (systematic 0.03 from
# the second-order term E ||b - b_lambda||^2 at p = 25 n, seed noise 0.02). The largest of 40: 0.066 of the worst
# ratio of the fresh junk's risk to RSS / p (finite-p excess up to 0.036, noise 0.01). The implied penalty's per-draw
# standard deviation in log is 0.05 at p = 1600 (n > d), 0.015 over 10 draws, besides the finite-p bias <= n / p.
# A wrong lambda misses each by far more: slope 0, sizes 10x, penalties p x or n x, risks 30-130%.
SLOPE_TOLERANCE = 0.15  # absolute, on the log-log slope of the RMS distance against p (theory -1/2)
SIZE_TOLERANCE = 0.15  # relative, on the RMS distance at the largest p against its first-order prediction
IMPLIED_TOLERANCE = 0.1  # relative, on the implied lambda (geometric mean over draws) against p sigma^2
RISK_TOLERANCE = 0.1  # relative, on the seed-mean risk against ridge's at lambda = p sigma^2
GD_TOLERANCE = 1e-9  # relative distance of GD from zero to the minimum-norm solution after the configured steps
RIDGE_GRID = np.geomspace(1e-6, 1e6, 193)  # lambda grid of ridge's risk curve (16 per decade)
Pair = tuple[Annotated[int, Field(ge=1)], Annotated[float, Field(gt=0.0)]]


class JunkFeaturesRidgeConfig(ExperimentConfig):
    """Two problems (n > d, d > n), a sweep of p at fixed p sigma^2, (p, sigma) pairs, a risk sweep over sigma at one
    p over seeds, and a small gradient-descent case."""

    n: int = Field(40, ge=4, description="training examples")
    d_tall: int = Field(20, ge=1, description="signal features of the n > d problem")
    d_wide: int = Field(80, ge=2, description="signal features of the d > n problem")
    signal: float = Field(1.0, gt=0.0, description="E ||beta||^2 (beta ~ N(0, signal / d I))")
    noise: float = Field(1.0, gt=0.0, description="standard deviation of the label noise")
    rate_features: tuple[Annotated[int, Field(ge=1)], ...] = Field(
        (400, 800, 1600, 3200), description="junk counts p of the rate sweep (at least 3, increasing, above n)"
    )
    rate_power: float = Field(40.0, gt=0.0, description="p sigma^2, held fixed along the rate sweep")
    rate_draws: int = Field(20, ge=2, description="draws of Z per p in the rate sweep")
    pairs: tuple[Pair, ...] = Field(
        ((1600, 0.15), (1600, 0.3), (3200, 0.1), (3200, 0.2), (3200, 0.35), (6400, 0.1)),
        min_length=2,
        description="(p, sigma) pairs whose implied ridge penalty is measured (p above n; p sigma^2 within the "
        "spectrum of X X^T, where ridge's solution depends on lambda)",
    )
    pair_draws: int = Field(10, ge=2, description="draws of Z per (p, sigma) pair")
    risk_features: int = Field(1000, ge=1, description="junk count p of the risk sweep (above n)")
    risk_sigmas: tuple[Annotated[float, Field(gt=0.0)], Annotated[float, Field(gt=0.0)]] = Field(
        (0.01, 1.0), description="smallest and largest sigma of the risk sweep (log-spaced)"
    )
    risk_points: int = Field(13, ge=3, description="sigmas in the risk sweep")
    seeds: int = Field(20, ge=3, description="independent problems (X, beta, noise, Z) of the risk sweep")
    gd_n: int = Field(20, ge=2, description="examples of the gradient-descent case")
    gd_d: int = Field(10, ge=1, description="signal features of the gradient-descent case")
    gd_features: int = Field(200, ge=1, description="junk features of the gradient-descent case (above gd_n)")
    gd_sigma: float = Field(0.3, gt=0.0, description="junk standard deviation of the gradient-descent case")
    gd_steps: int = Field(300, ge=1, description="full-batch gradient-descent steps (step 1 / L)")
    alpha: float = Field(0.05, gt=0.0, lt=0.5, description="significance level of the paired t-test")

    @model_validator(mode="after")
    def _consistent(self) -> JunkFeaturesRidgeConfig:
        if not self.d_tall < self.n < self.d_wide:
            raise ValueError(
                f"d_tall, d_wide: expected d_tall < n = {self.n} < d_wide, got {self.d_tall}, {self.d_wide}"
            )
        counts = self.rate_features
        if len(counts) < 3 or list(counts) != sorted(set(counts)) or counts[0] <= self.n:
            raise ValueError(f"rate_features: expected at least 3 increasing counts above n = {self.n}, got {counts}")
        if min(p for p, _ in self.pairs) <= self.n:
            raise ValueError(f"pairs: expected every p above n = {self.n}, got {self.pairs}")
        if self.risk_features <= self.n:
            raise ValueError(f"risk_features: expected more than n = {self.n}, got {self.risk_features}")
        if not self.risk_sigmas[0] < self.risk_sigmas[1]:
            raise ValueError(
                f"risk_sigmas: expected (smallest, largest) with smallest < largest, got {self.risk_sigmas}"
            )
        if self.gd_features <= self.gd_n:
            raise ValueError(f"gd_features: expected more than gd_n = {self.gd_n}, got {self.gd_features}")
        return self


def dimensions(config: JunkFeaturesRidgeConfig) -> dict[str, int]:
    """The number of signal features d of each problem."""
    return {"n > d": config.d_tall, "d > n": config.d_wide}


def risk_sigmas(config: JunkFeaturesRidgeConfig) -> Array:
    """The sigmas of the risk sweep: `risk_points` log-spaced values in `risk_sigmas`."""
    return np.geomspace(*config.risk_sigmas, config.risk_points)


def problem(n: int, d: int, config: JunkFeaturesRidgeConfig, generator: torch.Generator) -> tuple[Tensor, ...]:
    """(X, beta, y): Gaussian features, beta ~ N(0, signal / d I), y = X beta + noise (float64)."""
    X = torch.randn(n, d, generator=generator, dtype=torch.float64)
    beta = torch.randn(d, generator=generator, dtype=torch.float64) * (config.signal / d) ** 0.5
    y = X @ beta + config.noise * torch.randn(n, generator=generator, dtype=torch.float64)
    return X, beta, y


def min_norm_fit(X: Tensor, Z: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """The minimum-norm least-squares solution of [X, Z] (b, c) = y for a batch of junk blocks Z (..., n, p), by
    LAPACK's gels (an LQ factorisation: the minimum-norm interpolant of a full-row-rank system, which [X, Z] is
    almost surely for p >= n): (b (..., d), c (..., p))."""
    A = torch.cat([X.expand(*Z.shape[:-1], X.shape[1]), Z], dim=-1)
    w = torch.linalg.lstsq(A, y.expand(*Z.shape[:-2], -1).unsqueeze(-1), driver="gels").solution.squeeze(-1)
    return w[..., : X.shape[1]], w[..., X.shape[1] :]


def ridge_risk_path(X: Array, y: Array, beta: Array, lams: Array) -> tuple[Array, Array]:
    """Ridge for many penalties at once, through the SVD X = U diag(s) V^T: (the excess risks ||b_lambda - beta||^2,
    the residual sums of squares ||y - X b_lambda||^2), with b_lambda = V diag(s / (s^2 + lambda)) U^T y; both
    computed in the singular coordinates (the parts of beta and y off the row and column spaces add constants).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> X, y, beta = rng.standard_normal((6, 3)), rng.standard_normal(6), rng.standard_normal(3)
        >>> risk, rss = ridge_risk_path(X, y, beta, np.array([2.5]))
        >>> b = ridge_dual(X, y, 2.5)
        >>> bool(np.isclose(risk[0], np.sum((b - beta) ** 2)) and np.isclose(rss[0], np.sum((X @ b - y) ** 2)))
        True
    """
    U, s, Vt = np.linalg.svd(X, full_matrices=False)
    projected, inside = U.T @ y, Vt @ beta
    shrink = lams[:, None] / (s**2 + lams[:, None])  # 1 - the ridge filter s^2 / (s^2 + lambda)
    risk = np.square((1.0 - shrink) * projected / s - inside).sum(axis=1) + float(beta @ beta - inside @ inside)
    rss = np.square(shrink * projected).sum(axis=1) + float(y @ y - projected @ projected)
    return risk, rss


def implied_penalty(X: Array, y: Array, b: Array) -> float:
    """The ridge penalty lambda (summed squared error) whose solution X^T (X X^T + lambda I)^{-1} y is nearest to b
    in Euclidean distance: a grid over log lambda from 1e-8 to 1e4 times the largest eigenvalue of X X^T, refined by
    Brent's method between the grid neighbours of the best point (the grid's end if the best is there). Distances
    are taken in the coordinates of V (b's part outside the row space of X adds a constant).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> X, y = rng.standard_normal((6, 3)), rng.standard_normal(6)
        >>> round(implied_penalty(X, y, ridge_dual(X, y, 2.5)), 6)
        2.5
    """
    U, s, Vt = np.linalg.svd(X, full_matrices=False)
    scaled, target = s * (U.T @ y), Vt @ b

    def distance(log_lam: Array | float) -> Array:
        lam = np.exp(np.atleast_1d(log_lam))[:, None]
        return np.square(scaled / (s**2 + lam) - target).sum(axis=1)  # V^T b_lambda = s U^T y / (s^2 + lambda)

    grid = np.log(s.max() ** 2) + np.linspace(np.log(1e-8), np.log(1e4), 241)
    k = int(np.argmin(distance(grid)))
    if k in (0, len(grid) - 1):
        return float(np.exp(grid[k]))
    best = minimize_scalar(
        lambda t: float(distance(t)[0]), bounds=(grid[k - 1], grid[k + 1]), method="bounded", options={"xatol": 1e-9}
    )
    return float(np.exp(best.x))


def measure(config: JunkFeaturesRidgeConfig, context: Context) -> pd.DataFrame:
    """Rows (column `regime` where it applies): "x" (row, index) and "y" (row): the rate sweep's problem;
    "signal_coefficient" (p, sigma, draw, index): b in the rate sweep; "implied_penalty" (p, sigma, draw);
    "signal_risk" and "junk_risk" (seed, p, sigma); "ridge_risk" and "ridge_rss" (seed, lam); "min_norm_risk"
    (seed); "gd_distance" (init, step), "gd_null_part" and "gd_contraction": the gradient-descent case."""
    generator = torch.Generator().manual_seed(config.seed)
    frames: list[pd.DataFrame] = []
    with one_thread():
        for regime, d in context.track(dimensions(config).items(), "problems"):
            frames += _coefficients(config, regime, d, generator)
            frames += _risks(config, regime, d, generator)
        frames += _gradient_descent(config, context, generator)
    return pd.concat(frames, ignore_index=True)


def _coefficients(
    config: JunkFeaturesRidgeConfig, regime: str, d: int, generator: torch.Generator
) -> list[pd.DataFrame]:
    """The rate sweep's signal coefficients and the pairs' implied penalties on one problem."""
    n = config.n
    X, _, y = problem(n, d, config, generator)
    frames = [
        rows("x", X.numpy(), row=np.arange(n)[:, None], index=np.arange(d)).assign(regime=regime),
        rows("y", y.numpy(), row=np.arange(n)).assign(regime=regime),
    ]
    # nested junk: the first p columns of one block per draw (common random numbers along the sweep)
    G = torch.randn(config.rate_draws, n, max(config.rate_features), generator=generator, dtype=torch.float64)
    draws = np.arange(config.rate_draws)[:, None]
    for p in config.rate_features:
        sigma = (config.rate_power / p) ** 0.5
        b, _ = min_norm_fit(X, sigma * G[..., :p], y)
        frame = rows("signal_coefficient", b.numpy(), p=p, sigma=sigma, draw=draws, index=np.arange(d))
        frames.append(frame.assign(regime=regime))
    X_, y_ = X.numpy(), y.numpy()
    G = torch.randn(config.pair_draws, n, max(p for p, _ in config.pairs), generator=generator, dtype=torch.float64)
    for p, sigma in config.pairs:
        b, _ = min_norm_fit(X, sigma * G[..., :p], y)
        implied = [implied_penalty(X_, y_, row) for row in b.numpy()]
        frame = rows("implied_penalty", implied, p=p, sigma=sigma, draw=np.arange(config.pair_draws))
        frames.append(frame.assign(regime=regime))
    return frames


def _risks(config: JunkFeaturesRidgeConfig, regime: str, d: int, generator: torch.Generator) -> list[pd.DataFrame]:
    """Per seed: the junk fit's risks over the sigma sweep (one Z, scaled), ridge's risk and residual sum of squares
    on `RIDGE_GRID`, and the minimum-norm fit without junk."""
    n, p, sigmas = config.n, config.risk_features, risk_sigmas(config)
    frames = []
    for seed in range(config.seeds):
        X, beta, y = problem(n, d, config, generator)
        G = torch.randn(n, p, generator=generator, dtype=torch.float64)
        scale = torch.as_tensor(sigmas)[:, None, None]
        b, c = min_norm_fit(X, scale * G, y)
        signal = (b - beta).square().sum(dim=1).numpy()
        junk = sigmas**2 * c.square().sum(dim=1).numpy()  # E (z^T c)^2 for fresh junk z ~ N(0, sigma^2 I)
        ids = {"p": p, "sigma": sigmas, "seed": seed}
        frames += [rows("signal_risk", signal, **ids), rows("junk_risk", junk, **ids)]
        X_, beta_, y_ = X.numpy(), beta.numpy(), y.numpy()
        risk, rss = ridge_risk_path(X_, y_, beta_, RIDGE_GRID)
        frames += [
            rows("ridge_risk", risk, lam=RIDGE_GRID, seed=seed),
            rows("ridge_rss", rss, lam=RIDGE_GRID, seed=seed),
        ]
        no_junk = torch.linalg.lstsq(X, y.unsqueeze(-1), driver="gels").solution.squeeze(-1)
        frames.append(rows("min_norm_risk", float((no_junk - beta).square().sum()), seed=seed))
    return [frame.assign(regime=regime) for frame in frames]


def _gradient_descent(
    config: JunkFeaturesRidgeConfig, context: Context, generator: torch.Generator
) -> list[pd.DataFrame]:
    """Full-batch GD with step 1 / L on (1/2n) ||[X, Z] w - y||^2 from zero and from a random start (the two outputs
    of one linear model), through `tdlab.train.fit`; the relative distance to the minimum-norm solution w* after
    every step."""
    n, p = config.gd_n, config.gd_features
    X, _, y = problem(n, config.gd_d, config, generator)
    Z = config.gd_sigma * torch.randn(n, p, generator=generator, dtype=torch.float64)
    A = torch.cat([X, Z], dim=1)
    b, c = min_norm_fit(X, Z, y)
    w_star = torch.cat([b, c])
    D = A.shape[1]
    start = torch.randn(D, generator=generator, dtype=torch.float64) * w_star.norm() / D**0.5
    curvatures = torch.linalg.eigvalsh(A @ A.T / n)  # the non-zero curvatures of the loss (A has full row rank)
    eta = 1.0 / float(curvatures.max())
    null_part = start - torch.linalg.pinv(A) @ (A @ start)  # the component of w0 GD never moves

    model = LinearModel(D, 2, bias=False).to(device=context.device, dtype=torch.float64)
    with torch.no_grad():
        model.linear.weight[1].copy_(start)
    targets = y[:, None].repeat(1, 2)
    reference = w_star.to(context.device)
    distances: list[Tensor] = []

    def record(step: int, _: float) -> None:
        with torch.no_grad():
            distances.append((model.linear.weight - reference).norm(dim=1) / reference.norm())

    def loss(outputs: Tensor, wanted: Tensor) -> Tensor:
        return 0.5 * (outputs - wanted).square().sum(dim=1).mean()

    record(0, 0.0)
    data = (A.to(context.device), targets.to(context.device))
    fit(model, loss, data, torch.optim.SGD(model.parameters(), lr=eta), config.gd_steps, callbacks=[record])
    gaps = torch.stack(distances).cpu().numpy()  # (steps + 1, 2)
    steps = np.arange(gaps.shape[0])
    return [
        rows("gd_distance", gaps, step=steps[:, None], init=np.array(["zero", "random"])),
        rows("gd_null_part", float(null_part.norm() / w_star.norm())),
        rows("gd_contraction", 1.0 - eta * float(curvatures.min())),
    ]


# ------------------------------------------------------------------------------------------------------ checks
def design(metrics: pd.DataFrame, regime: str) -> tuple[Array, Array]:
    """The stored (X, y) of the rate sweep's problem."""
    return table(metrics, "x", "row", "index", regime=regime).to_numpy(), series(metrics, "y", "row", regime=regime)[1]


def distances(metrics: pd.DataFrame, regime: str) -> pd.DataFrame:
    """Per p of the rate sweep: the predicted lambda, the RMS over draws of ||b - b_lambda|| / ||b_lambda|| against
    ridge at that lambda, the first-order prediction of that RMS, the RMS's relative standard error, and the draws
    of b."""
    X, y = design(metrics, regime)
    coefficients = select(metrics, "signal_coefficient", regime=regime)
    out = []
    for (p, sigma), group in coefficients.groupby(["p", "sigma"]):
        lam = junk_ridge_penalty(int(p), float(sigma))
        ridge = ridge_dual(X, y, lam)
        b = group.pivot(index="draw", columns="index", values="value").to_numpy()
        squared = np.sum((b - ridge) ** 2, axis=1) / np.sum(ridge**2)
        out.append(
            {
                "p": p,
                "lam": lam,
                "rms": float(np.sqrt(squared.mean())),
                "predicted": junk_fluctuation(X, y, lam, int(p)),
                "se": float(squared.std(ddof=1) / np.sqrt(len(squared)) / squared.mean() / 2),  # of rms, relative
                "draws": b,
            }
        )
    return pd.DataFrame(out).sort_values("p")


def implied(metrics: pd.DataFrame, regime: str) -> pd.DataFrame:
    """Per (p, sigma) pair: the geometric mean of the implied penalty over draws, its standard error (in log), the
    predicted p sigma^2 and the finite-p kappa."""
    X, _ = design(metrics, regime)
    out = []
    for (p, sigma), group in select(metrics, "implied_penalty", regime=regime).groupby(["p", "sigma"]):
        logs = np.log(group["value"].to_numpy())
        out.append(
            {
                "p": int(p),
                "sigma": float(sigma),
                "implied": float(np.exp(logs.mean())),
                "log_se": float(logs.std(ddof=1) / np.sqrt(len(logs))),
                "predicted": junk_ridge_penalty(int(p), float(sigma)),
                "finite": junk_ridge_penalty_finite(X, int(p), float(sigma)),
            }
        )
    return pd.DataFrame(out)


def risk_curves(metrics: pd.DataFrame, regime: str) -> pd.DataFrame:
    """Per sigma of the risk sweep (seed means): the junk fit's risks, and ridge's risk and residual sum of squares
    read off its grid (a cubic spline in log-log) at the predicted lambda = p sigma^2 (nan off the grid)."""
    ridge = select(metrics, "ridge_risk", regime=regime).groupby("lam")["value"].mean()
    rss = select(metrics, "ridge_rss", regime=regime).groupby("lam")["value"].mean()
    log_lam = np.log(ridge.index.to_numpy())
    signal = select(metrics, "signal_risk", regime=regime).groupby(["p", "sigma"])["value"].mean()
    junk = select(metrics, "junk_risk", regime=regime).groupby(["p", "sigma"])["value"].mean()
    out = pd.DataFrame({"signal": signal, "junk": junk, "fresh": signal + junk}).reset_index()
    out["lam"] = [junk_ridge_penalty(int(p), float(s)) for p, s in zip(out["p"], out["sigma"], strict=True)]
    inside = (np.log(out["lam"]) >= log_lam[0]) & (np.log(out["lam"]) <= log_lam[-1])
    for name, curve in (("ridge", ridge), ("rss", rss)):
        spline = CubicSpline(log_lam, np.log(curve.to_numpy()))
        out[name] = np.where(inside, np.exp(spline(np.log(out["lam"]))), np.nan)
    out["rss_over_p"] = [float(fresh_junk_risk(r, int(p))) for r, p in zip(out["rss"], out["p"], strict=True)]
    return out.sort_values("sigma")


def _worst(values: dict[str, Array]) -> float:
    """The largest |value| over the regimes (nan if any value is nan: a check must then fail)."""
    joined = np.concatenate([np.atleast_1d(v) for v in values.values()])
    return float(np.nan if np.any(~np.isfinite(joined)) else np.abs(joined).max())


def checks(metrics: pd.DataFrame, config: JunkFeaturesRidgeConfig) -> list[Check]:
    """The rate and size of the distance to ridge(p sigma^2), the implied penalty, the risk curves, the paired
    t-test of junk against no junk, and gradient descent's limit."""
    rate = {regime: distances(metrics, regime) for regime in REGIMES}
    slopes = {r: float(np.polyfit(np.log(t["p"]), np.log(t["rms"]), 1)[0]) for r, t in rate.items()}
    size = {r: t["rms"].iloc[-1] / t["predicted"].iloc[-1] - 1.0 for r, t in rate.items()}
    pairs = {regime: implied(metrics, regime) for regime in REGIMES}
    implied_error = {r: t["implied"] / t["predicted"] - 1.0 for r, t in pairs.items()}
    curves = {regime: risk_curves(metrics, regime) for regime in REGIMES}
    signal_error = {r: t["signal"] / t["ridge"] - 1.0 for r, t in curves.items()}
    junk_error = {r: t["junk"] / t["rss_over_p"] - 1.0 for r, t in curves.items()}
    tests, chosen = {}, {}
    for regime, d in dimensions(config).items():
        best = optimal_ridge_penalty(d / config.n, config.signal, config.noise**2) * config.n  # noise^2 d / signal
        sigmas = curves[regime]["sigma"].to_numpy()
        lams = curves[regime]["lam"].to_numpy()
        sigma = float(sigmas[np.argmin(np.abs(np.log(lams / best)))])
        fresh = sum(
            select(metrics, name, regime=regime, sigma=sigma).sort_values("seed")["value"].to_numpy()
            for name in ("signal_risk", "junk_risk")
        )
        none = select(metrics, "min_norm_risk", regime=regime).sort_values("seed")["value"].to_numpy()
        tests[regime] = stats.ttest_rel(np.log(fresh), np.log(none), alternative="less").pvalue
        chosen[regime] = (best, sigma, fresh.mean(), none.mean())
    gd = select(metrics, "gd_distance").pivot(index="step", columns="init", values="value")
    T = int(gd.index.max())
    contraction = value(metrics, "gd_contraction")
    null_part = value(metrics, "gd_null_part")
    p_max, lam_rate = int(rate[REGIMES[0]]["p"].iloc[-1]), float(rate[REGIMES[0]]["lam"].iloc[-1])

    def per_regime(values: dict, fmt: str = "{:.3f}") -> str:
        return "; ".join(f"{r}: " + ", ".join(fmt.format(x) for x in np.atleast_1d(v)) for r, v in values.items())

    pair_text = "; ".join(
        f"{r}: "
        + ", ".join(
            f"(p {row.p}, sigma {row.sigma:g}): {row.implied / row.predicted:.3f} (finite-p theory "
            f"{row.finite / row.predicted:.3f}, se {row.log_se:.3f})"
            for row in t.itertuples()
        )
        for r, t in pairs.items()
    )
    return [
        Check.at_most(
            "at fixed p sigma^2, ||b_junk - ridge(p sigma^2)|| / ||ridge|| falls like 1/sqrt(p): worst |log-log slope "
            "+ 1/2|",
            _worst({r: s + 0.5 for r, s in slopes.items()}),
            SLOPE_TOLERANCE,
            detail=f"slopes {per_regime(slopes)} over p = {list(config.rate_features)} at p sigma^2 = "
            f"{config.rate_power:g}, RMS over {config.rate_draws} draws of Z; theory -1/2 (first-order fluctuation "
            "of Z Z^T); a wrong lambda (sigma^2, or a factor n) leaves a distance that does not fall (slope ~0)",
        ),
        Check.at_most(
            "RMS relative distance to ridge(p sigma^2) at the largest p vs its first-order prediction: worst "
            "|ratio - 1|",
            _worst(size),
            SIZE_TOLERANCE,
            detail=f"at p = {p_max}, lambda = {lam_rate:g}: measured "
            f"{per_regime({r: t['rms'].iloc[-1] for r, t in rate.items()}, '{:.4f}')}, predicted sqrt((|Mv|^2 + "
            f"|v|^2 |M|_F^2) / p) / |b_lambda| = "
            f"{per_regime({r: t['predicted'].iloc[-1] for r, t in rate.items()}, '{:.4f}')} (standard error of the "
            f"ratio {per_regime({r: t['se'].iloc[-1] for r, t in rate.items()})}); a wrong lambda is 10x off",
        ),
        Check.at_most(
            "implied ridge penalty (nearest ridge solution, 1-D search) vs p sigma^2: worst |ratio - 1| over the "
            "(p, sigma) pairs",
            _worst(implied_error),
            IMPLIED_TOLERANCE,
            detail=f"geometric mean over {config.pair_draws} draws; {pair_text}; the finite-p theory (deterministic "
            f"equivalent kappa) lies up to n / p below p sigma^2; sigma^2 alone would be p x off, a factor n "
            f"{config.n}x",
        ),
        Check.at_most(
            "test risk with the junk dropped vs ridge's risk at lambda = p sigma^2 (seed means): worst |ratio - 1|",
            _worst(signal_error),
            RISK_TOLERANCE,
            detail=f"excess risk ||b - beta||^2 (isotropic x, exact), p = {config.risk_features}, {config.risk_points}"
            f" sigmas in {list(config.risk_sigmas)}, {config.seeds} seeds; ratios {per_regime(signal_error)} (minus "
            "1); ridge read off its curve at the predicted lambda, so a wrong lambda reads it elsewhere",
        ),
        Check.at_most(
            "risk added by fresh junk at test time, sigma^2 ||c||^2, vs ridge's ||y - X b_lambda||^2 / p at lambda = "
            "p sigma^2 (seed means): worst |ratio - 1|",
            _worst(junk_error),
            RISK_TOLERANCE,
            detail=f"a fresh example's junk z ~ N(0, sigma^2 I) adds (z^T c)^2, expectation sigma^2 ||c||^2 ~ sigma^2 "
            f"lambda ||(X X^T + lambda I)^-1 y||^2 = RSS / p; ratios {per_regime(junk_error)} (minus 1); finite-p "
            "excess <= n / p; a wrong lambda reads the residual elsewhere, a model without this cost is 100% off",
        ),
        Check.at_most(
            f"junk at p sigma^2 ~ the Bayes-optimal ridge penalty beats the min-norm fit without junk: largest "
            f"one-sided paired t-test p-value (alpha = {config.alpha:g})",
            float(max(tests.values())),
            config.alpha,
            detail="paired over seeds on log excess risk (fresh junk at test time), H1: junk < no junk; "
            + "; ".join(
                f"{r}: lambda* = noise^2 d / signal = {best:g}, sigma = {s:.3g} (p sigma^2 = "
                f"{junk_ridge_penalty(config.risk_features, s):.3g}), mean risk {j:.3f} vs {none:.3f} without junk "
                f"({'least squares' if r == 'n > d' else 'interpolant'}), p = {tests[r]:.2g}"
                for r, (best, s, j, none) in chosen.items()
            )
            + "; junk that does not regularise gives p ~ 0.5",
        ),
        Check.at_most(
            "gradient descent from zero on [X, Z] (tdlab fit, full batch) reaches the min-norm solution: relative "
            "distance at the last step",
            float(gd["zero"].iloc[-1]),
            GD_TOLERANCE,
            detail=f"n = {config.gd_n}, d = {config.gd_d}, p = {config.gd_features}, sigma = {config.gd_sigma:g}, "
            f"{T} steps of 1/L: linear rate (1 - eta mu)^T = {contraction**T:.1e}; from a random start GD ends "
            f"{gd['random'].iloc[-1]:.3f} away (the start's null-space component: {null_part:.3f}); a non-zero "
            "start, too few steps or weight decay fails it",
        ),
    ]


# ----------------------------------------------------------------------------------------------------- figures
def figures(metrics: pd.DataFrame, config: JunkFeaturesRidgeConfig) -> dict[str, Figure]:
    """Coefficients against ridge, implied penalty against p sigma^2, the rate, the risk curves and GD's path."""
    fig = Figure(figsize=(17.0, 10.0), layout="constrained")
    axes = fig.subplots(2, 3)
    _coefficient_panel(axes[0, 0], metrics)
    _implied_panel(axes[0, 1], metrics)
    _rate_panel(axes[0, 2], metrics, config)
    for ax, regime in zip(axes[1, :2], REGIMES, strict=True):
        _risk_panel(ax, metrics, config, regime)
    _gd_panel(axes[1, 2], metrics, config)
    fig.suptitle(
        r"Junk features act as ridge: the min-norm fit on $[X, Z]$ with $p$ junk features of variance $\sigma^2$ is "
        r"ridge on $X$ with $\lambda = p\sigma^2$ (penalty on $\|Xb - y\|^2 + \lambda\|b\|^2$)"
    )
    return {"junk_features_ridge": fig}


def _coefficient_panel(ax, metrics: pd.DataFrame) -> None:
    low, high = np.inf, -np.inf
    for k, regime in enumerate(REGIMES):
        X, y = design(metrics, regime)
        last = distances(metrics, regime).iloc[-1]
        ridge = ridge_dual(X, y, last["lam"])
        draws = last["draws"]
        ax.plot(
            np.tile(ridge, len(draws)),
            draws.ravel(),
            ".",
            color=f"C{k}",
            ms=3,
            alpha=0.5,
            label=f"{regime}: junk min-norm b ({len(draws)} draws of Z)",
        )
        wrong = ridge_dual(X, y, last["lam"] / int(last["p"]))  # ridge at sigma^2: the wrong penalty
        ax.plot(
            wrong,
            draws.mean(axis=0),
            "x",
            color=f"C{k}",
            ms=4,
            alpha=0.6,
            label=rf"{regime}: draw mean vs ridge($\sigma^2$) (wrong $\lambda$)",
        )
        low, high = min(low, ridge.min(), wrong.min()), max(high, ridge.max(), wrong.max())
    ax.plot([low, high], [low, high], "k--", lw=1, label="diagonal")
    p = int(distances(metrics, REGIMES[0]).iloc[-1]["p"])
    ax.set(xlabel=r"ridge coefficient at $\lambda = p\sigma^2$", ylabel="signal coefficient b of the junk fit")
    ax.set_title(rf"Signal coefficients against ridge at $\lambda = p\sigma^2$, p = {p}", fontsize=10)
    ax.legend(fontsize=7)


def _implied_panel(ax, metrics: pd.DataFrame) -> None:
    for k, regime in enumerate(REGIMES):
        raw = select(metrics, "implied_penalty", regime=regime)
        predicted = [junk_ridge_penalty(int(p), float(s)) for p, s in zip(raw["p"], raw["sigma"], strict=True)]
        ax.loglog(predicted, raw["value"], ".", color=f"C{k}", ms=3, alpha=0.4)
        t = implied(metrics, regime)
        ax.loglog(t["predicted"], t["implied"], "o", color=f"C{k}", mfc="none", label=f"{regime}: geometric mean")
        ax.loglog(
            t["predicted"], t["finite"], "_", color=f"C{k}", ms=12, mew=2, label=f"{regime}: finite-p theory kappa"
        )
    values = select(metrics, "implied_penalty")["value"]
    span = np.array([values.min() / 1.5, values.max() * 1.5])
    ax.loglog(span, span, "k--", lw=1, label=r"theory $\lambda = p\sigma^2$")
    ax.set(xlabel=r"$p\sigma^2$", ylabel=r"implied ridge penalty $\hat\lambda$ (nearest ridge solution)")
    ax.set_title(r"Implied penalty of the junk fit, per $(p, \sigma)$ pair (dots: draws)", fontsize=10)
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_minor_formatter(NullFormatter())
    ax.legend(fontsize=7)


def _rate_panel(ax, metrics: pd.DataFrame, config: JunkFeaturesRidgeConfig) -> None:
    for k, regime in enumerate(REGIMES):
        t = distances(metrics, regime)
        slope = np.polyfit(np.log(t["p"]), np.log(t["rms"]), 1)[0]
        ax.loglog(t["p"], t["rms"], "o", color=f"C{k}", mfc="none", label=f"{regime}: measured RMS, slope {slope:.2f}")
        ax.loglog(t["p"], t["predicted"], "-", color=f"C{k}", lw=1, label=f"{regime}: first-order theory")
    ax.set(xlabel="junk features p", ylabel=r"RMS $\|b - b_\lambda\| / \|b_\lambda\|$")
    ax.set_title(
        rf"Distance to ridge at fixed $p\sigma^2$ = {config.rate_power:g}: $\propto 1/\sqrt{{p}}$", fontsize=10
    )
    ax.legend(fontsize=7)


def _risk_panel(ax, metrics: pd.DataFrame, config: JunkFeaturesRidgeConfig, regime: str) -> None:
    ridge = select(metrics, "ridge_risk", regime=regime).groupby("lam")["value"].mean()
    rss = select(metrics, "ridge_rss", regime=regime).groupby("lam")["value"].mean()
    t = risk_curves(metrics, regime)
    shown = (ridge.index >= t["lam"].min() / 10) & (ridge.index <= t["lam"].max() * 10)
    lam = ridge.index[shown]
    ax.loglog(lam, ridge[shown], "-", color="C0", lw=1.5, label="ridge on X (measured)")
    p = config.risk_features
    ax.loglog(
        lam,
        ridge[shown] + fresh_junk_risk(rss[shown].to_numpy(), p),
        "--",
        color="C1",
        lw=1,
        label="ridge + RSS / p (theory for fresh junk)",
    )
    ax.loglog(t["lam"], t["signal"], "o", color="C0", mfc="none", label="junk fit, junk dropped at test")
    ax.loglog(t["lam"], t["fresh"], "s", color="C1", mfc="none", ms=5, label="junk fit, fresh junk at test")
    none = select(metrics, "min_norm_risk", regime=regime)["value"].mean()
    baseline = "least squares" if regime == "n > d" else "min-norm interpolant"
    ax.axhline(none, color="0.4", ls=":", label=f"no junk ({baseline})")
    d = dimensions(config)[regime]
    best = optimal_ridge_penalty(d / config.n, config.signal, config.noise**2) * config.n
    ax.axvline(best, color="0.6", lw=0.8, label=rf"Bayes-optimal $\lambda^*$ = {best:g}")
    ax.set(xlabel=r"$\lambda$ (ridge), $p\sigma^2$ (junk)", ylabel=r"excess test risk (mean of seeds)")
    ax.set_title(f"{regime}: n = {config.n}, d = {d}, p = {p}, {config.seeds} seeds", fontsize=10)
    ax.legend(fontsize=7)


def _gd_panel(ax, metrics: pd.DataFrame, config: JunkFeaturesRidgeConfig) -> None:
    gd = select(metrics, "gd_distance").pivot(index="step", columns="init", values="value")
    contraction = value(metrics, "gd_contraction")
    steps = gd.index.to_numpy()
    ax.semilogy(steps, gd["zero"], "-", color="C0", label="GD from zero")
    ax.semilogy(steps, gd["random"], "-", color="C3", label="GD from a random start")
    ax.semilogy(steps, gd["zero"].iloc[0] * contraction**steps, ":", color="C0", label=r"rate $(1 - \eta\mu)^t$")
    ax.axhline(value(metrics, "gd_null_part"), color="C3", ls="--", lw=1, label="start's null-space part (theory)")
    ax.set_ylim(1e-16, 10)
    ax.set(xlabel="step", ylabel=r"$\|w_t - w^*\| / \|w^*\|$, $w^*$ = min-norm solution")
    ax.set_title(
        f"Gradient descent on [X, Z] (n = {config.gd_n}, d + p = {config.gd_d + config.gd_features})", fontsize=10
    )
    ax.legend(fontsize=7)


EXPERIMENT = Experiment(
    name="junk-features-ridge",
    claim="Adding many random junk features (iid N(0, sigma^2), independent of y) and fitting by minimum-norm least "
    "squares, which gradient descent from zero does, regularises the signal coefficients like ridge regression "
    "with lambda = p sigma^2 (penalty on ||X b - y||^2 + lambda ||b||^2; p sigma^2 / n for the averaged loss).",
    config=JunkFeaturesRidgeConfig,
    measure=measure,
    checks=checks,
    figures=figures,
    presets={
        "full": {
            "n": 80,
            "d_tall": 40,
            "d_wide": 160,
            "rate_features": (800, 1600, 3200, 6400, 12800),
            "rate_power": 80.0,
            "rate_draws": 40,
            "pairs": ((3200, 0.15), (3200, 0.3), (6400, 0.1), (6400, 0.2), (6400, 0.35), (12800, 0.1)),
            "pair_draws": 20,
            "risk_features": 4000,
            "risk_points": 17,
            "seeds": 40,
        }
    },
    references=(
        "Kobak, Lomond & Sanchez (2020), The optimal ridge penalty for real-world high-dimensional data can be zero "
        "or negative due to the implicit ridge regularization, JMLR 21",
        "Bartlett, Long, Lugosi & Tsigler (2020), Benign overfitting in linear regression, PNAS 117",
        "Silverstein & Bai (1995), On the empirical distribution of eigenvalues of a class of large dimensional "
        "random matrices, J. Multivariate Anal. 54",
        "Hastie, Montanari, Rosset & Tibshirani (2022), Surprises in high-dimensional ridgeless least squares "
        "interpolation, Ann. Stat.",
    ),
    part="linear models",
)
