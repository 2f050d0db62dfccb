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

Every optimiser is the registry's (`tdlab.optim.registry`: torch.optim's SGD, Adam, Adagrad, RMSprop; GD is
full-batch SGD) training a `LinearModel` without bias from zero in float64 through `tdlab.train.fit`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from pydantic import Field, model_validator
from torch import Tensor

from tdlab.data import half_squared_error
from tdlab.experiments.base import Check, Context, Experiment, ExperimentConfig
from tdlab.experiments.tidy import series, value
from tdlab.models import LinearModel
from tdlab.optim.registry import build_optimizer
from tdlab.theory.least_squares import min_norm_solution
from tdlab.train.trainer import fit

METHODS = ("gd", "sgd", "adam", "adagrad", "rmsprop")
ADAPTIVE = ("adam", "adagrad", "rmsprop")
_LABELS = {"gd": "GD", "sgd": "SGD", "adam": "Adam", "adagrad": "Adagrad", "rmsprop": "RMSProp"}
COLORS = {"gd": "C0", "sgd": "C9", "adam": "C3", "adagrad": "C1", "rmsprop": "C2"}


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
    method: str, X: Tensor, y: Tensor, lr: float, steps: int, batch_size: int, seed: int, record_every: int
) -> tuple[Tensor, Tensor]:
    """Train `LinearModel(d, 1, bias=False)` from zero with the optimiser of `method` on 1/(2b) ||X_B w - y_B||^2
    (full batch except for "sgd", whose mini-batches are reshuffled each epoch from `seed`); return the final w and
    the iterates every `record_every` steps, shape (steps // record_every + 1, d).

    Example:
        >>> X, y = torch.eye(2, dtype=torch.float64), torch.ones(2, dtype=torch.float64)
        >>> w, _ = train("gd", X, y, lr=1.0, steps=40, batch_size=2, seed=0, record_every=40)
        >>> [round(v, 6) for v in w.tolist()]
        [1.0, 1.0]
    """
    model = LinearModel(X.shape[1], 1, bias=False).to(device=X.device, dtype=torch.float64)
    optimizer = build_optimizer("sgd" if method == "gd" else method, model.parameters(), lr)
    path = [model.linear.weight.detach()[0].clone()]

    def record(step: int, loss: float) -> None:
        if step % record_every == 0:
            path.append(model.linear.weight.detach()[0].clone())

    batch = batch_size if method == "sgd" else None
    fit(model, half_squared_error, (X, y[:, None]), optimizer, steps, batch_size=batch, seed=seed, callbacks=[record])
    return model.linear.weight.detach()[0].clone(), torch.stack(path)


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


def measure(config: AdaptiveVsMinNormConfig, context: Context) -> pd.DataFrame:
    """Per interpolant (the five methods', and the theory's: method "min_norm" X^+ y, "sign" sign(X^T y)/4): its
    norm, test error, max train residual, distances to X^+ y and to sign(X^T y)/4 (relative), its weights on the
    first ten examples' features (`index`); per method the path every `record_every` steps (distance to X^+ y,
    cosine with sign(X^T y)); the first labels and the fraction of negative test labels."""
    generator = torch.Generator().manual_seed(config.seed)
    dim, every = 3 + 5 * (config.n + config.n_test), config.record_every
    y = draw_labels(config.n, config.p, generator)
    y_test = torch.where(torch.rand(config.n_test, generator=generator, dtype=torch.float64) < config.p, 1.0, -1.0)
    X, X_test = wilson_features(y, 0, dim).numpy(), wilson_features(y_test, config.n, dim).numpy()
    Y, Y_test = y.numpy(), y_test.numpy()
    w_min, direction = min_norm_solution(X, Y), np.sign(X.T @ Y)
    w_sign = direction / float((X @ direction)[0] / Y[0])  # X sign(X^T y) = c y, c = 4
    rows: list[dict] = []

    def add(name: str, value: float, **ids: str | int) -> None:
        rows.append({"name": name, "value": float(value), **ids})

    add("test_negative_fraction", np.mean(Y_test < 0))
    for i in range(min(config.n, 10)):
        add("train_label", Y[i], index=i)
    finals = {"min_norm": w_min, "sign": w_sign}
    for method in context.track(METHODS, "optimisers"):
        lr, inputs = getattr(config, f"lr_{method}"), torch.from_numpy(X).to(context.device)
        w, path = train(method, inputs, y.to(context.device), lr, config.steps, config.sgd_batch, config.seed, every)
        finals[method], path = w.cpu().numpy(), path.cpu().numpy()
        cosine = path @ w_sign / np.maximum(np.linalg.norm(path, axis=1) * np.linalg.norm(w_sign), 1e-300)
        for k, (distance, cos) in enumerate(zip(np.linalg.norm(path - w_min, axis=1), cosine, strict=True)):
            add("path_distance_to_min_norm", distance, method=method, step=k * every)
            add("path_cosine_to_sign", cos, method=method, step=k * every)
    for method, w in finals.items():
        add("norm", np.linalg.norm(w), method=method)
        add("test_error", np.mean(np.sign(X_test @ w) != Y_test), method=method)
        add("train_max_residual", np.abs(X @ w - Y).max(), method=method)
        add("distance_to_min_norm", np.linalg.norm(w - w_min) / np.linalg.norm(w_min), method=method)
        add("distance_to_sign_solution", np.linalg.norm(w - w_sign) / np.linalg.norm(w_sign), method=method)
        for i in range(3 + 5 * min(config.n, 10)):
            add("weight", w[i], method=method, index=i)
    return pd.DataFrame(rows)


def checks(metrics: pd.DataFrame, config: AdaptiveVsMinNormConfig) -> list[Check]:
    """Adaptive methods: the norm of sign(X^T y)/4 and the test error of 'always +1'; GD and SGD: X^+ y and no test
    error (the min-norm interpolant weights the label feature more than the shared ones)."""
    min_norm, sign_norm = value(metrics, "norm", method="min_norm"), value(metrics, "norm", method="sign")
    negatives = value(metrics, "test_negative_fraction")
    label_weight = value(metrics, "weight", method="min_norm", index=0)
    shared = abs(sum(value(metrics, "weight", method="min_norm", index=i) for i in (1, 2)))
    out = []
    for method in METHODS:
        label, norm, error = _LABELS[method], *(value(metrics, k, method=method) for k in ("norm", "test_error"))
        residual = value(metrics, "train_max_residual", method=method)
        batch = f", batch {config.sgd_batch}" if method == "sgd" else ", full batch"
        setting = f"lr {getattr(config, f'lr_{method}'):g}, {config.steps} steps{batch}"
        if method in ADAPTIVE:
            name = f"{label}: norm of the interpolant vs ||sign(X^T y)|| / 4 (Wilson et al. Lemma 3.1)"
            detail = (
                f"{setting}; minimum norm {min_norm:.4g}, so the adaptive interpolant is {sign_norm / min_norm:.3g}x "
                f"larger; distance to sign(X^T y)/4 {value(metrics, 'distance_to_sign_solution', method=method):.1e}, "
                f"max train residual {residual:.1e}; tolerance 1e-4: the lemma is exact for eps = 0, torch's eps "
                "bends the late (tiny-gradient) steps"
            )
            out.append(Check.relative(name, norm, sign_norm, 1e-4, detail))
            name = f"{label}: test error vs the fraction of negative test labels (predicts +1 everywhere)"
            detail = (
                f"{config.n_test} test examples; w_1 = w_2 = w_3 = 1/4 gives the score (y + 2)/4 > 0; expected "
                f"fraction 1 - p = {1 - config.p:g}"
            )
            out.append(Check.absolute(name, error, negatives, 0.0, detail))
        else:
            name = f"{label}: relative distance of the interpolant to the minimum-norm X^+ y"
            detail = (
                f"{setting}; norm {norm:.6g} vs ||X^+ y|| = {min_norm:.6g}, max train residual {residual:.1e}; "
                "tolerance 1e-6 (iterates from 0 stay in the row space)"
            )
            out.append(Check.at_most(name, value(metrics, "distance_to_min_norm", method=method), 1e-6, detail=detail))
            detail = (
                f"{config.n_test} test examples; X^+ y weights the label feature x_1 by {label_weight:.3f} > "
                f"|w_2 + w_3| = {shared:.3f}, so sign(w^T x) = y"
            )
            out.append(Check.absolute(f"{label}: test error of the minimum-norm interpolant", error, 0.0, 0.0, detail))
    return out


def figures(metrics: pd.DataFrame, config: AdaptiveVsMinNormConfig) -> dict[str, Figure]:
    """The interpolants' weights, their norms and test errors against the theory, and their paths."""
    return {
        "weights": _weights_figure(metrics),
        "norms_and_errors": _bars_figure(metrics, config.p),
        "paths": _paths_figure(metrics),
    }


def _weights_figure(metrics: pd.DataFrame) -> Figure:
    fig = Figure(figsize=(12.0, 4.2), layout="constrained")
    ax = fig.subplots()
    y = series(metrics, "train_label", "index")[1]
    styles = {
        "min_norm": ("-", "C0", r"minimum norm $X^+ y$ (theory)"),
        "sign": ("-", "C3", r"$\mathrm{sign}(X^\top y)/4$ (theory)"),
    }
    styles |= {m: (marker, COLORS[m], _LABELS[m]) for m, marker in zip(METHODS, "oxs^v", strict=True)}
    for method, (style, color, label) in styles.items():
        look = {"lw": 1.0} if style == "-" else {"ms": 5, "mfc": "none"}
        ax.plot(*series(metrics, "weight", "index", method=method), style, color=color, label=label, **look)
    for i in range(len(y)):
        ax.axvspan(3 + 5 * i - 0.5, 3 + 5 * i + 4.5, color="0.9" if i % 2 else "0.97", zorder=0)
        ax.text(3 + 5 * i + 2, ax.get_ylim()[0], f"x{i + 1}: y={int(y[i]):+d}", ha="center", va="bottom", fontsize=7)
    ax.axvspan(-0.5, 2.5, color="C4", alpha=0.12, zorder=0)
    ax.text(1.0, ax.get_ylim()[0], "shared:\ny, 1, 1", ha="center", va="bottom", fontsize=7)
    ax.set(xticks=[], ylabel="weight")
    ax.set_xlabel("weight index (first three shared features, then each training example's private block)")
    ax.set_title(
        r"The interpolants: GD and SGD reach $X^+ y$ (weight on the label feature), adaptive methods "
        r"$\mathrm{sign}(X^\top y)/4$"
    )
    ax.legend(fontsize=8, ncols=4, loc="upper right")
    return fig


def _bars_figure(metrics: pd.DataFrame, p: float) -> Figure:
    fig = Figure(figsize=(11.0, 4.0), layout="constrained")
    left, right = fig.subplots(1, 2)
    labels, colors = [_LABELS[m] for m in METHODS], [COLORS[m] for m in METHODS]
    negatives = value(metrics, "test_negative_fraction")
    norms = [value(metrics, "norm", method=m) for m in METHODS]
    errors = [value(metrics, "test_error", method=m) for m in METHODS]
    left.bar(labels, norms, color=colors)
    right.bar(labels, errors, color=colors)
    for ax, values in ((left, norms), (right, errors)):
        for k, v in enumerate(values):
            ax.text(k, v, f"{v:.3f}", ha="center", va="bottom", fontsize=8)
    left.axhline(value(metrics, "norm", method="min_norm"), color="C0", ls="--", label=r"$\|X^+ y\|$")
    left.axhline(value(metrics, "norm", method="sign"), color="C3", ls="--", label=r"$\|\mathrm{sign}(X^\top y)\|/4$")
    left.set(ylabel=r"$\|w_\infty\|$", title="norm of the interpolant reached")
    left.legend(fontsize=8, loc="center left")
    right.axhline(negatives, color="C3", ls="--", label=f"fraction of negatives in the test set ({negatives:.3f})")
    right.axhline(1 - p, color="0.5", ls=":", label=f"1 - p = {1 - p:g}")
    right.set(ylim=(0, max(1 - p, negatives) * 1.25), ylabel="test error")
    right.set_title("test error: 0 for the minimum norm, 'always +1' for the adaptive")
    right.legend(fontsize=8)
    fig.suptitle("Wilson et al. (2017): adaptive methods find a larger-norm interpolant that generalises worse")
    return fig


def _paths_figure(metrics: pd.DataFrame) -> Figure:
    fig = Figure(figsize=(11.0, 4.0), layout="constrained")
    left, right = fig.subplots(1, 2)
    min_norm = value(metrics, "norm", method="min_norm")
    for method in METHODS:
        steps, distance = series(metrics, "path_distance_to_min_norm", method=method)
        left.semilogy(steps, distance / min_norm, "-", color=COLORS[method], label=_LABELS[method])
        steps, cosine = series(metrics, "path_cosine_to_sign", method=method)
        gap = np.maximum(1.0 - cosine[1:], 1e-17)
        right.semilogy(steps[1:], gap, "-", color=COLORS[method], label=_LABELS[method])
    left.set(xlabel="step", ylabel=r"$\|w_t - X^+ y\| / \|X^+ y\|$", title="distance to the minimum-norm interpolant")
    right.set(xlabel="step", ylabel=r"$1 - \cos(w_t, \mathrm{sign}(X^\top y))$")
    right.set_title("adaptive iterates stay on the ray of sign(X^T y) (Lemma 3.1)")
    left.legend(fontsize=8)
    right.legend(fontsize=8)
    return fig


EXPERIMENT = Experiment(
    name="adaptive-vs-min-norm",
    claim="On an underdetermined linear problem GD and SGD from zero reach the minimum-norm interpolant, while Adam, "
    "Adagrad and RMSProp reach a different interpolant of larger norm that generalises worse (Wilson et al. 2017).",
    config=AdaptiveVsMinNormConfig,
    measure=measure,
    checks=checks,
    figures=figures,
    presets={"full": {"n": 200, "n_test": 2000, "steps": 5000}},
    references=(
        "Wilson, Roelofs, Stern, Srebro & Recht (2017), The marginal value of adaptive gradient methods in machine "
        "learning, NeurIPS, Sec. 3.3 and Lemma 3.1",
    ),
    part="linear models",
)
