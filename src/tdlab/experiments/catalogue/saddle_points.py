"""saddle-points: critical points of a small network, classified by their index, and how GD escapes a saddle.

Dauphin et al. (2014) argue that the critical points of high-dimensional non-convex losses that trap optimisers
are saddles, not poor local minima: the index (fraction of negative Hessian eigenvalues) of a critical point
grows with its loss, so low-loss critical points are minima and high-loss ones saddles (their Fig. 1, after
Bray & Dean 2007 for random Gaussian fields). The experiment, in float64, on a tanh network (one hidden layer)
fitting a teacher network with the half squared error L:

- finds critical points of L, the objective the lectures name, from points along GD trajectories of L from
  several initialisations (early points near high-loss plateaus, late ones near minima), and classifies them by
  the index of L's Hessian. A Levenberg-Marquardt search on ||grad L||^2 (`tdlab.landscape.critical`) stalls
  there (in the full preset 0 of 12 from GD points converged in 100 iterations) at gradient-flat points that
  are not critical (Frye et al. 2021),
  so each search runs on L + wd/2 |theta|^2, whose penalty lifts the flat directions, and its critical point is
  then followed as wd -> 0 (`tdlab.landscape.continuation`, predictor-corrector) to one of L; only points with
  ||grad L|| <= tol are kept, and a branch that runs away or ends at a fold is not. The index counts L's
  eigenvalues below -tau, tau the bound on how far an eigenvalue can move between the point found and the exact
  critical point (`_classify`); the many exact zeros of dead and duplicated units are not counted.
  Why not at the penalised points themselves (this experiment's earlier version, which failed its full preset
  at p = 0.996): there grad L = -wd theta (|grad L| = 0.017 in the full preset: no critical point of L), and
  L's Hessian is the penalised one minus wd I; at the low-loss points 20-30 of the 81 penalised eigenvalues lay
  in (0, wd) (the flat directions that the penalty lifts), which that index counted as negative: 0.22-0.33 at
  loss 0.024 against 0.12 at loss 0.43.
  Check: a one-sided Spearman test of "index grows with loss" over the distinct critical points of L rejects
  rank independence at alpha = 0.05 (p < 0.05, rho > 0). It fails when the index does not grow with the loss
  (rho <= 0, or too weak for the number of points: with 8 points rho must exceed about 0.62), e.g. when every
  point found is a minimum, or the indices are shuffled, or (a wrong implementation) the index is taken at
  points that are not critical for L. Measured: the quick preset passes (p = 0.026, rho = 0.70 over 8 points;
  over seeds 0-4: p = 0.026, 0.10, -, 0.0013, 0.0072, seed 2 leaving 1 point: most of its branches crawl into
  flat regions and are lost); the full preset does not (p = 0.83, rho = -0.20 over 26 points, 205 CPU s): with
  10 hidden units every critical point found, down to the lowest (loss 0.0053; GD reaches 0.0045 by step 3000,
  and L-BFGS 0.003 at |theta| = 30-310 without converging), is a saddle with 12-18 negative eigenvalues of 81,
  more than the highest (the all-dead network, loss 0.43: 10 of 81, one per hidden unit). These are the
  degenerate saddles of dead and duplicated units (6-60 zero eigenvalues each), whose index counts units, not
  loss: for them the claim, made for random Gaussian fields and large networks, does not hold.
  Designs closer to Dauphin et al.'s (a tanh MLP on real, downsampled data, 10 one-hot outputs, half squared
  error, Levenberg-Marquardt ~ damped Newton from GD points) find no critical points of L within the budget: on
  200 digits reduced to 8 principal components (width 10, 200 parameters) or 2x2-pooled to 16 pixels (width 6
  and 12), the searches on L crawl towards infinity (|theta| 6 -> 12 and ||grad L|| 5e-4 -> 3e-5 over 1200
  iterations: saturating tanh units, a critical point at infinity), the penalised ones converge in 2 of 7 and
  their continuations are lost; their end points (not critical: Frye et al. 2021's gradient-flat points) do
  show the index growing with the loss (0.02 at L = 0.17 to 0.26 at L = 0.40). A student wider than the
  teacher (width 20, 161 parameters) did not finish the full preset within a 1500 s timeout;
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
from tdlab.data import half_squared_error
from tdlab.experiments.base import Check, Context, Experiment, ExperimentConfig
from tdlab.experiments.fields import describe, seeded
from tdlab.experiments.tidy import rows
from tdlab.landscape import CriticalPoint, find_critical_point, follow_critical_point, hessian_index
from tdlab.oracles import Objective
from tdlab.oracles.flat import assign
from tdlab.theory.saddles import escape_time, linearised_coordinate, quadratic_loss_change
from tdlab.train.builders import build_data, build_network
from tdlab.train.config import DataConfig, ModelConfig
from tdlab.train.trainer import fit

ESCAPE_TOLERANCE = 0.05  # the relative tolerance on the escape time
ALPHA = 0.05  # significance level of the one-sided Spearman test of index against loss


class SaddlePointsConfig(ExperimentConfig):
    """Quick defaults: a tanh network 3 -> 4 -> 1 on 64 teacher examples (21 parameters); critical points from
    5 GD trajectories x 5 snapshots (8 distinct critical points of L at seed 0); escapes from 2 saddles with
    delta = 1e-8, r = 1e-2. `seed` seeds the data (unless its section sets its own) and, plus the trajectory
    number, each student's initialisation."""

    data: DataConfig = Field(
        default_factory=lambda: DataConfig(
            name="synthetic-regression", n_train=64, n_test=1, in_features=3, noise=0.1, teacher="mlp", teacher_width=8
        )
    )
    model: ModelConfig = Field(
        default_factory=lambda: ModelConfig(name="mlp", width=4, depth=1, activation="tanh", bias_init_std=0.1)
    )
    weight_decay: float = Field(
        1e-2, gt=0, description="L2 penalty wd/2 |theta|^2 of the searches, followed to 0 (continuation)"
    )
    trajectories: int = Field(5, ge=1, description="GD runs from different initialisations that provide starts")
    snapshots: tuple[int, ...] = Field((0, 10, 30, 100, 300), description="GD steps at which a search starts")
    train_lr: float = Field(0.3, gt=0, description="step size of the GD runs (on L) that provide starts")
    max_iter: int = Field(50, ge=1, description="Levenberg-Marquardt iterations of the search on the penalised loss")
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


class _WeightDecayed(Objective):
    """The data loss plus the penalty (wd / 2) ||theta||^2: value + wd/2 |theta|^2, gradient + wd theta,
    Hessian-vector product + wd v. The penalty lifts the flat directions of a small network's plateaus (units
    with equal or vanishing weights, Fukumizu & Amari 2000), where the search would otherwise stall at
    gradient-flat points that are not critical (Frye et al. 2021); its critical points are then followed to those
    of the data loss as wd -> 0 (`_search`)."""

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

    def hvp_function(self, theta: Tensor | None = None, keep_graphs: bool | None = None) -> Callable[[Tensor], Tensor]:
        product = super().hvp_function(theta, keep_graphs)
        return lambda v: product(v) + self.weight_decay * v.to(self.device, self.dtype)


def _gd(model: torch.nn.Module, lr: float) -> torch.optim.Optimizer:
    """Plain GD on the data loss (the penalty only helps the searches; the trajectories and escapes do without)."""
    return torch.optim.SGD(model.parameters(), lr=lr)


def measure(config: SaddlePointsConfig, context: Context) -> pd.DataFrame:
    """Rows (trajectory, step, name, value) of every search (`_search`); rows (saddle, name, value) of every escape
    (`_escape`) from the distinct saddles of the data loss."""
    data = build_data(seeded(config.data, config.seed), context.device, torch.float64)
    records, points, followed = [], [], {}
    for run in context.track(range(config.trajectories), "critical points along GD runs"):
        model = build_network(
            ModelConfig.model_validate({**config.model.model_dump(), "seed": config.seed + run}), data
        )
        loss = Objective(model, half_squared_error, data.train)
        optimizer, done = _gd(model, config.train_lr), 0
        for step in config.snapshots:
            if fit(model, half_squared_error, data.train, optimizer, step, start=done).diverged:
                break
            theta, done = loss.flat_parameters(), step
            point, found = _search(loss, theta, config, followed)
            points.append(point)
            found["start_loss"] = float(loss.value(theta))
            records += [{"trajectory": run, "step": step, "name": n, "value": float(v)} for n, v in found.items()]
    metrics = pd.DataFrame(records, columns=["trajectory", "saddle", "step", "index", "name", "value"])
    distinct = [points[i] for i in _distinct(metrics).index]
    saddles = sorted((p for p in distinct if p.index > 0), key=_escape_rate, reverse=True)[: config.escapes]
    escapes = [
        _escape(loss, p, config, config.seed + 1000 + k) for k, p in enumerate(context.track(saddles, "escapes"))
    ]
    return pd.concat([metrics] + [e.assign(saddle=k) for k, e in enumerate(escapes)], ignore_index=True)


def _search(
    loss: Objective, theta: Tensor, config: SaddlePointsConfig, followed: dict[tuple, tuple[CriticalPoint, dict]]
) -> tuple[CriticalPoint, dict[str, float]]:
    """A critical point of the data loss L from theta: Levenberg-Marquardt on L + wd/2 |theta|^2 (which converges
    where a search on L stalls), then that point followed as wd -> 0 (`follow_critical_point`), and classified on
    L (`_classify`). Returns the point (of L where "converged", with L's index and eigenvalues) and its numbers:
    "penalised_loss", "penalised_index", "penalised_converged" of the first search; "loss", "index",
    "gradient_norm", "converged" (||grad L|| <= tol), "lambda_min", "lambda_max", "eigenvalue_tolerance" (tau),
    "zero_eigenvalues" (fraction within tau), "smallest_negative" (the least |lambda| counted, its margin over tau)
    of the end point on L; "continuation_steps" and "iterations" (LM iterations, all searches).
    A penalised point already followed (a repeat, or a symmetric copy: same loss and spectrum) is not followed
    again: its result is in `followed`."""

    def family(wd: float) -> Objective:
        return _WeightDecayed(loss.model, loss.loss_fn, loss.data.tensors, wd)

    penalised = find_critical_point(family(config.weight_decay), theta, max_iter=config.max_iter, tol=config.tol)
    first = {
        "penalised_loss": penalised.loss,
        "penalised_index": penalised.index,
        "penalised_converged": penalised.converged,
    }
    key = (round(penalised.loss, 10), *penalised.eigenvalues.numpy().round(6))
    if penalised.converged and key in followed:
        point, found = followed[key]
        return point, {**found, **first, "iterations": penalised.iterations}
    steps, iterations, end = 0, penalised.iterations, penalised.theta
    if penalised.converged:
        path = follow_critical_point(family, penalised, config.weight_decay, tol=config.tol)
        steps, iterations, end = len(path.path), iterations + sum(i for _, i, _ in path.path), path.point.theta
    point, classified = _classify(loss, end, config.tol)
    found = {**first, **classified, "continuation_steps": steps, "iterations": iterations}
    if penalised.converged:
        followed[key] = (point, found)
    return point, found


def _classify(loss: Objective, theta: Tensor, tol: float) -> tuple[CriticalPoint, dict[str, float]]:
    """theta as a candidate critical point of the data loss L: its loss, ||grad L||, and the index of L's Hessian
    counted with the eigenvalue tolerance tau = max(||H(theta + s) - H(theta)||_2, 1e-8 max |lambda|), where
    s = -H^+ grad L is the Newton correction towards the exact critical point theta* (the pseudo-inverse over the
    eigenvalues above 1e-8 max |lambda|): by Weyl's inequality every eigenvalue at theta is within about tau of
    its value at theta*, so an eigenvalue below -tau is negative at theta* too, and |lambda| <= tau (a zero of a
    dead or duplicated unit) is not counted."""
    value, g = loss.value_and_gradient(theta)
    hessian = exact_hessian(loss, theta)
    values, vectors = torch.linalg.eigh(hessian)
    gradient_norm, tau = float(g.norm()), 1e-8 * float(values.abs().max())
    if gradient_norm <= tol:  # the correction is meaningful near a critical point only
        kept = values.abs() > tau
        correction = -vectors[:, kept] @ ((vectors[:, kept].T @ g) / values[kept])
        tau = max(float(torch.linalg.matrix_norm(exact_hessian(loss, theta + correction) - hessian, 2)), tau)
    eigenvalues = values.to("cpu", torch.float64)
    point = CriticalPoint(
        theta=theta,
        loss=float(value),
        gradient_norm=gradient_norm,
        index=hessian_index(eigenvalues, tol=tau),
        eigenvalues=eigenvalues,
        iterations=0,
        converged=gradient_norm <= tol,
    )
    return point, {
        "loss": point.loss,
        "index": point.index,
        "gradient_norm": gradient_norm,
        "converged": point.converged,
        "lambda_min": float(eigenvalues[0]),
        "lambda_max": float(eigenvalues[-1]),
        "eigenvalue_tolerance": tau,
        "zero_eigenvalues": float((eigenvalues.abs() <= tau).double().mean()),
        "smallest_negative": float(-eigenvalues[eigenvalues < -tau].max()) if point.index > 0 else math.nan,
    }


def _searches(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per search (in the order run), its numbers as columns."""
    searches = metrics[metrics["trajectory"].notna()]
    return searches.pivot_table(index=["trajectory", "step"], columns="name", values="value").reset_index()


def _distinct(metrics: pd.DataFrame) -> pd.DataFrame:
    """The converged searches with distinct (loss, index): symmetric copies (unit permutations and sign flips of a
    tanh network) have the same loss and spectrum and are counted once."""
    found = _searches(metrics)
    converged = found[found["converged"] > 0]
    return converged[~pd.DataFrame({"l": converged["loss"].round(9), "i": converged["index"].round(6)}).duplicated()]


def _escape(obj: Objective, saddle: CriticalPoint, config: SaddlePointsConfig, seed: int) -> pd.DataFrame:
    """GD (`tdlab.train.fit`) from the saddle displaced by delta along a random unit vector, until the
    displacement's component in the eigenspace of lambda_min (which a symmetric saddle may repeat) reaches the
    radius. Rows: "escape_coordinate" and "escape_path_loss" by step; "escape_eigenvalue" (the Hessian's, ascending)
    and "escape_initial_coordinate" (the start's in its eigenbasis) by index; the saddle's "escape_loss",
    "escape_index", "escape_lambda_min", "escape_lambda_max", "escape_multiplicity", "escape_eta",
    "escape_delta_min", "escape_drift", "escape_gradient_norm", "escape_measured" (nan: not escaped),
    "escape_alignment"."""
    refined = find_critical_point(obj, saddle.theta, max_iter=20, tol=1e-13)
    theta_star = refined.theta if refined.gradient_norm < saddle.gradient_norm else saddle.theta
    values, vectors = torch.linalg.eigh(exact_hessian(obj, theta_star))
    lam_min, lam_max = float(values[0]), float(values[-1])
    basis = vectors[:, (values - lam_min).abs() <= 1e-8 * abs(lam_min)]  # eigenspace of lambda_min
    eta = config.eta_fraction / lam_max
    u = torch.randn(obj.dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(obj.device)
    assign(obj.params, theta_star + config.delta * u / u.norm())
    initial = vectors.T @ (obj.flat_parameters() - theta_star)
    loss_star, g_star = obj.value_and_gradient(theta_star)
    trace = []

    def record(step: int = 0, batch_loss: float = 0.0) -> bool:
        trace.append((float((basis.T @ (obj.flat_parameters() - theta_star)).norm()), float(obj.value())))
        return trace[-1][0] >= config.radius

    if not record():
        fit(
            obj.model,
            half_squared_error,
            obj.data.tensors,
            _gd(obj.model, eta),
            config.max_escape_steps,
            callbacks=[record],
        )
    displacement = obj.flat_parameters() - theta_star
    coordinates, losses = np.array(trace).T
    scalars = {
        "loss": float(loss_star),
        "index": refined.index,
        "lambda_min": lam_min,
        "lambda_max": lam_max,
        "multiplicity": basis.shape[1],
        "eta": eta,
        "delta_min": coordinates[0],
        "drift": float((basis.T @ g_star).norm()) / abs(lam_min),  # linearised fixed point, ideally << delta_min
        "gradient_norm": float(g_star.norm()),
        "measured": len(trace) - 1.0 if coordinates[-1] >= config.radius else math.nan,
        "alignment": float((basis.T @ displacement).norm() / displacement.norm()),
    }
    steps, index = np.arange(len(trace)), np.arange(obj.dim)
    return pd.concat(
        [
            *(rows(f"escape_{n}", v) for n, v in scalars.items()),
            rows("escape_coordinate", coordinates, step=steps),
            rows("escape_path_loss", losses, step=steps),
            rows("escape_eigenvalue", values.cpu().numpy(), index=index),
            rows("escape_initial_coordinate", initial.cpu().numpy(), index=index),
        ]
    )


def _escapes(metrics: pd.DataFrame, config: SaddlePointsConfig) -> list[dict]:
    """Per escape: its scalars (without the prefix), the predicted T = log(r / delta_min) / log(1 + eta
    |lambda_min|) (`tdlab.theory.saddles.escape_time`), and its series by step and by index."""
    out = []
    for _, escape in metrics[metrics["saddle"].notna()].groupby("saddle"):
        scalar = escape[escape["step"].isna() & escape["index"].isna()]
        e = {n.removeprefix("escape_"): v for n, v in zip(scalar["name"], scalar["value"], strict=True)}
        for by in ("step", "index"):
            for name, series in escape[escape[by].notna()].sort_values(by).groupby("name"):
                e[name.removeprefix("escape_")] = series["value"].to_numpy()
        e["predicted"] = (
            escape_time(config.radius, e["delta_min"], e["eta"], e["lambda_min"])
            if e["delta_min"] < config.radius
            else math.nan
        )
        out.append(e)
    return out


def _escape_rate(point: CriticalPoint) -> float:
    """|lambda_min| / lambda_max: GD with eta = c / lambda_max escapes in about log(r/delta) / (c |lambda_min| /
    lambda_max) steps, so the saddles with the largest ratio are the quickest to simulate."""
    return -float(point.eigenvalues[0]) / float(point.eigenvalues[-1])


def _spearman(points: pd.DataFrame) -> tuple[float, float]:
    """Spearman's rho of index and loss and the one-sided p-value of rho > 0 (nan, 1: too few distinct values)."""
    if len(points) < 3 or points["index"].nunique() < 2 or points["loss"].nunique() < 2:
        return math.nan, 1.0
    result = spearmanr(points["index"], points["loss"], alternative="greater")
    return float(result.statistic), float(result.pvalue)


def checks(metrics: pd.DataFrame, config: SaddlePointsConfig) -> list[Check]:
    """The rank correlation of index and loss; the escape time of each saddle (module docstring)."""
    found, distinct = _searches(metrics), _distinct(metrics)
    rho, p_value = _spearman(distinct)
    converged = int((found["converged"] > 0).sum()) if len(found) else 0
    tau = float(distinct["eigenvalue_tolerance"].max()) if len(distinct) else math.nan
    out = [
        Check.at_most(
            f"index grows with loss: one-sided Spearman test p-value (alpha = {ALPHA:g})",
            p_value,
            ALPHA,
            detail=f"Spearman rho = {rho:.3f} over {len(distinct)} distinct critical points of the data loss L "
            f"(||grad L|| <= {config.tol:g}; {converged} of {len(found)} searches, each on L + wd/2 |theta|^2 with "
            f"wd = {config.weight_decay:g} followed to wd = 0), index of L's Hessian (eigenvalues below -tau, tau "
            f"<= {tau:.1e}: the eigenvalues' uncertainty from the residual gradient); H0: no rank association, "
            f"H1: rho > 0; passes when p < {ALPHA:g}; fails if the index does not grow with the loss (e.g. shuffled "
            f"indices, or the index taken at points not critical for L); Dauphin et al. (2014), Fig. 1",
        )
    ]
    escapes = _escapes(metrics, config)
    for k, e in enumerate(escapes):
        out.append(
            Check.relative(
                f"escape time from saddle {k} (loss {e['loss']:.4g}, index {e['index']:.3g})",
                e["measured"],
                e["predicted"],
                ESCAPE_TOLERANCE,
                detail=f"first GD step with |P_min (theta_t - theta*)| >= r = {config.radius:g} (P_min: projector "
                f"on the eigenspace of lambda_min, multiplicity {e['multiplicity']:.0f}), eta = "
                f"{config.eta_fraction:g} / lambda_max = {e['eta']:.4g}, lambda_min = {e['lambda_min']:.4g}, "
                f"delta_min = {e['delta_min']:.3g} (delta = {config.delta:g} along a random direction); theory "
                f"log(r / delta_min) / log(1 + eta |lambda_min|); the saddle's residual gradient shifts the "
                f"start by {abs(e['drift']) / e['delta_min']:.1e} delta_min; tolerance 5% (the issue's)",
            )
        )
    if config.escapes and len(escapes) < config.escapes:
        out.append(
            Check.holds(
                "saddles found for the escapes",
                False,
                measured=float(len(escapes)),
                detail=f"{len(escapes)} converged critical points with index > 0, {config.escapes} asked for",
            )
        )
    return out


def figures(metrics: pd.DataFrame, config: SaddlePointsConfig) -> dict[str, Figure]:
    """Index against loss of the critical points; each escape against its linearisation."""
    escapes = _escapes(metrics, config)
    return {"index_vs_loss": _index_figure(metrics, config)} | (
        {"escape": _escape_figure(escapes, config)} if escapes else {}
    )


def _index_figure(metrics: pd.DataFrame, config: SaddlePointsConfig) -> Figure:
    found, distinct = _searches(metrics), _distinct(metrics)
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    penalised = found[found["penalised_converged"] > 0]
    if len(penalised):
        label = f"critical points of L + wd/2 |theta|^2 (wd = {config.weight_decay:g}), its loss and index"
        ax.plot(penalised["penalised_loss"], penalised["penalised_index"], "x", color="0.6", label=label)
    unconverged = found[found["converged"] == 0]
    if len(unconverged):
        label = f"search or continuation lost, ||grad L|| > {config.tol:g} ({len(unconverged)}, not used)"
        ax.plot(unconverged["loss"], unconverged["index"], "o", mfc="none", color="0.6", label=label)
    for points, marker, color, what in (
        (distinct[distinct["index"] > 0], "o", "tab:red", "saddles"),
        (distinct[distinct["index"] == 0], "s", "tab:blue", "minima"),
    ):
        ax.plot(points["loss"], points["index"], marker, color=color, ms=7, label=f"{what} ({len(points)})")
    rho, p_value = _spearman(distinct)
    ax.set_xscale("log")
    ax.set_xlabel("training loss L at the critical point")
    ax.set_ylabel("index of L (fraction of negative eigenvalues)")
    ax.set_title(
        f"Critical points of the training loss L, {describe(config.model)}\n"
        f"Spearman rho = {rho:.2f} (one-sided p = {p_value:.2g}, alpha = {ALPHA:g})",
        fontsize=10,
    )
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def _escape_figure(escapes: list[dict], config: SaddlePointsConfig) -> Figure:
    n = len(escapes)
    fig, axes = plt.subplots(2, n, figsize=(5.4 * n, 8.0), squeeze=False)
    for k, e in enumerate(escapes):
        t = np.arange(len(e["coordinate"]))
        stride = max(1, len(t) // 40)
        ax = axes[0, k]
        ax.semilogy(
            t[::stride], e["coordinate"][::stride], "o", color="k", ms=4, label="measured |P_min (theta_t - theta*)|"
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
            f"(x{e['multiplicity']:.0f}), measured T = {e['measured']:.0f}",
            fontsize=9,
        )
        ax.legend(fontsize=8)
        ax = axes[1, k]
        change = e["path_loss"] - e["loss"]
        resolvable = np.abs(change) > 100 * np.finfo(np.float64).eps * abs(e["loss"])
        shown = resolvable & (t % stride == 0)
        ax.semilogy(t[shown], np.abs(change[shown]), "o", color="k", ms=4, label="measured |L(theta_t) - L(theta*)|")
        ax.semilogy(
            t,
            np.abs(quadratic_loss_change(t, e["initial_coordinate"], e["eta"], e["eigenvalue"])),
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
    measure=measure,
    checks=checks,
    figures=figures,
    presets={
        "full": {
            "data": {
                "name": "synthetic-regression",
                "n_train": 256,
                "n_test": 1,
                "in_features": 6,
                "noise": 0.1,
                "teacher": "mlp",
                "teacher_width": 16,
            },
            "model": {"name": "mlp", "width": 10, "depth": 1, "activation": "tanh", "bias_init_std": 0.1},
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
