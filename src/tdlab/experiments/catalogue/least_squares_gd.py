"""least-squares-gd: gradient descent on least squares, seen through the SVD of the design.

On f(w) = 1/(2n) ||X w - y||^2 write X / sqrt(n) = U diag(s) V^T. Gradient descent from w_0 = 0 keeps the
component of its error along v_i shrinking by (1 - eta s_i^2) per step, so after t steps it has applied the
spectral filter 1 - (1 - eta s_i^2)^t to the least-squares solution: the directions of large singular value are
fitted first, the small ones (the noisy, high-complexity ones) last (`tdlab.theory.least_squares`). Measured:

1. the iterates of `torch.optim.SGD` (full batch, no momentum) on a `LinearModel` in float64 against the SVD
   prediction `gd_iterates`, at every step, on an overdetermined noisy problem with a decaying feature spectrum
   and on an underdetermined one; the order in which the singular directions reach 90% of their fit;
2. the limits of GD and of mini-batch SGD from zero on the underdetermined problem against the pseudo-inverse
   (minimum-norm) solution;
3. the test risk of early stopping at step t against ridge at lambda = 1/(eta t), both averaged over draws of
   (beta, noise) with the design fixed, and both against their closed-form Bayes risk `filter_bayes_risk`.

Figures: the per-direction errors against (1 - eta s^2)^t and the measured filters against the GD and ridge
filters; the two risk curves; the underdetermined runs converging to the minimum-norm solution.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from numpy.typing import NDArray
from pydantic import Field, model_validator
from torch import Tensor

from tdlab.experiments.base import Check, Context, Experiment, ExperimentConfig, Result, legacy
from tdlab.models import LinearModel
from tdlab.theory import least_squares as theory
from tdlab.theory.quadratic import gd_steps_to_tolerance

Array = NDArray[np.float64]


# ------------------------------------------------------------------------------------------ measurement
def gradient_descent(
    X: Tensor,
    Y: Tensor,
    lr: float,
    steps: int,
    batch_size: int | None = None,
    generator: torch.Generator | None = None,
    record: int = 0,
    beta: Tensor | None = None,
    covariance: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Train `LinearModel(d, k, bias=False)` (zero init) with `torch.optim.SGD(lr)` on 1/(2b) ||X_B w - y_B||^2
    summed over the k target columns of Y, full batch or in shuffled mini-batches of `batch_size`.

    Returns (final weights (d, k), the first `record` columns' iterates (steps + 1, d, record), and, when `beta`
    (d, k) and `covariance` (d, d) are given, the excess risks (w_t - beta)^T Sigma (w_t - beta) of every column
    at every step, shape (steps + 1, k)). Float64 on the device of X.

    Example:
        >>> X = torch.tensor([[2.0]], dtype=torch.float64)
        >>> w, path, _ = gradient_descent(X, torch.tensor([[2.0]], dtype=torch.float64), lr=0.125, steps=2, record=1)
        >>> path[:, 0, 0].tolist()  # 1 - (1 - 0.125 * 4)^t
        [0.0, 0.5, 0.75]
    """
    n, d = X.shape
    model = LinearModel(d, Y.shape[1], bias=False).to(device=X.device, dtype=torch.float64)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    weight = model.linear.weight
    path = torch.zeros(steps + 1, d, record, dtype=X.dtype, device=X.device)
    risks = None if beta is None else torch.zeros(steps + 1, Y.shape[1], dtype=X.dtype, device=X.device)

    def measure(t: int) -> None:
        with torch.no_grad():
            w = weight.T
            path[t] = w[:, :record]
            if risks is not None:
                error = w - beta
                risks[t] = (error * (covariance @ error)).sum(dim=0)

    measure(0)
    batch = n if batch_size is None else batch_size
    order = torch.arange(n, device=X.device)
    for t in range(1, steps + 1):
        position = ((t - 1) * batch) % n
        if batch < n and position == 0:
            order = torch.randperm(n, generator=generator).to(X.device)
        inputs, targets = (
            (X, Y) if batch == n else (X[order[position : position + batch]], Y[order[position : position + batch]])
        )
        optimizer.zero_grad()
        loss = 0.5 * (model(inputs) - targets).square().sum() / inputs.shape[0]
        loss.backward()
        optimizer.step()
        measure(t)
    return weight.detach().T.clone(), path, risks


def ridge_solutions(X: Tensor, Y: Tensor, lams: Tensor) -> Tensor:
    """(X^T X + lambda I)^{-1} X^T Y for every lambda in `lams`, shape (len(lams), d, k), by a batched solve.

    Example:
        >>> X = torch.tensor([[1.0], [1.0]], dtype=torch.float64)
        >>> ridge_solutions(X, torch.ones(2, 1, dtype=torch.float64), torch.tensor([2.0], dtype=torch.float64))
        tensor([[[0.5000]]], dtype=torch.float64)
    """
    gram = X.T @ X
    eye = torch.eye(X.shape[1], dtype=X.dtype, device=X.device)
    return torch.linalg.solve(gram + lams[:, None, None] * eye, (X.T @ Y).expand(len(lams), -1, -1))


# --------------------------------------------------------------------------------------------- config
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


# ------------------------------------------------------------------------------------------------ run
def run(config: LeastSquaresGDConfig, context: Context) -> Result:
    """GD iterates vs the SVD, minimum-norm limits of GD and SGD, early stopping vs ridge."""
    device, dtype = context.device, torch.float64
    generator = torch.Generator().manual_seed(config.seed)
    rows: list[dict[str, float | str]] = []
    checks: list[Check] = []

    # -- the overdetermined problem: X / sqrt(n) has a decaying spectrum; R draws of (beta, noise)
    n, d, R = config.n, config.d, config.replicates
    variances = torch.arange(1, d + 1, dtype=dtype) ** -config.spectrum_decay
    X = torch.randn(n, d, generator=generator, dtype=dtype) * variances.sqrt()
    B = torch.randn(d, R, generator=generator, dtype=dtype) * np.sqrt(config.signal / d)
    Y = X @ B + config.noise * torch.randn(n, R, generator=generator, dtype=dtype)
    Xs, Ys = X / np.sqrt(n), Y / np.sqrt(n)  # f(w) = 1/2 ||Xs w - Ys||^2
    _, s, V = theory.thin_svd(Xs.numpy())
    eta = config.eta_scale / s[0] ** 2
    Sigma = torch.diag(variances)
    _, gd_path, gd_risks = gradient_descent(
        X.to(device), Y.to(device), eta, config.steps, record=1, beta=B.to(device), covariance=Sigma.to(device)
    )
    measured_path = gd_path[:, :, 0].cpu().numpy()
    predicted_path = theory.gd_iterates(Xs.numpy(), Ys[:, 0].numpy(), eta, config.steps)
    w_ls = theory.min_norm_solution(Xs.numpy(), Ys[:, 0].numpy())
    gap = np.linalg.norm(measured_path - predicted_path, axis=1) / np.linalg.norm(w_ls)
    checks.append(
        Check.at_most(
            "GD iterate vs SVD prediction w_t = V diag((1 - (1 - eta s^2)^t)/s) U^T y, max over t, relative",
            float(gap.max()),
            1e-8,
            detail=f"torch.optim.SGD full batch, float64, {config.steps} steps, eta = {config.eta_scale:g}/s_max^2, "
            f"n = {n}, d = {d}; ||w_t - w_t^SVD|| / ||w_LS||; tolerance 1e-8 from the issue",
        )
    )
    # measured per-direction fit phi_i(t) = v_i^T w_t / v_i^T w_LS and the order of fitting
    projections = measured_path @ V  # (steps + 1, d)
    fitted = projections / (V.T @ w_ls)
    tolerance = 1.0 - config.fit_fraction
    reached = np.abs(1.0 - fitted) <= tolerance
    measured_steps = np.where(reached.any(axis=0), reached.argmax(axis=0), np.inf)
    theory_steps = gd_steps_to_tolerance(eta, s**2, tolerance)
    theory_steps[theory_steps > config.steps] = np.inf  # not reached within the run
    ordered = bool(np.all(np.diff(measured_steps[np.isfinite(measured_steps)]) >= 0))
    checks.append(
        Check.holds(
            f"singular directions reach {config.fit_fraction:.0%} of their fit in the order of s_i (largest first)",
            ordered and bool(np.array_equal(measured_steps, theory_steps)),
            detail=f"steps to {config.fit_fraction:.0%} for s_1 >= ... >= s_d: {_brief(measured_steps)}; theory "
            f"ceil(log(1 - fraction)/log|1 - eta s^2|) = {_brief(theory_steps)} ({int(np.isinf(theory_steps).sum())} "
            f"directions not yet fitted after {config.steps} steps)",
        )
    )

    # -- early stopping vs ridge at lambda = 1/(eta t): measured risk curves and the Bayes risk
    t_grid = np.unique(np.geomspace(1, config.steps, config.risk_points).round().astype(int))
    lams = 1.0 / (eta * t_grid)
    ridge = ridge_solutions(Xs.to(device), Ys.to(device), torch.tensor(lams, dtype=dtype, device=device))
    error = ridge - B.to(device)
    ridge_risk = (error * (Sigma.to(device) @ error)).sum(dim=1).mean(dim=1).cpu().numpy()
    gd_risk_all = gd_risks.mean(dim=1).cpu().numpy()  # every step
    gd_risk = gd_risk_all[t_grid]
    prior_var, noise_var = config.signal / d, config.noise**2 / n
    gd_bayes = np.array(
        [
            theory.filter_bayes_risk(s, V, theory.gd_filter(s**2, eta, t), prior_var, noise_var, Sigma.numpy())
            for t in t_grid
        ]
    )
    ridge_bayes = np.array(
        [
            theory.filter_bayes_risk(s, V, theory.ridge_filter(s**2, lam), prior_var, noise_var, Sigma.numpy())
            for lam in lams
        ]
    )
    for t, lam, a, b, c, e in zip(t_grid, lams, gd_risk, ridge_risk, gd_bayes, ridge_bayes, strict=True):
        rows += [
            {"name": "gd_risk", "value": a, "step": int(t), "lam": lam},
            {"name": "ridge_risk", "value": b, "step": int(t), "lam": lam},
            {"name": "gd_risk_theory", "value": c, "step": int(t), "lam": lam},
            {"name": "ridge_risk_theory", "value": e, "step": int(t), "lam": lam},
        ]
    best = int(np.argmin(gd_risk_all))
    best_ridge = _ridge_risk_at(Xs, Ys, B, Sigma, 1.0 / (eta * max(best, 1)), device)
    detail = (
        f"test risk (w - beta)^T Sigma (w - beta) averaged over {R} draws of (beta, noise), same draws for both; "
        f"tolerance 10% from the issue"
    )
    checks.append(
        Check.relative(
            "risk of GD stopped at its best step t* vs ridge at the matched lambda = 1/(eta t*)",
            float(gd_risk_all[best]),
            best_ridge,
            0.10,
            detail=f"t* = {best}; {detail}",
        )
    )
    fine_lams = np.geomspace(lams.min() / 10, lams.max() * 10, 200)
    ridge_fine = _ridge_risk_at(Xs, Ys, B, Sigma, fine_lams, device)
    best_lam = float(fine_lams[np.argmin(ridge_fine)])
    checks.append(
        Check.relative(
            "best early-stopping risk vs best ridge risk",
            float(gd_risk_all.min()),
            float(ridge_fine.min()),
            0.10,
            detail=f"GD best at t* = {best} (1/(eta t*) = {1 / (eta * max(best, 1)):.3g}), ridge best at lambda = "
            f"{best_lam:.3g} on a grid of 200; {detail}",
        )
    )
    path_gap = np.abs(gd_risk / ridge_risk - 1.0)
    rows.append({"name": "max_risk_gap_along_path", "value": float(path_gap.max())})

    # -- the underdetermined problem: GD and SGD from zero converge to the minimum-norm solution
    nu, du = config.n_under, config.d_under
    Xu = torch.randn(nu, du, generator=generator, dtype=dtype)
    beta_u = torch.randn(du, 1, generator=generator, dtype=dtype) / np.sqrt(du)
    yu = Xu @ beta_u + config.noise * torch.randn(nu, 1, generator=generator, dtype=dtype)
    Xus, yus = Xu / np.sqrt(nu), yu / np.sqrt(nu)
    w_min = theory.min_norm_solution(Xus.numpy(), yus[:, 0].numpy())
    su = theory.thin_svd(Xus.numpy())[1]
    eta_u = config.eta_scale / su[0] ** 2
    w_gd, gd_under, _ = gradient_descent(Xu.to(device), yu.to(device), eta_u, config.under_steps, record=1)
    under_predicted = theory.gd_iterates(Xus.numpy(), yus[:, 0].numpy(), eta_u, config.under_steps)
    under_gap = np.linalg.norm(gd_under[:, :, 0].cpu().numpy() - under_predicted, axis=1) / np.linalg.norm(w_min)
    checks.append(
        Check.at_most(
            "GD iterate vs SVD prediction on the underdetermined problem, max over t, relative",
            float(under_gap.max()),
            1e-8,
            detail=f"n = {nu} < d = {du}: the null-space component of the iterate stays 0; tolerance 1e-8 (issue)",
        )
    )
    w_sgd, sgd_path, _ = gradient_descent(
        Xu.to(device), yu.to(device), config.sgd_lr, config.sgd_steps, config.sgd_batch, generator, record=1
    )
    gd_distance = np.linalg.norm(gd_under[:, :, 0].cpu().numpy() - w_min, axis=1) / np.linalg.norm(w_min)
    sgd_distance = np.linalg.norm(sgd_path[:, :, 0].cpu().numpy() - w_min, axis=1) / np.linalg.norm(w_min)
    converge_detail = "from w_0 = 0 the iterates stay in the row space of X, whose only interpolant is X^+ y"
    checks.append(
        Check.at_most(
            "GD limit vs the pseudo-inverse solution X^+ y, relative distance",
            float(gd_distance[-1]),
            1e-8,
            detail=f"after {config.under_steps} full-batch steps at eta = {config.eta_scale:g}/s_max^2 (n = {nu}, "
            f"d = {du}); {converge_detail}; tolerance 1e-8 from the issue",
        )
    )
    checks.append(
        Check.at_most(
            "SGD limit vs the pseudo-inverse solution X^+ y, relative distance",
            float(sgd_distance[-1]),
            1e-8,
            detail=f"after {config.sgd_steps} shuffled mini-batch steps (batch {config.sgd_batch}, "
            f"lr {config.sgd_lr:g}); "
            f"{converge_detail}, and interpolation makes every mini-batch gradient vanish there; tolerance 1e-8",
        )
    )
    rows += [
        {"name": "gd_distance_to_min_norm", "value": v, "step": t} for t, v in enumerate(gd_distance) if t % 10 == 0
    ]
    rows += [
        {"name": "sgd_distance_to_min_norm", "value": v, "step": t} for t, v in enumerate(sgd_distance) if t % 10 == 0
    ]
    norms = {"gd": float(np.linalg.norm(w_gd.cpu().numpy())), "sgd": float(np.linalg.norm(w_sgd.cpu().numpy()))}
    rows += [{"name": f"{k}_norm", "value": v} for k, v in norms.items()]
    rows.append({"name": "min_norm", "value": float(np.linalg.norm(w_min))})

    figures = {
        "directions": _directions_figure(fitted, s, eta, config.steps),
        "risk_curves": _risk_figure(t_grid, eta, gd_risk, ridge_risk, gd_bayes, ridge_bayes, best, best_lam),
        "min_norm": _min_norm_figure(gd_distance, sgd_distance, config),
    }
    return Result(metrics=pd.DataFrame(rows), checks=checks, figures=figures)


def _ridge_risk_at(
    Xs: Tensor, Ys: Tensor, B: Tensor, Sigma: Tensor, lams: float | Array, device: torch.device
) -> Array | float:
    """Mean over the columns of the test risk of ridge at each lambda (a float for a scalar lambda)."""
    values = torch.as_tensor(np.atleast_1d(lams), dtype=Xs.dtype, device=device)
    error = ridge_solutions(Xs.to(device), Ys.to(device), values) - B.to(device)
    risk = (error * (Sigma.to(device) @ error)).sum(dim=1).mean(dim=1).cpu().numpy()
    return float(risk[0]) if np.ndim(lams) == 0 else risk


def _brief(steps: Array) -> str:
    shown = [("inf" if not np.isfinite(v) else str(int(v))) for v in steps]
    return "[" + ", ".join(shown[:6] + ["..."] + shown[-3:]) + "]" if len(shown) > 10 else "[" + ", ".join(shown) + "]"


# -------------------------------------------------------------------------------------------- figures
def _directions_figure(fitted: Array, s: Array, eta: float, steps: int) -> Figure:
    fig = Figure(figsize=(12.0, 4.6), layout="constrained")
    left, right = fig.subplots(1, 2)
    t = np.arange(steps + 1)
    chosen = np.unique(np.linspace(0, len(s) - 1, 6).round().astype(int))
    for k, i in enumerate(chosen):
        factor = 1.0 - eta * s[i] ** 2
        left.loglog(t[1:], np.abs(factor) ** t[1:], "-", color=f"C{k}", lw=1.2)
        every = np.unique(np.geomspace(1, steps, 25).round().astype(int))
        left.loglog(
            every,
            np.abs(1.0 - fitted[every, i]),
            "o",
            color=f"C{k}",
            ms=4,
            mfc="none",
            label=rf"$i = {i + 1}$, $s_i^2 = {s[i] ** 2:.2g}$",
        )
    left.set_ylim(1e-12, 2.0)
    left.set_xlabel("step t")
    left.set_ylabel(r"error along $v_i$: $|v_i^\top (w_t - w_{LS})| / |v_i^\top w_{LS}|$")
    left.set_title(r"each direction decays as $(1 - \eta s_i^2)^t$ (lines)")
    left.legend(fontsize=8, loc="lower left")
    s2_fine = np.geomspace(s.min() ** 2 / 3, s.max() ** 2, 300)
    for k, tt in enumerate(np.unique(np.geomspace(1, steps, 5).round().astype(int))):
        right.semilogx(s2_fine, theory.gd_filter(s2_fine, eta, tt), "-", color=f"C{k}", lw=1.2)
        right.semilogx(s2_fine, theory.ridge_filter(s2_fine, 1.0 / (eta * tt)), "--", color=f"C{k}", lw=1.0)
        right.semilogx(s**2, fitted[tt], "o", color=f"C{k}", ms=4, mfc="none", label=f"t = {tt}")
    right.plot([], [], "-", color="0.3", label=r"GD filter $1 - (1 - \eta s^2)^t$")
    right.plot([], [], "--", color="0.3", label=r"ridge filter $s^2/(s^2 + \lambda)$, $\lambda = 1/(\eta t)$")
    right.set_xlabel(r"squared singular value $s_i^2$ of $X/\sqrt{n}$")
    right.set_ylabel(r"fitted fraction $\phi_i(t) = v_i^\top w_t / v_i^\top w_{LS}$")
    right.set_title("GD fits the large singular directions first (markers: measured)")
    right.legend(fontsize=8, loc="lower right")
    fig.suptitle("Gradient descent on least squares: an ordered walk through the singular directions")
    return fig


def _risk_figure(
    t_grid: Array,
    eta: float,
    gd_risk: Array,
    ridge_risk: Array,
    gd_bayes: Array,
    ridge_bayes: Array,
    best: int,
    best_lam: float,
) -> Figure:
    fig = Figure(figsize=(7.5, 4.8), layout="constrained")
    ax = fig.subplots()
    ax.loglog(t_grid, gd_bayes, "-", color="C0", lw=1.2, label="early stopping at t, Bayes risk (theory)")
    ax.loglog(t_grid, gd_risk, "o", color="C0", ms=5, mfc="none", label="early stopping at t, measured")
    ax.loglog(t_grid, ridge_bayes, "--", color="C1", lw=1.2, label=r"ridge at $\lambda = 1/(\eta t)$, Bayes risk")
    ax.loglog(t_grid, ridge_risk, "s", color="C1", ms=4, mfc="none", label=r"ridge at $\lambda = 1/(\eta t)$, measured")
    ax.axvline(max(best, 1), color="C0", ls=":", lw=1.0, label=f"best stopping step t* = {best}")
    ax.axvline(1.0 / (eta * best_lam), color="C1", ls=":", lw=1.0, label=r"best ridge $\lambda$ (as $1/(\eta\lambda)$)")
    ax.set_xlabel(r"step t  (ridge: $1/(\eta\lambda)$)")
    ax.set_ylabel(r"test risk $E\,(x^\top(w - \beta))^2$")
    ax.set_title("Early stopping regularises like ridge with lambda ~ 1/(eta t)")
    ax.legend(fontsize=8)
    return fig


def _min_norm_figure(gd_distance: Array, sgd_distance: Array, config: LeastSquaresGDConfig) -> Figure:
    fig = Figure(figsize=(7.0, 4.5), layout="constrained")
    ax = fig.subplots()
    ax.semilogy(np.arange(len(gd_distance)), gd_distance, "-", color="C0", label="GD (full batch)")
    ax.semilogy(
        np.arange(len(sgd_distance)),
        sgd_distance,
        "-",
        color="C1",
        lw=0.8,
        label=f"SGD (batch {config.sgd_batch}, lr {config.sgd_lr:g})",
    )
    ax.axhline(1e-8, color="0.4", ls=":", label="tolerance 1e-8")
    ax.set_xlabel("step t")
    ax.set_ylabel(r"$\|w_t - X^+ y\| / \|X^+ y\|$")
    ax.set_title(f"From zero, n = {config.n_under} < d = {config.d_under}: both reach the minimum-norm interpolant")
    ax.legend()
    return fig


EXPERIMENT = Experiment(
    name="least-squares-gd",
    claim="Gradient descent on least squares contracts the error along singular direction i by 1 - eta s_i^2 per "
    "step, so it fits the largest singular directions first; from zero it converges to the minimum-norm solution "
    "(SGD too), and stopping at step t acts like ridge with lambda ~ 1/(eta t).",
    config=LeastSquaresGDConfig,
    **legacy(run),
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
