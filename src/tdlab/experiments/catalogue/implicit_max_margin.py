r"""implicit-max-margin: on separable data, gradient descent on the logistic loss diverges in norm like log t and
converges in direction to the hard-margin SVM, at the slow rate 1/log t (Soudry et al. 2018).

On linearly separable data (x_n, y_n) the mean logistic loss L(w) = (1/n) sum_n log(1 + exp(-y_n w^T x_n)) has no
minimiser: its infimum 0 is approached as ||w|| -> infinity along any separating direction. Write z_n = y_n x_n and
let w_hat = argmin ||w|| s.t. z_n^T w >= 1 (the max-margin separator through the origin, margin gamma = 1/||w_hat||,
w_hat = sum_n alpha_n z_n with the SVM dual variables alpha_n >= 0, non-zero on the support vectors S). GD with a
fixed step eta < 2/beta (beta = lambda_max(Z^T Z / n)/4, the loss's smoothness) satisfies (Soudry et al. 2018,
Thm 3 and its discrete-time form; the logistic tail behaves like exp(-u))

.. math:: w(t) = \hat w \log t + \tilde w + o(1), \qquad \frac{\eta}{n} e^{-z_n^T \tilde w} = \alpha_n
    \ (n \in S),

which the experiment checks through three consequences:

- ||w(t)|| grows like ||w_hat|| log t = log(t)/gamma: the slope of ||w|| against log t over the last decade of
  steps is 1/gamma, whatever eta (to the o(1) transient);
- the angle between w(t) and w_hat decays like 1/log t, to the angle between w_hat log t + w_tilde and w_hat,
  where w_tilde solves z_n^T w_tilde = log(eta / (n alpha_n)) on the support vectors (w(0) = 0, and the support
  vectors span the plane);
- the loss decays like 1/t: L(t) = (1/n) sum_S exp(-z_n^T w(t)) (1 + o(1)) = sum_S alpha_n / (eta t) =
  1/(gamma^2 eta t), so t eta gamma^2 L(t) -> 1; and it decreases at every step (a smooth convex loss, eta < 2/beta).

The rate at which the o(1) terms vanish depends on the data: points whose margin is close to gamma pull w(t) away
for a long time (their terms decay like t^-(r - 1) for a margin ratio r), and many points slow the clock eta/n.
So the data are planted: two support vectors z = gamma u +- s v (u a random unit vector, v its normal), one per
class, and `points` - 2 others (half in each class; GD sees only z = y x) whose margins are at least `ratio` gamma;
the max-margin direction is then u, which a test checks against the solver. The experiment itself computes w_hat
independently of the construction and of GD, by `scipy.optimize.minimize` (SLSQP) on the SVM primal, with the duals
from a non-negative least-squares fit on the active constraints (KKT verified). GD is `tdlab.optim.reference.gd_step`
on all step sizes at once (each row receives eta_r grad L and steps with lr = 1, the same iterates as lr = eta_r),
from w(0) = 0.

How the checks fail: GD that converged to another separator (the mean direction sum z_n/n, the teacher, the
L1-margin one) misses the predicted angle by the angle between them (reported), a regularised or non-separable run
stops growing (slope 0 instead of 1/gamma); a loss of the wrong rate (exp(-t), 1/t^2, a wrong constant) misses
t eta gamma^2 L(t) = 1 by far more than 5%; a step size beyond 2/beta makes the loss non-monotone.
"""

from __future__ import annotations

import math
from typing import Annotated

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from numpy.typing import NDArray
from pydantic import Field, field_validator
from scipy.optimize import minimize, nnls

from tdlab.experiments.base import Check, Context, Experiment, ExperimentConfig
from tdlab.experiments.tidy import rows, select, series, table, value
from tdlab.optim.reference import gd_step

SLOPE_TOLERANCE = 0.05  # relative, on the slope of ||w|| vs log t against 1/gamma
ANGLE_TOLERANCE = 0.05  # relative, on the angle at T against the asymptotic prediction
LOSS_TOLERANCE = 0.05  # relative, on t eta gamma^2 L(t) at T against 1
MIN_R2 = 0.999  # ||w|| against log t over the last decade
KKT_TOLERANCE = 1e-7  # relative: the SVM solution is accepted when its KKT residuals are below this

StepMultiple = Annotated[float, Field(gt=0.0, lt=2.0)]


class ImplicitMaxMarginConfig(ExperimentConfig):
    """Planted separable data in the plane and GD's step sizes (in units of 1/beta) and length."""

    points: int = Field(10, ge=3, description="data points (two of them the planted support vectors)")
    margin: float = Field(0.3, gt=0.0, description="the max margin gamma (distance of the support vectors to the line)")
    ratio: float = Field(2.0, gt=1.0, description="the other points have margins >= ratio * gamma")
    spread: float = Field(1.0, gt=0.0, description="scale of the points along the separating line")
    step_multiples: tuple[StepMultiple, ...] = Field(
        (1.0, 1.9), min_length=1, description="GD step sizes eta as multiples of 1/beta (stable below 2)"
    )
    steps: int = Field(20000, ge=100, description="GD steps T (the fits use the last decade [T/10, T])")
    records: int = Field(100, ge=20, description="log-spaced steps at which w(t) and L(t) are recorded")

    @field_validator("step_multiples")
    @classmethod
    def _distinct(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if len(set(value)) < len(value):
            raise ValueError(f"step_multiples: expected distinct values, got {list(value)}")
        return value


def planted_data(config: ImplicitMaxMarginConfig) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray]:
    """(X (n, 2), y (n,), u): points whose max-margin separator through the origin is u with margin `margin`."""
    rng = np.random.default_rng(config.seed)
    angle = rng.uniform(0.0, 2 * math.pi)
    u, v = np.array([math.cos(angle), math.sin(angle)]), np.array([-math.sin(angle), math.cos(angle)])
    gamma = config.margin
    s = config.spread * rng.uniform(0.5, 1.5, 2)
    support = [gamma * u + s[0] * v, gamma * u - s[1] * v]
    along = gamma * config.ratio + rng.exponential(config.spread / 2, config.points - 2)
    across = rng.normal(0.0, config.spread, config.points - 2)
    Z = np.vstack(support + [a * u + b * v for a, b in zip(along, across, strict=True)])
    y = np.concatenate([[1.0, -1.0], rng.permutation(np.resize([1.0, -1.0], config.points - 2))])  # balanced
    return y[:, None] * Z, y, u


def max_margin(Z: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The hard-margin SVM through the origin on z_n = y_n x_n: (w_hat, alpha), by SLSQP on the primal
    min ||w||^2/2 s.t. Z w >= 1 and non-negative least squares for the duals on the active constraints. Raises when
    the KKT conditions fail (not separable, or the solver did not converge)."""
    solution = minimize(
        lambda w: 0.5 * w @ w,
        np.zeros(Z.shape[1]),
        jac=lambda w: w,
        constraints=[{"type": "ineq", "fun": lambda w: Z @ w - 1.0, "jac": lambda w: Z}],
        method="SLSQP",
        options={"ftol": 1e-16, "maxiter": 1000},
    )
    w = solution.x
    margins = Z @ w
    active = margins <= 1.0 + 1e-6
    alpha = np.zeros(len(Z))
    if active.any():
        alpha[active], _ = nnls(Z[active].T, w)
    scale = max(np.linalg.norm(w), 1e-300)
    if margins.min() < 1.0 - KKT_TOLERANCE or np.linalg.norm(Z.T @ alpha - w) > KKT_TOLERANCE * scale:
        raise RuntimeError(
            f"max_margin: no separating solution found (smallest margin {margins.min():.3g}, dual residual "
            f"{np.linalg.norm(Z.T @ alpha - w) / scale:.1e}; SLSQP: {solution.message})"
        )
    return w, alpha


def smoothness(Z: NDArray[np.float64]) -> float:
    """beta = lambda_max(Z^T Z / n) / 4: the mean logistic loss is beta-smooth (sigma' <= 1/4)."""
    return float(np.linalg.eigvalsh(Z.T @ Z / len(Z)).max() / 4)


def record_steps(config: ImplicitMaxMarginConfig) -> NDArray[np.int64]:
    """`records` log-spaced steps in [1, steps], distinct, the last one `steps`."""
    return np.unique(np.geomspace(1, config.steps, config.records).round().astype(np.int64))


# ----------------------------------------------------------------------------------------------- measure
def measure(config: ImplicitMaxMarginConfig, context: Context) -> pd.DataFrame:
    """Plant the data, solve the SVM, run GD from w = 0 at every step size and record w(t) and L(t).

    Rows: `x` (index, coordinate), `y` (index); `max_margin` (coordinate) and `dual` (index): the SVM; `smoothness`;
    `w` (eta, step, coordinate) and `loss` (eta, step) at `record_steps`.
    """
    X, y, _ = planted_data(config)
    Z = y[:, None] * X
    w_hat, alpha = max_margin(Z)
    beta = smoothness(Z)
    etas = np.array(config.step_multiples) / beta
    Z_t = torch.as_tensor(Z)
    eta_t = torch.as_tensor(etas).unsqueeze(-1)
    W = torch.zeros(len(etas), 2, dtype=torch.float64)
    recorded = record_steps(config)
    path, losses, next_record = [], [], 0
    for t in context.track(range(1, config.steps + 1), "GD on the logistic loss", config.steps):
        gradient = -(torch.sigmoid(-(W @ Z_t.T)) @ Z_t) / len(Z)
        W = gd_step(W, eta_t * gradient, 1.0)  # row r: SGD(lr=1) on eta_r L = GD with step eta_r on L
        if t == recorded[next_record]:
            path.append(W.numpy().copy())
            losses.append(torch.nn.functional.softplus(-(W @ Z_t.T)).mean(dim=1).numpy())
            next_record += 1
    index, coordinate = np.arange(len(Z)), np.arange(2)
    return pd.concat(
        [
            rows("x", X, index=index[:, None], coordinate=coordinate),
            rows("y", y, index=index),
            rows("max_margin", w_hat, coordinate=coordinate),
            rows("dual", alpha, index=index),
            rows("smoothness", beta),
            rows("w", np.stack(path), step=recorded[:, None, None], eta=etas[:, None], coordinate=coordinate),
            rows("loss", np.stack(losses), step=recorded[:, None], eta=etas),
        ],
        ignore_index=True,
    )


# ------------------------------------------------------------------------------------------------- checks
def _angle(w: NDArray[np.float64], reference: NDArray[np.float64]) -> NDArray[np.float64]:
    """The angle in degrees between the rows of `w` and `reference` (atan2 of the cross and dot products)."""
    w = np.atleast_2d(w)
    cross = w[:, 0] * reference[1] - w[:, 1] * reference[0]
    return np.degrees(np.abs(np.arctan2(cross, w @ reference)))


def asymptote(metrics: pd.DataFrame, eta: float) -> NDArray[np.float64]:
    """w_tilde of Soudry et al.: z_n^T w_tilde = log(eta / (n alpha_n)) on the support vectors (least squares; exact
    when they span the plane)."""
    Z = _z(metrics)
    alpha = series(metrics, "dual", "index")[1]
    support = alpha > 1e-9 * alpha.max()
    targets = np.log(eta / (len(Z) * alpha[support]))
    return np.linalg.lstsq(Z[support], targets, rcond=None)[0]


def _z(metrics: pd.DataFrame) -> NDArray[np.float64]:
    X = table(metrics, "x", "index", "coordinate").to_numpy()
    return series(metrics, "y", "index")[1][:, None] * X


def _path(metrics: pd.DataFrame, eta: float) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """(steps, w (steps, 2), loss) of one step size."""
    w = table(metrics, "w", "step", "coordinate", eta=eta)
    return w.index.to_numpy(dtype=float), w.to_numpy(), series(metrics, "loss", eta=eta)[1]


def _etas(metrics: pd.DataFrame) -> list[float]:
    return sorted(select(metrics, "loss")["eta"].unique())


def checks(metrics: pd.DataFrame, config: ImplicitMaxMarginConfig) -> list[Check]:
    """Per step size: the growth rate of ||w||, the angle to w_hat against the asymptote, t eta gamma^2 L(t), the
    monotone loss; the worst over the step sizes is checked."""
    w_hat = series(metrics, "max_margin", "coordinate")[1]
    gamma = 1.0 / np.linalg.norm(w_hat)
    beta = value(metrics, "smoothness")
    Z = _z(metrics)
    mean_direction = _angle(Z.mean(axis=0), w_hat)[0]
    slopes, r2s, angles, predicted, late_falls, loss_ratios, monotone = [], [], [], [], [], [], []
    for eta in _etas(metrics):
        t, w, loss = _path(metrics, eta)
        late = t >= t[-1] / 10
        norms = np.linalg.norm(w, axis=1)
        fit = np.polyfit(np.log(t[late]), norms[late], 1)
        residual = norms[late] - np.polyval(fit, np.log(t[late]))
        slopes.append(fit[0] * gamma)
        spread = norms[late].var()
        r2s.append(1.0 - residual.var() / spread if spread > 0 else 0.0)  # a constant norm has no trend
        angle = _angle(w, w_hat)
        angles.append(angle[-1])
        predicted.append(_angle(w_hat * math.log(t[-1]) + asymptote(metrics, eta), w_hat)[0])
        late_falls.append(bool(angle[-1] < angle[np.argmax(late)]))
        loss_ratios.append(t[-1] * eta * gamma**2 * loss[-1])
        monotone.append(bool(np.all(np.diff(loss) < 0)))
    multiples = ", ".join(f"{eta * beta:.3g}" for eta in _etas(metrics))
    finals = [series(metrics, "loss", eta=eta)[1][-1] for eta in _etas(metrics)]
    T = int(series(metrics, "loss", eta=_etas(metrics)[0])[0][-1])
    slope_error = np.abs(np.array(slopes) - 1.0)
    angle_error = np.abs(np.array(angles) / np.array(predicted) - 1.0)
    loss_error = np.abs(np.array(loss_ratios) - 1.0)
    return [
        Check.at_most(
            "||w|| grows like log(t)/gamma: slope of ||w|| vs log t over [T/10, T] times gamma, worst |. - 1|",
            float(slope_error.max()),
            SLOPE_TOLERANCE,
            detail=f"eta beta = {multiples}: slope x gamma = {', '.join(f'{s:.4f}' for s in slopes)} (gamma = "
            f"{gamma:.4g} from the SVM solved by SLSQP, T = {T}); a run that stops growing (regularised, not "
            "separable) gives 0",
        ),
        Check.at_least(
            "||w|| is linear in log t over [T/10, T]: smallest R^2",
            float(min(r2s)),
            MIN_R2,
            detail=f"R^2 = {', '.join(f'{r:.6f}' for r in r2s)} for eta beta = {multiples}",
        ),
        Check.at_most(
            "angle(w(T), w_hat) vs Soudry's asymptote angle(w_hat log T + w_tilde, w_hat), worst relative error",
            float(angle_error.max()),
            ANGLE_TOLERANCE,
            detail=f"measured {', '.join(f'{a:.4g}' for a in angles)} deg, predicted "
            f"{', '.join(f'{a:.4g}' for a in predicted)} deg (the 1/log t rate); GD converging to the mean "
            f"direction instead would be {mean_direction:.3g} deg off",
        ),
        Check.holds(
            "the angle to w_hat falls over the last decade: angle(T) < angle(T/10), for every eta",
            all(late_falls),
            detail=f"per eta beta = {multiples}: {late_falls}; earlier the angle need not fall: w(t) can cross "
            "w_hat's direction and come back from w_tilde's side (seed-dependent), and where w_tilde is nearly "
            "parallel to w_hat that crossing can reach late times; a direction that stopped moving fails",
        ),
        Check.at_most(
            "the loss decays like 1/(gamma^2 eta t): worst |T eta gamma^2 L(T) - 1|",
            float(loss_error.max()),
            LOSS_TOLERANCE,
            detail=f"T eta gamma^2 L(T) = {', '.join(f'{r:.4f}' for r in loss_ratios)} for eta beta = {multiples}; "
            "L = (1/n) sum_S exp(-z^T w) with exp(-z^T w_tilde) = n alpha / eta and sum alpha = 1/gamma^2",
        ),
        Check.holds(
            "the loss decreases at every record, for every eta (eta < 2/beta)",
            all(monotone),
            detail=f"per eta beta = {multiples}: {monotone}; its infimum 0 is not attained (final "
            f"{', '.join(f'{final:.2e}' for final in finals)})",
        ),
    ]


# ------------------------------------------------------------------------------------------------ figures
def figures(metrics: pd.DataFrame, config: ImplicitMaxMarginConfig) -> dict[str, Figure]:
    """The data with GD's separators over time; ||w|| and the angle against log t; t eta gamma^2 L(t)."""
    return {"separators": _separator_figure(metrics), "rates": _rates_figure(metrics)}


def _separator_figure(metrics: pd.DataFrame) -> Figure:
    X = table(metrics, "x", "index", "coordinate").to_numpy()
    y = series(metrics, "y", "index")[1]
    w_hat = series(metrics, "max_margin", "coordinate")[1]
    eta = _etas(metrics)[-1]
    t, w, _ = _path(metrics, eta)
    fig = Figure(figsize=(6.0, 5.6), layout="constrained")
    ax = fig.subplots()
    reach = 1.1 * np.abs(X).max()
    line = np.linspace(-reach, reach, 2)
    normal = np.array([-w_hat[1], w_hat[0]]) / np.linalg.norm(w_hat)
    for k in np.unique(np.geomspace(1, len(t), 6).astype(int) - 1):
        direction = np.array([-w[k, 1], w[k, 0]]) / np.linalg.norm(w[k])
        shade = 0.85 - 0.7 * k / (len(t) - 1)
        ax.plot(line * direction[0], line * direction[1], "-", color=str(shade), lw=1.0, label=f"GD, t = {t[k]:.0f}")
    ax.plot(line * normal[0], line * normal[1], "--", color="C3", lw=1.5, label="max margin (SLSQP)")
    gamma = 1.0 / np.linalg.norm(w_hat)
    unit = w_hat * gamma
    for sign in (1, -1):
        ax.plot(line * normal[0] + sign * gamma * unit[0], line * normal[1] + sign * gamma * unit[1], ":", color="C3")
    support = series(metrics, "dual", "index")[1] > 0
    for label, colour in ((1.0, "C0"), (-1.0, "C1")):
        chosen = y == label
        ax.plot(X[chosen, 0], X[chosen, 1], "o", color=colour, label=f"y = {label:+.0f}")
    ax.plot(X[support, 0], X[support, 1], "s", mfc="none", color="k", ms=11, label="support vectors")
    ax.set_xlim(-reach, reach)
    ax.set_ylim(-reach, reach)
    ax.set_aspect("equal")
    ax.legend(fontsize=7, loc="best")
    ax.set_title(
        f"GD's separator turns towards the max-margin one (eta beta = {eta * value(metrics, 'smoothness'):.2g})"
    )
    return fig


def _rates_figure(metrics: pd.DataFrame) -> Figure:
    w_hat = series(metrics, "max_margin", "coordinate")[1]
    gamma = 1.0 / np.linalg.norm(w_hat)
    beta = value(metrics, "smoothness")
    fig = Figure(figsize=(15.0, 4.4), layout="constrained")
    axes = fig.subplots(1, 3)
    for i, eta in enumerate(_etas(metrics)):
        t, w, loss = _path(metrics, eta)
        colour, label = f"C{i}", f"eta beta = {eta * beta:.3g}"
        axes[0].semilogx(t, np.linalg.norm(w, axis=1), "o", color=colour, ms=3, mfc="none", label=label)
        late = t >= min(100.0, t[-1] / 100)  # where the asymptote is drawn
        offset = np.linalg.norm(w[-1]) - math.log(t[-1]) / gamma
        axes[0].semilogx(t[late], np.log(t[late]) / gamma + offset, "-", color=colour, lw=0.8)
        w_tilde = asymptote(metrics, eta)
        axes[1].loglog(t, _angle(w, w_hat), "o", color=colour, ms=3, mfc="none", label=label)
        prediction = _angle(np.outer(np.log(t[late]), w_hat) + w_tilde, w_hat)
        axes[1].loglog(t[late], prediction, "-", color=colour, lw=0.8)
        axes[2].semilogx(t, t * eta * gamma**2 * loss, "o-", color=colour, ms=3, mfc="none", lw=0.6, label=label)
    axes[0].set_title(r"$\|w(t)\|$ (lines: slope $1/\gamma$ in $\log t$)")
    axes[1].set_title(r"angle to $\hat w$ (lines: $\angle(\hat w \log t + \tilde w, \hat w)$)")
    axes[2].axhline(1.0, color="k", ls="--", lw=1.0)
    axes[2].set_title(r"$t\,\eta\,\gamma^2 L(t) \to 1$")
    axes[1].set_ylabel("degrees")
    for ax in axes:
        ax.set_xlabel("step t")
        ax.legend(fontsize=8)
    fig.suptitle("Logistic regression on separable data: GD's implicit bias towards the max-margin separator")
    return fig


EXPERIMENT = Experiment(
    name="implicit-max-margin",
    claim="On linearly separable data the logistic loss has no minimiser (its infimum is at infinity): gradient "
    "descent's norm grows like log(t)/gamma and its direction converges to the max-margin (hard-margin SVM) "
    "separator, at the rate 1/log t, while the loss falls like 1/t.",
    config=ImplicitMaxMarginConfig,
    measure=measure,
    checks=checks,
    figures=figures,
    presets={"full": {"step_multiples": (0.5, 1.0, 1.9), "steps": 1_000_000, "records": 300}},
    references=(
        "Soudry, Hoffer, Nacson, Gunasekar & Srebro (2018), The implicit bias of gradient descent on separable "
        "data, JMLR 19",
        "Ji & Telgarsky (2019), The implicit bias of gradient descent on nonseparable data, COLT",
    ),
    part="linear models",
)
