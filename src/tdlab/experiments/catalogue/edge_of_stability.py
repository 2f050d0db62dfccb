"""edge-of-stability: full-batch GD drives the sharpness up to 2/eta and keeps it there (Cohen et al. 2021).

Full-batch gradient descent, w <- w - eta grad f(w), is linearly stable near a point only while the sharpness
S = lambda_max(Hessian) stays below 2/eta (`tdlab.theory.stability`). Cohen, Kaur, Li, Kolter & Talwalkar
(2021) observed that on neural networks trained with the squared loss, S first rises ("progressive
sharpening") until it reaches 2/eta, and then hovers just above 2/eta ("edge of stability") while the loss
keeps decreasing over long times, though not monotonically.

The experiment trains one MLP initialisation on an mnist1d subset with 1/2 |f(x) - onehot(y)|^2 (averaged over
examples) by full-batch GD at several step sizes (heavy ball with `momentum` > 0, bound 2 (1 + beta)/eta), and
measures S every `sharpness_every` steps by Lanczos on Hessian-vector products, warm-started from the previous
top eigenvector. Checks, for each eta:

- edge of stability: the median of S / (2/eta) over the second half of training lies in [0.85, 1.15];
- progressive sharpening: before S first reaches 2/eta it increases with the step, a positive Spearman rank
  correlation significant at the 1% level (one-sided);
- the loss keeps falling at the edge: its final value is below its value when S first reached 2/eta.
"""

from __future__ import annotations

import math
from typing import Literal

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from pydantic import Field, field_validator
from scipy.stats import spearmanr
from torch import Tensor, nn

from tdlab.curvature import hessian_eigs
from tdlab.data import half_squared_error, mnist1d
from tdlab.experiments.base import Check, Context, Experiment, ExperimentConfig, Result, legacy
from tdlab.models import MLP
from tdlab.oracles import Objective
from tdlab.theory.stability import max_stable_sharpness, normalised_sharpness

EDGE_INTERVAL = (0.85, 1.15)  # the band for the median of S / S_max over the second half
TREND_LEVEL = 0.01  # significance level of the one-sided Spearman test for progressive sharpening


class EdgeOfStabilityConfig(ExperimentConfig):
    """Quick defaults: a tanh MLP (2 x 64) on 1000 mnist1d examples, 800 GD steps at three step sizes, the
    sharpness every 5 steps."""

    n_train: int = Field(1000, ge=10, description="number of mnist1d training examples")
    width: int = Field(64, ge=1, description="hidden units per layer")
    depth: int = Field(2, ge=1, description="number of hidden layers")
    activation: Literal["tanh", "gelu", "relu", "sigmoid", "leaky_relu", "linear"] = Field(
        "tanh", description="hidden activation"
    )
    etas: tuple[float, ...] = Field((0.25, 0.33, 0.4), description="step sizes, each > 0")
    momentum: float = Field(0.0, ge=0.0, lt=1.0, description="heavy-ball coefficient (0: plain GD)")
    steps: int = Field(800, ge=10, description="GD steps per step size")
    sharpness_every: int = Field(5, ge=1, description="steps between two sharpness measurements")
    lanczos_tol: float = Field(
        1e-2, gt=0, lt=1, description="relative residual tolerance of Lanczos (eigenvalue error ~ tol^2 S^2/gap)"
    )
    dtype: Literal["float32", "float64"] = Field("float32", description="floating type of model and data")

    @field_validator("etas")
    @classmethod
    def _positive_distinct(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value or any(not (math.isfinite(e) and e > 0) for e in value) or len(set(value)) != len(value):
            raise ValueError(f"etas: expected distinct finite step sizes > 0, got {value}")
        return value


def _train(config: EdgeOfStabilityConfig, eta: float, data: tuple[Tensor, Tensor], context: Context) -> dict:
    """Full-batch GD (heavy ball) at step `eta` from the seed's initialisation; loss every step, sharpness
    every `sharpness_every` steps and at the end."""
    X, Y = data
    model = MLP(
        X.shape[1],
        Y.shape[1],
        width=config.width,
        depth=config.depth,
        activation=config.activation,
        init="default",
        seed=config.seed,
    ).to(device=X.device, dtype=X.dtype)
    obj = Objective(model, half_squared_error, (X, Y))
    optimizer = torch.optim.SGD(model.parameters(), lr=eta, momentum=config.momentum)
    generator = torch.Generator().manual_seed(config.seed)
    losses, sharp_steps, sharpness, matvecs = [], [], [], []
    v0, diverged_at = None, None
    for step in context.track(range(config.steps + 1), f"GD eta={eta:g}"):
        loss, grads = obj.value_and_gradient(obj.params)
        if not (torch.isfinite(loss) and all(torch.isfinite(g).all() for g in grads.values())):
            diverged_at = step
            break
        losses.append(float(loss))
        if step % config.sharpness_every == 0 or step == config.steps:
            eig = hessian_eigs(obj, k=1, which="LA", tol=config.lanczos_tol, v0=v0, generator=generator)
            v0 = eig.eigenvectors[:, 0] if torch.isfinite(eig.eigenvectors).all() else None
            sharp_steps.append(step)
            sharpness.append(float(eig.eigenvalues[0]))
            matvecs.append(eig.num_matvecs)
        if step == config.steps:
            break
        for name, p in model.named_parameters():
            p.grad = grads[name]
        optimizer.step()
    return {
        "loss": np.array(losses),
        "sharp_steps": np.array(sharp_steps, dtype=int),
        "sharpness": np.array(sharpness),
        "matvecs": np.array(matvecs),
        "diverged_at": diverged_at,
    }


def _summarise(trace: dict, eta: float, config: EdgeOfStabilityConfig) -> dict:
    """The numbers the checks read: median S/S_max over the second half, the first crossing of S_max, the
    Spearman trend before it, the loss at the crossing and at the end."""
    bound = float(max_stable_sharpness(eta, config.momentum))
    steps, sharp, loss = trace["sharp_steps"], trace["sharpness"], trace["loss"]
    ratio = normalised_sharpness(sharp, eta, config.momentum)
    diverged = trace["diverged_at"] is not None
    second_half = steps >= config.steps / 2
    median = math.nan if diverged or not second_half.any() else float(np.median(ratio[second_half]))
    above = np.flatnonzero(sharp >= bound)
    crossing = int(above[0]) if above.size else None
    rho = p_value = math.nan
    if crossing is not None and crossing >= 3:
        if np.ptp(sharp[:crossing]) == 0:  # a constant series has no trend
            rho, p_value = 0.0, 1.0
        else:
            result = spearmanr(steps[:crossing], sharp[:crossing], alternative="greater")
            rho, p_value = float(result.statistic), float(result.pvalue)
    crossing_step = int(steps[crossing]) if crossing is not None else None
    loss_ratio = math.nan
    increases = math.nan
    if crossing_step is not None and not diverged and crossing_step < len(loss) - 1:
        loss_ratio = float(loss[-1] / loss[crossing_step])
        increases = float(np.mean(np.diff(loss[crossing_step:]) > 0))
    return {
        "bound": bound,
        "ratio": ratio,
        "median_ratio": median,
        "crossing_step": crossing_step,
        "pre_crossing_points": crossing if crossing is not None else len(sharp),
        "spearman_rho": rho,
        "spearman_p": p_value,
        "loss_ratio": loss_ratio,
        "loss_increase_fraction": increases,
        "initial_sharpness": float(sharp[0]) if sharp.size else math.nan,
    }


def run(config: EdgeOfStabilityConfig, context: Context) -> Result:
    """Train one initialisation at each step size, tracking loss and sharpness, and check the edge of stability.

    Example:
        >>> config = EdgeOfStabilityConfig(n_train=50, width=8, etas=(0.5,), steps=20, device="cpu")
        >>> result = run(config, Context(torch.device("cpu")))
        >>> sorted(set(result.metrics["name"]))[:3]
        ['bound', 'crossing_step', 'diverged_at']
    """
    dtype = getattr(torch, config.dtype)
    data = mnist1d(n_train=config.n_train, n_test=10, seed=config.seed).to(context.device, dtype)
    Y = nn.functional.one_hot(data.y_train, data.out_features).to(dtype)
    traces, summaries, rows = {}, {}, []
    for eta in config.etas:
        trace = _train(config, eta, (data.X_train, Y), context)
        summary = _summarise(trace, eta, config)
        traces[eta], summaries[eta] = trace, summary
        rows += [{"eta": eta, "step": t, "name": "loss", "value": v} for t, v in enumerate(trace["loss"])]
        for t, s, r, m in zip(
            trace["sharp_steps"], trace["sharpness"], summary["ratio"], trace["matvecs"], strict=True
        ):
            rows += [
                {"eta": eta, "step": t, "name": "sharpness", "value": s},
                {"eta": eta, "step": t, "name": "normalised_sharpness", "value": r},
                {"eta": eta, "step": t, "name": "lanczos_matvecs", "value": float(m)},
            ]
        for name in (
            "median_ratio",
            "spearman_rho",
            "spearman_p",
            "loss_ratio",
            "loss_increase_fraction",
            "initial_sharpness",
            "bound",
        ):
            rows.append({"eta": eta, "name": name, "value": summary[name]})
        for name, value in (("crossing_step", summary["crossing_step"]), ("diverged_at", trace["diverged_at"])):
            rows.append({"eta": eta, "name": name, "value": math.nan if value is None else float(value)})
    metrics = pd.DataFrame(rows, columns=["eta", "step", "name", "value"])
    checks = [check for eta in config.etas for check in _checks(eta, traces[eta], summaries[eta], config)]
    figures = {
        "edge_of_stability": _paper_figure(traces, summaries, config),
        "normalised_sharpness": _normalised_figure(traces, summaries, config),
    }
    return Result(metrics, checks, figures)


def _checks(eta: float, trace: dict, summary: dict, config: EdgeOfStabilityConfig) -> list[Check]:
    bound_name = "2/eta" if config.momentum == 0 else "2(1+beta)/eta"
    status = (
        f"diverged at step {trace['diverged_at']}"
        if trace["diverged_at"] is not None
        else f"{bound_name} = {summary['bound']:.4g}, initial sharpness {summary['initial_sharpness']:.4g}"
    )
    low, high = EDGE_INTERVAL
    crossing = summary["crossing_step"]
    checks = [
        Check.interval(
            f"median sharpness / ({bound_name}) over the second half, eta={eta:g}",
            summary["median_ratio"],
            low,
            high,
            detail=f"Lanczos (tol {config.lanczos_tol:g}, warm-started) every {config.sharpness_every} steps, "
            f"steps >= {config.steps // 2}; {status}; band [{low:g}, {high:g}] (Cohen et al. 2021)",
        ),
    ]
    if crossing is None:
        trend_detail = f"sharpness never reached {bound_name} in {config.steps} steps ({status})"
    elif not math.isfinite(summary["spearman_p"]):
        trend_detail = (
            f"only {summary['pre_crossing_points']} measurements before the sharpness first reached {bound_name} "
            f"(step {crossing}): too few for a trend; start below the bound or measure more often ({status})"
        )
    else:
        trend_detail = (
            f"Spearman rho = {summary['spearman_rho']:.3f} over the {summary['pre_crossing_points']} measurements "
            f"before the sharpness first reached {bound_name} (step {crossing}); one-sided test, level "
            f"{TREND_LEVEL:g} ({status})"
        )
    checks.append(
        Check.at_most(
            f"progressive sharpening p-value, eta={eta:g}",
            summary["spearman_p"],
            TREND_LEVEL,
            detail=trend_detail,
        )
    )
    checks.append(
        Check.at_most(
            f"final loss / loss at the first crossing, eta={eta:g}",
            summary["loss_ratio"],
            1.0,
            detail=(
                f"the loss keeps falling at the edge of stability; {100 * summary['loss_increase_fraction']:.0f}% of "
                f"the steps after the crossing raised it (non-monotone) ({status})"
                if math.isfinite(summary["loss_ratio"])
                else f"no edge-of-stability phase to judge: {trend_detail}"
            ),
        )
    )
    return checks


def _colours(n: int) -> list:
    return [plt.get_cmap("viridis")(x) for x in np.linspace(0.0, 0.85, n)]


def _paper_figure(traces: dict, summaries: dict, config: EdgeOfStabilityConfig) -> Figure:
    fig, (ax_loss, ax_sharp) = plt.subplots(1, 2, figsize=(11.5, 4.2))
    bound_name = "2/eta" if config.momentum == 0 else "2(1+beta)/eta"
    for colour, (eta, trace) in zip(_colours(len(traces)), traces.items(), strict=True):
        ax_loss.plot(np.arange(len(trace["loss"])), trace["loss"], color=colour, lw=1.2, label=f"eta = {eta:.4g}")
        ax_sharp.plot(
            trace["sharp_steps"], trace["sharpness"], "o-", ms=2.5, lw=0.8, color=colour, label=f"eta = {eta:.4g}"
        )
        ax_sharp.axhline(
            summaries[eta]["bound"],
            color=colour,
            ls="--",
            lw=1.2,
            label=f"{bound_name} = {summaries[eta]['bound']:.3g}",
        )
    ax_loss.set_xlabel("iteration")
    ax_loss.set_ylabel("train loss (1/2 squared error)")
    ax_loss.set_title("Train loss")
    ax_loss.legend(fontsize=8)
    ax_sharp.set_xlabel("iteration")
    ax_sharp.set_ylabel("sharpness (top Hessian eigenvalue)")
    ax_sharp.set_title(f"Sharpness; dashed: {bound_name}")
    ax_sharp.legend(fontsize=7, ncol=2)
    fig.suptitle(
        f"Full-batch GD{f' with momentum {config.momentum:g}' if config.momentum else ''} at the edge of "
        f"stability ({config.activation} MLP {config.depth}x{config.width}, mnist1d n={config.n_train})"
    )
    fig.tight_layout()
    return fig


def _normalised_figure(traces: dict, summaries: dict, config: EdgeOfStabilityConfig) -> Figure:
    fig, ax = plt.subplots(figsize=(6.8, 4.2))
    low, high = EDGE_INTERVAL
    ax.axhspan(low, high, color="tab:green", alpha=0.12, label=f"check band [{low:g}, {high:g}]")
    ax.axhline(1.0, color="k", ls="--", lw=1.2, label="stability bound (theory)")
    ax.axvspan(config.steps / 2, config.steps, color="gray", alpha=0.08, label="second half (checked)")
    for colour, (eta, trace) in zip(_colours(len(traces)), traces.items(), strict=True):
        summary = summaries[eta]
        ax.plot(
            trace["sharp_steps"],
            summary["ratio"],
            "o",
            ms=2.5,
            color=colour,
            label=f"eta = {eta:.4g}: median {summary['median_ratio']:.3f}",
        )
    ax.set_xlabel("iteration")
    ax.set_ylabel("sharpness / (2/eta)" if config.momentum == 0 else "sharpness / (2(1+beta)/eta)")
    ax.set_title("Sharpness in units of the stability bound")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


EXPERIMENT = Experiment(
    name="edge-of-stability",
    claim="Full-batch GD sharpens the loss until the top Hessian eigenvalue reaches 2/eta, then trains at the "
    "edge of stability: the sharpness hovers at 2/eta while the loss keeps falling non-monotonically.",
    config=EdgeOfStabilityConfig,
    **legacy(run),
    presets={
        "full": {
            "n_train": 4000,
            "width": 200,
            "depth": 3,
            "etas": (2 / 30, 2 / 20, 2 / 15, 2 / 10),
            "steps": 6000,
            "sharpness_every": 20,
        },
    },
    references=(
        "Cohen, Kaur, Li, Kolter & Talwalkar (2021), Gradient descent on neural networks typically occurs at "
        "the edge of stability, ICLR",
    ),
    part="optimisation",
)
