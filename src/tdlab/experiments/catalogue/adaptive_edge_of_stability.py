"""adaptive-edge-of-stability: full-batch Adam drives the preconditioned sharpness to 38/eta (Cohen et al. 2022).

Adam steps along P^{-1} m with the diagonal preconditioner P = (1 - beta1^t)(sqrt(v_t / (1 - beta2^t)) + eps).
For a frozen P and the quadratic model of the loss, the update is heavy ball on P^{-1} H with gradient
(1 - beta1) g, linearly stable iff the preconditioned sharpness lambda_1(P^{-1} H) stays below
(2 + 2 beta1)/((1 - beta1) eta), which is 38/eta at beta1 = 0.9 (`tdlab.theory.adaptive_stability`). Cohen,
Kaur, Li, Kolter, Nado, Gilmer, Tian & Talwalkar (2022), "Adaptive gradient methods at the edge of stability"
(arXiv 2207.14484), observed that full-batch Adam behaves like gradient descent at the edge of stability (Cohen et
al. 2021) with the preconditioned sharpness in place of the sharpness: it rises during training until it reaches
38/eta and then hovers there while the loss keeps falling. The ordinary sharpness lambda_1(H) is not bound by
GD's 2/eta: Adam's effective steps eta / P are much longer than eta.

The experiment trains one tanh MLP initialisation (`model` section) on an mnist1d subset (`data` section) with
1/2 |f(x) - onehot(y)|^2 (averaged over examples) by full-batch `torch.optim.Adam` (`tdlab.train.fit`) at several
step sizes, and measures the train loss after every step (probe `loss`), lambda_1(P^{-1} H) (probe
`preconditioned-sharpness`, P read from the optimiser's state) and lambda_1(H) (probe `sharpness`) every
`sharpness_every` steps. Checks, for each eta:

- adaptive edge of stability: the median of lambda_1(P^{-1} H) / (38/eta) over the second half of training lies
  in [0.85, 1.15], the band of the `edge-of-stability` experiment for the same kind of claim;
- it rose to the edge: the first measurement (after `sharpness_every` steps) is at most half the threshold;
- the loss keeps falling at the edge: the final loss is below the loss when lambda_1(P^{-1} H) first reached
  the threshold;
- GD's bound is not what binds Adam: the median of lambda_1(H) / (2/eta) over the second half is at most 1/2.
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
from torch import nn

from tdlab.data import half_squared_error
from tdlab.experiments.base import Check, Context, Experiment, ExperimentConfig
from tdlab.experiments.fields import StepSizes, describe, seeded
from tdlab.experiments.tidy import series
from tdlab.probes import LossProbe, PreconditionedSharpness, ProbeSet, Sharpness
from tdlab.theory.adaptive_stability import adam_stability_threshold
from tdlab.theory.stability import max_stable_sharpness
from tdlab.train.builders import build_data, build_network
from tdlab.train.config import DataConfig, ModelConfig
from tdlab.train.trainer import fit

EDGE_INTERVAL = (0.85, 1.15)  # band of the median of lambda_1(P^-1 H) / threshold (as in edge-of-stability)
START_AT_MOST = 0.5  # "well below": the first measurement at most half the threshold
RAW_AT_MOST = 0.5  # the ordinary sharpness at most half of GD's bound 2/eta
PRE = "preconditioned-sharpness"


class AdaptiveEdgeOfStabilityConfig(ExperimentConfig):
    """Quick defaults: a tanh MLP (2 x 32) on 256 mnist1d examples, 600 full-batch Adam steps (torch's betas and
    eps) at two step sizes, both sharpnesses every 5 steps. `seed` seeds the data and the model unless their
    sections set their own."""

    data: DataConfig = Field(default_factory=lambda: DataConfig(name="mnist1d", n_train=256, n_test=10))
    model: ModelConfig = Field(
        default_factory=lambda: ModelConfig(name="mlp", width=32, depth=2, activation="tanh", init="default")
    )
    etas: StepSizes = Field((0.003, 0.006), description="Adam step sizes (lr), each > 0")
    beta1: float = Field(0.9, ge=0.0, lt=1.0, description="Adam's first-moment coefficient")
    beta2: float = Field(0.999, ge=0.0, lt=1.0, description="Adam's second-moment coefficient")
    eps: float = Field(1e-8, gt=0, description="Adam's eps")
    steps: int = Field(600, ge=10, description="Adam steps per step size")
    sharpness_every: int = Field(5, ge=1, description="steps between two sharpness measurements")
    lanczos_tol: float = Field(1e-3, gt=0, lt=1, description="tolerance of Lanczos (see hessian_eigs)")
    lanczos_criterion: Literal["ritz", "residual"] = Field(
        "ritz", description="Lanczos stopping rule: change of the Ritz value (cheap, warm-started) or residual bound"
    )
    dtype: Literal["float32", "float64"] = Field("float32", description="floating type of model and data")


def measure(config: AdaptiveEdgeOfStabilityConfig, context: Context) -> pd.DataFrame:
    """Rows (eta, step, name, value): "train/loss" at every step from 0 (a diverged run ends with a loss that is not
    finite), and the probes' metrics every `sharpness_every` steps from the first (Adam's P exists after it)."""
    dtype = getattr(torch, config.dtype)
    dataset = build_data(seeded(config.data, config.seed), context.device, dtype)
    train = dataset.X_train, nn.functional.one_hot(dataset.y_train, dataset.out_features).to(dtype)
    lanczos = {"tol": config.lanczos_tol, "criterion": config.lanczos_criterion, "seed": config.seed}
    frames = []
    for eta in context.track(config.etas, "adaptive-edge-of-stability: step sizes"):
        model = build_network(seeded(config.model, config.seed), dataset)
        optimizer = torch.optim.Adam(model.parameters(), lr=eta, betas=(config.beta1, config.beta2), eps=config.eps)
        every = config.sharpness_every
        probes = [LossProbe(batch_size=None), PreconditionedSharpness(every, **lanczos), Sharpness(every, **lanczos)]
        probes = ProbeSet(probes, model, half_squared_error, train, task="regression")
        m = fit(model, half_squared_error, train, optimizer, config.steps, probes=probes, measure_start=False).metrics
        start = m[(m["name"] == "train/batch_loss") & (m["step"] == 1)].assign(step=0, name="train/loss")  # at w_0
        frames.append(pd.concat([start, m[~m["name"].isin(("train/batch_loss", "lr"))]]).assign(eta=eta))
    return pd.concat(frames, ignore_index=True)


def summarise(metrics: pd.DataFrame, eta: float, config: AdaptiveEdgeOfStabilityConfig) -> dict:
    """The numbers the checks read, from the stored metrics of step size `eta`: the threshold 38/eta (theory), the
    ratios lambda_1(P^-1 H) / threshold, their median over the second half, the first one, the first crossing,
    the loss ratio after it and the median of lambda_1(H) / (2/eta) over the second half; a run diverged at the
    first step whose loss is not finite."""
    threshold = float(adam_stability_threshold(eta, config.beta1))
    steps, pre = series(metrics, PRE, eta=eta)
    raw_steps, raw = series(metrics, "sharpness", eta=eta)
    loss_steps, loss = series(metrics, "train/loss", eta=eta)
    diverged = loss_steps[~np.isfinite(loss)]
    diverged_at = int(diverged[0]) if diverged.size else None
    ratio = pre / threshold
    second_half = steps > config.steps / 2
    raw_second_half = raw_steps > config.steps / 2
    finished = diverged_at is None
    median = float(np.median(ratio[second_half])) if finished and second_half.any() else math.nan
    raw_bound = float(max_stable_sharpness(eta))
    raw_ratio = float(np.median(raw[raw_second_half]) / raw_bound) if finished and raw_second_half.any() else math.nan
    above = np.flatnonzero(ratio >= 1.0)
    crossing_step = int(steps[above[0]]) if above.size else None
    loss_at = dict(zip(loss_steps.tolist(), loss.tolist(), strict=True))
    loss_ratio = math.nan
    if finished and crossing_step is not None and crossing_step < config.steps and config.steps in loss_at:
        loss_ratio = loss_at[config.steps] / loss_at[crossing_step]
    return {
        "threshold": threshold,
        "steps": steps,
        "ratio": ratio,
        "median_ratio": median,
        "first_ratio": float(ratio[0]) if ratio.size else math.nan,
        "first_step": int(steps[0]) if steps.size else None,
        "crossing_step": crossing_step,
        "loss_ratio": loss_ratio,
        "raw_steps": raw_steps,
        "raw": raw,
        "raw_ratio": raw_ratio,
        "raw_bound": raw_bound,
        "loss_steps": loss_steps,
        "loss": loss,
        "diverged_at": diverged_at,
    }


def checks(metrics: pd.DataFrame, config: AdaptiveEdgeOfStabilityConfig) -> list[Check]:
    """Four checks per step size, read from the stored metrics (module docstring)."""
    out = []
    low, high = EDGE_INTERVAL
    bound_name = f"(2 + 2 beta1)/((1 - beta1) eta) = {2 * (1 + config.beta1) / (1 - config.beta1):.4g}/eta"
    for eta in config.etas:
        s = summarise(metrics, eta, config)
        status = (
            f"diverged at step {s['diverged_at']}"
            if s["diverged_at"] is not None
            else f"threshold {bound_name} = {s['threshold']:.4g}"
        )
        out += [
            Check.interval(
                f"median preconditioned sharpness / threshold over the second half, eta={eta:g}",
                s["median_ratio"],
                low,
                high,
                detail=f"lambda_1(P^-1 H) by Lanczos ({config.lanczos_criterion}, tol {config.lanczos_tol:g}, "
                f"warm-started) every {config.sharpness_every} steps, steps > {config.steps // 2}; {status}; "
                f"band [{low:g}, {high:g}] (Cohen et al. 2022)",
            ),
            Check.at_most(
                f"first preconditioned sharpness / threshold (it rose to the edge), eta={eta:g}",
                s["first_ratio"],
                START_AT_MOST,
                detail=f"measured after {s['first_step']} steps; first reached the threshold at step "
                f"{s['crossing_step']} ({status})",
            ),
            Check.at_most(
                f"final loss / loss at the first crossing, eta={eta:g}",
                s["loss_ratio"],
                1.0,
                detail=f"the loss keeps falling at the edge; crossing at step {s['crossing_step']} ({status})"
                if math.isfinite(s["loss_ratio"])
                else f"no phase at the edge to judge: the threshold was never reached before the end ({status})",
            ),
            Check.at_most(
                f"median sharpness / (2/eta) over the second half (GD's bound does not bind Adam), eta={eta:g}",
                s["raw_ratio"],
                RAW_AT_MOST,
                detail=f"lambda_1(H) by Lanczos, 2/eta = {s['raw_bound']:.4g}: Adam's steps eta P^-1 are far longer "
                f"than eta, so it is stable with lambda_1(H) far below 2/eta ({status})",
            ),
        ]
    return out


def figures(metrics: pd.DataFrame, config: AdaptiveEdgeOfStabilityConfig) -> dict[str, Figure]:
    """The paper's figure (loss; preconditioned sharpness with 38/eta; sharpness with 2/eta) and the normalised
    preconditioned sharpness with the checked band."""
    summaries = {eta: summarise(metrics, eta, config) for eta in config.etas}
    colours = [plt.get_cmap("viridis")(x) for x in np.linspace(0.0, 0.8, len(config.etas))]
    threshold_name = f"{2 * (1 + config.beta1) / (1 - config.beta1):.3g}/eta"
    fig, (ax_loss, ax_pre, ax_raw) = plt.subplots(1, 3, figsize=(15, 4.2))
    for colour, (eta, s) in zip(colours, summaries.items(), strict=True):
        label = f"eta = {eta:.4g}"
        ax_loss.plot(s["loss_steps"], s["loss"], color=colour, lw=1.2, label=label)
        ax_pre.plot(s["steps"], s["ratio"] * s["threshold"], "o-", ms=2.0, lw=0.7, color=colour, label=label)
        ax_pre.axhline(s["threshold"], color=colour, ls="--", lw=1.2, label=f"{threshold_name} = {s['threshold']:.4g}")
        ax_raw.plot(s["raw_steps"], s["raw"], "o-", ms=2.0, lw=0.7, color=colour, label=label)
        ax_raw.axhline(s["raw_bound"], color=colour, ls=":", lw=1.2, label=f"2/eta = {s['raw_bound']:.4g}")
    ax_loss.set(yscale="log", xlabel="iteration", ylabel="train loss (1/2 squared error)", title="Train loss")
    ax_pre.set(
        xlabel="iteration", ylabel="lambda_1(P^-1 H)", title=f"Preconditioned sharpness; dashed: {threshold_name}"
    )
    ax_raw.set(yscale="log", xlabel="iteration", ylabel="lambda_1(H)")
    ax_raw.set_title("Sharpness (not preconditioned); dotted: GD's 2/eta")
    ax_loss.legend(fontsize=8)
    for ax in (ax_pre, ax_raw):
        ax.legend(fontsize=7, ncol=2)
    fig.suptitle(
        f"Full-batch Adam (beta1={config.beta1:g}, beta2={config.beta2:g}, eps={config.eps:g}) at the edge of "
        f"stability: {describe(config.model)} on {describe(config.data)}"
    )
    fig.tight_layout()

    fig_ratio, ax = plt.subplots(figsize=(6.8, 4.2))
    low, high = EDGE_INTERVAL
    ax.axhspan(low, high, color="tab:green", alpha=0.12, label=f"check band [{low:g}, {high:g}]")
    ax.axhline(1.0, color="k", ls="--", lw=1.2, label="stability threshold (theory)")
    ax.axvspan(config.steps / 2, config.steps, color="gray", alpha=0.08, label="second half (checked)")
    for colour, (eta, s) in zip(colours, summaries.items(), strict=True):
        ax.plot(
            s["steps"], s["ratio"], "o", ms=2.5, color=colour, label=f"eta = {eta:.4g}: median {s['median_ratio']:.3f}"
        )
    ax.set(xlabel="iteration", ylabel=f"lambda_1(P^-1 H) / ({threshold_name})")
    ax.set_title("Preconditioned sharpness in units of Adam's threshold")
    ax.legend(fontsize=8)
    fig_ratio.tight_layout()
    return {"adaptive_edge_of_stability": fig, "normalised_preconditioned_sharpness": fig_ratio}


EXPERIMENT = Experiment(
    name="adaptive-edge-of-stability",
    claim="Full-batch Adam sharpens the preconditioned loss until lambda_1(P^-1 H) reaches its stability threshold "
    "(2 + 2 beta1)/((1 - beta1) eta) = 38/eta, then trains at that edge while the loss keeps falling; the ordinary "
    "sharpness stays far below GD's 2/eta.",
    config=AdaptiveEdgeOfStabilityConfig,
    measure=measure,
    checks=checks,
    figures=figures,
    presets={
        "full": {
            "data": {"name": "mnist1d", "n_train": 1000, "n_test": 10},
            "model": {"name": "mlp", "width": 100, "depth": 3, "activation": "tanh", "init": "default"},
            "etas": (0.001, 0.002, 0.004),
            "steps": 3000,
            "sharpness_every": 10,
        },
    },
    references=(
        "Cohen, Kaur, Li, Kolter, Nado, Gilmer, Tian & Talwalkar (2022), Adaptive gradient methods at the edge of "
        "stability, arXiv 2207.14484",
        "Cohen, Kaur, Li, Kolter & Talwalkar (2021), Gradient descent on neural networks typically occurs at "
        "the edge of stability, ICLR",
    ),
    part="optimisation",
)
