"""regularisation: L2 (weight decay), L1 (sparsity), dropout, and L2 penalty vs decoupled weight decay.

Four measurements on linear models (float64), trained through `tdlab.train.fit` with `torch.optim` and
`tdlab.optim` optimisers, each against its theory:

1. weight decay is ridge: full-batch `torch.optim.SGD(weight_decay=lambda)` on 1/(2n) ||X w - y||^2 converges to
   (X^T X / n + lambda I)^{-1} X^T y / n (`tdlab.theory.least_squares.ridge_primal`);
2. L1 gives sparsity: proximal gradient descent (ISTA, `tdlab.optim.ProximalGD`) along a path of penalties reaches
   the lasso solution (its optimality conditions, `lasso_optimality_violation`) with coefficients exactly 0,
   where ridge shrinks every coefficient but zeroes none;
3. dropout: inverted dropout (`torch.nn.Dropout`) keeps the expected activation, E[h m / (1 - p)] = h, within Monte
   Carlo error; on an over-parameterised random-features regression (`tdlab.models.RandomFeatures`, readout
   trained by full-batch GD) it shrinks the train/test gap, towards the marginalised-dropout ridge solution
   (`tdlab.theory.regularisation.dropout_ridge_solution`, drawn for comparison);
4. L2 penalty vs decoupled decay (Loshchilov & Hutter 2019): mini-batch SGD with `weight_decay` (the L2 gradient)
   and `tdlab.optim.SGDW` (decay (1 - eta lambda) w) follow the same path (lambda' = decay / eta); Adam with
   `weight_decay` and `torch.optim.AdamW`, on the same batches (`tdlab.train.batches`), do not.

The closed forms that need the sampled data (ridge, lasso conditions, marginalised dropout) are evaluated in
`measure` beside the measurements; the checks compare rows.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from pydantic import Field, model_validator
from scipy.stats import norm
from torch import nn

from tdlab.data import half_squared_error
from tdlab.experiments.base import Check, Context, Experiment, ExperimentConfig
from tdlab.experiments.tidy import rows, select, series, table, value
from tdlab.models import LinearModel, RandomFeatures
from tdlab.optim import SGDW, ProximalGD
from tdlab.theory.least_squares import ridge_primal
from tdlab.theory.regularisation import (
    dropout_moments,
    dropout_ridge_solution,
    l2_equivalent_of_decoupled_decay,
    lasso_optimality_violation,
)
from tdlab.train.trainer import fit

DECAY_FORMS = ("SGD, L2 penalty", "SGDW, decoupled", "Adam, L2 penalty", "AdamW, decoupled")


class RegularisationConfig(ExperimentConfig):
    """The shared regression problem and the settings of the four measurements."""

    n: int = Field(100, ge=4, description="training examples of the linear problems")
    d: int = Field(30, ge=2, description="features of the linear problems")
    sparsity: int = Field(5, ge=1, description="nonzero coefficients of the true beta")
    noise: float = Field(0.5, gt=0.0, description="label noise standard deviation")
    ridge_lams: tuple[Annotated[float, Field(gt=0.0)], ...] = Field(
        (0.01, 0.1, 1.0), min_length=1, description="weight decays lambda > 0"
    )
    ridge_steps: int = Field(600, ge=10, description="full-batch GD steps with weight decay")
    lasso_points: int = Field(12, ge=2, description="penalties on the lasso path, lambda_max down to lambda_max/100")
    lasso_steps: int = Field(250, ge=10, description="ISTA steps per penalty (warm started)")
    dropout: float = Field(0.5, gt=0.0, lt=1.0, description="drop probability p")
    mc_samples: int = Field(20000, ge=100, description="dropout masks drawn for the expectation")
    units: int = Field(64, ge=1, description="hidden units whose dropout mean is measured")
    gap_n: int = Field(50, ge=2, description="training examples of the random-features regression")
    gap_features: int = Field(200, ge=2, description="random ReLU features (over-parameterised: > gap_n)")
    gap_inputs: int = Field(10, ge=1, description="input dimension of the random-features regression")
    gap_steps: int = Field(1500, ge=10, description="full-batch GD steps of the readout")
    gap_test: int = Field(2000, ge=10, description="test examples of the random-features regression")
    decay: float = Field(0.5, gt=0.0, description="L2 coefficient lambda' (= decoupled weight_decay in torch's form)")
    path_steps: int = Field(300, ge=10, description="mini-batch steps of the L2-vs-decoupled comparison")
    path_batch: int = Field(10, ge=1, description="mini-batch size of the L2-vs-decoupled comparison")
    lr_sgd: float = Field(0.05, gt=0.0, description="SGD step of the L2-vs-decoupled comparison")
    lr_adam: float = Field(0.01, gt=0.0, description="Adam step of the L2-vs-decoupled comparison")

    @model_validator(mode="after")
    def _consistent(self) -> RegularisationConfig:
        if self.sparsity > self.d:
            raise ValueError(f"sparsity: expected at most d = {self.d}, got {self.sparsity}")
        if self.path_batch > self.n:
            raise ValueError(f"path_batch: expected at most n = {self.n}, got {self.path_batch}")
        return self


def _path(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: tuple,
    steps: int,
    batch_size: int | None = None,
    seed: int = 0,
) -> np.ndarray:
    """The iterates (steps + 1, d) of the single weight row of `model`, trained by `optimizer` through `fit` on
    1/(2b) ||X_B w - y_B||^2 (full batch, or reshuffled mini-batches of `batch_size`)."""
    weight = next(model.parameters())
    path = [weight.detach()[0].cpu().numpy().copy()]
    record = lambda *_: path.append(weight.detach()[0].cpu().numpy().copy())  # noqa: E731
    fit(model, half_squared_error, data, optimizer, steps, batch_size=batch_size, seed=seed, callbacks=[record])
    return np.array(path)


def measure(config: RegularisationConfig, context: Context) -> pd.DataFrame:
    """Rows (see the module docstring): "weight_decay/weights" and "ridge/weights" (lam, index), "ridge/path" on a
    fine grid of lam; "lasso/weights" and "lasso_optimality_violation" along the lasso path; "beta" (index);
    "dropout/activation" h and "dropout_mean" (unit); "dropout/train_mse", "dropout/test_mse" (model: plain,
    dropout, marginalised); "path_distance_sgd", "path_distance_adam" (step) and "path/weight" (optimizer, step,
    index: the two largest coordinates of "ridge/at_decay")."""
    device, dtype = context.device, torch.float64
    generator = torch.Generator().manual_seed(config.seed)
    n, d = config.n, config.d
    X = torch.randn(n, d, generator=generator, dtype=dtype)
    beta = torch.zeros(d, dtype=dtype)
    support = torch.randperm(d, generator=generator)[: config.sparsity]
    beta[support] = torch.randn(config.sparsity, generator=generator, dtype=dtype)
    y = X @ beta + config.noise * torch.randn(n, generator=generator, dtype=dtype)
    Xs, ys = (X / np.sqrt(n)).numpy(), (y / np.sqrt(n)).numpy()  # 1/(2n)||Xw - y||^2 = 1/2 ||Xs w - ys||^2
    X, data = X.to(device), (X.to(device), y[:, None].to(device))
    s2_max = float(np.linalg.eigvalsh(Xs.T @ Xs).max())
    index = np.arange(d)
    frames = [rows("beta", beta.numpy(), index=index)]

    # 1. weight decay = ridge, on a fine grid for the figure
    eta = 1.0 / (s2_max + max(config.ridge_lams))
    fine = np.geomspace(min(config.ridge_lams) / 10, max(config.ridge_lams) * 100, 120)
    frames.append(rows("weight_decay/lr", eta))
    for lam in config.ridge_lams:
        model = LinearModel(d, 1, bias=False).to(X)
        w = _path(model, torch.optim.SGD(model.parameters(), eta, weight_decay=lam), data, config.ridge_steps)[-1]
        frames += [
            rows("weight_decay/weights", w, lam=lam, index=index),
            rows("ridge/weights", ridge_primal(Xs, ys, lam), lam=lam, index=index),
        ]
    frames += [rows("ridge/path", ridge_primal(Xs, ys, lam), lam=lam, index=index) for lam in fine]

    # 2. L1: ISTA along the lasso path (warm starts)
    lam_max = float(np.abs(Xs.T @ ys).max())
    model = LinearModel(d, 1, bias=False).to(X)
    ista = ProximalGD(model.parameters(), lr=1.0 / s2_max, l1=lam_max)
    for lam in lam_max * np.geomspace(1.0, 0.01, config.lasso_points):
        ista.param_groups[0]["l1"] = float(lam)
        w = _path(model, ista, data, config.lasso_steps)[-1]
        frames += [
            rows("lasso/weights", w, lam=lam, index=index),
            rows("lasso_optimality_violation", lasso_optimality_violation(Xs, ys, w, float(lam)), lam=lam),
        ]

    # 3. dropout: the expectation over masks, and the train/test gap of a random-features regression
    layer = RandomFeatures(config.gap_inputs, config.units, 1, activation="tanh", seed=config.seed)
    x0 = torch.randn(1, config.gap_inputs, generator=generator, dtype=dtype)
    h = layer.to(device=device, dtype=dtype).features(x0.to(device))[0]  # tanh: no unit is exactly 0
    gap_data = [
        torch.randn(k, config.gap_inputs, generator=generator, dtype=dtype) for k in (config.gap_n, config.gap_test)
    ]
    beta_gap = torch.randn(config.gap_inputs, 1, generator=generator, dtype=dtype) / np.sqrt(config.gap_inputs)
    targets = [x @ beta_gap + config.noise * torch.randn(len(x), 1, generator=generator, dtype=dtype) for x in gap_data]
    features = RandomFeatures(config.gap_inputs, config.gap_features, 1, seed=config.seed + 1).to(device, dtype)
    phi, phi_test = (features.features(x.to(device)) for x in gap_data)
    y_gap, y_test = (t.to(device) for t in targets)
    lr = 1.0 / float(torch.linalg.eigvalsh(phi.T @ phi / config.gap_n).max())
    fits = {}
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(config.seed)  # nn.Dropout draws its masks from the global generator
        samples = nn.Dropout(config.dropout).train()(h.expand(config.mc_samples, -1))
        for label, p in (("plain", 0.0), ("dropout", config.dropout)):
            model = nn.Sequential(nn.Dropout(p), LinearModel(config.gap_features, 1, bias=False)).to(phi)
            fits[label] = _path(model, torch.optim.SGD(model.parameters(), lr), (phi, y_gap), config.gap_steps)[-1]
    fits["marginalised"] = dropout_ridge_solution(
        (phi / np.sqrt(config.gap_n)).cpu().numpy(), (y_gap / np.sqrt(config.gap_n)).cpu().numpy(), config.dropout
    )[:, 0]
    for label, w in fits.items():
        for split, (features_, target) in (("train", (phi, y_gap)), ("test", (phi_test, y_test))):
            mse = np.mean((features_.cpu().numpy() @ w - target[:, 0].cpu().numpy()) ** 2)
            frames.append(rows(f"dropout/{split}_mse", mse, model=label))
    units = np.arange(config.units)
    frames += [
        rows("dropout/activation", h.cpu().numpy(), unit=units),
        rows("dropout_mean", samples.mean(dim=0).cpu().numpy(), unit=units),
    ]

    # 4. L2 penalty vs decoupled weight decay, on the same mini-batches
    lam, traced = config.decay, {}
    optimizers = (torch.optim.SGD, SGDW, torch.optim.Adam, torch.optim.AdamW)
    for form, cls, lr in zip(DECAY_FORMS, optimizers, (config.lr_sgd,) * 2 + (config.lr_adam,) * 2, strict=True):
        model = LinearModel(d, 1, bias=False).to(X)
        optimizer = cls(model.parameters(), lr=lr, weight_decay=lam)
        traced[form] = _path(model, optimizer, data, config.path_steps, config.path_batch, config.seed)
    ridge = ridge_primal(Xs, ys, lam)
    big = np.argsort(-np.abs(ridge))[:2]
    steps = np.arange(config.path_steps + 1)
    for key, (a, b) in {"sgd": DECAY_FORMS[:2], "adam": DECAY_FORMS[2:]}.items():
        distance = np.linalg.norm(traced[a] - traced[b], axis=1) / np.linalg.norm(traced[a], axis=1).max()
        frames.append(rows(f"path_distance_{key}", distance, step=steps))
    frames += [rows("ridge/at_decay", ridge[big], index=big)]
    frames += [
        rows("path/weight", path[:, big], optimizer=form, step=steps[:, None], index=big)
        for form, path in traced.items()
    ]
    return pd.concat(frames, ignore_index=True)


def _mse(metrics: pd.DataFrame) -> dict[str, float]:
    """Train and test MSE and their gap, by "{split}_{model}" and "gap_{model}"."""
    out = {}
    for split in ("train", "test"):
        out |= {f"{split}_{m}": v for m, v in select(metrics, f"dropout/{split}_mse")[["model", "value"]].values}
    return out | {f"gap_{m}": out[f"test_{m}"] - out[f"train_{m}"] for m in ("plain", "dropout", "marginalised")}


def _dropout_theory(metrics: pd.DataFrame, config: RegularisationConfig) -> tuple[np.ndarray, ...]:
    """h, the measured mean over masks, and the variance h^2 p / (1 - p) of one inverted-dropout sample."""
    h, mc_mean = (series(metrics, name, "unit")[1] for name in ("dropout/activation", "dropout_mean"))
    return h, mc_mean, dropout_moments(h, config.dropout)[1]


def checks(metrics: pd.DataFrame, config: RegularisationConfig) -> list[Check]:
    """Seven checks (module docstring); equality tolerance 1e-6 from the issue."""
    gd, ridge = table(metrics, "weight_decay/weights", "lam"), table(metrics, "ridge/weights", "lam")
    distances = np.linalg.norm(gd - ridge, axis=1) / np.linalg.norm(ridge, axis=1)
    eta = value(metrics, "weight_decay/lr")
    lasso = table(metrics, "lasso/weights", "lam").iloc[::-1]  # lambda_max first
    violations = select(metrics, "lasso_optimality_violation")["value"]
    middle = len(lasso) // 2
    lasso_zeros, ridge_zeros = int((lasso.iloc[middle] == 0).sum()), int((gd.to_numpy() == 0).sum())
    h, mc_mean, var = _dropout_theory(metrics, config)
    z = (mc_mean - h) / np.sqrt(var / config.mc_samples)
    gap = _mse(metrics)
    sgd_gap, adam_gap = (select(metrics, f"path_distance_{k}")["value"].max() for k in ("sgd", "adam"))
    per_step = config.lr_sgd * config.decay
    n, d = config.n, config.d
    return [
        Check.at_most(
            "GD with weight decay lambda vs ridge (X^T X/n + lambda I)^-1 X^T y/n, worst relative distance",
            float(distances.max()),
            1e-6,
            detail=f"torch.optim.SGD(lr = {eta:.3g}, weight_decay = lambda) full batch, {config.ridge_steps} steps, "
            f"lambda in {list(config.ridge_lams)}, n = {n}, d = {d}; tolerance 1e-6 from the issue",
        ),
        Check.at_most(
            "ISTA limit vs the lasso optimality conditions (|grad_j| <= lambda at 0, = lambda otherwise), worst",
            float(violations.max()),
            1e-6,
            detail=f"tdlab.optim.ProximalGD(lr = 1/s_max^2), {config.lasso_steps} steps per lambda, "
            f"{config.lasso_points} lambdas from lambda_max = {lasso.index[0]:.3g} down to lambda_max/100 (warm "
            "starts); gradient of 1/(2n)||Xw - y||^2; tolerance 1e-6 as for the ridge check",
        ),
        Check.holds(
            "L1 sets coefficients exactly to zero, L2 does not",
            lasso_zeros > 0 and ridge_zeros == 0,
            detail=f"lasso at lambda = {lasso.index[middle]:.3g}: {lasso_zeros} of {d} coefficients exactly 0 (true "
            f"support {config.sparsity}); GD with weight decay: {ridge_zeros} zeros over {len(config.ridge_lams)} "
            "lambdas",
            measured=float(lasso_zeros),
        ),
        Check.at_most(
            "inverted dropout keeps the expected activation: max_j |mean_j - h_j| / (MC standard error)",
            float(np.abs(z).max()),
            float(norm.isf(0.0005 / config.units)),
            detail=f"nn.Dropout(p = {config.dropout:g}) on {config.units} units, {config.mc_samples} masks; "
            f"standard error |h| sqrt(p/(1-p)/M); bound = the two-sided 0.001 quantile of the max of "
            f"{config.units} |N(0,1)| (Bonferroni), so a correct mean fails with probability < 0.1%",
        ),
        Check.holds(
            "dropout shrinks the train/test gap (random-features regression)",
            gap["gap_dropout"] < gap["gap_plain"],
            detail=f"gap = test MSE - train MSE, dropout off at evaluation: {gap['gap_plain']:.3g} without dropout, "
            f"{gap['gap_dropout']:.3g} with p = {config.dropout:g} (marginalised-dropout ridge: "
            f"{gap['gap_marginalised']:.3g}); n = {config.gap_n}, {config.gap_features} ReLU features, "
            f"{config.gap_steps} full-batch GD steps",
            measured=gap["gap_dropout"] / gap["gap_plain"],
        ),
        Check.at_most(
            "SGD: L2 penalty lambda' vs decoupled decay lambda = eta lambda', max relative path distance",
            float(sgd_gap),
            1e-6,
            detail=f"lr {config.lr_sgd:g}, per-step decay {per_step:g} = lambda' eta with lambda' = "
            f"{l2_equivalent_of_decoupled_decay(per_step, config.lr_sgd):g} (Loshchilov & Hutter Prop. 1); "
            f"{config.path_steps} steps, batch {config.path_batch}, same batches; tolerance 1e-6 from the issue",
        ),
        Check.at_least(
            "Adam: L2 penalty vs AdamW (decoupled) paths differ, max relative path distance",
            float(adam_gap),
            1e-3,
            detail=f"lr {config.lr_adam:g}, lambda' = {config.decay:g}, same batches; the L2 gradient lambda' w is "
            "divided by sqrt(v), the decoupled decay is not (Loshchilov & Hutter Prop. 2); bound 1e-3, a thousand "
            "times the equality tolerance",
        ),
    ]


def figures(metrics: pd.DataFrame, config: RegularisationConfig) -> dict[str, Figure]:
    """Ridge and lasso paths; dropout's mean and gap; the L2 and decoupled paths."""
    return {
        "l2_and_l1": _paths_figure(metrics, config),
        "dropout": _dropout_figure(metrics, config),
        "weight_decay_forms": _decay_figure(metrics),
    }


def _paths_figure(metrics: pd.DataFrame, config: RegularisationConfig) -> Figure:
    fig = Figure(figsize=(12.0, 4.6), layout="constrained")
    left, right = fig.subplots(1, 2)
    exact, lasso, gd = (table(metrics, k, "lam") for k in ("ridge/path", "lasso/weights", "weight_decay/weights"))
    true = list(select(metrics, "beta").query("value != 0")["index"])
    for j in exact.columns:
        color = f"C{true.index(j)}" if j in true else "0.75"
        left.semilogx(exact.index, exact[j], "-", color=color, lw=1.0)
        right.semilogx(lasso.index, lasso[j], ".-", color=color, lw=1.0, ms=4)
    for k, (lam, w) in enumerate(gd.iterrows()):
        label = "GD with weight decay" if k == 0 else None
        left.semilogx(np.full(len(w), lam), w, "o", color="k", ms=4, mfc="none", label=label)
    left.plot([], [], "-", color="0.3", label="ridge closed form")
    left.set(xlabel=r"$\lambda$", ylabel="coefficient", title="L2: every coefficient shrinks smoothly, none is 0")
    left.legend(fontsize=8)
    twin = right.twinx()
    twin.semilogx(lasso.index, (lasso == 0).sum(axis=1), "s--", color="C3", ms=4, mfc="none", lw=0.8)
    twin.set_ylabel("coefficients exactly 0", color="C3")
    right.plot([], [], "-", color="C0", label="true support (colours)")
    right.plot([], [], "-", color="0.75", label="other coefficients")
    right.plot([], [], "s--", color="C3", mfc="none", label="number of exact zeros")
    right.set(xlabel=r"$\lambda$ (ISTA, warm started)", ylabel="coefficient", title="L1: coefficients hit exactly 0")
    right.legend(fontsize=8, loc="lower right")
    fig.suptitle(
        f"Regularisation paths on a sparse problem (n = {config.n}, d = {config.d}, {config.sparsity} true nonzeros)"
    )
    return fig


def _dropout_figure(metrics: pd.DataFrame, config: RegularisationConfig) -> Figure:
    fig = Figure(figsize=(12.0, 4.4), layout="constrained")
    left, right = fig.subplots(1, 2)
    h, mc_mean, var = _dropout_theory(metrics, config)
    order = np.argsort(h)
    line = np.array([min(h.min(), 0.0) * 1.05, h.max() * 1.05])
    left.plot(line, line, "-", color="C0", lw=1.2, label=r"theory $E = h$ (inverted)")
    left.plot(line, (1 - config.dropout) * line, "-", color="C3", lw=1.2, label=r"theory $E = (1 - p) h$ (plain)")
    error = 3 * np.sqrt(var / config.mc_samples)
    left.errorbar(
        h[order],
        mc_mean[order],
        yerr=error[order],
        fmt="o",
        color="C0",
        ms=3,
        mfc="none",
        label="measured, inverted dropout (3 s.e.)",
    )
    plain = (1 - config.dropout) * mc_mean  # the same masks without the 1/(1 - p)
    left.plot(h[order], plain[order], "s", color="C3", ms=3, mfc="none", label="measured, without the 1/(1-p)")
    left.set(xlabel="activation h (dropout off)", ylabel=f"mean over {config.mc_samples} masks")
    left.set_title(f"inverted dropout keeps the expected activation (p = {config.dropout:g})")
    left.legend(fontsize=8)
    gap = _mse(metrics)
    keys = ["plain", "dropout", "marginalised"]
    x = np.arange(3)
    right.bar(x - 0.2, [gap[f"train_{k}"] for k in keys], width=0.4, color="C0", label="train MSE")
    right.bar(x + 0.2, [gap[f"test_{k}"] for k in keys], width=0.4, color="C1", label="test MSE")
    for k, key in enumerate(keys):
        low, high = gap[f"train_{key}"], gap[f"test_{key}"]
        right.annotate("", xy=(k + 0.2, high), xytext=(k + 0.2, low), arrowprops={"arrowstyle": "<->", "lw": 0.8})
        right.text(
            k + 0.25,
            (low + high) / 2,
            f"gap {gap[f'gap_{key}']:.2f}",
            fontsize=8,
            bbox={"facecolor": "white", "edgecolor": "none", "pad": 1.0},
        )
    right.axhline(config.noise**2, color="0.5", ls=":", label=r"noise $\sigma^2$")
    right.set_xticks(x, ["no dropout", f"dropout p = {config.dropout:g}", "marginalised\n(ridge closed form)"])
    right.set_ylabel("mean squared error")
    right.set_title(f"random features (n = {config.gap_n}, {config.gap_features} features): dropout shrinks the gap")
    right.legend(fontsize=8)
    return fig


def _decay_figure(metrics: pd.DataFrame) -> Figure:
    fig = Figure(figsize=(12.0, 4.4), layout="constrained")
    left, right = fig.subplots(1, 2)
    for key, color, label in (("sgd", "C0", "SGD + L2 vs SGDW"), ("adam", "C3", "Adam + L2 vs AdamW")):
        steps, distance = series(metrics, f"path_distance_{key}")
        left.semilogy(steps[1:], np.maximum(distance[1:], 1e-17), "-", color=color, label=label)
    left.axhline(1e-6, color="0.4", ls=":", label="equality tolerance 1e-6")
    left.set(xlabel="step", ylabel=r"$\|w_t^{L2} - w_t^{decoupled}\| / \max_t \|w_t^{L2}\|$")
    left.set_title("same batches, same lambda': SGD paths coincide, Adam's do not")
    left.legend(fontsize=8)
    ridge = select(metrics, "ridge/at_decay")
    i, j = (int(k) for k in ridge["index"])
    for form, color, ls in zip(DECAY_FORMS, ("C0", "C9", "C3", "C1"), ("-", "--", "-", "--"), strict=True):
        path = table(metrics, "path/weight", "step", optimizer=form)
        right.plot(path[i], path[j], ls, color=color, lw=1.2, label=form)
    right.plot(*ridge["value"], "k*", ms=10, label=r"ridge solution at $\lambda'$")
    right.set(xlabel=f"$w_{{{i + 1}}}$", ylabel=f"$w_{{{j + 1}}}$", title="trajectories in the two largest coordinates")
    right.legend(fontsize=8)
    fig.suptitle("An L2 penalty and decoupled weight decay (Loshchilov & Hutter 2019)")
    return fig


EXPERIMENT = Experiment(
    name="regularisation",
    claim="Weight decay on a linear model is ridge regression; an L1 penalty sets coefficients exactly to zero; "
    "inverted dropout keeps the expected activation and shrinks the train/test gap; an L2 penalty and decoupled "
    "weight decay coincide for SGD (lambda' = lambda/eta) but not for Adam.",
    config=RegularisationConfig,
    measure=measure,
    checks=checks,
    figures=figures,
    presets={
        "full": {
            "n": 400,
            "d": 100,
            "sparsity": 10,
            "ridge_steps": 2000,
            "lasso_points": 30,
            "lasso_steps": 1000,
            "mc_samples": 200000,
            "units": 256,
            "gap_n": 200,
            "gap_features": 800,
            "gap_steps": 5000,
            "path_steps": 2000,
        }
    },
    references=(
        "Hoerl & Kennard (1970), Ridge regression, Technometrics",
        "Tibshirani (1996), Regression shrinkage and selection via the lasso, JRSS B",
        "Beck & Teboulle (2009), A fast iterative shrinkage-thresholding algorithm, SIAM J. Imaging Sci.",
        "Srivastava, Hinton, Krizhevsky, Sutskever & Salakhutdinov (2014), Dropout, JMLR 15",
        "Loshchilov & Hutter (2019), Decoupled weight decay regularization, ICLR",
    ),
    part="linear models",
)
