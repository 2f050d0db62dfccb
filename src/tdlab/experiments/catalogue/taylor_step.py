"""taylor-step: the second-order model of one gradient step on a real network, and its best step.

Along the gradient step w - eps g of a network's training loss, Taylor's theorem predicts (`tdlab.theory.taylor`)

    Delta f(eps) = -eps g.g + eps^2/2 g.Hg + O(eps^3),         best step  eps* = g.g / g.Hg   (g.Hg > 0),

with g.Hg from one Hessian-vector product. The network (`model` section, an MLP by default) is trained on the
`data` section by full-batch GD (`tdlab.train.fit`, `torch.optim.SGD`); at each checkpoint (init and later) the
experiment measures on its `tdlab.oracles.Objective`, in float64:

- the error of the second-order model over small steps eps in [1e-4, 1e-1] * g.g/|g.Hg|, and the slope of
  log |Delta f - model| against log eps over the errors above the float64 noise floor (1e-12 |f|): 3 by
  Taylor's theorem (tolerance 0.2);
- the best step on the real loss (a grid over (0, 4 eps*] refined by bounded Brent), against eps* (10%);
- the quadratic model's relative error at its own minimiser, r, which says whether eps* can be trusted:
  a cubic remainder moves the best step to eps* u(r), u(r) = 2/(1 + sqrt(1 + 6r)). The best-step check is
  made where |r| <= 0.05 (then the cubic correction |u - 1| is below 8%, inside the 10% tolerance); elsewhere
  the ratio is recorded with u(r), which shows where and why eps* fails (a saddle's negative g.Hg, the flat
  tails of cross-entropy, a step far outside the quadratic region).

Smooth activations only: a ReLU network's loss has kinks at every example's zero crossings, so the Taylor
expansion fails at small eps and the slope is not 3.
"""

from __future__ import annotations

import math
from typing import Literal

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from pydantic import Field, field_validator, model_validator
from scipy.optimize import minimize_scalar
from torch import Tensor, nn

from tdlab.data import half_squared_error
from tdlab.experiments.base import Check, Context, Experiment, ExperimentConfig
from tdlab.experiments.fields import seeded
from tdlab.experiments.tidy import rows, select, series, value
from tdlab.oracles import Objective
from tdlab.theory.taylor import (
    best_decrease,
    best_step,
    cubic_best_step_ratio,
    first_order_change,
    second_order_change,
    taylor_error_exponent,
)
from tdlab.train.builders import build_data, build_network
from tdlab.train.config import DataConfig, ModelConfig
from tdlab.train.trainer import fit

SLOPE_TOLERANCE = 0.2  # the tolerance on the fitted exponent
BEST_STEP_TOLERANCE = 0.1  # the relative tolerance on the measured best step
VALID_MODEL_ERROR = 0.05  # |r| <= 0.05 keeps the cubic correction u(r) within [0.93, 1.09] (theory.taylor)
# Loss differences below NOISE_FLOOR * |f(w)| are float64 rounding of a mean over N x C terms (~1e-16 |f| here,
# 1e4 times smaller than the floor): such points are left out of the slope fits.
NOISE_FLOOR = 1e-12
MIN_FIT_POINTS = 4
MAX_PANELS = 4  # checkpoints drawn in the Taylor figure
SMOOTH = ("tanh", "gelu", "sigmoid")
SCALARS = ("loss", "gg", "gHg", "eps_star", "best_step", "best_step_ratio", "model_error", "cubic_ratio")
SCALARS += ("error_slope", "fit_points", "first_order_slope")


class TaylorStepConfig(ExperimentConfig):
    """Quick defaults: a tanh MLP (2 x 128) on 500 mnist1d examples, half squared error on one-hot targets,
    checkpoints at init and after 100 GD steps at step size 0.5. `seed` seeds the data and the model unless their
    sections set their own."""

    data: DataConfig = Field(default_factory=lambda: DataConfig(name="mnist1d", n_train=500, n_test=10))
    model: ModelConfig = Field(
        default_factory=lambda: ModelConfig(name="mlp", width=128, depth=2, activation="tanh", init="default")
    )
    loss: Literal["mse", "cross_entropy"] = Field(
        "mse", description="mse: 1/2 |f(x) - onehot(y)|^2 averaged over examples; or cross-entropy"
    )
    train_lr: float = Field(0.5, gt=0, description="step size of the full-batch GD run between checkpoints")
    checkpoints: tuple[int, ...] = Field((0, 100), description="GD steps at which the step is analysed")
    eps_range: tuple[float, float] = Field(
        (1e-4, 1e-1), description="small steps for the slope fit, in units of g.g/|g.Hg|"
    )
    num_eps: int = Field(13, ge=MIN_FIT_POINTS, description="number of small steps in the slope fit (log-spaced)")
    search_range: float = Field(4.0, gt=1, description="the best step is searched in (0, search_range * eps*]")
    grid_points: int = Field(100, ge=20, description="grid points of the best-step search before refinement")

    @field_validator("checkpoints")
    @classmethod
    def _sorted_distinct(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or any(t < 0 for t in value) or list(value) != sorted(set(value)):
            raise ValueError(f"checkpoints: expected distinct non-negative steps in increasing order, got {value}")
        return value

    @field_validator("eps_range")
    @classmethod
    def _small_range(cls, value: tuple[float, float]) -> tuple[float, float]:
        low, high = value
        if not 0 < low < high <= 0.1:
            raise ValueError(f"eps_range: expected 0 < low < high <= 0.1 (small steps), got {value}")
        return value

    @model_validator(mode="after")
    def _smooth(self) -> TaylorStepConfig:
        activation = self.model.kwargs().get("activation", "relu")
        if self.model.name == "mlp" and activation not in SMOOTH:
            raise ValueError(
                f"model.activation: expected a smooth one of {SMOOTH} (ReLU's kinks break the Taylor "
                f"expansion), got {activation!r}"
            )
        return self


def _log_log_slope(x: np.ndarray, y: np.ndarray, floor: float) -> tuple[float, int]:
    """Least-squares slope of log y against log x over the points with floor < y < inf, and their number
    (nan with fewer than MIN_FIT_POINTS)."""
    keep = (y > floor) & np.isfinite(y)
    if keep.sum() < MIN_FIT_POINTS:
        return math.nan, int(keep.sum())
    return float(np.polyfit(np.log(x[keep]), np.log(y[keep]), 1)[0]), int(keep.sum())


def _analyse(obj: Objective, theta: Tensor, config: TaylorStepConfig) -> dict:
    """Everything measured at one point: the Taylor coefficients, the small-step errors, the line search."""
    f0, g = obj.value_and_gradient(theta)
    f0 = float(f0)
    gg = float(g @ g)
    gHg = float(g @ obj.hvp(g, theta))

    def change(eps: float) -> float:
        value = float(obj.value(theta - eps * g)) - f0
        return value if math.isfinite(value) else math.inf

    scale = gg / abs(gHg) if gHg != 0 else 1.0 / math.sqrt(gg)
    small = scale * np.geomspace(*config.eps_range, config.num_eps)
    small_change = np.array([change(e) for e in small])
    first_error = np.abs(small_change - first_order_change(small, gg))
    second_error = np.abs(small_change - second_order_change(small, gg, gHg))
    floor = NOISE_FLOOR * abs(f0)
    error_slope, fit_points = _log_log_slope(small, second_error, floor)

    eps_star = best_step(gg, gHg)
    reach = config.search_range * (eps_star if math.isfinite(eps_star) else scale)
    grid = np.linspace(0.0, reach, config.grid_points + 1)
    grid_change = np.array([0.0] + [change(e) for e in grid[1:]])
    i = int(np.argmin(grid_change))
    if 0 < i < config.grid_points:
        refined = minimize_scalar(
            change, bounds=(grid[i - 1], grid[i + 1]), method="bounded", options={"xatol": 1e-7 * reach}
        )
        measured_best = float(refined.x)
    else:  # no interior minimum in the searched range
        measured_best = math.nan
    if math.isfinite(eps_star):
        predicted = best_decrease(gg, gHg)
        model_error = (change(eps_star) - predicted) / abs(predicted)
    else:
        model_error = math.nan
    return {
        "loss": f0,
        "gg": gg,
        "gHg": gHg,
        "eps_star": eps_star,
        "best_step": measured_best,
        "best_step_ratio": measured_best / eps_star if math.isfinite(eps_star) else math.nan,
        "model_error": model_error,
        "cubic_ratio": float(cubic_best_step_ratio(model_error)) if math.isfinite(model_error) else math.nan,
        "error_slope": error_slope,
        "fit_points": fit_points,
        "first_order_slope": _log_log_slope(small, first_error, floor)[0],
        "noise_floor": floor,
        "small_eps": small,
        "first_error": first_error,
        "second_error": second_error,
        "grid": grid,
        "grid_change": grid_change,
    }


def measure(config: TaylorStepConfig, context: Context) -> pd.DataFrame:
    """Train by full-batch GD to each checkpoint and measure the Taylor models of the step -eps g there.

    Rows: "train/batch_loss" (step, the loss before optimiser step `step`) and, where the loss stopped being
    finite, "diverged" (step); per checkpoint (step) the scalars of `_analyse` (`SCALARS`), and per eps
    "first_order_error", "second_order_error" (the small steps) and "loss_change" (the search grid).
    """
    dataset = build_data(seeded(config.data, config.seed), context.device, torch.float64)
    model = build_network(seeded(config.model, config.seed), dataset)
    if config.loss == "mse":
        loss_fn, targets = half_squared_error, nn.functional.one_hot(dataset.y_train, dataset.out_features).double()
    else:
        loss_fn, targets = nn.CrossEntropyLoss(), dataset.y_train
    train = dataset.X_train, targets
    optimizer = torch.optim.SGD(model.parameters(), lr=config.train_lr)
    frames, reached = [], 0
    for step in context.track(config.checkpoints, "GD to the checkpoints"):
        trained = fit(model, loss_fn, train, optimizer, step, start=reached)
        frames.append(select(trained.metrics, "train/batch_loss").astype({"step": int, "value": float}))
        if trained.diverged:
            frames.append(rows("diverged", 1.0, step=trained.diverged_at))
            break
        reached = step
        obj = Objective(model, loss_fn, train)
        a = _analyse(obj, obj.flat_parameters(), config)
        frames += [rows(name, a[name], step=step) for name in SCALARS]
        for name, eps, values in (
            ("first_order_error", a["small_eps"], a["first_error"]),
            ("second_order_error", a["small_eps"], a["second_error"]),
            ("loss_change", a["grid"], a["grid_change"]),
        ):
            frames.append(rows(name, values, step=step, eps=eps))
    return pd.concat(frames, ignore_index=True)


def _analyses(metrics: pd.DataFrame) -> dict[int, dict]:
    """The per-checkpoint measurements of `_analyse`, read back from the metrics."""
    out = {}
    for step in series(metrics, "error_slope")[0].astype(int):
        a = {name: value(metrics, name, step=step) for name in SCALARS}
        a["small_eps"], a["second_error"] = series(metrics, "second_order_error", "eps", step=step)
        a["grid"], a["grid_change"] = series(metrics, "loss_change", "eps", step=step)
        a["first_error"] = series(metrics, "first_order_error", "eps", step=step)[1]
        a["fit_points"], a["noise_floor"] = int(a["fit_points"]), NOISE_FLOOR * abs(a["loss"])
        out[step] = a
    return out


def figures(metrics: pd.DataFrame, config: TaylorStepConfig) -> dict[str, Figure]:
    """The loss along -g with its Taylor models and their errors; the best step against eps*."""
    analyses = _analyses(metrics)
    return {"taylor_step": _taylor_figure(analyses, config), "best_step": _best_step_figure(analyses)}


def checks(metrics: pd.DataFrame, config: TaylorStepConfig) -> list[Check]:
    """The error exponent at every checkpoint; the best step where the quadratic model is valid; divergence."""
    analyses, exponent = _analyses(metrics), taylor_error_exponent(2)
    low, high = config.eps_range
    checks = []
    for step, a in analyses.items():
        checks.append(
            Check.absolute(
                f"second-order error exponent at step {step}",
                a["error_slope"],
                exponent,
                SLOPE_TOLERANCE,
                detail=f"log-log slope of |Delta f - (-eps g.g + eps^2/2 g.Hg)| over the {a['fit_points']} of "
                f"{config.num_eps} steps eps in [{low:g}, {high:g}] g.g/|g.Hg| whose error exceeds the float64 "
                f"noise floor {NOISE_FLOOR:g} |f|; Taylor remainder O(eps^3) "
                f"(first-order model: slope {a['first_order_slope']:.2f}, theory 2)",
            )
        )
    valid = []
    for step, a in analyses.items():
        if math.isfinite(a["model_error"]) and abs(a["model_error"]) <= VALID_MODEL_ERROR:
            valid.append(step)
            checks.append(
                Check.relative(
                    f"best step / eps* at step {step}",
                    a["best_step_ratio"],
                    1.0,
                    BEST_STEP_TOLERANCE,
                    detail=f"line search on the real loss over (0, {config.search_range:g} eps*], eps* = g.g/g.Hg = "
                    f"{a['eps_star']:.4g}; quadratic model error at eps* r = {a['model_error']:+.3f} "
                    f"(checked where |r| <= {VALID_MODEL_ERROR}); cubic correction u(r) = "
                    f"{a['cubic_ratio']:.3f}",
                )
            )
    if not valid:
        summary = ", ".join(f"step {s}: r = {a['model_error']:+.3g}" for s, a in analyses.items())
        checks.append(
            Check.holds(
                "quadratic model valid at a checkpoint",
                False,
                detail=f"no checkpoint with g.Hg > 0 and |r| <= {VALID_MODEL_ERROR} ({summary}): eps* untested",
            )
        )
    diverged = select(metrics, "diverged")["step"]
    if len(diverged):
        checks.append(
            Check.holds(
                "GD run reaches every checkpoint",
                False,
                detail=f"the loss became non-finite at step {int(diverged.iloc[0])} (train_lr = {config.train_lr:g})",
            )
        )
    return checks


def _taylor_figure(analyses: dict[int, dict], config: TaylorStepConfig) -> Figure:
    """Loss change along -g with its Taylor models (top) and the models' errors (bottom), for up to
    MAX_PANELS checkpoints (evenly spread, first and last included)."""
    steps = list(analyses)
    shown = [
        steps[i] for i in sorted(set(np.linspace(0, len(steps) - 1, min(len(steps), MAX_PANELS)).round().astype(int)))
    ]
    n = len(shown)
    fig, axes = plt.subplots(2, n, figsize=(4.6 * n, 8.0), squeeze=False)
    for col, step in enumerate(shown):
        a = analyses[step]
        ax = axes[0, col]
        finite_star = math.isfinite(a["eps_star"])
        span = min(2.5 * a["eps_star"], a["grid"][-1]) if finite_star else a["grid"][-1]
        show = a["grid"] <= span
        eps, actual = a["grid"][show], a["grid_change"][show]
        stride = max(1, len(eps) // 40)
        line = np.linspace(0.0, span, 200)
        ax.plot(eps[::stride], actual[::stride], "o", ms=4, color="k", label="measured f(w - eps g) - f(w)")
        ax.plot(line, first_order_change(line, a["gg"]), "--", color="tab:blue", label="first order: -eps g.g")
        ax.plot(
            line,
            second_order_change(line, a["gg"], a["gHg"]),
            "-",
            color="tab:red",
            label="second order: -eps g.g + eps^2/2 g.Hg",
        )
        if finite_star:
            ax.axvline(a["eps_star"], color="tab:red", ls=":", label="eps* = g.g / g.Hg (theory)")
        if math.isfinite(a["best_step"]):
            ax.axvline(a["best_step"], color="k", ls=":", alpha=0.6, label="measured best step")
        bottom = min(np.nanmin(actual), best_decrease(a["gg"], a["gHg"]) if finite_star else np.nanmin(actual))
        top = max(np.nanmax(actual), 0.0)
        pad = 0.15 * (top - bottom)
        ax.set_ylim(bottom - pad, top + pad)
        ax.set_xlabel("step size eps")
        ax.set_ylabel("loss change")
        ax.set_title(
            f"GD step {step}: eps* = {a['eps_star']:.3g}, best {a['best_step']:.3g}\n"
            f"model error at eps*: r = {a['model_error']:+.3f}",
            fontsize=10,
        )

        ax = axes[1, col]
        x = a["small_eps"]
        ax.loglog(x, a["first_error"], "s", color="tab:blue", label=f"first order (slope {a['first_order_slope']:.2f})")
        ax.loglog(x, a["second_error"], "o", color="tab:red", label=f"second order (slope {a['error_slope']:.2f})")
        for err, power, color in ((a["first_error"], 2, "tab:blue"), (a["second_error"], 3, "tab:red")):
            above = np.flatnonzero(err > a["noise_floor"])
            if above.size:
                k = above[above.size // 2]
                ax.loglog(x, err[k] * (x / x[k]) ** power, "-", color=color, alpha=0.5, label=f"eps^{power} guide")
        ax.axhline(a["noise_floor"], color="gray", ls=":", label="float64 noise floor (left out of fits)")
        ax.set_xlabel("step size eps")
        ax.set_ylabel("|measured - model|")
        ax.set_title(f"Taylor model error at step {step}", fontsize=10)
        ax.legend(fontsize=7, loc="lower right")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    model, len_train = config.model.kwargs(), config.data.kwargs().get("n_train", "all")
    fig.legend(handles, labels, loc="upper center", ncol=3, fontsize=8, bbox_to_anchor=(0.5, 0.955))
    fig.suptitle(
        f"Loss along -g and its Taylor models ({model.get('activation', 'relu')} {config.model.name} "
        f"{model.get('depth', 3)}x{model.get('width', 128)}, {config.data.name} n={len_train}, {config.loss})"
    )
    fig.tight_layout(rect=(0, 0, 1, 0.915))
    return fig


def _best_step_figure(analyses: dict[int, dict]) -> Figure:
    steps = np.array(list(analyses))
    ratio = np.array([a["best_step_ratio"] for a in analyses.values()])
    cubic = np.array([a["cubic_ratio"] for a in analyses.values()])
    r = np.array([a["model_error"] for a in analyses.values()])
    checked = np.abs(r) <= VALID_MODEL_ERROR  # nan compares False
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6.4, 6.4), sharex=True)
    low, high = 1 - BEST_STEP_TOLERANCE, 1 + BEST_STEP_TOLERANCE
    top.axhspan(low, high, color="tab:green", alpha=0.15, label="within 10% of eps*")
    top.axhline(1.0, color="tab:red", lw=1, label="quadratic model: best step = eps*")
    top.plot(steps, cubic, "x", ms=9, color="tab:purple", label="cubic correction u(r)")
    top.plot(steps[checked], ratio[checked], "o", color="k", label="measured best step / eps* (checked)")
    top.plot(steps[~checked], ratio[~checked], "o", mfc="none", color="k", label="measured, |r| > 0.05 (not checked)")
    finite = ratio[np.isfinite(ratio) & (ratio > 0)]
    if finite.size and (finite.max() / finite.min() > 3 or finite.max() > 3):
        top.set_yscale("log")
    else:
        values = np.concatenate([finite, [low - 0.05, high + 0.05]])
        top.set_ylim(values.min(), values.max())
    top.set_ylabel("best step / eps*")
    top.set_title("Best step along -g, measured against eps* = g.g / g.Hg")
    top.legend(fontsize=7, loc="lower right")
    bottom.axhspan(
        -VALID_MODEL_ERROR,
        VALID_MODEL_ERROR,
        color="tab:green",
        alpha=0.15,
        label=f"|r| <= {VALID_MODEL_ERROR}: quadratic model valid, best step checked",
    )
    bottom.axhline(0.0, color="tab:red", lw=1)
    bottom.plot(steps, r, "o", color="k", label="r = relative error of the quadratic model at eps*")
    if np.nanmax(np.abs(r), initial=0.0) > 0.2:
        bottom.set_yscale("symlog", linthresh=0.1)
    else:
        bottom.set_ylim(-0.2, 0.2)
    bottom.set_ylabel("r")
    bottom.set_xlabel("GD step of the checkpoint")
    bottom.legend(fontsize=7)
    if steps.min() == 0 and steps.max() > 10:
        bottom.set_xscale("symlog", linthresh=10)
        bottom.set_xlim(-2, 1.5 * steps.max())
    fig.tight_layout()
    return fig


EXPERIMENT = Experiment(
    name="taylor-step",
    claim="The loss change of a gradient step -eps g is -eps g.g + eps^2/2 g.Hg up to O(eps^3), and the best "
    "step is eps* = g.g / g.Hg where the quadratic model holds.",
    config=TaylorStepConfig,
    measure=measure,
    checks=checks,
    figures=figures,
    presets={
        "full": {
            "data": {"name": "mnist1d", "n_train": 2000, "n_test": 10},
            "model": {"name": "mlp", "width": 256, "depth": 2, "activation": "tanh", "init": "default"},
            "checkpoints": (0, 10, 20, 50, 100, 200, 300, 500, 1000, 2000),
            "num_eps": 17,
            "grid_points": 400,
        },
    },
    references=(
        "Nocedal & Wright (2006), Numerical Optimization, 2nd ed., sec. 3.3 and 4.1",
        "Pearlmutter (1994), Fast exact multiplication by the Hessian, Neural Computation",
    ),
    part="optimisation",
)
