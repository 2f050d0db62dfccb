"""saddle-points: critical points of a small network, classified by their index, and how GD escapes a saddle.

Dauphin et al. (2014) argue that the critical points of high-dimensional non-convex losses that trap optimisers
are saddles, not poor local minima: the index (fraction of negative Hessian eigenvalues) of a critical point
grows with its loss, so low-loss critical points are minima and high-loss ones saddles (their Fig. 1, after
Bray & Dean 2007 for random Gaussian fields). The experiment, in float64, on a tanh network (one hidden layer)
fitting a teacher network (half squared error plus a small L2 penalty wd/2 |theta|^2, which lifts the flat
directions of the plateaus where the search would otherwise stall at gradient-flat points that are not
critical, Frye et al. 2021):

- finds critical points by minimising the gradient norm (Levenberg-Marquardt, `tdlab.landscape.critical`) from
  points along GD trajectories from several initialisations (early points near high-loss plateaus, late ones
  near minima), keeps those with ||grad L|| <= tol, and classifies them by their index; check: the Spearman
  rank correlation of index and loss over the distinct critical points is positive;
- runs GD with step eta = eta_fraction / lambda_max from a saddle theta* displaced by delta along a random unit
  vector, and measures the step T at which the displacement's component in the eigenspace of lambda_min (a
  symmetric saddle repeats its eigenvalues; that whole eigenspace grows at the same rate) reaches r; check:
  T = log(r / delta_min) / log(1 + eta |lambda_min|) within 5% (the issue's), where delta_min is the start's
  component in that eigenspace (`tdlab.theory.saddles.escape_time`). T is an integer, so the discretisation
  error is below one step: with eta |lambda_min| <= eta_fraction <= 0.5 and r / delta_min >= r / delta = 1e6
  the predicted T exceeds 34 steps, and one step is < 3%.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from pydantic import Field, field_validator, model_validator
from scipy.stats import spearmanr
from torch import Tensor

from tdlab.curvature import exact_hessian
from tdlab.data import half_squared_error, synthetic_regression
from tdlab.experiments.base import Check, Context, Experiment, ExperimentConfig, Result, legacy
from tdlab.landscape import CriticalPoint, find_critical_point, train_flat
from tdlab.models import MLP
from tdlab.oracles import Objective
from tdlab.theory.saddles import escape_time, linearised_coordinate, quadratic_loss_change

ESCAPE_TOLERANCE = 0.05  # the relative tolerance on the escape time


class SaddlePointsConfig(ExperimentConfig):
    """Quick defaults: a tanh network 3 -> 4 -> 1 on 64 teacher examples (21 parameters); critical points from
    3 GD trajectories x 5 snapshots; escapes from 2 saddles with delta = 1e-8, r = 1e-2."""

    n_train: int = Field(64, ge=4, description="training examples of the teacher task")
    in_features: int = Field(3, ge=1, description="input dimension")
    width: int = Field(4, ge=1, description="hidden units of the student")
    teacher_width: int = Field(8, ge=1, description="hidden units of the tanh teacher")
    noise: float = Field(0.1, ge=0, description="label noise standard deviation")
    weight_decay: float = Field(1e-2, ge=0, description="L2 penalty wd/2 |theta|^2 added to the loss")
    trajectories: int = Field(3, ge=1, description="GD runs from different initialisations that provide starts")
    snapshots: tuple[int, ...] = Field((0, 10, 30, 100, 300), description="GD steps at which a search starts")
    train_lr: float = Field(0.3, gt=0, description="step size of the GD runs that provide starts")
    max_iter: int = Field(50, ge=1, description="Levenberg-Marquardt iterations per search")
    tol: float = Field(1e-9, gt=0, description="a search has found a critical point when ||grad L|| <= tol")
    escapes: int = Field(2, ge=0, description="saddles (largest |lambda_min| / lambda_max first) to escape from")
    delta: float = Field(1e-8, gt=0, description="initial displacement from the saddle (random direction)")
    radius: float = Field(1e-2, gt=0, description="escape radius r along v_min")
    eta_fraction: float = Field(0.5, gt=0, le=0.5, description="GD step eta = eta_fraction / lambda_max")
    max_escape_steps: int = Field(20000, ge=1, description="give up an escape after this many steps")

    @field_validator("snapshots")
    @classmethod
    def _sorted(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or any(t < 0 for t in value) or list(value) != sorted(set(value)):
            raise ValueError(f"snapshots: expected distinct non-negative steps in increasing order, got {value}")
        return value

    @model_validator(mode="after")
    def _delta_below_radius(self) -> SaddlePointsConfig:
        if self.delta >= self.radius:
            raise ValueError(f"delta: expected below radius = {self.radius:g}, got {self.delta:g}")
        return self


def _objective(config: SaddlePointsConfig, seed: int, device: torch.device) -> Objective:
    data = synthetic_regression(
        n_train=config.n_train,
        n_test=1,
        in_features=config.in_features,
        noise=config.noise,
        teacher="mlp",
        seed=config.seed,
        teacher_width=config.teacher_width,
    ).to(device, torch.float64)
    model = MLP(config.in_features, 1, width=config.width, depth=1, activation="tanh", bias_init_std=0.1, seed=seed).to(
        device, torch.float64
    )
    return _WeightDecayed(model, half_squared_error, data.train, config.weight_decay)


class _WeightDecayed(Objective):
    """The data loss plus the penalty (wd / 2) ||theta||^2: value + wd/2 |theta|^2, gradient + wd theta,
    Hessian-vector product + wd v. The penalty lifts the flat directions of a small network's plateaus (units
    with equal or vanishing weights, Fukumizu & Amari 2000), where the search would otherwise stall at
    gradient-flat points that are not critical (Frye et al. 2021)."""

    def __init__(self, model: torch.nn.Module, loss_fn: Callable, data: tuple[Tensor, Tensor], weight_decay: float):
        super().__init__(model, loss_fn, data)
        self.weight_decay = weight_decay

    def _theta(self, theta: Tensor | None) -> Tensor:
        return self.flat_parameters() if theta is None else theta.to(self.device, self.dtype)

    def value(self, theta: Tensor | None = None) -> Tensor:
        t = self._theta(theta)
        return super().value(theta) + 0.5 * self.weight_decay * (t @ t)

    def value_and_gradient(self, theta: Tensor | None = None) -> tuple[Tensor, Tensor]:
        t = self._theta(theta)
        value, g = super().value_and_gradient(theta)
        return value + 0.5 * self.weight_decay * (t @ t), g + self.weight_decay * t

    def hvp(self, v: Tensor, theta: Tensor | None = None) -> Tensor:
        return super().hvp(v, theta) + self.weight_decay * v.to(self.device, self.dtype)


def _search(config: SaddlePointsConfig, context: Context) -> tuple[Objective, list[dict]]:
    found = []
    for run in context.track(range(config.trajectories), "critical points along GD runs"):
        obj = _objective(config, config.seed + run, context.device)
        theta, done = obj.flat_parameters(), 0
        for step in config.snapshots:
            training = train_flat(obj, theta, "sgd", config.train_lr, step - done)
            theta, done = training.theta, step
            if training.diverged:
                break
            point = find_critical_point(obj, theta, max_iter=config.max_iter, tol=config.tol)
            found.append({"trajectory": run, "step": step, "start_loss": float(obj.value(theta)), "point": point})
    return obj, found


def _distinct(points: list[CriticalPoint]) -> list[CriticalPoint]:
    """Converged points with distinct (loss, index): symmetric copies (unit permutations and sign flips of a
    tanh network) have the same loss and spectrum and are counted once."""
    seen, out = set(), []
    for p in points:
        key = (round(p.loss, 9), round(p.index, 6))
        if p.converged and key not in seen:
            seen.add(key)
            out.append(p)
    return out


def _escape(obj: Objective, saddle: CriticalPoint, config: SaddlePointsConfig, seed: int) -> dict:
    """GD from the saddle displaced by delta along a random unit vector, until the displacement's component in
    the eigenspace of lambda_min (which a symmetric saddle may repeat) reaches the radius."""
    refined = find_critical_point(obj, saddle.theta, max_iter=20, tol=1e-13)
    theta_star = refined.theta if refined.gradient_norm < saddle.gradient_norm else saddle.theta
    values, vectors = torch.linalg.eigh(exact_hessian(obj, theta_star))
    lam_min, lam_max = float(values[0]), float(values[-1])
    basis = vectors[:, (values - lam_min).abs() <= 1e-8 * abs(lam_min)]  # eigenspace of lambda_min
    eta = config.eta_fraction / lam_max
    u = torch.randn(obj.dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(obj.device)
    theta = theta_star + config.delta * u / u.norm()
    initial = vectors.T @ (theta - theta_star)
    delta_min = float((basis.T @ (theta - theta_star)).norm())
    loss_star, g_star = obj.value_and_gradient(theta_star)
    drift = float((basis.T @ g_star).norm()) / abs(lam_min)  # linearised fixed point, ideally << delta_min
    coordinates, losses, escaped_at = [], [], None
    for t in range(config.max_escape_steps + 1):
        loss, g = obj.value_and_gradient(theta)
        coordinates.append(float((basis.T @ (theta - theta_star)).norm()))
        losses.append(float(loss))
        if coordinates[-1] >= config.radius:
            escaped_at = t
            break
        if not bool(torch.isfinite(g).all()):
            break
        theta = theta - eta * g
    displacement = theta - theta_star
    steps = np.arange(len(losses))
    return {
        "loss": float(loss_star),
        "index": refined.index,
        "lambda_min": lam_min,
        "lambda_max": lam_max,
        "multiplicity": basis.shape[1],
        "eta": eta,
        "delta_min": delta_min,
        "drift": drift,
        "gradient_norm": float(g_star.norm()),
        "predicted": escape_time(config.radius, delta_min, eta, lam_min) if delta_min < config.radius else math.nan,
        "measured": math.nan if escaped_at is None else float(escaped_at),
        "alignment": float((basis.T @ displacement).norm() / displacement.norm()),
        "coordinates": np.array(coordinates),
        "losses": np.array(losses),
        "model_change": quadratic_loss_change(steps, initial.cpu().numpy(), eta, values.cpu().numpy()),
    }


def run(config: SaddlePointsConfig, context: Context) -> Result:
    obj, found = _search(config, context)
    rows: list[dict] = []
    for f in found:
        p = f["point"]
        for name, value in (
            ("loss", p.loss),
            ("index", p.index),
            ("gradient_norm", p.gradient_norm),
            ("converged", float(p.converged)),
            ("lambda_min", float(p.eigenvalues[0])),
            ("lambda_max", float(p.eigenvalues[-1])),
            ("start_loss", f["start_loss"]),
            ("iterations", float(p.iterations)),
        ):
            rows.append({"trajectory": f["trajectory"], "step": f["step"], "name": name, "value": value})
    distinct = _distinct([f["point"] for f in found])
    checks = [_correlation_check(distinct, len(found), config)]
    saddles = sorted((p for p in distinct if p.index > 0), key=_escape_rate, reverse=True)[: config.escapes]
    escapes = []
    for k, saddle in enumerate(context.track(saddles, "escapes from saddles")):
        e = _escape(obj, saddle, config, config.seed + 1000 + k)
        escapes.append(e)
        for name in (
            "loss",
            "index",
            "lambda_min",
            "lambda_max",
            "eta",
            "delta_min",
            "drift",
            "predicted",
            "measured",
            "alignment",
        ):
            rows.append({"saddle": k, "name": f"escape_{name}", "value": e[name]})
        for t, (c, loss) in enumerate(zip(e["coordinates"], e["losses"], strict=True)):
            rows.append({"saddle": k, "step": t, "name": "escape_coordinate", "value": c})
            rows.append({"saddle": k, "step": t, "name": "escape_loss", "value": loss})
        checks.append(
            Check.relative(
                f"escape time from saddle {k} (loss {e['loss']:.4g}, index {e['index']:.3g})",
                e["measured"],
                e["predicted"],
                ESCAPE_TOLERANCE,
                detail=f"first GD step with |P_min (theta_t - theta*)| >= r = {config.radius:g} (P_min: projector "
                f"on the eigenspace of lambda_min, multiplicity {e['multiplicity']}), eta = "
                f"{config.eta_fraction:g} / lambda_max = {e['eta']:.4g}, lambda_min = {e['lambda_min']:.4g}, "
                f"delta_min = {e['delta_min']:.3g} (delta = {config.delta:g} along a random direction); theory "
                f"log(r / delta_min) / log(1 + eta |lambda_min|); the saddle's residual gradient shifts the "
                f"start by {abs(e['drift']) / e['delta_min']:.1e} delta_min; tolerance 5% (the issue's)",
            )
        )
    if config.escapes and len(saddles) < config.escapes:
        checks.append(
            Check.holds(
                "saddles found for the escapes",
                False,
                measured=float(len(saddles)),
                detail=f"{len(saddles)} converged critical points with index > 0, {config.escapes} asked for",
            )
        )
    metrics = pd.DataFrame(rows, columns=["trajectory", "saddle", "step", "name", "value"])
    figures = {"index_vs_loss": _index_figure(found, distinct, config)}
    if escapes:
        figures["escape"] = _escape_figure(escapes, config)
    return Result(metrics, checks, figures)


def _escape_rate(point: CriticalPoint) -> float:
    """|lambda_min| / lambda_max: GD with eta = c / lambda_max escapes in about log(r/delta) / (c |lambda_min| /
    lambda_max) steps, so the saddles with the largest ratio are the quickest to simulate."""
    return -float(point.eigenvalues[0]) / float(point.eigenvalues[-1])


def _spearman(points: list[CriticalPoint]) -> tuple[float, float]:
    if len(points) < 3 or len({p.index for p in points}) < 2 or len({p.loss for p in points}) < 2:
        return math.nan, math.nan
    result = spearmanr([p.index for p in points], [p.loss for p in points])
    return float(result.statistic), float(result.pvalue)


def _correlation_check(distinct: list[CriticalPoint], searches: int, config: SaddlePointsConfig) -> Check:
    rho, p_value = _spearman(distinct)
    return Check.holds(
        "rank correlation of index and loss is positive",
        bool(rho > 0),
        measured=rho,
        detail=f"Spearman rho (measured value) over {len(distinct)} distinct critical points (||grad L|| <= "
        f"{config.tol:g}) from {searches} searches, p = {p_value:.2g}; Dauphin et al. (2014), Fig. 1",
    )


def _index_figure(found: list[dict], distinct: list[CriticalPoint], config: SaddlePointsConfig) -> Figure:
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    unconverged = [f["point"] for f in found if not f["point"].converged]
    if unconverged:
        ax.plot(
            [p.loss for p in unconverged],
            [p.index for p in unconverged],
            "o",
            mfc="none",
            color="0.6",
            label=f"search stopped before ||grad L|| <= {config.tol:g} ({len(unconverged)}, not used)",
        )
    minima = [p for p in distinct if p.index == 0]
    saddles = [p for p in distinct if p.index > 0]
    ax.plot(
        [p.loss for p in saddles],
        [p.index for p in saddles],
        "o",
        color="tab:red",
        ms=7,
        label=f"saddles ({len(saddles)})",
    )
    ax.plot(
        [p.loss for p in minima],
        [p.index for p in minima],
        "s",
        color="tab:blue",
        ms=7,
        label=f"minima ({len(minima)})",
    )
    rho, p_value = _spearman(distinct)
    ax.set_xscale("log")
    ax.set_xlabel("training loss at the critical point")
    ax.set_ylabel("index (fraction of negative Hessian eigenvalues)")
    ax.set_title(
        f"Critical points of a tanh net {config.in_features}-{config.width}-1: Spearman rho = {rho:.2f} "
        f"(p = {p_value:.1g})",
        fontsize=10,
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _escape_figure(escapes: list[dict], config: SaddlePointsConfig) -> Figure:
    n = len(escapes)
    fig, axes = plt.subplots(2, n, figsize=(5.4 * n, 8.0), squeeze=False)
    for k, e in enumerate(escapes):
        t = np.arange(len(e["coordinates"]))
        stride = max(1, len(t) // 40)
        ax = axes[0, k]
        ax.semilogy(
            t[::stride], e["coordinates"][::stride], "o", color="k", ms=4, label="measured |P_min (theta_t - theta*)|"
        )
        ax.semilogy(
            t,
            linearised_coordinate(t, e["delta_min"], e["eta"], e["lambda_min"]),
            "-",
            color="tab:red",
            label="delta_min (1 + eta |lambda_min|)^t",
        )
        ax.axhline(config.radius, color="0.4", ls=":", label=f"r = {config.radius:g}")
        ax.axvline(e["predicted"], color="tab:red", ls="--", lw=1, label=f"predicted T = {e['predicted']:.1f}")
        ax.set_xlabel("GD step t")
        ax.set_ylabel("displacement in the lambda_min eigenspace")
        ax.set_title(
            f"saddle {k}: loss {e['loss']:.4g}, index {e['index']:.3g}\nlambda_min = {e['lambda_min']:.3g} "
            f"(x{e['multiplicity']}), measured T = {e['measured']:.0f}",
            fontsize=9,
        )
        ax.legend(fontsize=8)
        ax = axes[1, k]
        change = e["losses"] - e["loss"]
        resolvable = np.abs(change) > 100 * np.finfo(np.float64).eps * abs(e["loss"])
        shown = resolvable & (t % stride == 0)
        ax.semilogy(t[shown], np.abs(change[shown]), "o", color="k", ms=4, label="measured |L(theta_t) - L(theta*)|")
        ax.semilogy(
            t,
            np.abs(e["model_change"]),
            "-",
            color="tab:red",
            label="|1/2 sum_i lambda_i (1 - eta lambda_i)^2t c_i(0)^2|",
        )
        ax.set_ylim(100 * np.finfo(np.float64).eps * abs(e["loss"]), None)
        ax.set_xlabel("GD step t")
        ax.set_ylabel("|loss change| (above float64 resolution)")
        ax.set_title(f"share of the displacement in the lambda_min eigenspace at T: {e['alignment']:.3f}", fontsize=9)
        ax.legend(fontsize=8)
    fig.suptitle("Gradient descent leaves a strict saddle along its most negative curvature direction")
    fig.tight_layout()
    return fig


EXPERIMENT = Experiment(
    name="saddle-points",
    claim="The index of a network's critical points grows with their loss, and GD escapes a strict saddle along "
    "its most negative curvature direction in log(r / delta) / log(1 + eta |lambda_min|) steps.",
    config=SaddlePointsConfig,
    **legacy(run),
    presets={
        "full": {
            "n_train": 256,
            "in_features": 6,
            "width": 10,
            "teacher_width": 16,
            "trajectories": 10,
            "snapshots": (0, 3, 10, 30, 100, 300, 1000, 3000),
            "max_iter": 200,
            "escapes": 5,
        },
    },
    references=(
        "Dauphin, Pascanu, Gulcehre, Cho, Ganguli & Bengio (2014), Identifying and attacking the saddle point "
        "problem in high-dimensional non-convex optimization, NeurIPS",
        "Bray & Dean (2007), Statistics of critical points of Gaussian fields on large-dimensional spaces, PRL",
        "Pennington & Bahri (2017), Geometry of neural network loss surfaces via random matrix theory, ICML",
    ),
    part="loss landscapes",
)
