"""landscape-plane: 2-D slices of the loss around a trained network, with and without skip connections.

Li et al. (2018) plot L(theta + alpha d_1 + beta d_2) over alpha, beta in [-1, 1] for two random Gaussian
directions, filter-normalised so that every filter (output unit) of d has the norm of the same filter of theta
(`tdlab.landscape.plane`); networks with skip connections show a smooth, nearly convex bowl where deep plain
networks become chaotic. The experiment trains an MLP (`model` section) with and without residual connections
from the same seed on a training set (`data` section) by `tdlab.train.fit` with the `optimizer` section (Adam by
default), and for each one:

- draws the filter-normalised slice as contour and surface plots (log loss), checking that its centre is the
  trained loss (the slice must pass through theta; float64, relative 1e-12) and that every filter of each
  direction has the norm of the weights' filter, biases zero (relative 1e-10, float64 rounding);
- slices along the two top Hessian eigenvectors v_1, v_2 (Lanczos), on a grid small enough for the second-order
  model L + a g.v_1 + b g.v_2 + (lambda_1 a^2 + lambda_2 b^2) / 2 (`tdlab.theory.landscape.quadratic_plane`):
  its half-width r makes the model's rise along v_1, lambda_1 r^2 / 2, a fraction `eigen_rise` of the centre
  loss (the quadratic region of a cross-entropy loss shrinks with the loss itself). Checks: the central second
  differences of the slice at the step h = r / 5 along each axis equal lambda_1 and lambda_2 (tolerance 5%, as
  for the path curvature of `linear-interpolation`; bias h^2 L''''/12), and the mixed difference is
  v_1^T H v_2 = 0 (within 5% of sqrt(lambda_1 lambda_2)).

Smooth activations only (GELU by default, the smooth ReLU): a ReLU network's slice has a kink wherever an
example's pre-activation crosses zero, and its second differences include those kinks, which the Hessian does
not see (30-50% in `linear-interpolation`).
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
from torch import nn

from tdlab.experiments.base import Check, Context, Experiment, ExperimentConfig
from tdlab.experiments.fields import describe, seeded
from tdlab.experiments.tidy import rows
from tdlab.landscape import PlaneSlice, filter_normalized_direction, filter_norms, hessian_directions, loss_plane
from tdlab.oracles import Objective
from tdlab.oracles.flat import unflatten
from tdlab.theory.landscape import quadratic_plane
from tdlab.train.builders import build_data, build_network, build_optimizer
from tdlab.train.config import DataConfig, ModelConfig, OptimizerConfig
from tdlab.train.trainer import fit

CURVATURE_TOLERANCE = 0.05  # relative, as the path-curvature check of linear-interpolation
CENTRE_TOLERANCE = 1e-12  # relative: the slice's centre is the same float64 evaluation as the trained loss
FILTER_TOLERANCE = 1e-10  # relative: filter norms after normalisation, float64 rounding
FD_FRACTION = 0.2  # step of the second differences, in units of the eigen-slice half-width r
LABELS = {"none": "no skip connections", "plain": "skip connections", "scaled": "scaled skip connections"}


class LandscapePlaneConfig(ExperimentConfig):
    """Quick defaults: GELU MLPs 6 x 32 with and without skip connections on 256 mnist1d examples, 400 Adam
    steps; 13 x 13 random-plane grid on [-1, 1]^2, 9 x 9 eigenvector-plane grid."""

    data: DataConfig = Field(default_factory=lambda: DataConfig(name="mnist1d", n_train=256, n_test=10))
    model: ModelConfig = Field(
        default_factory=lambda: ModelConfig(name="mlp", width=32, depth=6, activation="gelu"),
        description="an MLP with a smooth activation (ReLU's kinks break the second-order expansion) and depth >= 2 "
        "(skip connections join layers 2..depth); `residuals` sets its skip connections",
    )
    optimizer: OptimizerConfig = Field(default_factory=lambda: OptimizerConfig(name="adam", lr=1e-3))
    residuals: tuple[Literal["none", "plain", "scaled"], ...] = Field(
        ("none", "plain"), min_length=1, description="networks to compare: none, plain (alpha = 1) or scaled skips"
    )
    steps: int = Field(400, ge=1, description="optimiser steps")
    batch_size: int = Field(64, ge=1, description="mini-batch size")
    grid_points: int = Field(13, ge=3, description="points per axis of the random-direction slice (odd)")
    extent: float = Field(1.0, gt=0, description="the random slice covers [-extent, extent]^2 (Li et al.: 1)")
    one_dim: Literal["zero", "copy"] = Field("zero", description="direction of biases: zero (Li et al.) or copy")
    eigen_grid: int = Field(9, ge=3, description="points per axis of the eigenvector slice (odd)")
    eigen_rise: float = Field(
        0.2, gt=0, le=1, description="model rise lambda_1 r^2 / 2 at the eigen-slice edge, in units of the loss"
    )
    lanczos_tol: float = Field(1e-4, gt=0, lt=0.01, description="relative residual tolerance of Lanczos")

    @field_validator("grid_points", "eigen_grid")
    @classmethod
    def _odd(cls, value: int) -> int:
        if value % 2 == 0:
            raise ValueError(f"grid_points, eigen_grid: expected an odd number (the centre on the grid), got {value}")
        return value

    @field_validator("residuals")
    @classmethod
    def _distinct(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError(f"residuals: expected distinct entries among 'none', 'plain', 'scaled', got {value}")
        return value

    @field_validator("model")
    @classmethod
    def _smooth_and_deep(cls, value: ModelConfig) -> ModelConfig:
        activation, depth = value.kwargs().get("activation", "relu"), value.kwargs().get("depth", 3)
        if activation not in ("gelu", "tanh", "sigmoid"):
            raise ValueError(
                f"model.activation: expected a smooth one of 'gelu', 'tanh', 'sigmoid', got {activation!r}"
            )
        if depth < 2:
            raise ValueError(f"model.depth: expected at least 2 (skip connections join layers 2..depth), got {depth}")
        return value


def _axis(points: int, half_width: float) -> torch.Tensor:
    """points values from -half_width to half_width with 0 exactly in the middle."""
    m = (points - 1) // 2
    return torch.arange(-m, m + 1, dtype=torch.float64) * (half_width / m)


def _grid_rows(name: str, plane: PlaneSlice) -> pd.DataFrame:
    return rows(name, plane.loss, alpha=plane.alphas[:, None], beta=plane.betas)


def _analyse(obj: Objective, theta: torch.Tensor, config: LandscapePlaneConfig) -> pd.DataFrame:
    """Rows of one trained network: "plane_loss" and "eigen_loss" by (alpha, beta); "loss", "centre_loss",
    "filter_error", "bias_max", "lambda_1", "lambda_2", "slope_1", "slope_2" (g.v_i), "radius", "gradient_norm",
    "theta_norm", and the second differences' "step" h, "curvature_1", "curvature_2", "mixed"."""
    loss = float(obj.value(theta))
    generators = [torch.Generator().manual_seed(config.seed * 2 + i + 1) for i in range(2)]
    directions = [filter_normalized_direction(obj, theta, g, config.one_dim) for g in generators]
    weights = filter_norms(unflatten(theta, obj.params))
    filter_error, bias_max = 0.0, 0.0
    for d in directions:
        d_params = unflatten(d, obj.params)
        for name, norms in filter_norms(d_params).items():
            filter_error = max(filter_error, float(((norms - weights[name]).abs() / weights[name]).max()))
        one_dim = [t for n, t in d_params.items() if n not in weights]
        bias_max = max([bias_max] + [float(t.abs().max()) for t in one_dim])
    axis = _axis(config.grid_points, config.extent)
    plane = loss_plane(obj, theta, directions[0], directions[1], axis, axis)
    centre = (config.grid_points - 1) // 2
    eigenvalues, vectors = hessian_directions(obj, theta, k=2, tol=config.lanczos_tol)
    g = obj.gradient(theta)
    lam1 = float(eigenvalues[0])
    radius = math.sqrt(2 * config.eigen_rise * loss / lam1) if lam1 > 0 and loss > 0 else math.nan
    scalars = {
        "loss": loss,
        "centre_loss": float(plane.loss[centre, centre]),
        "filter_error": filter_error,
        "bias_max": bias_max,
        "lambda_1": lam1,
        "lambda_2": float(eigenvalues[1]),
        "slope_1": float(g @ vectors[:, 0]),
        "slope_2": float(g @ vectors[:, 1]),
        "radius": radius,
        "gradient_norm": float(g.norm()),
        "theta_norm": float(theta.norm()),
    }
    grids = [_grid_rows("plane_loss", plane)]
    if math.isfinite(radius):
        eigen_axis = _axis(config.eigen_grid, radius)
        eigen = loss_plane(obj, theta, vectors[:, 0], vectors[:, 1], eigen_axis, eigen_axis)
        grids.append(_grid_rows("eigen_loss", eigen))
        h = FD_FRACTION * radius  # the differences of the checks, on their own 3 x 3 stencil
        L = loss_plane(obj, theta, vectors[:, 0], vectors[:, 1], [-h, 0.0, h], [-h, 0.0, h]).loss
        scalars |= {
            "step": h,
            "curvature_1": float(L[2, 1] - 2 * L[1, 1] + L[0, 1]) / h**2,
            "curvature_2": float(L[1, 2] - 2 * L[1, 1] + L[1, 0]) / h**2,
            "mixed": float(L[2, 2] - L[2, 0] - L[0, 2] + L[0, 0]) / (4 * h**2),
        }
    return pd.concat([pd.DataFrame({"name": list(scalars), "value": list(scalars.values())}), *grids])


def measure(config: LandscapePlaneConfig, context: Context) -> pd.DataFrame:
    """Rows (residual, alpha, beta, name, value) of `_analyse` for each network trained by `tdlab.train.fit` (the
    same initialisation and mini-batch order for each), or "diverged" (1.0) when its loss became non-finite."""
    data = build_data(seeded(config.data, config.seed), context.device, torch.float64)
    frames = []
    for residual in context.track(config.residuals, "train and slice"):
        skips = {"residual": None if residual == "none" else residual}
        model = build_network(ModelConfig.model_validate(seeded(config.model, config.seed).model_dump() | skips), data)
        obj = Objective(model, nn.CrossEntropyLoss(), data.train)
        optimizer = build_optimizer(model.parameters(), config.optimizer)
        trained = fit(
            model, obj.loss_fn, data.train, optimizer, config.steps, batch_size=config.batch_size, seed=config.seed
        )
        if trained.diverged:
            frames.append(pd.DataFrame({"residual": [residual], "name": ["diverged"], "value": [1.0]}))
        else:
            frames.append(_analyse(obj, obj.flat_parameters(), config).assign(residual=residual))
    return pd.concat(frames, ignore_index=True).reindex(columns=["residual", "alpha", "beta", "name", "value"])


def _results(metrics: pd.DataFrame) -> dict[str, dict]:
    """Per network that trained: its scalars by name, and its grids ("plane_loss", "eigen_loss") as (alphas,
    betas, loss matrix)."""
    out = {}
    for residual, network in metrics.groupby("residual", sort=False):
        if (network["name"] == "diverged").any():
            continue
        scalar = network[network["alpha"].isna()]
        r = dict(zip(scalar["name"], scalar["value"], strict=True))
        for name, grid in network[network["alpha"].notna()].groupby("name"):
            table = grid.pivot_table(index="alpha", columns="beta", values="value")
            r[name] = (table.index.to_numpy(), table.columns.to_numpy(), table.to_numpy())
        out[residual] = r
    return out


def checks(metrics: pd.DataFrame, config: LandscapePlaneConfig) -> list[Check]:
    """Per network: the slice's centre, the filter norms, and the curvatures along and across v_1, v_2 (module
    docstring)."""
    results = _results(metrics)
    out = []
    for residual in config.residuals:
        label = LABELS[residual]
        if residual not in results:
            detail = f"{config.optimizer.name} with lr {config.optimizer.lr:g} produced a non-finite loss"
            out.append(Check.holds(f"{residual}: training stays finite", False, detail=detail))
            continue
        r = results[residual]
        out += [
            Check.relative(
                f"{label}: slice centre = trained loss",
                r["centre_loss"],
                r["loss"],
                CENTRE_TOLERANCE,
                detail="L(theta + 0 d_1 + 0 d_2) on the grid against L(theta), float64",
            ),
            Check.at_most(
                f"{label}: filter norms of the directions = filter norms of the weights",
                r["filter_error"],
                FILTER_TOLERANCE,
                detail=f"max over both directions and every filter of | ||d_ij|| - ||theta_ij|| | / ||theta_ij||, "
                f"float64 (Li et al. 2018); largest bias entry of the directions {r['bias_max']:g} "
                f"(one_dim = {config.one_dim!r})",
            ),
        ]
        lam1, lam2 = r["lambda_1"], r["lambda_2"]
        if "eigen_loss" not in r:
            detail = f"lambda_1 = {lam1:.3g}: no quadratic bowl to slice"
            out.append(Check.holds(f"{label}: top Hessian eigenvalue positive", False, detail=detail))
            continue
        common = (
            f"central second difference of the eigenvector slice at step h = r / 5 = {r['step']:.3g} (slice "
            f"half-width r = {r['radius']:.3g}, model rise {config.eigen_rise:g} x the loss {r['loss']:.3g} at the "
            "edge), float64; tolerance 5% as for the path curvature, bias h^2 L''''/12"
        )
        out += [
            Check.relative(
                f"{label}: slice curvature along v_1 = lambda_1",
                r["curvature_1"],
                lam1,
                CURVATURE_TOLERANCE,
                detail=common,
            ),
            Check.relative(
                f"{label}: slice curvature along v_2 = lambda_2",
                r["curvature_2"],
                lam2,
                CURVATURE_TOLERANCE,
                detail=common,
            ),
            Check.absolute(
                f"{label}: mixed curvature / sqrt(lambda_1 lambda_2) = v_1^T H v_2 = 0",
                r["mixed"] / math.sqrt(abs(lam1 * lam2)),
                0.0,
                CURVATURE_TOLERANCE,
                detail="mixed central difference [L(h,h) - L(h,-h) - L(-h,h) + L(-h,-h)] / 4h^2; "
                "eigenvectors are H-orthogonal",
            ),
        ]
    return out


def figures(metrics: pd.DataFrame, config: LandscapePlaneConfig) -> dict[str, Figure]:
    """Contours and surfaces of the random-plane slices; the eigenvector slices against their second-order model."""
    results = _results(metrics)
    return {
        "contours": _contour_figure(results, config),
        "surfaces": _surface_figure(results, config),
        "eigen_plane": _eigen_figure(results, config),
    }


def _log_loss(grid: np.ndarray) -> np.ndarray:
    return np.log10(np.clip(grid, 1e-12, None))


def _contour_figure(results: dict[str, dict], config: LandscapePlaneConfig) -> Figure:
    n = max(len(results), 1)
    fig, axes = plt.subplots(1, n, figsize=(5.4 * n, 4.8), squeeze=False)
    for ax, (residual, r) in zip(axes[0], results.items(), strict=False):
        alphas, betas, loss = r["plane_loss"]
        A, B = np.meshgrid(alphas, betas, indexing="ij")
        filled = ax.contourf(A, B, _log_loss(loss), levels=20, cmap="viridis")
        ax.contour(A, B, _log_loss(loss), levels=20, colors="k", linewidths=0.4)
        ax.plot(0, 0, "r*", ms=12, label=f"trained net, loss {r['loss']:.3g}")
        fig.colorbar(filled, ax=ax, label="log10 training loss")
        ax.set_xlabel("alpha (filter-normalised direction d_1)")
        ax.set_ylabel("beta (filter-normalised direction d_2)")
        ax.set_title(f"{LABELS[residual]} ({describe(config.model)})", fontsize=9)
        ax.legend(fontsize=8, loc="lower left")
    fig.suptitle("Loss on a random plane through the trained net (Li et al. 2018)")
    fig.tight_layout()
    return fig


def _surface_figure(results: dict[str, dict], config: LandscapePlaneConfig) -> Figure:
    n = max(len(results), 1)
    fig = plt.figure(figsize=(5.4 * n, 4.8))
    for k, (residual, r) in enumerate(results.items()):
        ax = fig.add_subplot(1, n, k + 1, projection="3d")
        alphas, betas, loss = r["plane_loss"]
        A, B = np.meshgrid(alphas, betas, indexing="ij")
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


def _eigen_figure(results: dict[str, dict], config: LandscapePlaneConfig) -> Figure:
    done = {k: r for k, r in results.items() if "eigen_loss" in r}
    n = max(len(done), 1)
    fig, axes = plt.subplots(2, n, figsize=(5.4 * n, 9.0), squeeze=False)
    for col, (residual, r) in enumerate(done.items()):
        a, b, loss = r["eigen_loss"]
        A, B = np.meshgrid(a, b, indexing="ij")
        slopes, eigenvalues = (r["slope_1"], r["slope_2"]), (r["lambda_1"], r["lambda_2"])
        model = quadratic_plane(A, B, r["loss"], slopes, eigenvalues)
        ax = axes[0, col]
        levels = np.linspace(min(loss.min(), model.min()), max(loss.max(), model.max()), 12)
        measured = ax.contour(A, B, loss, levels=levels, colors="k", linewidths=1.2)
        ax.contour(A, B, model, levels=levels, colors="tab:red", linestyles="--", linewidths=1.0)
        ax.clabel(measured, fontsize=7, fmt="%.3g")
        ax.plot([], [], "k-", label="measured slice")
        ax.plot([], [], "--", color="tab:red", label="second-order model")
        ax.set_xlabel("a (top Hessian eigenvector v_1)")
        ax.set_ylabel("b (second eigenvector v_2)")
        ax.set_title(
            f"{LABELS[residual]}: lambda_1 = {eigenvalues[0]:.3g}, lambda_2 = {eigenvalues[1]:.3g}", fontsize=10
        )
        ax.legend(fontsize=8)
        ax = axes[1, col]
        c = (len(a) - 1) // 2
        fine = np.linspace(a[0], a[-1], 200)
        for index, (coords, cut, color, name) in enumerate(
            ((a, loss[:, c], "tab:blue", "v_1"), (b, loss[c, :], "tab:green", "v_2"))
        ):
            ax.plot(coords, cut, "o", color=color, label=f"measured along {name}")
            along = (fine, 0 * fine) if index == 0 else (0 * fine, fine)
            ax.plot(
                fine,
                quadratic_plane(*along, r["loss"], slopes, eigenvalues),
                "-",
                color=color,
                alpha=0.7,
                label=f"L + t g.{name} + lambda t^2 / 2",
            )
        ax.set_xlabel("distance t along the eigenvector")
        ax.set_ylabel("training loss")
        ax.set_title(f"cuts through the centre (second differences at h = {r['step']:.3g})", fontsize=10)
        ax.legend(fontsize=8)
    fig.suptitle("Loss on the plane of the two top Hessian eigenvectors against its second-order model")
    fig.tight_layout()
    return fig


EXPERIMENT = Experiment(
    name="landscape-plane",
    claim="On 2-D slices along filter-normalised random directions (Li et al. 2018) a trained network sits in a "
    "bowl, smoother with skip connections; along the top Hessian eigenvectors the slice follows the "
    "second-order model near its centre.",
    config=LandscapePlaneConfig,
    measure=measure,
    checks=checks,
    figures=figures,
    presets={
        "full": {
            "data": {"name": "mnist1d", "n_train": 4000, "n_test": 10},
            "model": {"name": "mlp", "width": 128, "depth": 20, "activation": "gelu"},
            "steps": 5000,
            "batch_size": 128,
            "grid_points": 51,
            "eigen_grid": 21,
            "residuals": ("none", "scaled"),
        },
    },
    references=(
        "Li, Xu, Taylor, Studer & Goldstein (2018), Visualizing the loss landscape of neural nets, NeurIPS",
        "He, Zhang, Ren & Sun (2016), Deep residual learning for image recognition, CVPR",
    ),
    part="loss landscapes",
)
