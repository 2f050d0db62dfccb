"""double-descent-features: test error against model size peaks at the interpolation threshold.

Random ReLU features phi(x) = relu(F x) (`tdlab.models.RandomFeatures`, F fixed) on mnist1d with a fraction of the
training labels resampled at random, and a minimum-norm least-squares readout on one-hot targets,
A = Phi^+ Y, for a sweep of the number of features p (nested: the first p features of one draw of F). The
readout is solved by a QR factorisation of Phi (p <= n) or Phi^T (p > n), float64, accurate even at p = n where
Phi is square and nearly singular.

Checks against `tdlab.theory.double_descent`:

1. the training fit becomes exact (training mean squared error 0 to rounding) first at p = n, where Phi gains full
   row rank;
2. the test error (0-1, seed mean) peaks within 20% of the interpolation threshold p* = n (the issue's tolerance;
   Belkin et al. 2019, Fig. 2; Nakkiran et al. 2019);
3. so does the test mean squared error.

Optionally (`mlp_widths`, in the `full` preset) an MLP width sweep trained end to end with Adam on the squared
loss on the same noisy data: its test error against the number of parameters, with Belkin et al.'s threshold n C
(`mlp_interpolation_width`) drawn; no check (the peak of a trained network depends on training time).

Figures: test and training error against p / n, test mean squared error and the readout norm ||A||_F against
p / n, and the MLP sweep when run.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from pydantic import Field, field_validator
from torch import Tensor

from tdlab.data import Dataset, mnist1d, with_label_noise
from tdlab.ensemble import StackedModels
from tdlab.experiments.base import Check, Context, Experiment, ExperimentConfig, Result, legacy
from tdlab.experiments.catalogue._ensemble import accuracies, fit, squared_error
from tdlab.experiments.catalogue._solvers import min_norm_least_squares
from tdlab.models import MLP, RandomFeatures
from tdlab.theory.double_descent import interpolation_threshold, mlp_interpolation_width, mlp_num_parameters


class DoubleDescentConfig(ExperimentConfig):
    """Data, feature sweep and the optional MLP sweep (defaults: the quick config)."""

    n_train: int = Field(200, ge=10, description="training examples of mnist1d")
    n_test: int = Field(2000, ge=10, description="test examples of mnist1d")
    label_noise: float = Field(0.2, ge=0, le=1, description="fraction of training labels resampled at random")
    ratio_min: float = Field(0.1, gt=0, lt=1, description="smallest number of features, as a multiple of n_train")
    ratio_max: float = Field(10.0, gt=1, description="largest number of features, as a multiple of n_train")
    points: int = Field(41, ge=5, description="log-spaced feature counts in the sweep (odd: p = n lies on it)")
    seeds: int = Field(4, ge=1, description="independent draws of the random features")
    peak_tolerance: float = Field(0.2, gt=0, description="allowed relative distance of the peak from p* = n")
    mlp_widths: tuple[int, ...] = Field((), description="hidden widths of the MLP sweep (empty: no MLP sweep)")
    mlp_steps: int = Field(4000, ge=1, description="Adam steps of each MLP")
    mlp_lr: float = Field(1e-3, gt=0, description="Adam learning rate of the MLPs")
    mlp_seeds: int = Field(2, ge=1, description="initialisations per MLP width")

    @field_validator("mlp_widths")
    @classmethod
    def _widths(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(w < 1 for w in value) or list(value) != sorted(set(value)):
            raise ValueError(f"mlp_widths: expected increasing positive integers, got {value}")
        return value


def feature_counts(config: DoubleDescentConfig) -> np.ndarray:
    """The sweep: `points` log-spaced multiples of n_train from ratio_min to ratio_max, rounded, unique, with
    p = n_train on it."""
    n = config.n_train
    grid = np.geomspace(config.ratio_min * n, config.ratio_max * n, config.points)
    return np.unique(np.append(np.maximum(np.round(grid), 1).astype(int), n))


def min_norm_path(
    features_train: Tensor, features_test: Tensor, targets: Tensor, counts: np.ndarray
) -> list[dict[str, Tensor]]:
    """Minimum-norm least squares A_p = Phi_p^+ Y on the first p columns of the features, for every p in `counts`:
    training and test predictions and ||A_p||_F.

    Example:
        >>> Phi, Y = torch.randn(5, 8, dtype=torch.float64), torch.randn(5, 2, dtype=torch.float64)
        >>> path = min_norm_path(Phi, Phi, Y, np.array([3, 8]))
        >>> torch.allclose(path[1]["train"], Y)  # p > n interpolates
        True
    """
    out = []
    for p in counts:
        A = min_norm_least_squares(features_train[:, :p], targets)
        out.append({"train": features_train[:, :p] @ A, "test": features_test[:, :p] @ A, "norm": A.norm()})
    return out


def run(config: DoubleDescentConfig, context: Context) -> Result:
    device, dtype = context.device, torch.float64
    data = with_label_noise(
        mnist1d(config.n_train, config.n_test, seed=config.seed), config.label_noise, seed=config.seed
    ).to(device, dtype)
    C, n = data.out_features, data.num_train
    Y = torch.nn.functional.one_hot(data.y_train, C).to(dtype)
    Y_test = torch.nn.functional.one_hot(data.y_test, C).to(dtype)
    counts = feature_counts(config)
    rows: list[dict[str, object]] = []
    records = {
        name: np.zeros((config.seeds, counts.size))
        for name in ("test_error", "train_error", "test_mse", "train_mse", "readout_norm")
    }
    for s in context.track(range(config.seeds), "random-feature draws"):
        model = RandomFeatures(data.in_features, int(counts[-1]), C, seed=config.seed * 1000 + s)
        model = model.to(device, dtype)
        with torch.no_grad():
            path = min_norm_path(model.features(data.X_train), model.features(data.X_test), Y, counts)
        for j, fitted in enumerate(path):
            records["test_error"][s, j] = 1 - accuracies(fitted["test"], data.y_test).item()
            records["train_error"][s, j] = 1 - accuracies(fitted["train"], data.y_train).item()
            records["test_mse"][s, j] = (fitted["test"] - Y_test).square().sum(1).mean().item()
            records["train_mse"][s, j] = (fitted["train"] - Y).square().sum(1).mean().item()
            records["readout_norm"][s, j] = fitted["norm"].item()
    for name, values in records.items():
        rows.extend(
            {"seed": s, "num_features": int(p), "ratio": p / n, "name": name, "value": float(values[s, j])}
            for s in range(config.seeds)
            for j, p in enumerate(counts)
        )

    threshold = interpolation_threshold(n)
    mean_error = records["test_error"].mean(axis=0)
    log_mse = np.log(records["test_mse"]).mean(axis=0)
    exact = records["train_mse"].max(axis=0) <= 1e-12 * records["train_mse"][:, 0].min()
    first_exact = int(counts[np.argmax(exact)]) if exact.any() else math.nan
    checks = [
        Check.absolute(
            "random features: smallest p with an exact training fit vs n",
            float(first_exact),
            float(threshold),
            0.0,
            detail="exact: training mean squared error <= 1e-12 x its value at the smallest p (all seeds); "
            "Phi (n x p) has full row rank from p = n on, so the least-squares fit interpolates exactly there",
        ),
        Check.relative(
            "random features: test error (0-1, seed mean) peaks at p* = n",
            float(counts[mean_error.argmax()]),
            float(threshold),
            config.peak_tolerance,
            detail=f"argmax over {counts.size} log-spaced p in [{counts[0]}, {counts[-1]}] of the mean test error over "
            f"{config.seeds} feature draws, {config.label_noise:g} label noise; tolerance {config.peak_tolerance:g} "
            "from the issue (Belkin et al. 2019; Nakkiran et al. 2019)",
        ),
        Check.relative(
            "random features: test mean squared error peaks at p* = n",
            float(counts[log_mse.argmax()]),
            float(threshold),
            config.peak_tolerance,
            detail="argmax of the mean over draws of log test MSE (one-hot targets); the minimum-norm interpolant "
            "diverges where Phi is square (Hastie et al. 2022, Thm. 1)",
        ),
    ]
    figures = {"random_features": _features_figure(counts / n, records, config)}
    if config.mlp_widths:
        mlp = _mlp_sweep(data, config, context)
        rows.extend(mlp["rows"])
        figures["mlp_width_sweep"] = _mlp_figure(mlp, data.in_features, C, n, config)
    return Result(pd.DataFrame(rows), checks, figures)


def _mlp_sweep(data: Dataset, config: DoubleDescentConfig, context: Context) -> dict:
    """For each width, `mlp_seeds` MLPs trained at once (`_ensemble`) with Adam on the squared loss to one-hot
    targets; their final training and test errors, shape (widths, seeds)."""
    C = data.out_features
    labels = data.y_train.expand(config.mlp_seeds, -1)
    train_error = np.zeros((len(config.mlp_widths), config.mlp_seeds))
    test_error = np.zeros_like(train_error)
    rows = []
    for i, width in enumerate(context.track(config.mlp_widths, "MLP width sweep")):
        models = [
            MLP(data.in_features, C, width=width, depth=1, seed=config.seed * 1000 + s).to(data.X_train.dtype)
            for s in range(config.mlp_seeds)
        ]
        ensemble = StackedModels.of(models, data.X_train.device)
        optimizer = torch.optim.Adam(ensemble.params.values(), lr=config.mlp_lr)
        fit(ensemble, data.X_train, labels, config.mlp_steps, optimizer, loss=squared_error)
        with torch.no_grad():
            train_error[i] = 1 - accuracies(ensemble.outputs(data.X_train), labels).cpu().numpy()
            test_error[i] = 1 - accuracies(ensemble.outputs(data.X_test), data.y_test).cpu().numpy()
        params = mlp_num_parameters(data.in_features, width, C)
        for s in range(config.mlp_seeds):
            for name, values in (("mlp_train_error", train_error), ("mlp_test_error", test_error)):
                rows.append(
                    {"seed": s, "width": width, "num_parameters": params, "name": name, "value": float(values[i, s])}
                )
    return {"rows": rows, "train_error": train_error, "test_error": test_error}


def _features_figure(ratios: np.ndarray, records: dict, config: DoubleDescentConfig) -> Figure:
    fig = Figure(figsize=(15, 4.8), layout="constrained")
    ax_err, ax_mse, ax_norm = fig.subplots(1, 3)
    draws = f"mean of {config.seeds} draws"
    ax_err.plot(ratios, records["test_error"].mean(axis=0), "o", ms=4, mfc="none", label=f"test ({draws})")
    ax_err.plot(ratios, records["train_error"].mean(axis=0), "s", ms=4, mfc="none", label=f"training ({draws})")
    test_mse = np.exp(np.log(records["test_mse"]).mean(axis=0))
    ax_mse.plot(ratios, test_mse, "o", ms=4, mfc="none", label=f"test (geometric {draws})")
    ax_mse.plot(ratios, records["train_mse"].mean(axis=0), "s", ms=4, mfc="none", label=f"training ({draws})")
    norm = np.exp(np.log(records["readout_norm"]).mean(axis=0))
    ax_norm.plot(ratios, norm, "o", ms=4, mfc="none", label=f"||A||_F (geometric {draws})")
    for ax in (ax_err, ax_mse, ax_norm):
        ax.axvline(1.0, color="k", ls="--", lw=1, label="theory: threshold p* = n")
        ax.set_xscale("log")
        ax.set_xlabel("number of features p / n")
        ax.legend(fontsize=8, loc="upper left" if ax is ax_norm else "best")
    ax_err.set_ylabel("0-1 error")
    ax_err.set_title(f"Classification error (n = {config.n_train}, {config.label_noise:g} label noise)", fontsize=10)
    ax_mse.set_yscale("symlog", linthresh=1e-2)
    ax_mse.set_ylim(0, 3 * max(test_mse.max(), 1.0))
    ax_mse.set_ylabel("mean squared error to one-hot targets")
    ax_mse.set_title("Squared error of the minimum-norm readout", fontsize=10)
    ax_norm.set_yscale("log")
    ax_norm.set_ylim(0.5 * norm.min(), 3 * norm.max())
    ax_norm.set_ylabel("readout norm ||A||_F")
    ax_norm.set_title("Norm of the minimum-norm interpolant", fontsize=10)
    fig.suptitle("Double descent of random ReLU features on mnist1d: the peak sits at the interpolation threshold")
    return fig


def _mlp_figure(mlp: dict, d: int, C: int, n: int, config: DoubleDescentConfig) -> Figure:
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.subplots()
    params = np.array([mlp_num_parameters(d, w, C) for w in config.mlp_widths])
    for name, style, label in (("test_error", "o-", "test error"), ("train_error", "s-", "training error")):
        ax.plot(
            params / (n * C),
            mlp[name].mean(axis=1),
            style,
            ms=5,
            mfc="none",
            label=f"{label} (mean of {config.mlp_seeds} seeds)",
        )
    width = mlp_interpolation_width(n, d, C)
    ax.axvline(1.0, color="k", ls="--", lw=1, label=f"theory: parameters = n C (width {width:.0f})")
    ax.set_xscale("log")
    ax.set_xlabel("number of parameters / (n C)")
    ax.set_ylabel("0-1 error")
    ax.set_title(f"One-hidden-layer MLPs, squared loss, {config.mlp_steps} Adam steps")
    ax.legend(fontsize=8)
    return fig


EXPERIMENT = Experiment(
    name="double-descent-features",
    claim=(
        "Test error against the number of random features (or the width of a trained network) rises to a peak "
        "at the interpolation threshold, where the model first fits the noisy training set exactly, and falls "
        "again beyond it."
    ),
    config=DoubleDescentConfig,
    **legacy(run),
    presets={
        "full": {
            "n_train": 1000,
            "n_test": 4000,
            "points": 61,
            "ratio_min": 0.05,
            "ratio_max": 20.0,
            "seeds": 10,
            "mlp_widths": (2, 4, 8, 12, 16, 20, 24, 32, 40, 48, 64, 96, 128, 256, 512, 1024),
            "mlp_steps": 20000,
            "mlp_seeds": 3,
        }
    },
    references=(
        "Belkin, Hsu, Ma & Mandal (2019), Reconciling modern machine-learning practice and the classical "
        "bias-variance trade-off, PNAS",
        "Nakkiran, Kaplun, Bansal, Yang, Barak & Sutskever (2019), Deep double descent: where bigger models and "
        "more data hurt, ICLR 2020",
        "Mei & Montanari (2022), The generalization error of random features regression: precise asymptotics and "
        "the double descent curve, CPAM",
        "Hastie, Montanari, Rosset & Tibshirani (2022), Surprises in high-dimensional ridgeless least squares "
        "interpolation, Ann. Stat.",
    ),
    part="generalisation",
)
