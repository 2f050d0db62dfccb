"""adaptive-vs-min-norm: on an underdetermined problem, GD and SGD find the minimum-norm interpolant; Adam,
Adagrad and RMSProp find another one, of larger norm, that generalises worse (Wilson et al. 2017, Sec. 3.3).

The construction of Wilson, Roelofs, Stern, Srebro & Recht (2017): n examples with labels y_i = +1 (probability
p > 1/2) or -1, and features

    x_i1 = y_i,   x_i2 = x_i3 = 1,   and a block of features private to example i: one feature equal to 1 if
    y_i = +1, five if y_i = -1 (d = 3 + 5 (n + n_test), every example with its own block);

trained by the squared loss 1/(2n) ||X w - y||^2 from w = 0. Every interpolant fits the training set; a test
example only shares the first three features with the training set, so only w_1, w_2, w_3 decide its label.

- GD and SGD from zero stay in the row space and converge to the minimum-norm interpolant X^+ y, which puts
  most weight on the label feature x_1 and labels every test example correctly.
- X sign(X^T y) = 4 y here (a positive example has 1 + 2 + 1, a negative one -1 + 2 - 5), so sign(X^T y) / 4
  interpolates; Wilson et al.'s Lemma 3.1 shows that Adagrad, RMSProp and Adam (epsilon = 0) from zero keep every
  iterate on the ray of sign(X^T y) and converge to it. Its weights on x_1, x_2, x_3 are all 1/4 (with more
  positive than negative examples), so it labels every test example +1: test error = fraction of negatives
  (1 - p on average), and its norm sqrt(3 + n_+ + 5 n_-) / 4 exceeds the minimum norm.

All runs are `torch.optim` (SGD, Adam, Adagrad, RMSprop) on a `LinearModel` without bias, in float64.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from numpy.typing import NDArray
from pydantic import Field, model_validator
from torch import Tensor

from tdlab.experiments.base import Check, Context, Experiment, ExperimentConfig, Result, legacy
from tdlab.models import LinearModel
from tdlab.theory.least_squares import min_norm_solution

Array = NDArray[np.float64]
METHODS = ("gd", "sgd", "adam", "adagrad", "rmsprop")
ADAPTIVE = ("adam", "adagrad", "rmsprop")
_LABELS = {"gd": "GD", "sgd": "SGD", "adam": "Adam", "adagrad": "Adagrad", "rmsprop": "RMSProp"}


# ------------------------------------------------------------------------------------------ measurement
def wilson_features(labels: Tensor, offset: int, dim: int) -> Tensor:
    """The feature vectors of Wilson et al. (2017, Sec. 3.3) for `labels` (+1/-1), whose private blocks start at
    example index `offset` (so train and test examples never share one), in R^dim (float64, labels' device).

    Example:
        >>> wilson_features(torch.tensor([1.0, -1.0]), offset=0, dim=13).tolist()[1]
        [-1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    """
    n = labels.shape[0]
    if 3 + 5 * (offset + n) > dim:
        raise ValueError(f"dim: expected at least 3 + 5 (offset + n) = {3 + 5 * (offset + n)}, got {dim}")
    X = torch.zeros(n, dim, dtype=torch.float64, device=labels.device)
    X[:, 0] = labels
    X[:, 1:3] = 1.0
    for i, label in enumerate(labels.tolist()):
        start = 3 + 5 * (offset + i)
        X[i, start : start + (1 if label > 0 else 5)] = 1.0
    return X


def draw_labels(n: int, p: float, generator: torch.Generator) -> Tensor:
    """n labels, +1 with probability p, redrawn until positives outnumber negatives (Wilson et al.'s setting:
    then no entry of X^T y vanishes and sign(X^T y) / 4 interpolates).

    Example:
        >>> labels = draw_labels(9, 0.75, torch.Generator().manual_seed(0))
        >>> bool(labels.sum() > 0)
        True
    """
    while True:
        labels = torch.where(torch.rand(n, generator=generator, dtype=torch.float64) < p, 1.0, -1.0)
        if labels.sum() > 0:
            return labels.to(torch.float64)


def train(
    method: str,
    X: Tensor,
    y: Tensor,
    lr: float,
    steps: int,
    batch_size: int,
    generator: torch.Generator,
    record_every: int,
) -> tuple[Tensor, Tensor]:
    """Train `LinearModel(d, 1, bias=False)` from zero with the torch optimiser of `method` on 1/(2b)
    ||X_B w - y_B||^2 (full batch except for "sgd"); return the final w and the iterates every `record_every`
    steps, shape (steps // record_every + 1, d).

    Example:
        >>> X, y = torch.eye(2, dtype=torch.float64), torch.ones(2, dtype=torch.float64)
        >>> w, _ = train("gd", X, y, lr=1.0, steps=40, batch_size=2, generator=torch.Generator(), record_every=40)
        >>> [round(v, 6) for v in w.tolist()]
        [1.0, 1.0]
    """
    n, d = X.shape
    model = LinearModel(d, 1, bias=False).to(device=X.device, dtype=torch.float64)
    optimiser = {
        "gd": torch.optim.SGD,
        "sgd": torch.optim.SGD,
        "adam": torch.optim.Adam,
        "adagrad": torch.optim.Adagrad,
        "rmsprop": torch.optim.RMSprop,
    }[method](model.parameters(), lr=lr)
    batch = n if method != "sgd" else batch_size
    weight = model.linear.weight
    path = [weight.detach()[0].clone()]
    order = torch.arange(n, device=X.device)
    for t in range(1, steps + 1):
        position = ((t - 1) * batch) % n
        if batch < n and position == 0:
            order = torch.randperm(n, generator=generator).to(X.device)
        rows = order[position : position + batch]
        optimiser.zero_grad()
        loss = 0.5 * (model(X[rows])[:, 0] - y[rows]).square().mean()
        loss.backward()
        optimiser.step()
        if t % record_every == 0:
            path.append(weight.detach()[0].clone())
    return weight.detach()[0].clone(), torch.stack(path)


# --------------------------------------------------------------------------------------------- config
class AdaptiveVsMinNormConfig(ExperimentConfig):
    """Wilson et al.'s construction, and the step sizes of the five optimisers."""

    n: int = Field(40, ge=3, description="training examples")
    n_test: int = Field(200, ge=1, description="test examples (each with its own unseen features)")
    p: float = Field(0.75, gt=0.5, lt=1.0, description="probability of the label +1")
    steps: int = Field(1200, ge=10, description="optimiser steps of every method")
    sgd_batch: int = Field(4, ge=1, description="mini-batch size of SGD")
    lr_gd: float = Field(0.25, gt=0.0, description="step of GD (full batch torch SGD)")
    lr_sgd: float = Field(0.5, gt=0.0, description="step of mini-batch SGD")
    lr_adam: float = Field(0.01, gt=0.0, description="step of Adam (betas 0.9, 0.999, eps 1e-8)")
    lr_adagrad: float = Field(0.1, gt=0.0, description="step of Adagrad (eps 1e-10)")
    lr_rmsprop: float = Field(0.001, gt=0.0, description="step of RMSprop (alpha 0.99, eps 1e-8)")
    record_every: int = Field(10, ge=1, description="steps between recorded iterates")

    @model_validator(mode="after")
    def _consistent(self) -> AdaptiveVsMinNormConfig:
        if self.sgd_batch > self.n:
            raise ValueError(f"sgd_batch: expected at most n = {self.n}, got {self.sgd_batch}")
        return self


# ------------------------------------------------------------------------------------------------ run
def run(config: AdaptiveVsMinNormConfig, context: Context) -> Result:
    """Train the five optimisers on Wilson et al.'s problem; compare norms and test errors with the theory."""
    device = context.device
    generator = torch.Generator().manual_seed(config.seed)
    dim = 3 + 5 * (config.n + config.n_test)
    y = draw_labels(config.n, config.p, generator)
    y_test = torch.where(torch.rand(config.n_test, generator=generator, dtype=torch.float64) < config.p, 1.0, -1.0)
    X = wilson_features(y, 0, dim)
    X_test = wilson_features(y_test, config.n, dim)
    w_min = min_norm_solution(X.numpy(), y.numpy())
    direction = np.sign(X.numpy().T @ y.numpy())
    scale = float((X.numpy() @ direction)[0] / y[0])  # X sign(X^T y) = c y, c = 4
    w_sign = direction / scale
    negatives = float((y_test < 0).double().mean())

    rows: list[dict[str, float | str]] = []
    checks: list[Check] = []
    finals: dict[str, Array] = {}
    paths: dict[str, Array] = {}
    lrs = {m: getattr(config, f"lr_{m}") for m in METHODS}
    for method in context.track(METHODS, "optimisers"):
        w, path = train(
            method,
            X.to(device),
            y.to(device),
            lrs[method],
            config.steps,
            config.sgd_batch,
            generator,
            config.record_every,
        )
        finals[method], paths[method] = w.cpu().numpy(), path.cpu().numpy()
    for method, w in finals.items():
        test_error = float(np.mean(np.sign(X_test.numpy() @ w) != y_test.numpy()))
        train_residual = float(np.abs(X.numpy() @ w - y.numpy()).max())
        rows += [
            {"name": "norm", "value": float(np.linalg.norm(w)), "method": method},
            {"name": "test_error", "value": test_error, "method": method},
            {"name": "train_max_residual", "value": train_residual, "method": method},
            {
                "name": "distance_to_min_norm",
                "value": float(np.linalg.norm(w - w_min) / np.linalg.norm(w_min)),
                "method": method,
            },
            {
                "name": "distance_to_sign_solution",
                "value": float(np.linalg.norm(w - w_sign) / np.linalg.norm(w_sign)),
                "method": method,
            },
        ]
        for k, wt in enumerate(paths[method]):
            rows.append(
                {
                    "name": "path_distance_to_min_norm",
                    "value": float(np.linalg.norm(wt - w_min)),
                    "method": method,
                    "step": k * config.record_every,
                }
            )
        setting = f"lr {lrs[method]:g}, {config.steps} steps" + (
            f", batch {config.sgd_batch}" if method == "sgd" else ", full batch"
        )
        if method in ADAPTIVE:
            checks.append(
                Check.relative(
                    f"{_LABELS[method]}: norm of the interpolant vs ||sign(X^T y)|| / 4 (Wilson et al. Lemma 3.1)",
                    float(np.linalg.norm(w)),
                    float(np.linalg.norm(w_sign)),
                    1e-4,
                    detail=f"{setting}; minimum norm {np.linalg.norm(w_min):.4g}, so the adaptive interpolant is "
                    f"{np.linalg.norm(w_sign) / np.linalg.norm(w_min):.3g}x larger; distance to sign(X^T y)/4 "
                    f"{np.linalg.norm(w - w_sign) / np.linalg.norm(w_sign):.1e}, max train residual "
                    f"{train_residual:.1e}; tolerance 1e-4: the lemma is exact for eps = 0, torch's eps bends the "
                    "late (tiny-gradient) steps",
                )
            )
            checks.append(
                Check.absolute(
                    f"{_LABELS[method]}: test error vs the fraction of negative test labels (predicts +1 everywhere)",
                    test_error,
                    negatives,
                    0.0,
                    detail=f"{config.n_test} test examples; w_1 = w_2 = w_3 = 1/4 gives the score (y + 2)/4 > 0; "
                    f"expected fraction 1 - p = {1 - config.p:g}",
                )
            )
        else:
            checks.append(
                Check.at_most(
                    f"{_LABELS[method]}: relative distance of the interpolant to the minimum-norm X^+ y",
                    float(np.linalg.norm(w - w_min) / np.linalg.norm(w_min)),
                    1e-6,
                    detail=f"{setting}; norm {np.linalg.norm(w):.6g} vs ||X^+ y|| = {np.linalg.norm(w_min):.6g}, max "
                    f"train residual {train_residual:.1e}; tolerance 1e-6 (iterates from 0 stay in the row space)",
                )
            )
            checks.append(
                Check.absolute(
                    f"{_LABELS[method]}: test error of the minimum-norm interpolant",
                    test_error,
                    0.0,
                    0.0,
                    detail=f"{config.n_test} test examples; X^+ y weights the label feature x_1 by "
                    f"{w_min[0]:.3f} > |w_2 + w_3| = {abs(w_min[1] + w_min[2]):.3f}, so sign(w^T x) = y",
                )
            )
    metrics = pd.DataFrame(rows)
    figures = {
        "weights": _weights_figure(finals, w_min, w_sign, y.numpy()),
        "norms_and_errors": _bars_figure(metrics, w_min, w_sign, negatives, config.p),
        "paths": _paths_figure(paths, w_min, w_sign, config.record_every),
    }
    return Result(metrics=metrics, checks=checks, figures=figures)


# -------------------------------------------------------------------------------------------- figures
def _weights_figure(finals: dict[str, Array], w_min: Array, w_sign: Array, y: Array) -> Figure:
    fig = Figure(figsize=(12.0, 4.2), layout="constrained")
    ax = fig.subplots()
    shown = 3 + 5 * min(len(y), 10)
    index = np.arange(shown)
    ax.plot(index, w_min[:shown], "-", color="C0", lw=1.0, label=r"minimum norm $X^+ y$ (theory)")
    ax.plot(index, w_sign[:shown], "-", color="C3", lw=1.0, label=r"$\mathrm{sign}(X^\top y)/4$ (theory)")
    for method, marker, color in (
        ("gd", "o", "C0"),
        ("sgd", "x", "C9"),
        ("adam", "s", "C3"),
        ("adagrad", "^", "C1"),
        ("rmsprop", "v", "C2"),
    ):
        ax.plot(index, finals[method][:shown], marker, color=color, ms=5, mfc="none", label=_LABELS[method])
    for i in range(min(len(y), 10)):
        ax.axvspan(3 + 5 * i - 0.5, 3 + 5 * i + 4.5, color="0.9" if i % 2 else "0.97", zorder=0)
        ax.text(3 + 5 * i + 2, ax.get_ylim()[0], f"x{i + 1}: y={int(y[i]):+d}", ha="center", va="bottom", fontsize=7)
    ax.axvspan(-0.5, 2.5, color="C4", alpha=0.12, zorder=0)
    ax.text(1.0, ax.get_ylim()[0], "shared:\ny, 1, 1", ha="center", va="bottom", fontsize=7)
    ax.set_xticks([])
    ax.set_xlabel("weight index (first three shared features, then each training example's private block)")
    ax.set_ylabel("weight")
    ax.set_title(
        r"The interpolants: GD and SGD reach $X^+ y$ (weight on the label feature), adaptive methods "
        r"$\mathrm{sign}(X^\top y)/4$"
    )
    ax.legend(fontsize=8, ncols=4, loc="upper right")
    return fig


def _bars_figure(metrics: pd.DataFrame, w_min: Array, w_sign: Array, negatives: float, p: float) -> Figure:
    fig = Figure(figsize=(11.0, 4.0), layout="constrained")
    left, right = fig.subplots(1, 2)
    labels = [_LABELS[m] for m in METHODS]
    colors = ["C0", "C9", "C3", "C1", "C2"]
    norms = metrics[metrics["name"] == "norm"].set_index("method").loc[list(METHODS), "value"]
    errors = metrics[metrics["name"] == "test_error"].set_index("method").loc[list(METHODS), "value"]
    left.bar(labels, norms, color=colors)
    for k, value in enumerate(norms):
        left.text(k, value, f"{value:.3f}", ha="center", va="bottom", fontsize=8)
    left.axhline(np.linalg.norm(w_min), color="C0", ls="--", label=r"$\|X^+ y\|$")
    left.axhline(np.linalg.norm(w_sign), color="C3", ls="--", label=r"$\|\mathrm{sign}(X^\top y)\|/4$")
    left.set_ylabel(r"$\|w_\infty\|$")
    left.set_title("norm of the interpolant reached")
    left.legend(fontsize=8, loc="center left")
    right.bar(labels, errors, color=colors)
    for k, value in enumerate(errors):
        right.text(k, value, f"{value:.3f}", ha="center", va="bottom", fontsize=8)
    right.axhline(negatives, color="C3", ls="--", label=f"fraction of negatives in the test set ({negatives:.3f})")
    right.axhline(1 - p, color="0.5", ls=":", label=f"1 - p = {1 - p:g}")
    right.set_ylim(0, max(1 - p, negatives) * 1.25)
    right.set_ylabel("test error")
    right.set_title("test error: 0 for the minimum norm, 'always +1' for the adaptive")
    right.legend(fontsize=8)
    fig.suptitle("Wilson et al. (2017): adaptive methods find a larger-norm interpolant that generalises worse")
    return fig


def _paths_figure(paths: dict[str, Array], w_min: Array, w_sign: Array, every: int) -> Figure:
    fig = Figure(figsize=(11.0, 4.0), layout="constrained")
    left, right = fig.subplots(1, 2)
    colors = {"gd": "C0", "sgd": "C9", "adam": "C3", "adagrad": "C1", "rmsprop": "C2"}
    for method, path in paths.items():
        steps = np.arange(len(path)) * every
        to_min = np.linalg.norm(path - w_min, axis=1) / np.linalg.norm(w_min)
        cosine = path @ w_sign / np.maximum(np.linalg.norm(path, axis=1) * np.linalg.norm(w_sign), 1e-300)
        left.semilogy(steps, to_min, "-", color=colors[method], label=_LABELS[method])
        right.semilogy(steps[1:], np.maximum(1.0 - cosine[1:], 1e-17), "-", color=colors[method], label=_LABELS[method])
    left.set_xlabel("step")
    left.set_ylabel(r"$\|w_t - X^+ y\| / \|X^+ y\|$")
    left.set_title("distance to the minimum-norm interpolant")
    left.legend(fontsize=8)
    right.set_xlabel("step")
    right.set_ylabel(r"$1 - \cos(w_t, \mathrm{sign}(X^\top y))$")
    right.set_title("adaptive iterates stay on the ray of sign(X^T y) (Lemma 3.1)")
    right.legend(fontsize=8)
    return fig


EXPERIMENT = Experiment(
    name="adaptive-vs-min-norm",
    claim="On an underdetermined linear problem GD and SGD from zero reach the minimum-norm interpolant, while Adam, "
    "Adagrad and RMSProp reach a different interpolant of larger norm that generalises worse (Wilson et al. 2017).",
    config=AdaptiveVsMinNormConfig,
    **legacy(run),
    presets={"full": {"n": 200, "n_test": 2000, "steps": 5000}},
    references=(
        "Wilson, Roelofs, Stern, Srebro & Recht (2017), The marginal value of adaptive gradient methods in machine "
        "learning, NeurIPS, Sec. 3.3 and Lemma 3.1",
    ),
    part="linear models",
)
