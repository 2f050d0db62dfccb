"""double-descent-features: test error against model size peaks at the interpolation threshold.

Random ReLU features phi(x) = relu(F x) (`tdlab.models.RandomFeatures`, F fixed) on mnist1d with a fraction of the
training labels resampled at random, and a minimum-norm least-squares readout on one-hot targets,
A = Phi^+ Y (`tdlab.theory.least_squares.min_norm_least_squares`, float64), for a sweep of the number of features
p (nested: the first p features of one draw of F).

Checks against `tdlab.theory.double_descent`:

1. the training fit becomes exact (training mean squared error 0 to rounding) first at p = n, where Phi gains full
   row rank;
2. the test error (0-1, seed mean) peaks within 20% of the interpolation threshold p* = n (the issue's tolerance;
   Belkin et al. 2019, Fig. 2; Nakkiran et al. 2019);
3. so does the test mean squared error.

Optionally (`mlp_widths`, in the `full` preset) an MLP width sweep trained end to end (`tdlab.train.fit`, all seeds
of a width at once: `tdlab.ensemble.members`) with Adam on the squared loss on the same noisy data: its test error
against the number of parameters, with Belkin et al.'s threshold n C (`mlp_interpolation_width`) drawn; no check
(the peak of a trained network depends on training time).

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
from torch import nn

from tdlab.data import Dataset, mnist1d, with_label_noise
from tdlab.ensemble import StackedModels
from tdlab.ensemble.members import Members, accuracies, summed
from tdlab.experiments.base import Check, Context, Experiment, ExperimentConfig
from tdlab.experiments.tidy import value
from tdlab.models import MLP, RandomFeatures
from tdlab.theory.double_descent import interpolation_threshold, mlp_interpolation_width, mlp_num_parameters
from tdlab.theory.least_squares import min_norm_least_squares
from tdlab.train.builders import build_optimizer
from tdlab.train.config import OptimizerConfig
from tdlab.train.trainer import fit

RECORDS = ("test_error", "train_error", "test_mse", "train_mse", "readout_norm")


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
    mlp_steps: int = Field(4000, ge=1, description="full-batch steps of each MLP")
    mlp_optimizer: OptimizerConfig = Field(OptimizerConfig(name="adam", lr=1e-3), description="optimiser of the MLPs")
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


def measure(config: DoubleDescentConfig, context: Context) -> pd.DataFrame:
    """The errors, squared errors and readout norm of the minimum-norm readout at every p for every draw of the
    features; the MLP sweep's errors when asked."""
    data = with_label_noise(
        mnist1d(config.n_train, config.n_test, seed=config.seed), config.label_noise, seed=config.seed
    ).to(context.device, torch.float64)
    C, n, counts = data.out_features, data.num_train, feature_counts(config)
    y_train, y_test = data.y_train.cpu().numpy(), data.y_test.cpu().numpy()
    Y, Y_test = np.eye(C)[y_train], np.eye(C)[y_test]
    rows: list[dict[str, object]] = []
    for s in context.track(range(config.seeds), "random-feature draws"):
        model = RandomFeatures(data.in_features, int(counts[-1]), C, seed=config.seed * 1000 + s).to(data.X_train)
        with torch.no_grad():
            train, test = (model.features(X).cpu().numpy() for X in (data.X_train, data.X_test))
        for p in counts:
            A = min_norm_least_squares(train[:, :p], Y)
            fitted_train, fitted_test = train[:, :p] @ A, test[:, :p] @ A
            values = (
                np.mean(fitted_test.argmax(1) != y_test),
                np.mean(fitted_train.argmax(1) != y_train),
                np.square(fitted_test - Y_test).sum(1).mean(),
                np.square(fitted_train - Y).sum(1).mean(),
                np.linalg.norm(A),
            )
            rows += [
                {"seed": s, "num_features": int(p), "ratio": p / n, "name": name, "value": float(v)}
                for name, v in zip(RECORDS, values, strict=True)
            ]
    return pd.DataFrame(rows + (_mlp_sweep(data, config, context) if config.mlp_widths else []))


def _mlp_sweep(data: Dataset, config: DoubleDescentConfig, context: Context) -> list[dict[str, object]]:
    """For each width, `mlp_seeds` MLPs trained at once (`tdlab.ensemble.members`) on the squared loss to one-hot
    targets; their final training and test errors."""
    d, C, S = data.in_features, data.out_features, config.mlp_seeds
    targets = nn.functional.one_hot(data.y_train, C).to(data.X_train.dtype).unsqueeze(1).expand(-1, S, -1)
    rows = []
    for width in context.track(config.mlp_widths, "MLP width sweep"):
        models = [MLP(d, C, width=width, depth=1, seed=config.seed * 1000 + s).to(data.X_train) for s in range(S)]
        members = Members(StackedModels.of(models))
        optimizer = build_optimizer(members.parameters(), config.mlp_optimizer)
        fit(members, summed(nn.MSELoss()), (data.X_train, targets), optimizer, config.mlp_steps)
        with torch.no_grad():
            errors = {
                "mlp_train_error": 1 - accuracies(members(data.X_train), data.y_train),
                "mlp_test_error": 1 - accuracies(members(data.X_test), data.y_test),
            }
        params = mlp_num_parameters(d, width, C)
        rows += [
            {"seed": s, "width": width, "num_parameters": params, "name": name, "value": float(values[s])}
            for name, values in errors.items()
            for s in range(S)
        ]
    return rows + [{"name": "in_features", "value": d}, {"name": "num_classes", "value": C}]


def _records(metrics: pd.DataFrame) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The feature counts, and each record as an array (seeds, counts)."""
    table = metrics.pivot_table(index="seed", columns=["name", "num_features"], values="value")
    return table[RECORDS[0]].columns.to_numpy(dtype=int), {name: table[name].to_numpy() for name in RECORDS}


def checks(metrics: pd.DataFrame, config: DoubleDescentConfig) -> list[Check]:
    """The threshold of exact fit, and the peaks of the 0-1 test error and the test MSE, against p* = n."""
    counts, records = _records(metrics)
    threshold = interpolation_threshold(config.n_train)
    mean_error = records["test_error"].mean(axis=0)
    log_mse = np.log(records["test_mse"]).mean(axis=0)
    exact = records["train_mse"].max(axis=0) <= 1e-12 * records["train_mse"][:, 0].min()
    first_exact = int(counts[np.argmax(exact)]) if exact.any() else math.nan
    return [
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


def figures(metrics: pd.DataFrame, config: DoubleDescentConfig) -> dict[str, Figure]:
    """The random-features curves against p / n, and the MLP sweep when it ran."""
    counts, records = _records(metrics)
    out = {"random_features": _features_figure(counts / config.n_train, records, config)}
    if config.mlp_widths:
        out["mlp_width_sweep"] = _mlp_figure(metrics, config)
    return out


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


def _mlp_figure(metrics: pd.DataFrame, config: DoubleDescentConfig) -> Figure:
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.subplots()
    n = config.n_train
    d, C = (int(value(metrics, k)) for k in ("in_features", "num_classes"))
    means = metrics.groupby(["name", "num_parameters"])["value"].mean()
    for name, style, label in (("mlp_test_error", "o-", "test error"), ("mlp_train_error", "s-", "training error")):
        label = f"{label} (mean of {config.mlp_seeds} seeds)"
        ax.plot(means[name].index / (n * C), means[name], style, ms=5, mfc="none", label=label)
    width = mlp_interpolation_width(n, d, C)
    ax.axvline(1.0, color="k", ls="--", lw=1, label=f"theory: parameters = n C (width {width:.0f})")
    ax.set_xscale("log")
    ax.set_xlabel("number of parameters / (n C)")
    ax.set_ylabel("0-1 error")
    ax.set_title(f"One-hidden-layer MLPs, squared loss, {config.mlp_steps} {config.mlp_optimizer.name} steps")
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
    measure=measure,
    checks=checks,
    figures=figures,
    presets={
        # The MLP sweep is a figure (no check reads it). At 20000 steps up to width 1024 it alone took over 25 min
        # on one thread (one stacked step of 3 40-m-10 MLPs on 1000 examples: 18 ms at m = 256, 51 ms at 512 and
        # 111 ms at 1024, load 3), so the full preset stops at width 512 and 5000 steps.
        "full": {
            "n_train": 1000,
            "n_test": 4000,
            "points": 61,
            "ratio_min": 0.05,
            "ratio_max": 20.0,
            "seeds": 10,
            "mlp_widths": (2, 4, 8, 12, 16, 20, 24, 32, 40, 48, 64, 96, 128, 256, 512),
            "mlp_steps": 5000,
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
