"""edge-of-stability: full-batch GD drives the sharpness up to 2/eta and keeps it there (Cohen et al. 2021).

Full-batch gradient descent, w <- w - eta grad f(w), is linearly stable near a point only while the sharpness
S = lambda_max(Hessian) stays below 2/eta (`tdlab.theory.stability`). Cohen, Kaur, Li, Kolter & Talwalkar
(2021) observed that on neural networks trained with the squared loss, S first rises ("progressive
sharpening") until it reaches 2/eta, and then hovers just above 2/eta ("edge of stability") while the loss
keeps decreasing over long times, though not monotonically.

The experiment trains one MLP initialisation (`model` section) on an mnist1d subset (`data` section) with
1/2 |f(x) - onehot(y)|^2 (averaged over examples) by full-batch GD (`tdlab.train.fit`, `torch.optim.SGD`) at several
step sizes (heavy ball with `momentum` > 0, bound 2 (1 + beta)/eta). The train loss is recorded after every step
(from GD's own forward pass, `measure`), the `sharpness` probe S every `sharpness_every` steps (Lanczos on
Hessian-vector products of the full-batch loss, warm-started from the previous top eigenvector). Checks, for each
eta:

- edge of stability: the median of S / (2/eta) over the second half of training lies in [0.85, 1.15];
- progressive sharpening: before S first reaches 2/eta it increases with the step, a positive Spearman rank
  correlation significant at the 1% level (one-sided);
- the loss keeps falling at the edge: its final value is below its value when S first reached 2/eta;
- yet not monotonically: after that first crossing the loss climbs at least 5% above its running minimum (the
  largest ratio loss_t / min_{s <= t} loss_s over the steps after the crossing is >= 1.05). A monotone run has
  ratio exactly 1 and fails (float rounding in a converging monotone run is ~1e-6, far below 5%); together with the
  previous check this is Cohen et al.'s "non-monotone over short times, decreasing over long times". The detail
  reports the same ratio before the crossing (1 for plain GD in the quick run: the rises start with S >= 2/eta).
"""

from __future__ import annotations

import math
from typing import Literal

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from pydantic import Field
from scipy.stats import spearmanr
from torch import nn

from tdlab.data import half_squared_error
from tdlab.experiments.base import Check, Context, Experiment, ExperimentConfig
from tdlab.experiments.fields import StepSizes, describe, seeded
from tdlab.experiments.tidy import series
from tdlab.probes import LossProbe, ProbeSet, Sharpness
from tdlab.theory.stability import max_stable_sharpness
from tdlab.train.builders import build_data, build_network
from tdlab.train.config import DataConfig, ModelConfig
from tdlab.train.trainer import fit

EDGE_INTERVAL = (0.85, 1.15)  # the band for the median of S / S_max over the second half
TREND_LEVEL = 0.01  # significance level of the one-sided Spearman test for progressive sharpening
RISE_LEVEL = 1.05  # the loss must climb 5% above its running minimum after the crossing (monotone: exactly 1)


class EdgeOfStabilityConfig(ExperimentConfig):
    """Quick defaults: a tanh MLP (2 x 64) on 1000 mnist1d examples, 800 GD steps at three step sizes, the
    sharpness every 5 steps. `seed` seeds the data and the model unless their sections set their own."""

    data: DataConfig = Field(default_factory=lambda: DataConfig(name="mnist1d", n_train=1000, n_test=10))
    model: ModelConfig = Field(
        default_factory=lambda: ModelConfig(name="mlp", width=64, depth=2, activation="tanh", init="default")
    )
    etas: StepSizes = Field((0.25, 0.33, 0.4), description="step sizes, each > 0")
    momentum: float = Field(0.0, ge=0.0, lt=1.0, description="heavy-ball coefficient (0: plain GD)")
    steps: int = Field(800, ge=10, description="GD steps per step size")
    sharpness_every: int = Field(5, ge=1, description="steps between two sharpness measurements")
    lanczos_tol: float = Field(
        1e-2, gt=0, lt=1, description="relative residual tolerance of Lanczos (eigenvalue error ~ tol^2 S^2/gap)"
    )
    dtype: Literal["float32", "float64"] = Field("float32", description="floating type of model and data")


def measure(config: EdgeOfStabilityConfig, context: Context) -> pd.DataFrame:
    """Rows (eta, step, name, value) from step 0: "train/loss" after every step (a diverged run ends with a loss that
    is not finite), "sharpness", "sharpness/matvecs" and "sharpness/residual" every `sharpness_every` steps.

    The train loss after step t is the full-batch loss GD evaluates for its step t + 1 (the trainer's
    "train/batch_loss" of step t + 1, the same forward pass on the same parameters), so no extra forward pass is
    spent on it; a `LossProbe` measures the loss after the last step, which no GD step evaluates."""
    dtype = getattr(torch, config.dtype)
    dataset = build_data(seeded(config.data, config.seed), context.device, dtype)
    train = dataset.X_train, nn.functional.one_hot(dataset.y_train, dataset.out_features).to(dtype)
    frames = []
    for eta in context.track(config.etas, "edge-of-stability: step sizes"):
        model = build_network(seeded(config.model, config.seed), dataset)
        sharpness = Sharpness(config.sharpness_every, tol=config.lanczos_tol, seed=config.seed)
        last = LossProbe(every=config.steps, batch_size=None)  # due at steps 0 and `steps`; only the latter is kept
        probes = ProbeSet([last, sharpness], model, half_squared_error, train, task="regression")
        optimizer = torch.optim.SGD(model.parameters(), lr=eta, momentum=config.momentum)
        rows = fit(model, half_squared_error, train, optimizer, config.steps, probes=probes).metrics
        before_step = rows.query("name == 'train/batch_loss'").assign(step=lambda f: f["step"] - 1, name="train/loss")
        final = rows.query("name == 'train/loss' and step == @config.steps")
        probed = rows.query("name not in ('train/batch_loss', 'lr', 'train/loss')")
        frames.append(pd.concat([before_step, final, probed]).sort_values("step", kind="stable").assign(eta=eta))
    return pd.concat(frames, ignore_index=True)


def summarise(metrics: pd.DataFrame, eta: float, config: EdgeOfStabilityConfig) -> dict:
    """The numbers the checks read, from the metrics of step size `eta`: the bound S_max (theory), S / S_max, its
    median over the second half, the first crossing of S_max, the Spearman trend before it, the loss at the
    crossing and at the end; a run diverged at the first step whose loss is not finite."""
    bound = float(max_stable_sharpness(eta, config.momentum))
    steps, sharp = series(metrics, "sharpness", eta=eta)
    loss_steps, loss = series(metrics, "train/loss", eta=eta)
    diverged = loss_steps[~np.isfinite(loss)]
    diverged_at = int(diverged[0]) if diverged.size else None
    ratio = sharp / bound
    second_half = steps >= config.steps / 2
    median = math.nan if diverged_at is not None or not second_half.any() else float(np.median(ratio[second_half]))
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
    loss_ratio = increases = rise = rise_before = math.nan
    if crossing_step is not None and diverged_at is None and crossing_step < loss_steps[-1]:
        after, before = loss[loss_steps >= crossing_step], loss[loss_steps <= crossing_step]
        loss_ratio, increases = float(after[-1] / after[0]), float(np.mean(np.diff(after) > 0))
        rise = float(np.max(after / np.minimum.accumulate(after)))
        rise_before = float(np.max(before / np.minimum.accumulate(before)))
    return {
        "bound": bound,
        "steps": steps,
        "sharpness": sharp,
        "ratio": ratio,
        "loss_steps": loss_steps,
        "loss": loss,
        "diverged_at": diverged_at,
        "median_ratio": median,
        "crossing_step": crossing_step,
        "pre_crossing_points": crossing if crossing is not None else len(sharp),
        "spearman_rho": rho,
        "spearman_p": p_value,
        "loss_ratio": loss_ratio,
        "loss_increase_fraction": increases,
        "loss_rise": rise,
        "loss_rise_before": rise_before,
        "initial_sharpness": float(sharp[0]) if sharp.size else math.nan,
    }


def checks(metrics: pd.DataFrame, config: EdgeOfStabilityConfig) -> list[Check]:
    """Four checks per step size (module docstring)."""
    bound_name = "2/eta" if config.momentum == 0 else "2(1+beta)/eta"
    low, high = EDGE_INTERVAL
    out = []
    for eta in config.etas:
        s = summarise(metrics, eta, config)
        status = (
            f"diverged at step {s['diverged_at']}"
            if s["diverged_at"] is not None
            else f"{bound_name} = {s['bound']:.4g}, initial sharpness {s['initial_sharpness']:.4g}"
        )
        crossing = s["crossing_step"]
        if crossing is None:
            trend_detail = f"sharpness never reached {bound_name} in {config.steps} steps ({status})"
        elif not math.isfinite(s["spearman_p"]):
            trend_detail = (
                f"only {s['pre_crossing_points']} measurements before the sharpness first reached {bound_name} "
                f"(step {crossing}): too few for a trend; start below the bound or measure more often ({status})"
            )
        else:
            trend_detail = (
                f"Spearman rho = {s['spearman_rho']:.3f} over the {s['pre_crossing_points']} measurements "
                f"before the sharpness first reached {bound_name} (step {crossing}); one-sided test, level "
                f"{TREND_LEVEL:g} ({status})"
            )
        out += [
            Check.interval(
                f"median sharpness / ({bound_name}) over the second half, eta={eta:g}",
                s["median_ratio"],
                low,
                high,
                detail=f"Lanczos (tol {config.lanczos_tol:g}, warm-started) every {config.sharpness_every} steps, "
                f"steps >= {config.steps // 2}; {status}; band [{low:g}, {high:g}] (Cohen et al. 2021)",
            ),
            Check.at_most(
                f"progressive sharpening p-value, eta={eta:g}", s["spearman_p"], TREND_LEVEL, detail=trend_detail
            ),
            Check.at_most(
                f"final loss / loss at the first crossing, eta={eta:g}",
                s["loss_ratio"],
                1.0,
                detail=(
                    f"the loss keeps falling at the edge of stability; {100 * s['loss_increase_fraction']:.0f}% of "
                    f"the steps after the crossing raised it (non-monotone) ({status})"
                    if math.isfinite(s["loss_ratio"])
                    else f"no edge-of-stability phase to judge: {trend_detail}"
                ),
            ),
            Check.at_least(
                f"loss non-monotone at the edge: largest loss / running minimum after the first crossing, eta={eta:g}",
                s["loss_rise"],
                RISE_LEVEL,
                detail=(
                    f"{100 * s['loss_increase_fraction']:.0f}% of the steps after step {s['crossing_step']} raised the "
                    f"loss; the same ratio before the crossing: {s['loss_rise_before']:.4g}; a monotone run gives "
                    f"exactly 1 and fails ({status})"
                    if math.isfinite(s["loss_rise"])
                    else f"no edge-of-stability phase to judge: {trend_detail}"
                ),
            ),
        ]
    return out


def figures(metrics: pd.DataFrame, config: EdgeOfStabilityConfig) -> dict[str, Figure]:
    """The paper's figure (loss; sharpness with 2/eta) and the sharpness in units of the bound with the band."""
    summaries = {eta: summarise(metrics, eta, config) for eta in config.etas}
    colours = [plt.get_cmap("viridis")(x) for x in np.linspace(0.0, 0.85, len(summaries))]
    bound_name = "2/eta" if config.momentum == 0 else "2(1+beta)/eta"
    fig, (ax_loss, ax_sharp) = plt.subplots(1, 2, figsize=(11.5, 4.2))
    for colour, (eta, s) in zip(colours, summaries.items(), strict=True):
        ax_loss.plot(s["loss_steps"], s["loss"], color=colour, lw=1.2, label=f"eta = {eta:.4g}")
        ax_sharp.plot(s["steps"], s["sharpness"], "o-", ms=2.5, lw=0.8, color=colour, label=f"eta = {eta:.4g}")
        ax_sharp.axhline(s["bound"], color=colour, ls="--", lw=1.2, label=f"{bound_name} = {s['bound']:.3g}")
    ax_loss.set(xlabel="iteration", ylabel="train loss (1/2 squared error)", title="Train loss")
    ax_loss.legend(fontsize=8)
    ax_sharp.set(
        xlabel="iteration", ylabel="sharpness (top Hessian eigenvalue)", title=f"Sharpness; dashed: {bound_name}"
    )
    ax_sharp.legend(fontsize=7, ncol=2)
    fig.suptitle(
        f"Full-batch GD{f' with momentum {config.momentum:g}' if config.momentum else ''} at the edge of stability: "
        f"{describe(config.model)} on {describe(config.data)}"
    )
    fig.tight_layout()

    fig_ratio, ax = plt.subplots(figsize=(6.8, 4.2))
    low, high = EDGE_INTERVAL
    ax.axhspan(low, high, color="tab:green", alpha=0.12, label=f"check band [{low:g}, {high:g}]")
    ax.axhline(1.0, color="k", ls="--", lw=1.2, label="stability bound (theory)")
    ax.axvspan(config.steps / 2, config.steps, color="gray", alpha=0.08, label="second half (checked)")
    for colour, (eta, s) in zip(colours, summaries.items(), strict=True):
        ax.plot(
            s["steps"], s["ratio"], "o", ms=2.5, color=colour, label=f"eta = {eta:.4g}: median {s['median_ratio']:.3f}"
        )
    ax.set(xlabel="iteration", ylabel=f"sharpness / ({bound_name})", title="Sharpness in units of the stability bound")
    ax.legend(fontsize=8)
    fig_ratio.tight_layout()
    return {"edge_of_stability": fig, "normalised_sharpness": fig_ratio}


EXPERIMENT = Experiment(
    name="edge-of-stability",
    claim="Full-batch GD sharpens the loss until the top Hessian eigenvalue reaches 2/eta, then trains at the "
    "edge of stability: the sharpness hovers at 2/eta while the loss keeps falling non-monotonically.",
    config=EdgeOfStabilityConfig,
    measure=measure,
    checks=checks,
    figures=figures,
    presets={
        "full": {
            "data": {"name": "mnist1d", "n_train": 2000, "n_test": 10},
            "model": {"name": "mlp", "width": 200, "depth": 3, "activation": "tanh", "init": "default"},
            "etas": (2 / 30, 2 / 20, 2 / 15, 2 / 10),
            "steps": 4000,
            "sharpness_every": 20,
        },
    },
    references=(
        "Cohen, Kaur, Li, Kolter & Talwalkar (2021), Gradient descent on neural networks typically occurs at "
        "the edge of stability, ICLR",
    ),
    part="optimisation",
)
