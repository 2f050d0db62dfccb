"""landscape-plane: 2-D slices of the loss around minima of deep nets with and without skip connections.

Li et al. (2018) plot L(theta + alpha d_1 + beta d_2) over alpha, beta in [-1, 1] for two random Gaussian
directions, filter-normalised so that every filter (output unit) of d has the norm of the same filter of theta
(`tdlab.landscape.plane`), and find that a deep network without skip connections has a chaotic, non-convex
landscape around its minimum where the same network with skip connections sits in a smooth, nearly convex bowl.
The experiment trains a deep MLP (`model` section) with and without skip connections (`residuals`) from each of
`seeds` seeds (seed, seed + 1, ...: the data and the initialisation) on a training set (`data` section) to a
minimum, and slices the loss there.

The minimum: plain cross-entropy on data the net can fit has no minimum (its infimum 0 lies at infinite
weights), so the loss is cross-entropy with label smoothing eps (`label_smoothing`), whose global minimum is
the entropy H(q) of the smoothed targets q (1 - eps + eps / K on the label, eps / K on the other K - 1
classes), reached when the net outputs q on every training example. Each net is trained by full-batch L-BFGS
with a strong-Wolfe line search (`torch.optim.LBFGS`, through `tdlab.train.fit`) until the gradient norm is at
most `gradient_tol` (or `max_steps` L-BFGS steps of `lbfgs_iterations` iterations). L-BFGS is a minimum
finder (Li et al. train by SGD with momentum); both architectures are trained the same way and compared at the
minima found.

Checks (float64 throughout), and how each fails:

- "trained to a minimum", per architecture: the largest gradient norm over seeds <= `gradient_tol`. Fails when
  a net is still descending (as this experiment's earlier Adam-trained net with skips: gradient norm 0.32).
- "at the global minimum", per architecture: the largest L - H(q) over seeds <= (log K - H(q)) / (2 n), half
  the excess of a single training example (of n) left at the uniform prediction. Fails at a saddle or a local
  minimum that leaves an example unfit, or when training stopped early.
- "a bowl", per skip variant: along every one of the eight grid rays from the centre (axes and diagonals, out
  to the plotted edge) of every seed's slice the loss rises at every grid step (`tdlab.landscape.rising_rays`);
  measured: the number of (seed, ray) pairs that do not. Fails away from a minimum (the loss falls along some
  ray from a point with a gradient) or for a rough landscape with a dip inside the plotted square.
- "no skips more non-convex", per skip variant: the share of interior grid points where the slice's discrete
  Hessian has a negative eigenvalue (`tdlab.landscape.nonconvex_fraction`, Li et al.'s non-convexity read off
  the plot), paired by seed, no skips minus skips; one-sided exact Wilcoxon signed-rank test at alpha = 0.05
  (with 5 seeds it passes only if every seed has the no-skip net more non-convex: p = 1/32). Fails when the
  skip connections do not make the landscape more convex in most seeds.

Definitional properties (the slice passes through theta, the directions have the weights' filter norms) and
the second-order model along the top Hessian eigenvectors are tests in tests/experiments/test_landscape_plane.py.
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
from scipy import stats
from torch import nn

from tdlab.config.threads import one_thread
from tdlab.experiments.base import Check, Context, Experiment, ExperimentConfig
from tdlab.experiments.fields import describe, seeded
from tdlab.experiments.tidy import rows, select
from tdlab.landscape import filter_normalized_direction, loss_plane, nonconvex_fraction, rising_rays, slice_curvatures
from tdlab.oracles import Objective
from tdlab.train.builders import build_data, build_network
from tdlab.train.config import DataConfig, ModelConfig
from tdlab.train.trainer import fit

LEVEL = 0.05  # significance level of the one-sided Wilcoxon test: no skips more non-convex than skips
LABELS = {"none": "no skip connections", "plain": "skip connections", "scaled": "scaled skip connections"}


class LandscapePlaneConfig(ExperimentConfig):
    """Quick defaults: GELU MLPs 8 x 24 with and without (scaled) skip connections on 64 mnist1d examples, 5
    seeds, each trained by L-BFGS to gradient norm 1e-3; 11 x 11 slices on [-1, 1]^2."""

    data: DataConfig = Field(default_factory=lambda: DataConfig(name="mnist1d", n_train=64, n_test=10))
    model: ModelConfig = Field(
        default_factory=lambda: ModelConfig(name="mlp", width=24, depth=8, activation="gelu"),
        description="an MLP with depth >= 2 (skip connections join layers 2..depth; Li et al.'s claim is about "
        "deep nets); `residuals` sets its skip connections. A smooth activation lets L-BFGS reach a small gradient",
    )
    residuals: tuple[Literal["none", "plain", "scaled"], ...] = Field(
        ("none", "scaled"),
        min_length=2,
        description="networks to compare: none (the baseline, required) and plain (alpha = 1) or scaled "
        "(alpha = 1/sqrt(depth)) skip connections",
    )
    seeds: int = Field(5, ge=5, description="seeds (data and initialisation) per network; >= 5 for the test")
    label_smoothing: float = Field(
        0.1, gt=0, lt=1, description="eps of the cross-entropy's label smoothing (gives the loss a finite minimum)"
    )
    gradient_tol: float = Field(1e-3, gt=0, description="training stops when the gradient norm is at most this")
    max_steps: int = Field(60, ge=1, description="L-BFGS steps at most")
    lbfgs_iterations: int = Field(20, ge=1, description="L-BFGS iterations per step (torch's max_iter)")
    grid_points: int = Field(11, ge=5, description="points per axis of the slice (odd)")
    extent: float = Field(1.0, gt=0, description="the slice covers [-extent, extent]^2 (Li et al.: 1)")
    one_dim: Literal["zero", "copy"] = Field("zero", description="direction of biases: zero (Li et al.) or copy")

    @field_validator("grid_points")
    @classmethod
    def _odd(cls, value: int) -> int:
        if value % 2 == 0:
            raise ValueError(f"grid_points: expected an odd number (the centre on the grid), got {value}")
        return value

    @field_validator("residuals")
    @classmethod
    def _baseline_and_distinct(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value) or "none" not in value:
            raise ValueError(
                f"residuals: expected distinct entries among 'none', 'plain', 'scaled', 'none' included (the "
                f"baseline), got {value}"
            )
        return value

    @field_validator("model")
    @classmethod
    def _deep(cls, value: ModelConfig) -> ModelConfig:
        depth = value.kwargs().get("depth", 3)
        if depth < 2:
            raise ValueError(f"model.depth: expected at least 2 (skip connections join layers 2..depth), got {depth}")
        return value


def smoothed_entropy(classes: int, eps: float) -> float:
    """H(q), the smallest cross-entropy with label smoothing eps over K = `classes` classes: the entropy of the
    smoothed target q = (1 - eps + eps / K on the label, eps / K elsewhere), reached when the net predicts q.

    Example:
        >>> round(smoothed_entropy(2, 0.5), 6) == round(math.log(4) - 0.75 * math.log(3), 6)  # q = (3/4, 1/4)
        True
    """
    top, rest = 1 - eps + eps / classes, eps / classes
    return -top * math.log(top) - (classes - 1) * rest * math.log(rest)


def _train(obj: Objective, data: object, config: LandscapePlaneConfig) -> bool:
    """L-BFGS on the full batch until the gradient norm is at most `gradient_tol`; False if the loss diverged."""
    optimizer = torch.optim.LBFGS(
        obj.model.parameters(), lr=1.0, max_iter=config.lbfgs_iterations, history_size=20, line_search_fn="strong_wolfe"
    )

    def converged(step: int, loss: float) -> bool:
        return float(obj.gradient(obj.flat_parameters()).norm()) <= config.gradient_tol

    trained = fit(obj.model, obj.loss_fn, data, optimizer, config.max_steps, callbacks=[converged])
    return not trained.diverged


def _slice(obj: Objective, seed: int, config: LandscapePlaneConfig) -> pd.DataFrame:
    """Rows of one trained net: "loss", "gradient_norm" and "plane_loss" by (alpha, beta)."""
    theta = obj.flat_parameters()
    loss, gradient = obj.value_and_gradient(theta)
    generators = [torch.Generator().manual_seed(2 * seed + i + 1) for i in range(2)]
    d1, d2 = (filter_normalized_direction(obj, theta, g, config.one_dim) for g in generators)
    m = (config.grid_points - 1) // 2
    axis = torch.arange(-m, m + 1, dtype=torch.float64) * (config.extent / m)  # 0 exactly in the middle
    plane = loss_plane(obj, theta, d1, d2, axis, axis)
    return pd.concat(
        [
            rows("loss", float(loss)),
            rows("gradient_norm", float(gradient.norm())),
            rows("plane_loss", plane.loss.numpy(), alpha=plane.alphas.numpy()[:, None], beta=plane.betas.numpy()),
        ]
    )


def measure(config: LandscapePlaneConfig, context: Context) -> pd.DataFrame:
    """Rows (residual, seed, alpha, beta, name, value) of `_slice` for each network and seed (the same data and
    initialisation seed for each network), "diverged" (1.0) where the loss became non-finite, and "classes" K and
    "n_train" n of the data. On one CPU thread: every tensor is small."""
    with one_thread():
        return _measure(config, context)


def _measure(config: LandscapePlaneConfig, context: Context) -> pd.DataFrame:
    frames = []
    seeds = range(config.seed, config.seed + config.seeds)
    for seed in context.track(seeds, "train and slice"):
        data = build_data(seeded(config.data, seed), context.device, torch.float64)
        if not frames:
            frames.append(pd.concat([rows("classes", data.out_features), rows("n_train", len(data.train[1]))]))
        for residual in config.residuals:
            skips = {"residual": None if residual == "none" else residual}
            model = build_network(ModelConfig.model_validate(seeded(config.model, seed).model_dump() | skips), data)
            obj = Objective(model, nn.CrossEntropyLoss(label_smoothing=config.label_smoothing), data.train)
            frame = _slice(obj, seed, config) if _train(obj, data.train, config) else rows("diverged", 1.0)
            frames.append(frame.assign(residual=residual, seed=seed))
    columns = ["residual", "seed", "alpha", "beta", "name", "value"]
    return pd.concat(frames, ignore_index=True).reindex(columns=columns)


def _grids(metrics: pd.DataFrame, residual: str) -> dict[int, np.ndarray]:
    """The slices of one network by seed, as (grid_points, grid_points) loss matrices (alpha down, beta across)."""
    chosen = select(metrics, "plane_loss", residual=residual)
    return {
        int(seed): grid.pivot_table(index="alpha", columns="beta", values="value").to_numpy()
        for seed, grid in chosen.groupby("seed")
    }


def _scalars(metrics: pd.DataFrame, name: str, residual: str) -> pd.Series:
    return select(metrics, name, residual=residual).set_index("seed")["value"]


def checks(metrics: pd.DataFrame, config: LandscapePlaneConfig) -> list[Check]:
    """Per network: at a minimum, at the global one; per skip variant: a bowl, and less non-convex than without
    skips (module docstring)."""
    classes = int(select(metrics, "classes")["value"].iloc[0])
    n = int(select(metrics, "n_train")["value"].iloc[0])
    floor = smoothed_entropy(classes, config.label_smoothing)
    excess_tol = (math.log(classes) - floor) / (2 * n)
    out, fractions = [], {}
    for residual in config.residuals:
        label = LABELS[residual]
        diverged = select(metrics, "diverged", residual=residual)
        if len(diverged):
            detail = f"seeds {sorted(diverged['seed'].astype(int).tolist())}: L-BFGS produced a non-finite loss"
            out.append(Check.holds(f"{label}: training stays finite", False, detail=detail))
        gradient, loss = _scalars(metrics, "gradient_norm", residual), _scalars(metrics, "loss", residual)
        out += [
            Check.at_most(
                f"{label}: trained to a minimum (largest gradient norm over seeds)",
                float(gradient.max()) if len(gradient) else math.nan,
                config.gradient_tol,
                detail=f"|grad L| at the end of full-batch L-BFGS, {len(gradient)} seeds: "
                + ", ".join(f"{g:.2g}" for g in gradient)
                + "; fails when a net is still descending",
            ),
            Check.at_most(
                f"{label}: at the global minimum (largest L - H(q) over seeds)",
                float(loss.max() - floor) if len(loss) else math.nan,
                excess_tol,
                detail=f"H(q) = {floor:.6g} (label smoothing {config.label_smoothing:g}, K = {classes}); bound "
                f"(log K - H(q)) / 2n = {excess_tol:.3g}, half the excess of one of the n = {n} examples left at the "
                "uniform prediction; fails at a saddle or a minimum that leaves an example unfit",
            ),
        ]
        fractions[residual] = pd.Series({seed: nonconvex_fraction(g) for seed, g in _grids(metrics, residual).items()})
    baseline = fractions["none"]
    falling_none = sum(int((~rising_rays(g)).sum()) for g in _grids(metrics, "none").values())
    for residual in config.residuals:
        if residual == "none":
            continue
        label, grids = LABELS[residual], _grids(metrics, residual)
        falling = sum(int((~rising_rays(g)).sum()) for g in grids.values())
        out.append(
            Check.at_most(
                f"{label}: a bowl (rays from the centre along which the loss does not rise, all seeds)",
                float(falling) if grids else math.nan,
                0.0,
                detail=f"8 grid rays (axes, diagonals) to the edge of [-{config.extent:g}, {config.extent:g}]^2 in "
                f"each of {len(grids)} seeds' slices, the loss rising at every grid step; without skips "
                f"{falling_none} of {8 * len(baseline)} rays do not; fails when the centre is not a minimum or the "
                "slice has a dip",
            )
        )
        paired = pd.concat([baseline, fractions[residual]], axis=1, keys=["none", residual]).dropna()
        difference = (paired["none"] - paired[residual]).to_numpy()
        if len(difference) < 5 or not difference.any():
            p_value = 1.0
        else:
            p_value = float(stats.wilcoxon(difference, alternative="greater", method="exact").pvalue)
        out.append(
            Check.at_most(
                f"no skips more non-convex than {label}: one-sided Wilcoxon signed-rank p-value (alpha = {LEVEL:g})",
                p_value,
                LEVEL,
                detail="share of the slice's interior grid points with a negative eigenvalue of its discrete Hessian "
                "(Li et al. 2018), per seed, without / with skips: "
                + ", ".join(f"{a:.3f}/{b:.3f}" for a, b in zip(paired["none"], paired[residual], strict=True))
                + f"; H1: larger without skips; passes when p < {LEVEL:g}",
            )
        )
    return out


def figures(metrics: pd.DataFrame, config: LandscapePlaneConfig) -> dict[str, Figure]:
    """Contours and surfaces of the first seed's slices; the non-convex points of those slices and the
    non-convex share of every seed's."""
    first = {residual: _grids(metrics, residual).get(config.seed) for residual in config.residuals}
    first = {residual: grid for residual, grid in first.items() if grid is not None}
    return {
        "contours": _contour_figure(first, config),
        "surfaces": _surface_figure(first, config),
        "nonconvexity": _nonconvexity_figure(metrics, first, config),
    }


def _axis(config: LandscapePlaneConfig) -> np.ndarray:
    return np.linspace(-config.extent, config.extent, config.grid_points)


def _log_loss(grid: np.ndarray) -> np.ndarray:
    return np.log10(np.clip(grid, 1e-12, None))


def _contour_figure(first: dict[str, np.ndarray], config: LandscapePlaneConfig) -> Figure:
    n = max(len(first), 1)
    fig, axes = plt.subplots(1, n, figsize=(5.4 * n, 4.8), squeeze=False)
    A, B = np.meshgrid(_axis(config), _axis(config), indexing="ij")
    for ax, (residual, loss) in zip(axes[0], first.items(), strict=False):
        filled = ax.contourf(A, B, _log_loss(loss), levels=20, cmap="viridis")
        ax.contour(A, B, _log_loss(loss), levels=20, colors="k", linewidths=0.4)
        c = (config.grid_points - 1) // 2
        ax.plot(0, 0, "r*", ms=12, label=f"minimum, loss {loss[c, c]:.4g}")
        fig.colorbar(filled, ax=ax, label="log10 training loss")
        ax.set_xlabel("alpha (filter-normalised direction d_1)")
        ax.set_ylabel("beta (filter-normalised direction d_2)")
        ax.set_title(f"{LABELS[residual]} ({describe(config.model)})", fontsize=9)
        ax.legend(fontsize=8, loc="lower left")
    fig.suptitle(f"Loss on a random plane through a minimum (Li et al. 2018), seed {config.seed}")
    fig.tight_layout()
    return fig


def _surface_figure(first: dict[str, np.ndarray], config: LandscapePlaneConfig) -> Figure:
    n = max(len(first), 1)
    fig = plt.figure(figsize=(5.4 * n, 4.8))
    A, B = np.meshgrid(_axis(config), _axis(config), indexing="ij")
    for k, (residual, loss) in enumerate(first.items()):
        ax = fig.add_subplot(1, n, k + 1, projection="3d")
        ax.plot_surface(A, B, _log_loss(loss), cmap="viridis", linewidth=0, antialiased=True)
        ax.set_xlabel("alpha")
        ax.set_ylabel("beta")
        ax.set_zlabel("log10 loss")
        ticks = [-config.extent, 0.0, config.extent]
        ax.set_xticks(ticks)
        ax.set_yticks(ticks)
        ax.set_title(LABELS[residual], fontsize=10)
    fig.suptitle(f"Loss surface on a filter-normalised random plane ({describe(config.model)})")
    fig.tight_layout()
    return fig


def _nonconvexity_figure(metrics: pd.DataFrame, first: dict[str, np.ndarray], config: LandscapePlaneConfig) -> Figure:
    n = len(first)
    fig, axes = plt.subplots(1, n + 1, figsize=(4.6 * (n + 1), 4.4), squeeze=False)
    inner = _axis(config)[1:-1]
    A, B = np.meshgrid(inner, inner, indexing="ij")
    for ax, (residual, loss) in zip(axes[0], first.items(), strict=False):
        low, high = (t.numpy() for t in slice_curvatures(loss))
        ratio = np.abs(np.minimum(low, 0)) / np.abs(high).clip(1e-300)
        shown = ax.pcolormesh(A, B, ratio, cmap="magma", vmin=0, vmax=max(float(ratio.max()), 1e-3), shading="nearest")
        fig.colorbar(shown, ax=ax, label="|lambda_min| / |lambda_max| where lambda_min < 0")
        ax.plot(A[low < 0], B[low < 0], "x", color="tab:cyan", ms=6, label="lambda_min < 0")
        if (low < 0).any():
            ax.legend(fontsize=8, loc="lower left")
        ax.set_xlabel("alpha")
        ax.set_ylabel("beta")
        ax.set_title(f"{LABELS[residual]}: non-convex share {nonconvex_fraction(loss):.2f}", fontsize=9)
    ax = axes[0, n]
    for k, residual in enumerate(config.residuals):
        shares = {seed: nonconvex_fraction(g) for seed, g in _grids(metrics, residual).items()}
        ax.plot(list(shares), list(shares.values()), "os^"[k % 3] + "-", color=f"C{k}", label=LABELS[residual])
    ax.set_xlabel("seed")
    ax.set_ylabel("share of grid points with a negative curvature")
    ax.set_title("Non-convexity of the slice, every seed", fontsize=10)
    ax.legend(fontsize=8)
    fig.suptitle(f"Where the slice's discrete Hessian has a negative eigenvalue (seed {config.seed})")
    fig.tight_layout()
    return fig


EXPERIMENT = Experiment(
    name="landscape-plane",
    claim="On 2-D slices along filter-normalised random directions (Li et al. 2018) a deep network with skip "
    "connections sits in a bowl around its minimum, while without skip connections the landscape is more "
    "non-convex.",
    config=LandscapePlaneConfig,
    measure=measure,
    checks=checks,
    figures=figures,
    presets={
        "full": {
            "data": {"name": "mnist1d", "n_train": 256, "n_test": 10},
            "model": {"name": "mlp", "width": 32, "depth": 20, "activation": "gelu"},
            "seeds": 8,
            "max_steps": 200,
            "grid_points": 25,
        },
    },
    references=(
        "Li, Xu, Taylor, Studer & Goldstein (2018), Visualizing the loss landscape of neural nets, NeurIPS",
        "He, Zhang, Ren & Sun (2016), Deep residual learning for image recognition, CVPR",
    ),
    part="loss landscapes",
)
