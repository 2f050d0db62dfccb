"""linear-interpolation: the loss along the straight line from the initialisation to the trained network.

Goodfellow, Vinyals & Saxe (2015) evaluate L((1 - alpha) theta_init + alpha theta_final) for alpha in
[-0.5, 1.5] and find that, for networks trained by SGD (ReLU and maxout networks among them), the loss falls
monotonically from the initialisation to the solution: no barrier lies on the straight path. The experiment
trains a network (`model` section, ReLU by default) on a training set (`data` section) with each optimiser of
`optimizers` (`tdlab.train.fit`, mini-batches in `tdlab.train.batches` order) from `seeds` initialisations
(seed, seed + 1, ...; each optimiser starts from the same one), and measures along each path, float64:

- loss and accuracy on [-0.5, 1.5] (`num_alphas` points, for the figure);
- on `fine_points` points of [0, 1]: the loss L(alpha), its exact slope L'(alpha) = grad L(theta(alpha)) . d
  and its curvature d^T H(theta(alpha)) d (d = theta_final - theta_init), both by autograd in one pass per point
  (`path_derivatives`: reverse over reverse with alpha as the leaf). A ReLU network's loss has a kink wherever
  an example's pre-activation crosses zero; autograd's derivatives are those of the piece the point lies on
  (ReLU's Hessian, defined almost everywhere), so neither needs a finite difference across a kink. The slope's
  change between grid points is the integral of d^T H d plus the jumps at the kinks crossed; the figure shows
  both.

Checks (for SGD, the optimiser of the claim; the others are drawn), and how each fails:

- "the loss falls monotonically, every seed": the largest rise max_(a < a') L(a') - L(a) on the grid of [0, 1]
  (`tdlab.landscape.largest_bump`), over seeds, in units of the drop L(0) - L(1); 0 when monotone. A barrier,
  or a solution past the bottom of the valley along the line (a rise just before alpha = 1), fails it.
- "the slope is negative along the whole path, every seed": the largest L'(alpha) over the grid and the seeds,
  in the same units, must be below 0: the loss is falling at every grid point. It fails at a rise in progress at
  a grid point even where the sampled values still fall from one point to the next (a bump narrower than the
  grid spacing that straddles a grid point); a bump that fits between two grid points escapes both checks, so
  `fine_points` sets the narrowest barrier they can see.

The curvature at alpha = 1 by a central second difference against d^T H d (the smooth-network numerics this
experiment used to check) is a test in tests/experiments/test_linear_interpolation.py.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from pydantic import Field, field_validator
from torch import Tensor, nn

from tdlab.config.threads import one_thread
from tdlab.experiments.base import Check, Context, Experiment, ExperimentConfig
from tdlab.experiments.fields import describe, seeded
from tdlab.experiments.tidy import rows, select, series
from tdlab.landscape import largest_bump, path_profile
from tdlab.oracles import Objective, unflatten
from tdlab.train.builders import build_data, build_network, build_optimizer
from tdlab.train.config import DataConfig, ModelConfig, OptimizerConfig
from tdlab.train.trainer import fit

CLAIMED = "sgd"  # the optimiser of Goodfellow et al.'s claim


class LinearInterpolationConfig(ExperimentConfig):
    """Quick defaults: a ReLU MLP (2 x 48) on 1000 mnist1d examples, 600 steps of SGD, batch 64, from 3
    initialisations; 101 points on [0, 1]. The full preset adds Adam."""

    data: DataConfig = Field(default_factory=lambda: DataConfig(name="mnist1d", n_train=1000, n_test=10))
    model: ModelConfig = Field(
        default_factory=lambda: ModelConfig(name="mlp", width=48, depth=2, activation="relu"),
        description="the network (ReLU by default, as Goodfellow et al.'s)",
    )
    optimizers: tuple[OptimizerConfig, ...] = Field(
        (OptimizerConfig(name="sgd", lr=0.5),),
        min_length=1,
        description="optimisers (distinct names) that train a copy of the same initialisation; sgd is checked",
    )
    seeds: int = Field(3, ge=1, description="initialisations (and mini-batch orders) per optimiser")
    steps: int = Field(600, ge=1, description="optimiser steps")
    batch_size: int = Field(64, ge=1, description="mini-batch size")
    num_alphas: int = Field(41, ge=5, description="points on alpha in [-0.5, 1.5]; (num_alphas - 1) % 4 == 0")
    fine_points: int = Field(101, ge=3, description="points on [0, 1] for the loss, its slope and its curvature")

    @field_validator("num_alphas")
    @classmethod
    def _grid_hits_ends(cls, value: int) -> int:
        if (value - 1) % 4:
            raise ValueError(
                f"num_alphas: expected 4 m + 1 points so that alpha = 0 and 1 are on the grid, got {value}"
            )
        return value

    @field_validator("optimizers")
    @classmethod
    def _distinct(cls, value: tuple[OptimizerConfig, ...]) -> tuple[OptimizerConfig, ...]:
        if len({o.name for o in value}) != len(value):
            raise ValueError(f"optimizers: expected distinct names, got {[o.name for o in value]}")
        return value


def measure(config: LinearInterpolationConfig, context: Context) -> pd.DataFrame:
    """Rows (optimizer, seed, step, alpha, name, value): "train/batch_loss" by step; "loss", "accuracy" by alpha
    on [-0.5, 1.5]; "path_loss", "slope", "curvature" by alpha on [0, 1]; "distance" |d| (none of the path rows
    when the loss became non-finite). On one CPU thread: the quick preset's networks are small; the full preset
    takes about 8 min of CPU, 57% training and 43% paths, both float64 matrix products near MKL's one-thread peak."""
    with one_thread():
        return _measure(config, context)


def _measure(config: LinearInterpolationConfig, context: Context) -> pd.DataFrame:
    frames = []
    runs = [(seed, opt) for seed in range(config.seed, config.seed + config.seeds) for opt in config.optimizers]
    data = build_data(seeded(config.data, config.seed), context.device, torch.float64)
    for seed, opt in context.track(runs, "train and interpolate"):
        model = build_network(seeded(config.model, seed), data)  # the same initialisation for each optimiser
        obj = Objective(model, nn.CrossEntropyLoss(), data.train)
        theta_init = obj.flat_parameters()
        optimizer = build_optimizer(model.parameters(), opt)
        trained = fit(model, obj.loss_fn, data.train, optimizer, config.steps, batch_size=config.batch_size, seed=seed)
        found = [select(trained.metrics, "train/batch_loss")]  # ends with a non-finite loss if it diverged
        if not trained.diverged:
            found += _path(obj, theta_init, obj.flat_parameters(), config)
        frames += [f.assign(optimizer=opt.name, seed=seed) for f in found]
    columns = ["optimizer", "seed", "step", "alpha", "name", "value"]
    return pd.concat(frames, ignore_index=True).reindex(columns=columns)


def _path(obj: Objective, theta_init: Tensor, theta: Tensor, config: LinearInterpolationConfig) -> list:
    d = theta - theta_init
    alphas = torch.linspace(-0.5, 1.5, config.num_alphas, dtype=torch.float64)
    profile = path_profile(obj, theta_init, theta, alphas, with_accuracy=True)
    alphas, loss, accuracies = alphas.numpy(), profile.loss.numpy(), profile.accuracy.numpy()
    fine = np.linspace(0.0, 1.0, config.fine_points)
    path_loss, slope, curvature = zip(*(path_derivatives(obj, theta_init, d, alpha) for alpha in fine), strict=True)
    return [
        rows("loss", loss, alpha=alphas),
        rows("accuracy", accuracies, alpha=alphas),
        rows("path_loss", path_loss, alpha=fine),
        rows("slope", slope, alpha=fine),
        rows("curvature", curvature, alpha=fine),
        rows("distance", float(d.norm())),
    ]


def path_derivatives(obj: Objective, theta_init: Tensor, d: Tensor, alpha: float) -> tuple[float, float, float]:
    """L(alpha), L'(alpha) = grad L . d and L''(alpha) = d^T H d of L(alpha) = L(theta_init + alpha d) at `alpha`.

    One forward pass and two backward passes per batch, alpha the leaf of autograd: the first backward pass gives
    dL/dalpha = grad L(theta(alpha)) . d with its graph, the second differentiates it again (reverse over reverse,
    as `Objective.hvp`; theta is linear in alpha, so the chain rule adds no term). The same numbers as
    `obj.value_and_gradient` and `obj.hvp` give, to rounding (tested), at three quarters of their cost (165 against
    219 ms per point on the full preset's network, one CPU thread): they share the forward and first backward pass.
    Evaluated through `obj.outputs` on the model as it is (train or eval mode)."""
    a = torch.tensor(float(alpha), dtype=obj.dtype, device=obj.device, requires_grad=True)
    total, count = torch.zeros(3, dtype=torch.float64), 0
    for inputs, targets in obj.batches():
        with torch.enable_grad():
            loss = obj.loss_fn(obj.outputs(unflatten(theta_init + a * d, obj.params), inputs), targets)
            (slope,) = torch.autograd.grad(loss, a, create_graph=True)
            (curvature,) = torch.autograd.grad(slope, a)
        n = targets.shape[0]
        total += n * torch.stack([loss.detach(), slope.detach(), curvature]).cpu().to(torch.float64)
        count += n
    loss, slope, curvature = (total / count).tolist()
    return loss, slope, curvature


def _finished(metrics: pd.DataFrame, config: LinearInterpolationConfig) -> dict[str, float]:
    """The optimisers whose training stayed finite in every seed, with their step sizes."""
    losses = select(metrics, "train/batch_loss")
    diverged = set(losses.loc[~np.isfinite(losses["value"]), "optimizer"])
    return {o.name: o.lr for o in config.optimizers if o.name not in diverged}


def _paths(metrics: pd.DataFrame, optimizer: str) -> dict[int, dict[str, np.ndarray]]:
    """Per seed: "alpha" on [0, 1] and "path_loss", "slope", "curvature" there."""
    out = {}
    for seed in sorted(select(metrics, "path_loss", optimizer=optimizer)["seed"].unique()):
        alpha, loss = series(metrics, "path_loss", "alpha", optimizer=optimizer, seed=seed)
        _, slope = series(metrics, "slope", "alpha", optimizer=optimizer, seed=seed)
        _, curvature = series(metrics, "curvature", "alpha", optimizer=optimizer, seed=seed)
        out[int(seed)] = {"alpha": alpha, "path_loss": loss, "slope": slope, "curvature": curvature}
    return out


def checks(metrics: pd.DataFrame, config: LinearInterpolationConfig) -> list[Check]:
    """The monotone decrease and the negative slope for SGD in every seed (module docstring)."""
    finished = _finished(metrics, config)
    out = [
        Check.holds(
            f"{o.name} training stays finite",
            False,
            detail=f"the loss became non-finite (lr = {o.lr:g}) in some seed; no path to measure",
        )
        for o in config.optimizers
        if o.name not in finished
    ]
    if CLAIMED not in finished:
        return out
    paths = _paths(metrics, CLAIMED)
    drops = {seed: p["path_loss"][0] - p["path_loss"][-1] for seed, p in paths.items()}
    rises = {seed: largest_bump(p["path_loss"]) / drops[seed] for seed, p in paths.items()}
    slopes = {seed: float(p["slope"].max()) / drops[seed] for seed, p in paths.items()}
    grid = f"{config.fine_points} points of [0, 1], {len(paths)} seeds"
    out += [
        Check.at_most(
            f"{CLAIMED}: the loss falls monotonically from init to solution, every seed (largest rise / drop)",
            max(rises.values()),
            0.0,
            detail=f"max_(a < a') L(a') - L(a) on {grid}, in units of L(0) - L(1) ("
            + ", ".join(f"{drops[s]:.3g}" for s in paths)
            + "); per seed "
            + ", ".join(f"{r:.2g}" for r in rises.values())
            + "; Goodfellow et al. (2015); fails at a barrier or a rise before alpha = 1",
        ),
        Check.holds(
            f"{CLAIMED}: the slope grad L . d is negative along the whole path, every seed (largest slope / drop)",
            max(slopes.values()) < 0,
            measured=max(slopes.values()),
            detail=f"L'(alpha) = grad L(theta(alpha)) . d by autograd (exact on each ReLU piece) on {grid}, "
            "in units of L(0) - L(1); per seed "
            + ", ".join(f"{s:.3g}" for s in slopes.values())
            + "; holds when below 0; fails where the loss is rising at a grid point",
        ),
    ]
    return out


def figures(metrics: pd.DataFrame, config: LinearInterpolationConfig) -> dict[str, Figure]:
    """The loss and accuracy along the first seed's paths; the slope and curvature along every path."""
    finished = _finished(metrics, config)
    return {
        "interpolation": _interpolation_figure(metrics, finished, config),
        "path_derivatives": _derivative_figure(metrics, finished, config),
    }


def _interpolation_figure(
    metrics: pd.DataFrame, finished: dict[str, float], config: LinearInterpolationConfig
) -> Figure:
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7.0, 7.0), sharex=True)
    for k, (method, lr) in enumerate(finished.items()):
        color, marker = f"C{k}", "os^vD"[k % 5]
        loss, acc = (series(metrics, n, "alpha", optimizer=method, seed=config.seed) for n in ("loss", "accuracy"))
        if not len(loss[0]):
            continue
        path = _paths(metrics, method)[config.seed]["path_loss"]
        monotone = "monotone" if largest_bump(path) == 0 else f"largest rise {largest_bump(path):.3g}"
        top.plot(*loss, marker + "-", ms=4, lw=0.8, color=color, label=f"{method} (lr {lr:g}): {monotone} on [0, 1]")
        bottom.plot(*acc, marker + "-", ms=4, lw=0.8, color=color, label=method)
    for a in (top, bottom):
        a.axvspan(0, 1, color="0.92", zorder=0)
        a.axvline(0, color="0.5", lw=0.8, ls=":")
        a.axvline(1, color="0.5", lw=0.8, ls=":")
    top.set_yscale("log")
    top.set_ylabel("training loss (cross-entropy, log scale)")
    top.set_title(
        f"Loss along (1 - alpha) theta_init + alpha theta_final, seed {config.seed}\n"
        f"{describe(config.model)}, {describe(config.data)}",
        fontsize=9,
    )
    bottom.set(ylabel="training accuracy", xlabel="alpha (0: initialisation, 1: trained)")
    _legend(top, bottom)
    fig.tight_layout()
    return fig


def _legend(*axes: plt.Axes) -> None:
    """A legend on each of `axes` that has labelled artists (none when every optimiser diverged)."""
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)


def _derivative_figure(metrics: pd.DataFrame, finished: dict[str, float], config: LinearInterpolationConfig) -> Figure:
    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(15.0, 4.4))
    for k, method in enumerate(finished):
        for j, p in enumerate(_paths(metrics, method).values()):
            label = method if j == 0 else None
            style = {"color": f"C{k}", "lw": 1.0, "alpha": 0.8}
            left.plot(p["alpha"], p["slope"], label=label, **style)
            middle.plot(p["alpha"], p["curvature"], label=label, **style)
            kinks = np.diff(p["slope"]) - np.diff(p["alpha"]) * (p["curvature"][1:] + p["curvature"][:-1]) / 2
            right.plot(p["alpha"][1:], np.cumsum(kinks), label=label, **style)
    left.axhline(0, color="k", lw=0.8)
    left.set(xlabel="alpha", ylabel="L'(alpha) = grad L . d", title="Exact slope along the path (autograd)")
    middle.axhline(0, color="k", lw=0.8)
    middle.set(xlabel="alpha", ylabel="d^T H d", title="Curvature along the path (Hessian-vector product)")
    right.axhline(0, color="k", lw=0.8)
    right.set(
        xlabel="alpha",
        ylabel="slope change minus integral of d^T H d",
        title="The kinks' share of the slope's change (cumulative)",
    )
    _legend(left, middle, right)
    fig.suptitle(f"Derivatives of L((1 - alpha) theta_init + alpha theta_final), every seed ({describe(config.model)})")
    fig.tight_layout()
    return fig


EXPERIMENT = Experiment(
    name="linear-interpolation",
    claim="On ReLU networks the loss along the straight line from the initialisation to an SGD solution decreases "
    "monotonically: no barrier lies on the path (Goodfellow et al. 2015).",
    config=LinearInterpolationConfig,
    measure=measure,
    checks=checks,
    figures=figures,
    presets={
        "full": {
            "data": {"name": "mnist1d", "n_train": 2000, "n_test": 10},
            "model": {"name": "mlp", "width": 256, "depth": 3, "activation": "relu"},
            # fused: torch's one-kernel Adam, the same update to rounding at a third of the default's cost on CPU
            "optimizers": ({"name": "sgd", "lr": 0.1}, {"name": "adam", "lr": 1e-3, "fused": True}),
            "seeds": 5,
            # not fewer: the slope at alpha = 1 (the grid's largest) tends to 0 as training converges (largest
            # slope / drop of SGD, seed 0: -0.047 at 1000 steps, -0.011 at 3000, -0.0049 at 6000), so a shorter
            # budget would make the negative-slope check easier to pass
            "steps": 6000,
            "batch_size": 128,
            "num_alphas": 81,
        },
    },
    references=(
        "Goodfellow, Vinyals & Saxe (2015), Qualitatively characterizing neural network optimization problems, ICLR",
        "Lucas, Bae, Zhang, Fort, Zemel & Grosse (2021), Analyzing monotonic linear interpolation in neural network "
        "loss landscapes, ICML",
    ),
    part="loss landscapes",
)
