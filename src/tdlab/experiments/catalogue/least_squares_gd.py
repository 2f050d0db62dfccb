"""least-squares-gd: gradient descent on least squares, seen through the SVD of the design.

On f(w) = 1/(2n) ||X w - y||^2 write X / sqrt(n) = U diag(s) V^T. Gradient descent from w_0 = 0 keeps the
component of its error along v_i shrinking by (1 - eta s_i^2) per step, so after t steps it has applied the
spectral filter 1 - (1 - eta s_i^2)^t to the least-squares solution: the directions of large singular value are
fitted first, the small ones (the noisy, high-complexity ones) last (`tdlab.theory.least_squares`). A
`LinearModel` is trained from zero by `torch.optim.SGD` through `tdlab.train.fit` (float64). Measured:

1. the iterates, full batch, against the SVD prediction `gd_iterates` at every step, on an overdetermined noisy
   problem with a decaying feature spectrum and on an underdetermined one; the step at which each singular
   direction reaches `fit_fraction` of its fit, against ceil(log(1 - fraction) / log|1 - eta s_i^2|);
2. the limits of GD and of mini-batch SGD from zero on the underdetermined problem against the pseudo-inverse
   (minimum-norm) solution;
3. the test risk of early stopping at step t against ridge at lambda = 1/(eta t), both averaged over draws of
   (beta, noise) with the design fixed, and both against their closed-form Bayes risk `filter_bayes_risk`; at the
   best step, and along the whole path against Ali, Kolter & Tibshirani's bound (below).

The bound along the path. Ali, Kolter & Tibshirani (2019) prove, for GRADIENT FLOW w(tau) on 1/(2n)||X w - y||^2
from zero and ridge on 1/(2n)||X w - y||^2 + (lambda/2)||w||^2 at lambda = 1/tau, with no assumption on X:
Theorem 1, estimation risk E||w - beta||^2 given any beta: Risk(gf, tau) <= 1.6862 Risk(ridge, 1/tau) for all
tau >= 0; Theorem 2, prediction risk E (x_0^T (w - beta))^2 out of sample (x_0 ~ (0, Sigma), any Sigma) averaged
over a spherical prior on beta: the same factor 1.6862. Per singular direction (x = s_i^2 tau) the bias factor
e^(-2x) <= (1 + x)^-2 and the variance factor (1 - e^(-x))^2 <= 1.6862 (x / (1 + x))^2, and the risks here are
non-negative sums over directions. The risk measured here is the second one (Sigma = diag(j^-decay), beta ~ N(0,
signal/d I), averaged over `replicates` draws), for DISCRETE GD at tau = eta t: its bias factor (1 - eta s^2)^(2t)
is below the flow's, its variance factor above it by at most [(1 - (1 - x/t)^t) / (1 - e^(-x))]^2, which tends to 1
as eta s^2 -> 0 but is (1 + eta s^2)^2 at t = 1, so for eta s_max^2 = 0.8 the theorem is not a proof for GD: the
check tests the lectures' statement "GD at t is within 1.69 of ridge at lambda = 1/(eta t)" on the measured path,
at every step t = 1..steps. How it fails: a miscalibrated lambda = 2/(eta t) or 4/(eta t) gives a max ratio of 1.98
or 2.76 on the quick problem (seed 0), and a GD risk 25% too high anywhere along the path; the bound is one-sided,
so lambda = 1/(2 eta t) (max ratio 1.12) passes it, and the best-step check below pins the calibration from there.

The SVD predictions and the ridge solutions need the sampled design, so `measure` computes them beside the
measurements (rows "*_theory", "ridge_*"); the checks compare rows.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from pydantic import Field, model_validator
from torch import Tensor

from tdlab.data import half_squared_error
from tdlab.experiments.base import Check, Context, Experiment, ExperimentConfig
from tdlab.experiments.tidy import rows, series, table, value
from tdlab.models import LinearModel
from tdlab.theory import least_squares as theory
from tdlab.theory.quadratic import gd_steps_to_tolerance
from tdlab.train.trainer import fit


class LeastSquaresGDConfig(ExperimentConfig):
    """An overdetermined noisy problem (filters, risks) and an underdetermined one (minimum-norm limits)."""

    n: int = Field(100, ge=2, description="training examples of the overdetermined problem")
    d: int = Field(50, ge=2, description="features of the overdetermined problem (d < n)")
    spectrum_decay: float = Field(
        1.0, ge=0.0, description="feature covariance Sigma = diag(j^-decay), j = 1..d (0: isotropic)"
    )
    noise: float = Field(0.5, gt=0.0, description="standard deviation sigma of the label noise")
    signal: float = Field(1.0, gt=0.0, description="prior variance sum: beta ~ N(0, signal/d I)")
    replicates: int = Field(64, ge=2, description="draws of (beta, noise) sharing the design, for the risk curves")
    eta_scale: float = Field(0.8, gt=0.0, lt=2.0, description="step eta = eta_scale / s_max^2 (< 2: stable)")
    steps: int = Field(2000, ge=10, description="GD steps on the overdetermined problem")
    risk_points: int = Field(30, ge=5, description="log-spaced steps t (and lambda = 1/(eta t)) of the risk curves")
    fit_fraction: float = Field(0.99, gt=0.0, lt=1.0, description="a direction counts as fitted at this fraction")
    n_under: int = Field(40, ge=2, description="training examples of the underdetermined problem")
    d_under: int = Field(100, ge=3, description="features of the underdetermined problem (d_under > n_under)")
    under_steps: int = Field(800, ge=10, description="GD steps on the underdetermined problem")
    sgd_batch: int = Field(8, ge=1, description="mini-batch size of SGD on the underdetermined problem")
    sgd_lr: float = Field(0.05, gt=0.0, description="SGD step on the underdetermined problem")
    sgd_steps: int = Field(1500, ge=10, description="SGD steps on the underdetermined problem")

    @model_validator(mode="after")
    def _consistent(self) -> LeastSquaresGDConfig:
        if self.d >= self.n:
            raise ValueError(f"d: expected fewer features than examples n = {self.n} (overdetermined), got {self.d}")
        if self.d_under <= self.n_under:
            raise ValueError(
                f"d_under: expected more features than examples n_under = {self.n_under}, got {self.d_under}"
            )
        if self.sgd_batch > self.n_under:
            raise ValueError(f"sgd_batch: expected at most n_under = {self.n_under}, got {self.sgd_batch}")
        return self


def descend(
    X: Tensor, Y: Tensor, lr: float, steps: int, batch_size: int | None = None, watch: Callable | None = None
) -> np.ndarray:
    """Train `LinearModel(d, k, bias=False)` from zero with `torch.optim.SGD(lr)` through `fit` on
    1/(2b) ||X_B W - Y_B||^2 (full batch, or reshuffled mini-batches of `batch_size`). Returns the first target
    column's iterates, shape (steps + 1, d); `watch(W)` sees the (d, k) weights at every t = 0..steps.

    Example:
        >>> X = torch.tensor([[2.0]], dtype=torch.float64)
        >>> descend(X, torch.tensor([[2.0]], dtype=torch.float64), lr=0.125, steps=2)[:, 0].tolist()
        [0.0, 0.5, 0.75]

    (1 - (1 - 0.125 * 4)^t.)
    """
    model = LinearModel(X.shape[1], Y.shape[1], bias=False).to(X)
    path = []

    def record(*_: object) -> None:
        W = model.linear.weight.detach().T
        path.append(W[:, 0].cpu().numpy().copy())
        if watch is not None:
            watch(W)

    record()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    fit(model, half_squared_error, (X, Y), optimizer, steps, batch_size=batch_size, callbacks=[record])
    return np.array(path)


def measure(config: LeastSquaresGDConfig, context: Context) -> pd.DataFrame:
    """Rows: per step "gd/iterate_error" (||w_t - w_t^SVD|| / ||w_LS||) and "gd/risk"; per singular direction
    (index) "singular_value", "gd/steps_to_fit" and, at the figure's steps, "gd/fitted_fraction"
    v_i^T w_t / v_i^T w_LS; per (step, lam = 1/(eta t)) "gd_risk", "ridge_risk" and their Bayes risks
    "*_theory"; per lam "ridge_risk_fine"; "ridge_risk_at_best_stop"; per step t >= 1 "ridge_risk_path" at
    lam = 1/(eta t) (same draws as "gd/risk"); per step on the underdetermined problem
    "under/iterate_error" and the distances "under/gd_distance", "under/sgd_distance" to X^+ y."""
    device, dtype = context.device, torch.float64
    generator = torch.Generator().manual_seed(config.seed)
    n, d, R = config.n, config.d, config.replicates
    variances = torch.arange(1, d + 1, dtype=dtype) ** -config.spectrum_decay
    X = torch.randn(n, d, generator=generator, dtype=dtype) * variances.sqrt()
    B = torch.randn(d, R, generator=generator, dtype=dtype) * np.sqrt(config.signal / d)
    Y = X @ B + config.noise * torch.randn(n, R, generator=generator, dtype=dtype)
    Xs, Ys = (X / np.sqrt(n)).numpy(), (Y / np.sqrt(n)).numpy()  # f(w) = 1/2 ||Xs w - Ys||^2
    U, s, V = theory.thin_svd(Xs)
    eta = config.eta_scale / s[0] ** 2
    Bd, Sigma = B.to(device), torch.diag(variances).to(device)
    risks: list[float] = []
    watch = lambda W: risks.append(float(((W - Bd) * (Sigma @ (W - Bd))).sum(dim=0).mean()))  # noqa: E731
    path = descend(X.to(device), Y.to(device), eta, config.steps, watch=watch)
    w_ls = theory.min_norm_solution(Xs, Ys[:, 0])
    predicted = theory.gd_iterates(Xs, Ys[:, 0], eta, config.steps)
    fitted = (path @ V) / (V.T @ w_ls)  # phi_i(t), (steps + 1, d)
    reached = np.abs(1.0 - fitted) <= 1.0 - config.fit_fraction
    shown = np.union1d(*(np.unique(np.geomspace(1, config.steps, k).round().astype(int)) for k in (25, 5)))
    steps, index = np.arange(config.steps + 1), np.arange(d)
    frames = [
        rows("gd/iterate_error", np.linalg.norm(path - predicted, axis=1) / np.linalg.norm(w_ls), step=steps),
        rows("gd/risk", risks, step=steps),
        rows("singular_value", s, index=index),
        rows("gd/steps_to_fit", np.where(reached.any(axis=0), reached.argmax(axis=0), np.inf), index=index),
        rows("gd/fitted_fraction", fitted[shown], step=shown[:, None], index=index),
    ]

    # early stopping vs ridge at lambda = 1/(eta t): measured risks (same draws of (beta, noise)) and Bayes risks
    def ridge_risk(lams: np.ndarray) -> np.ndarray:
        risks = []
        for chunk in np.array_split(lams, -(-len(lams) // 256)):  # (lams, d, replicates) in blocks of 256 lams
            W = (V * (theory.ridge_filter(s**2, chunk[:, None]) / s)[:, None, :]) @ (U.T @ Ys)  # BLAS, batched
            risks.append((variances.numpy()[:, None] * (W - B.numpy()) ** 2).sum(axis=1).mean(axis=1))
        return np.concatenate(risks)

    def bayes(phi: np.ndarray) -> float:
        return theory.filter_bayes_risk(s, V, phi, config.signal / d, config.noise**2 / n, np.diag(variances.numpy()))

    t_grid = np.unique(np.geomspace(1, config.steps, config.risk_points).round().astype(int))
    lams, best = 1.0 / (eta * t_grid), max(int(np.argmin(risks)), 1)
    fine = np.geomspace(lams.min() / 10, lams.max() * 10, 200)
    frames += [
        rows("gd_risk", np.array(risks)[t_grid], step=t_grid, lam=lams),
        rows("ridge_risk", ridge_risk(lams), step=t_grid, lam=lams),
        rows("gd_risk_theory", [bayes(theory.gd_filter(s**2, eta, t)) for t in t_grid], step=t_grid, lam=lams),
        rows("ridge_risk_theory", [bayes(theory.ridge_filter(s**2, lam)) for lam in lams], step=t_grid, lam=lams),
        rows("ridge_risk_fine", ridge_risk(fine), lam=fine),
        rows("ridge_risk_at_best_stop", ridge_risk(np.array([1.0 / (eta * best)])), step=best),
        rows("ridge_risk_path", ridge_risk(1.0 / (eta * steps[1:])), step=steps[1:]),
    ]

    # the underdetermined problem: GD and SGD from zero converge to the minimum-norm solution
    nu, du = config.n_under, config.d_under
    Xu = torch.randn(nu, du, generator=generator, dtype=dtype)
    beta_u = torch.randn(du, 1, generator=generator, dtype=dtype) / np.sqrt(du)
    yu = Xu @ beta_u + config.noise * torch.randn(nu, 1, generator=generator, dtype=dtype)
    Xus, yus = (Xu / np.sqrt(nu)).numpy(), (yu[:, 0] / np.sqrt(nu)).numpy()
    w_min = theory.min_norm_solution(Xus, yus)
    eta_u = config.eta_scale / theory.thin_svd(Xus)[1][0] ** 2
    runs = {"gd": (eta_u, config.under_steps, None), "sgd": (config.sgd_lr, config.sgd_steps, config.sgd_batch)}
    for name, (lr, count, batch) in runs.items():
        path = descend(Xu.to(device), yu.to(device), lr, count, batch)
        distance = np.linalg.norm(path - w_min, axis=1) / np.linalg.norm(w_min)
        frames.append(rows(f"under/{name}_distance", distance, step=np.arange(count + 1)))
        if name == "gd":
            error = np.linalg.norm(path - theory.gd_iterates(Xus, yus, eta_u, count), axis=1) / np.linalg.norm(w_min)
            frames.append(rows("under/iterate_error", error, step=np.arange(count + 1)))
    return pd.concat(frames, ignore_index=True)


def _brief(steps: np.ndarray) -> str:
    shown = [("inf" if not np.isfinite(v) else str(int(v))) for v in steps]
    return "[" + ", ".join(shown[:6] + ["..."] + shown[-3:] if len(shown) > 10 else shown) + "]"


def checks(metrics: pd.DataFrame, config: LeastSquaresGDConfig) -> list[Check]:
    """Eight checks (module docstring); the tolerances 1e-8 and 10% are the issue's, the factor 1.69 Ali et al.'s."""
    s = series(metrics, "singular_value", "index")[1]
    eta = config.eta_scale / s[0] ** 2
    measured_steps = series(metrics, "gd/steps_to_fit", "index")[1]
    theory_steps = gd_steps_to_tolerance(eta, s**2, 1.0 - config.fit_fraction)
    theory_steps[theory_steps > config.steps] = np.inf  # not reached within the run
    ordered = bool(np.all(np.diff(measured_steps[np.isfinite(measured_steps)]) >= 0))
    risk = series(metrics, "gd/risk")[1]
    best = int(np.argmin(risk))
    ridge_fine = series(metrics, "ridge_risk_fine", "lam")
    path_steps, ridge_path = series(metrics, "ridge_risk_path")
    ratio = risk[path_steps.astype(int)] / ridge_path
    risk_detail = (
        f"test risk (w - beta)^T Sigma (w - beta) averaged over {config.replicates} draws of (beta, noise), same "
        "draws for both; tolerance 10% from the issue"
    )
    converge = "from w_0 = 0 the iterates stay in the row space of X, whose only interpolant is X^+ y"
    return [
        Check.at_most(
            "GD iterate vs SVD prediction w_t = V diag((1 - (1 - eta s^2)^t)/s) U^T y, max over t, relative",
            float(series(metrics, "gd/iterate_error")[1].max()),
            1e-8,
            detail=f"torch.optim.SGD full batch, float64, {config.steps} steps, eta = {config.eta_scale:g}/s_max^2, "
            f"n = {config.n}, d = {config.d}; ||w_t - w_t^SVD|| / ||w_LS||; tolerance 1e-8 from the issue",
        ),
        Check.holds(
            f"singular directions reach {config.fit_fraction:.0%} of their fit in the order of s_i (largest first)",
            ordered and bool(np.array_equal(measured_steps, theory_steps)),
            detail=f"steps to {config.fit_fraction:.0%} for s_1 >= ... >= s_d: {_brief(measured_steps)}; theory "
            f"ceil(log(1 - fraction)/log|1 - eta s^2|) = {_brief(theory_steps)} ({int(np.isinf(theory_steps).sum())} "
            f"directions not yet fitted after {config.steps} steps)",
        ),
        Check.relative(
            "risk of GD stopped at its best step t* vs ridge at the matched lambda = 1/(eta t*)",
            float(risk[best]),
            value(metrics, "ridge_risk_at_best_stop"),
            0.10,
            detail=f"t* = {best}; {risk_detail}",
        ),
        Check.at_most(
            "risk of GD at t / risk of ridge at lambda = 1/(eta t), max over every step t of the path (Ali et al.)",
            float(ratio.max()),
            1.69,
            detail=f"max at t = {int(path_steps[np.argmax(ratio)])} of {config.steps} (min ratio {ratio.min():.3g}); "
            "bound 1.6862 of Ali, Kolter & Tibshirani (2019), proved for gradient flow at tau = eta t (module "
            f"docstring), tested here on discrete GD at eta s_max^2 = {config.eta_scale:g}; {risk_detail}; fails "
            "for lambda = 2/(eta t) (1.98) or a GD risk 25% too high",
        ),
        Check.relative(
            "best early-stopping risk vs best ridge risk",
            float(risk.min()),
            float(ridge_fine[1].min()),
            0.10,
            detail=f"GD best at t* = {best} (1/(eta t*) = {1 / (eta * max(best, 1)):.3g}), ridge best at lambda = "
            f"{ridge_fine[0][np.argmin(ridge_fine[1])]:.3g} on a grid of 200; {risk_detail}",
        ),
        Check.at_most(
            "GD iterate vs SVD prediction on the underdetermined problem, max over t, relative",
            float(series(metrics, "under/iterate_error")[1].max()),
            1e-8,
            detail=f"n = {config.n_under} < d = {config.d_under}: the null-space component of the iterate stays 0; "
            "tolerance 1e-8 (issue)",
        ),
        Check.at_most(
            "GD limit vs the pseudo-inverse solution X^+ y, relative distance",
            float(series(metrics, "under/gd_distance")[1][-1]),
            1e-8,
            detail=f"after {config.under_steps} full-batch steps at eta = {config.eta_scale:g}/s_max^2 (n = "
            f"{config.n_under}, d = {config.d_under}); {converge}; tolerance 1e-8 from the issue",
        ),
        Check.at_most(
            "SGD limit vs the pseudo-inverse solution X^+ y, relative distance",
            float(series(metrics, "under/sgd_distance")[1][-1]),
            1e-8,
            detail=f"after {config.sgd_steps} reshuffled mini-batch steps (batch {config.sgd_batch}, lr "
            f"{config.sgd_lr:g}); {converge}, and interpolation makes every mini-batch gradient vanish there; "
            "tolerance 1e-8",
        ),
    ]


def figures(metrics: pd.DataFrame, config: LeastSquaresGDConfig) -> dict[str, Figure]:
    """The per-direction errors against (1 - eta s^2)^t and the measured filters against the GD and ridge filters;
    the two risk curves; the underdetermined runs converging to the minimum-norm solution."""
    s = series(metrics, "singular_value", "index")[1]
    eta, steps = config.eta_scale / s[0] ** 2, config.steps
    fitted = table(metrics, "gd/fitted_fraction", "step")
    fig = Figure(figsize=(12.0, 4.6), layout="constrained")
    left, right = fig.subplots(1, 2)
    t = np.arange(1, steps + 1)
    every = np.unique(np.geomspace(1, steps, 25).round().astype(int))
    for k, i in enumerate(np.unique(np.linspace(0, len(s) - 1, 6).round().astype(int))):
        left.loglog(t, np.abs(1.0 - eta * s[i] ** 2) ** t, "-", color=f"C{k}", lw=1.2)
        left.loglog(
            every,
            np.abs(1.0 - fitted.loc[every, i]),
            "o",
            color=f"C{k}",
            ms=4,
            mfc="none",
            label=rf"$i = {i + 1}$, $s_i^2 = {s[i] ** 2:.2g}$",
        )
    left.set(ylim=(1e-12, 2.0), xlabel="step t", title=r"each direction decays as $(1 - \eta s_i^2)^t$ (lines)")
    left.set_ylabel(r"error along $v_i$: $|v_i^\top (w_t - w_{LS})| / |v_i^\top w_{LS}|$")
    left.legend(fontsize=8, loc="lower left")
    s2_fine = np.geomspace(s.min() ** 2 / 3, s.max() ** 2, 300)
    for k, tt in enumerate(np.unique(np.geomspace(1, steps, 5).round().astype(int))):
        right.semilogx(s2_fine, theory.gd_filter(s2_fine, eta, tt), "-", color=f"C{k}", lw=1.2)
        right.semilogx(s2_fine, theory.ridge_filter(s2_fine, 1.0 / (eta * tt)), "--", color=f"C{k}", lw=1.0)
        right.semilogx(s**2, fitted.loc[tt].to_numpy(), "o", color=f"C{k}", ms=4, mfc="none", label=f"t = {tt}")
    right.plot([], [], "-", color="0.3", label=r"GD filter $1 - (1 - \eta s^2)^t$")
    right.plot([], [], "--", color="0.3", label=r"ridge filter $s^2/(s^2 + \lambda)$, $\lambda = 1/(\eta t)$")
    right.set_xlabel(r"squared singular value $s_i^2$ of $X/\sqrt{n}$")
    right.set_ylabel(r"fitted fraction $\phi_i(t) = v_i^\top w_t / v_i^\top w_{LS}$")
    right.set_title("GD fits the large singular directions first (markers: measured)")
    right.legend(fontsize=8, loc="lower right")
    fig.suptitle("Gradient descent on least squares: an ordered walk through the singular directions")

    risk_fig = Figure(figsize=(7.5, 4.8), layout="constrained")
    ax = risk_fig.subplots()
    for name, style, label in (
        ("gd_risk_theory", "-", "early stopping at t, Bayes risk (theory)"),
        ("gd_risk", "o", "early stopping at t, measured"),
        ("ridge_risk_theory", "--", r"ridge at $\lambda = 1/(\eta t)$, Bayes risk"),
        ("ridge_risk", "s", r"ridge at $\lambda = 1/(\eta t)$, measured"),
    ):
        colour = "C0" if name.startswith("gd") else "C1"
        ax.loglog(*series(metrics, name), style, color=colour, ms=5, mfc="none", lw=1.2, label=label)
    best = max(int(np.argmin(series(metrics, "gd/risk")[1])), 1)
    lams, ridge_fine = series(metrics, "ridge_risk_fine", "lam")
    ax.axvline(best, color="C0", ls=":", lw=1.0, label=f"best stopping step t* = {best}")
    best_lam = lams[np.argmin(ridge_fine)]
    ax.axvline(1.0 / (eta * best_lam), color="C1", ls=":", lw=1.0, label=r"best ridge $\lambda$ (as $1/(\eta\lambda)$)")
    ax.set(xlabel=r"step t  (ridge: $1/(\eta\lambda)$)", ylabel=r"test risk $E\,(x^\top(w - \beta))^2$")
    ax.set_title("Early stopping regularises like ridge with lambda ~ 1/(eta t)")
    ax.legend(fontsize=8)

    norm_fig = Figure(figsize=(7.0, 4.5), layout="constrained")
    ax = norm_fig.subplots()
    ax.semilogy(*series(metrics, "under/gd_distance"), "-", color="C0", label="GD (full batch)")
    ax.semilogy(
        *series(metrics, "under/sgd_distance"),
        "-",
        color="C1",
        lw=0.8,
        label=f"SGD (batch {config.sgd_batch}, lr {config.sgd_lr:g})",
    )
    ax.axhline(1e-8, color="0.4", ls=":", label="tolerance 1e-8")
    ax.set(xlabel="step t", ylabel=r"$\|w_t - X^+ y\| / \|X^+ y\|$")
    ax.set_title(f"From zero, n = {config.n_under} < d = {config.d_under}: both reach the minimum-norm interpolant")
    ax.legend()
    return {"directions": fig, "risk_curves": risk_fig, "min_norm": norm_fig}


EXPERIMENT = Experiment(
    name="least-squares-gd",
    claim="Gradient descent on least squares contracts the error along singular direction i by 1 - eta s_i^2 per "
    "step, so it fits the largest singular directions first; from zero it converges to the minimum-norm solution "
    "(SGD too), and stopping at step t acts like ridge with lambda ~ 1/(eta t).",
    config=LeastSquaresGDConfig,
    measure=measure,
    checks=checks,
    figures=figures,
    presets={
        "full": {
            "n": 400,
            "d": 200,
            "replicates": 256,
            "steps": 20000,
            "risk_points": 60,
            "n_under": 200,
            "d_under": 500,
            "under_steps": 3000,
            "sgd_steps": 20000,
            "sgd_lr": 0.01,
        }
    },
    references=(
        "Landweber (1951), An iteration formula for Fredholm integral equations of the first kind",
        "Engl, Hanke & Neubauer (1996), Regularization of Inverse Problems, Ch. 6",
        "Yao, Rosasco & Caponnetto (2007), On early stopping in gradient descent learning",
        "Ali, Kolter & Tibshirani (2019), A continuous-time view of early stopping for least squares, AISTATS",
        "Zhang, Bengio, Hardt, Recht & Vinyals (2017), Understanding deep learning requires rethinking "
        "generalization, Sec. 5 (SGD from zero finds the minimum-norm solution)",
    ),
    part="linear models",
)
