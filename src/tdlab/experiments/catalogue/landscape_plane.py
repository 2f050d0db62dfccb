"""landscape-plane: 2-D slices of the loss around a trained network, with and without skip connections.

Li et al. (2018) plot L(theta + alpha d_1 + beta d_2) over alpha, beta in [-1, 1] for two random Gaussian
directions, filter-normalised so that every filter (output unit) of d has the norm of the same filter of theta
(`tdlab.landscape.plane`); networks with skip connections show a smooth, nearly convex bowl where deep plain
networks become chaotic. The experiment trains an MLP with and without residual connections from the same seed
(Adam), and for each one:

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

from tdlab.data import classification_sample
from tdlab.experiments.base import Check, Context, Experiment, ExperimentConfig, Result, legacy
from tdlab.landscape import filter_normalized_direction, filter_norms, hessian_directions, loss_plane, train_flat
from tdlab.models import MLP
from tdlab.oracles import Objective
from tdlab.oracles.flat import unflatten
from tdlab.theory.landscape import quadratic_plane

CURVATURE_TOLERANCE = 0.05  # relative, as the path-curvature check of linear-interpolation
CENTRE_TOLERANCE = 1e-12  # relative: the slice's centre is the same float64 evaluation as the trained loss
FILTER_TOLERANCE = 1e-10  # relative: filter norms after normalisation, float64 rounding
FD_FRACTION = 0.2  # step of the second differences, in units of the eigen-slice half-width r
LABELS = {"none": "no skip connections", "plain": "skip connections", "scaled": "scaled skip connections"}


class LandscapePlaneConfig(ExperimentConfig):
    """Quick defaults: GELU MLPs 6 x 32 with and without skip connections on 256 mnist1d examples, 400 Adam
    steps; 13 x 13 random-plane grid on [-1, 1]^2, 9 x 9 eigenvector-plane grid."""

    dataset: Literal["mnist1d", "digits"] = Field("mnist1d", description="training set (digits: first n_train)")
    n_train: int = Field(256, ge=50, le=4000, description="number of training examples")
    width: int = Field(32, ge=1, description="hidden units per layer")
    depth: int = Field(6, ge=2, description="number of hidden layers (skip connections join layers 2..depth)")
    activation: Literal["gelu", "tanh", "sigmoid"] = Field(
        "gelu", description="a smooth activation (ReLU's kinks break the second-order expansion)"
    )
    residuals: tuple[Literal["none", "plain", "scaled"], ...] = Field(
        ("none", "plain"), min_length=1, description="networks to compare: none, plain (alpha = 1) or scaled skips"
    )
    lr: float = Field(1e-3, gt=0, description="Adam step size")
    steps: int = Field(400, ge=1, description="Adam steps")
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


def _axis(points: int, half_width: float) -> torch.Tensor:
    """points values from -half_width to half_width with 0 exactly in the middle."""
    m = (points - 1) // 2
    return torch.arange(-m, m + 1, dtype=torch.float64) * (half_width / m)


def _analyse(obj: Objective, theta: torch.Tensor, config: LandscapePlaneConfig) -> dict:
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
    lam1, lam2 = (float(v) for v in eigenvalues)
    g = obj.gradient(theta)
    slopes = (float(g @ vectors[:, 0]), float(g @ vectors[:, 1]))
    radius = math.sqrt(2 * config.eigen_rise * loss / lam1) if lam1 > 0 and loss > 0 else math.nan
    out = {
        "loss": loss,
        "plane": plane,
        "centre_loss": float(plane.loss[centre, centre]),
        "filter_error": filter_error,
        "bias_max": bias_max,
        "eigenvalues": (lam1, lam2),
        "slopes": slopes,
        "radius": radius,
        "gradient_norm": float(g.norm()),
        "theta_norm": float(theta.norm()),
    }
    if not math.isfinite(radius):
        return out
    eigen_axis = _axis(config.eigen_grid, radius)
    eigen = loss_plane(obj, theta, vectors[:, 0], vectors[:, 1], eigen_axis, eigen_axis)
    h = FD_FRACTION * radius  # the differences of the checks, on their own 3 x 3 stencil
    L = loss_plane(obj, theta, vectors[:, 0], vectors[:, 1], [-h, 0.0, h], [-h, 0.0, h]).loss
    out.update(
        {
            "eigen": eigen,
            "step": h,
            "curvature_1": float(L[2, 1] - 2 * L[1, 1] + L[0, 1]) / h**2,
            "curvature_2": float(L[1, 2] - 2 * L[1, 1] + L[1, 0]) / h**2,
            "mixed": float(L[2, 2] - L[2, 0] - L[0, 2] + L[0, 0]) / (4 * h**2),
        }
    )
    return out


def run(config: LandscapePlaneConfig, context: Context) -> Result:
    data = classification_sample(config.dataset, config.n_train, config.seed).to(context.device, torch.float64)
    if config.batch_size > data.num_train:
        raise ValueError(f"batch_size: at most n_train = {data.num_train}, got {config.batch_size}")
    results: dict[str, dict] = {}
    rows: list[dict] = []
    checks: list[Check] = []
    for residual in context.track(config.residuals, "train and slice"):
        model = MLP(
            data.in_features,
            data.out_features,
            width=config.width,
            depth=config.depth,
            activation=config.activation,
            residual=None if residual == "none" else residual,
            seed=config.seed,
        ).to(context.device, torch.float64)
        obj = Objective(model, nn.CrossEntropyLoss(), data.train)
        training = train_flat(
            obj,
            obj.flat_parameters(),
            "adam",
            config.lr,
            config.steps,
            config.batch_size,
            torch.Generator().manual_seed(config.seed),
        )
        if training.diverged:
            checks.append(
                Check.holds(
                    f"{residual}: training stays finite",
                    False,
                    detail=f"Adam with lr {config.lr:g} produced a non-finite loss",
                )
            )
            continue
        result = _analyse(obj, training.theta, config)
        results[residual] = result
        rows += _rows(residual, result)
        checks += _checks(residual, result, config)
    metrics = pd.DataFrame(rows, columns=["residual", "alpha", "beta", "name", "value"])
    figures = {
        "contours": _contour_figure(results, config),
        "surfaces": _surface_figure(results, config),
        "eigen_plane": _eigen_figure(results, config),
    }
    return Result(metrics, checks, figures)


def _rows(residual: str, r: dict) -> list[dict]:
    rows = [
        {"residual": residual, "name": n, "value": r[n]}
        for n in ("loss", "centre_loss", "filter_error", "bias_max", "radius", "gradient_norm", "theta_norm")
    ]
    rows += [{"residual": residual, "name": f"lambda_{i + 1}", "value": v} for i, v in enumerate(r["eigenvalues"])]
    for key, name in (("plane", "plane_loss"), ("eigen", "eigen_loss")):
        if key not in r:
            continue
        grid = r[key]
        for i, a in enumerate(grid.alphas.tolist()):
            for j, b in enumerate(grid.betas.tolist()):
                rows.append(
                    {"residual": residual, "alpha": a, "beta": b, "name": name, "value": float(grid.loss[i, j])}
                )
    rows += [
        {"residual": residual, "name": n, "value": r[n]} for n in ("curvature_1", "curvature_2", "mixed") if n in r
    ]
    return rows


def _checks(residual: str, r: dict, config: LandscapePlaneConfig) -> list[Check]:
    label = LABELS[residual]
    checks = [
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
    if "eigen" not in r:
        checks.append(
            Check.holds(
                f"{label}: top Hessian eigenvalue positive",
                False,
                detail=f"lambda_1 = {r['eigenvalues'][0]:.3g}: no quadratic bowl to slice",
            )
        )
        return checks
    lam1, lam2 = r["eigenvalues"]
    common = (
        f"central second difference of the eigenvector slice at step h = r / 5 = {r['step']:.3g} (slice half-width r "
        f"= {r['radius']:.3g}, model rise {config.eigen_rise:g} x the loss {r['loss']:.3g} at the edge), "
        "float64; tolerance 5% as for the path curvature, bias h^2 L''''/12"
    )
    checks += [
        Check.relative(
            f"{label}: slice curvature along v_1 = lambda_1", r["curvature_1"], lam1, CURVATURE_TOLERANCE, detail=common
        ),
        Check.relative(
            f"{label}: slice curvature along v_2 = lambda_2", r["curvature_2"], lam2, CURVATURE_TOLERANCE, detail=common
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
    return checks


def _log_loss(grid: torch.Tensor) -> np.ndarray:
    return np.log10(np.clip(grid.numpy(), 1e-12, None))


def _contour_figure(results: dict[str, dict], config: LandscapePlaneConfig) -> Figure:
    n = max(len(results), 1)
    fig, axes = plt.subplots(1, n, figsize=(5.4 * n, 4.8), squeeze=False)
    for ax, (residual, r) in zip(axes[0], results.items(), strict=False):
        plane = r["plane"]
        A, B = np.meshgrid(plane.alphas.numpy(), plane.betas.numpy(), indexing="ij")
        filled = ax.contourf(A, B, _log_loss(plane.loss), levels=20, cmap="viridis")
        ax.contour(A, B, _log_loss(plane.loss), levels=20, colors="k", linewidths=0.4)
        ax.plot(0, 0, "r*", ms=12, label=f"trained net, loss {r['loss']:.3g}")
        fig.colorbar(filled, ax=ax, label="log10 training loss")
        ax.set_xlabel("alpha (filter-normalised direction d_1)")
        ax.set_ylabel("beta (filter-normalised direction d_2)")
        ax.set_title(f"{LABELS[residual]} ({config.activation} MLP {config.depth}x{config.width})", fontsize=10)
        ax.legend(fontsize=8, loc="lower left")
    fig.suptitle("Loss on a random plane through the trained net (Li et al. 2018)")
    fig.tight_layout()
    return fig


def _surface_figure(results: dict[str, dict], config: LandscapePlaneConfig) -> Figure:
    n = max(len(results), 1)
    fig = plt.figure(figsize=(5.4 * n, 4.8))
    for k, (residual, r) in enumerate(results.items()):
        ax = fig.add_subplot(1, n, k + 1, projection="3d")
        plane = r["plane"]
        A, B = np.meshgrid(plane.alphas.numpy(), plane.betas.numpy(), indexing="ij")
        ax.plot_surface(A, B, _log_loss(plane.loss), cmap="viridis", linewidth=0, antialiased=True)
        ax.set_xlabel("alpha")
        ax.set_ylabel("beta")
        ax.set_zlabel("log10 loss")
        ticks = [-config.extent, 0.0, config.extent]
        ax.set_xticks(ticks)
        ax.set_yticks(ticks)
        ax.set_title(LABELS[residual], fontsize=10)
    fig.suptitle(
        f"Loss surface on a filter-normalised random plane ({config.activation} MLP {config.depth}x{config.width})"
    )
    fig.tight_layout()
    return fig


def _eigen_figure(results: dict[str, dict], config: LandscapePlaneConfig) -> Figure:
    done = {k: r for k, r in results.items() if "eigen" in r}
    n = max(len(done), 1)
    fig, axes = plt.subplots(2, n, figsize=(5.4 * n, 9.0), squeeze=False)
    for col, (residual, r) in enumerate(done.items()):
        eigen = r["eigen"]
        a, b = eigen.alphas.numpy(), eigen.betas.numpy()
        A, B = np.meshgrid(a, b, indexing="ij")
        model = quadratic_plane(A, B, r["loss"], r["slopes"], r["eigenvalues"])
        ax = axes[0, col]
        levels = np.linspace(min(eigen.loss.min().item(), model.min()), max(eigen.loss.max().item(), model.max()), 12)
        measured = ax.contour(A, B, eigen.loss.numpy(), levels=levels, colors="k", linewidths=1.2)
        ax.contour(A, B, model, levels=levels, colors="tab:red", linestyles="--", linewidths=1.0)
        ax.clabel(measured, fontsize=7, fmt="%.3g")
        ax.plot([], [], "k-", label="measured slice")
        ax.plot([], [], "--", color="tab:red", label="second-order model")
        ax.set_xlabel("a (top Hessian eigenvector v_1)")
        ax.set_ylabel("b (second eigenvector v_2)")
        ax.set_title(
            f"{LABELS[residual]}: lambda_1 = {r['eigenvalues'][0]:.3g}, lambda_2 = {r['eigenvalues'][1]:.3g}",
            fontsize=10,
        )
        ax.legend(fontsize=8)
        ax = axes[1, col]
        c = (len(a) - 1) // 2
        fine = np.linspace(a[0], a[-1], 200)
        for index, (coords, cut, color, name) in enumerate(
            ((a, eigen.loss[:, c], "tab:blue", "v_1"), (b, eigen.loss[c, :], "tab:green", "v_2"))
        ):
            ax.plot(coords, cut.numpy(), "o", color=color, label=f"measured along {name}")
            along = (fine, 0 * fine) if index == 0 else (0 * fine, fine)
            ax.plot(
                fine,
                quadratic_plane(*along, r["loss"], r["slopes"], r["eigenvalues"]),
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
    **legacy(run),
    presets={
        "full": {
            "n_train": 4000,
            "width": 128,
            "depth": 20,
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
