"""regularisation: L2 (weight decay), L1 (sparsity), dropout, and L2 penalty vs decoupled weight decay.

Four measurements on linear models (float64, `torch.optim` and `tdlab.optim`), each against its theory:

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
   `weight_decay` and AdamW, on the same batches, do not.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Annotated

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from numpy.typing import NDArray
from pydantic import Field, model_validator
from scipy.stats import norm
from torch import Tensor, nn

from tdlab.experiments.base import Check, Context, Experiment, ExperimentConfig, Result, legacy
from tdlab.models import LinearModel, RandomFeatures
from tdlab.optim import ProximalGD
from tdlab.optim.weight_decay import SGDW
from tdlab.theory.least_squares import ridge_primal
from tdlab.theory.regularisation import (
    dropout_moments,
    dropout_ridge_solution,
    l2_equivalent_of_decoupled_decay,
    lasso_optimality_violation,
)

Array = NDArray[np.float64]


# ------------------------------------------------------------------------------------------ measurement
def batches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[Tensor]:
    """Endless shuffled mini-batches of row indices (a new permutation every epoch), the same for a given
    generator state.

    Example:
        >>> it = batches(4, 2, torch.Generator().manual_seed(0))
        >>> sorted(torch.cat([next(it), next(it)]).tolist())
        [0, 1, 2, 3]
    """
    while True:
        order = torch.randperm(n, generator=generator)
        for start in range(0, n - batch_size + 1, batch_size):
            yield order[start : start + batch_size]


def train_path(
    make_optimizer: Callable[[list[Tensor]], torch.optim.Optimizer],
    X: Tensor,
    y: Tensor,
    steps: int,
    batch_size: int,
    seed: int,
) -> Tensor:
    """Train `LinearModel(d, 1, bias=False)` from zero on the mini-batch loss 1/(2b) ||X_B w - y_B||^2 with the
    optimiser `make_optimizer(params)`, batches drawn from a generator seeded with `seed`; return the iterates,
    shape (steps + 1, d).

    Example:
        >>> X, y = torch.eye(2, dtype=torch.float64), torch.ones(2, dtype=torch.float64)
        >>> path = train_path(lambda p: torch.optim.SGD(p, lr=1.0), X, y, steps=1, batch_size=2, seed=0)
        >>> path[-1].tolist()
        [0.5, 0.5]
    """
    model = LinearModel(X.shape[1], 1, bias=False).to(device=X.device, dtype=torch.float64)
    optimizer = make_optimizer(list(model.parameters()))
    rows = batches(X.shape[0], batch_size, torch.Generator().manual_seed(seed))
    path = [model.linear.weight.detach()[0].clone()]
    for _ in range(steps):
        index = next(rows).to(X.device)
        optimizer.zero_grad()
        loss = 0.5 * (model(X[index])[:, 0] - y[index]).square().mean()
        loss.backward()
        optimizer.step()
        path.append(model.linear.weight.detach()[0].clone())
    return torch.stack(path)


# --------------------------------------------------------------------------------------------- config
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


# ------------------------------------------------------------------------------------------------ run
def run(config: RegularisationConfig, context: Context) -> Result:
    """Weight decay vs ridge, ISTA vs the lasso conditions, dropout's mean and gap, L2 vs decoupled decay."""
    device, dtype = context.device, torch.float64
    generator = torch.Generator().manual_seed(config.seed)
    n, d = config.n, config.d
    X = torch.randn(n, d, generator=generator, dtype=dtype)
    beta = torch.zeros(d, dtype=dtype)
    support = torch.randperm(d, generator=generator)[: config.sparsity]
    beta[support] = torch.randn(config.sparsity, generator=generator, dtype=dtype)
    y = X @ beta + config.noise * torch.randn(n, generator=generator, dtype=dtype)
    Xs, ys = (X / np.sqrt(n)).numpy(), (y / np.sqrt(n)).numpy()  # 1/(2n)||Xw - y||^2 = 1/2 ||Xs w - ys||^2
    X, y = X.to(device), y.to(device)
    rows: list[dict[str, float | str]] = []
    checks: list[Check] = []
    s2_max = float(np.linalg.eigvalsh(Xs.T @ Xs).max())

    # -- 1. weight decay = ridge
    models = [LinearModel(d, 1, bias=False).to(device=device, dtype=dtype) for _ in config.ridge_lams]
    eta = 1.0 / (s2_max + max(config.ridge_lams))
    optimizer = torch.optim.SGD(
        [{"params": m.parameters(), "weight_decay": lam} for m, lam in zip(models, config.ridge_lams, strict=True)],
        lr=eta,
    )
    for _ in range(config.ridge_steps):
        optimizer.zero_grad()
        sum(0.5 * (m(X)[:, 0] - y).square().mean() for m in models).backward()
        optimizer.step()
    ridge_gd = np.stack([m.linear.weight.detach()[0].cpu().numpy() for m in models])
    ridge_exact = np.stack([ridge_primal(Xs, ys, lam) for lam in config.ridge_lams])
    distances = np.linalg.norm(ridge_gd - ridge_exact, axis=1) / np.linalg.norm(ridge_exact, axis=1)
    rows += [
        {"name": "weight_decay_vs_ridge", "value": v, "lam": lam}
        for v, lam in zip(distances, config.ridge_lams, strict=True)
    ]
    checks.append(
        Check.at_most(
            "GD with weight decay lambda vs ridge (X^T X/n + lambda I)^-1 X^T y/n, worst relative distance",
            float(distances.max()),
            1e-6,
            detail=f"torch.optim.SGD(lr = {eta:.3g}, weight_decay = lambda) full batch, {config.ridge_steps} steps, "
            f"lambda in {list(config.ridge_lams)}, n = {n}, d = {d}; tolerance 1e-6 from the issue",
        )
    )
    ridge_zeros = int((ridge_gd == 0).sum())

    # -- 2. L1: ISTA along the lasso path (warm starts)
    lam_max = float(np.abs(Xs.T @ ys).max())
    lasso_lams = lam_max * np.geomspace(1.0, 0.01, config.lasso_points)
    model = LinearModel(d, 1, bias=False).to(device=device, dtype=dtype)
    ista = ProximalGD(model.parameters(), lr=1.0 / s2_max, l1=float(lasso_lams[0]))
    lasso = np.zeros((len(lasso_lams), d))
    violations = np.zeros(len(lasso_lams))
    for k, lam in enumerate(lasso_lams):
        ista.param_groups[0]["l1"] = float(lam)
        for _ in range(config.lasso_steps):
            ista.zero_grad()
            (0.5 * (model(X)[:, 0] - y).square().mean()).backward()
            ista.step()
        lasso[k] = model.linear.weight.detach()[0].cpu().numpy()
        violations[k] = lasso_optimality_violation(Xs, ys, lasso[k], float(lam))
        rows += [
            {"name": "lasso_zeros", "value": float((lasso[k] == 0).sum()), "lam": float(lam)},
            {"name": "lasso_optimality_violation", "value": float(violations[k]), "lam": float(lam)},
        ]
    checks.append(
        Check.at_most(
            "ISTA limit vs the lasso optimality conditions (|grad_j| <= lambda at 0, = lambda otherwise), worst",
            float(violations.max()),
            1e-6,
            detail=f"tdlab.optim.ProximalGD(lr = 1/s_max^2), {config.lasso_steps} steps per lambda, "
            f"{config.lasso_points} lambdas from lambda_max = {lam_max:.3g} down to lambda_max/100 (warm starts); "
            "gradient of 1/(2n)||Xw - y||^2; tolerance 1e-6 as for the ridge check",
        )
    )
    middle = len(lasso_lams) // 2
    lasso_zeros = int((lasso[middle] == 0).sum())
    checks.append(
        Check.holds(
            "L1 sets coefficients exactly to zero, L2 does not",
            lasso_zeros > 0 and ridge_zeros == 0,
            detail=f"lasso at lambda = {lasso_lams[middle]:.3g}: {lasso_zeros} of {d} coefficients exactly 0 (true "
            f"support {config.sparsity}); GD with weight decay: {ridge_zeros} zeros over {len(config.ridge_lams)} "
            "lambdas",
            measured=float(lasso_zeros),
        )
    )

    # -- 3. dropout: expectation and the train/test gap
    layer = RandomFeatures(config.gap_inputs, config.units, 1, activation="tanh", seed=config.seed)
    x0 = torch.randn(1, config.gap_inputs, generator=generator, dtype=dtype)
    h = layer.to(device=device, dtype=dtype).features(x0.to(device))[0]  # tanh: no unit is exactly 0
    with _seeded(config.seed, device):  # nn.Dropout draws its masks from the global generator
        samples = nn.Dropout(config.dropout).train()(h.expand(config.mc_samples, -1))
        gap = _dropout_gap(config, generator, device)
    mc_mean = samples.mean(dim=0).cpu().numpy()
    mean, var = dropout_moments(h.cpu().numpy(), config.dropout)
    z = (mc_mean - mean) / np.sqrt(var / config.mc_samples)
    critical = float(norm.isf(0.0005 / config.units))
    checks.append(
        Check.at_most(
            "inverted dropout keeps the expected activation: max_j |mean_j - h_j| / (MC standard error)",
            float(np.abs(z).max()),
            critical,
            detail=f"nn.Dropout(p = {config.dropout:g}) on {config.units} units, {config.mc_samples} masks; "
            f"standard error |h| sqrt(p/(1-p)/M); bound = the two-sided 0.001 quantile of the max of "
            f"{config.units} |N(0,1)| (Bonferroni), so a correct mean fails with probability < 0.1%",
        )
    )
    plain = (samples * (1.0 - config.dropout)).mean(dim=0).cpu().numpy()
    rows += [
        {"name": "dropout_mean", "value": float(v), "unit": j, "h": float(hj)}
        for j, (v, hj) in enumerate(zip(mc_mean, mean, strict=True))
    ]
    rows += [{"name": k, "value": v} for k, v in gap.items()]
    checks.append(
        Check.holds(
            "dropout shrinks the train/test gap (random-features regression)",
            gap["gap_dropout"] < gap["gap_plain"],
            detail=f"gap = test MSE - train MSE, dropout off at evaluation: {gap['gap_plain']:.3g} without dropout, "
            f"{gap['gap_dropout']:.3g} with p = {config.dropout:g} (marginalised-dropout ridge: "
            f"{gap['gap_marginalised']:.3g}); n = {config.gap_n}, {config.gap_features} ReLU features, "
            f"{config.gap_steps} full-batch GD steps",
            measured=gap["gap_dropout"] / gap["gap_plain"],
        )
    )

    # -- 4. L2 penalty vs decoupled weight decay, on the same mini-batches
    lam = config.decay
    paths = {
        "SGD, L2 penalty": lambda p: torch.optim.SGD(p, lr=config.lr_sgd, weight_decay=lam),
        "SGDW, decoupled": lambda p: SGDW(p, lr=config.lr_sgd, weight_decay=lam),
        "Adam, L2 penalty": lambda p: torch.optim.Adam(p, lr=config.lr_adam, weight_decay=lam),
        "AdamW, decoupled": lambda p: torch.optim.AdamW(p, lr=config.lr_adam, weight_decay=lam),
    }
    traced = {
        name: train_path(make, X, y, config.path_steps, config.path_batch, config.seed).cpu().numpy()
        for name, make in paths.items()
    }
    sgd_gap = _path_distance(traced["SGD, L2 penalty"], traced["SGDW, decoupled"])
    adam_gap = _path_distance(traced["Adam, L2 penalty"], traced["AdamW, decoupled"])
    rows += [{"name": "path_distance_sgd", "value": float(v), "step": t} for t, v in enumerate(sgd_gap)]
    rows += [{"name": "path_distance_adam", "value": float(v), "step": t} for t, v in enumerate(adam_gap)]
    per_step = config.lr_sgd * lam
    checks.append(
        Check.at_most(
            "SGD: L2 penalty lambda' vs decoupled decay lambda = eta lambda', max relative path distance",
            float(sgd_gap.max()),
            1e-6,
            detail=f"lr {config.lr_sgd:g}, per-step decay {per_step:g} = lambda' eta with lambda' = "
            f"{l2_equivalent_of_decoupled_decay(per_step, config.lr_sgd):g} (Loshchilov & Hutter Prop. 1); "
            f"{config.path_steps} steps, batch {config.path_batch}, same batches; tolerance 1e-6 from the issue",
        )
    )
    checks.append(
        Check.at_least(
            "Adam: L2 penalty vs AdamW (decoupled) paths differ, max relative path distance",
            float(adam_gap.max()),
            1e-3,
            detail=f"lr {config.lr_adam:g}, lambda' = {lam:g}, same batches; the L2 gradient lambda' w is divided by "
            "sqrt(v), the decoupled decay is not (Loshchilov & Hutter Prop. 2); bound 1e-3, a thousand times the "
            "equality tolerance",
        )
    )
    figures = {
        "l2_and_l1": _paths_figure(config, ridge_gd, Xs, ys, lasso, lasso_lams, beta.numpy()),
        "dropout": _dropout_figure(config, mean, mc_mean, plain, var, gap),
        "weight_decay_forms": _decay_figure(traced, sgd_gap, adam_gap, Xs, ys, lam),
    }
    return Result(metrics=pd.DataFrame(rows), checks=checks, figures=figures)


@contextlib.contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch's global generators (of the CPU and of `device`) inside the block and restore them after."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


def _path_distance(a: Array, b: Array) -> Array:
    """||a_t - b_t|| / max_t ||a_t|| along two paths."""
    return np.linalg.norm(a - b, axis=1) / np.linalg.norm(a, axis=1).max()


def _dropout_gap(config: RegularisationConfig, generator: torch.Generator, device: torch.device) -> dict[str, float]:
    """Train the readout of a random-features model with and without dropout on its features; train and test
    mean squared errors (dropout off), and those of the marginalised-dropout ridge solution."""
    dtype = torch.float64
    n, d = config.gap_n, config.gap_inputs
    X = torch.randn(n, d, generator=generator, dtype=dtype)
    X_test = torch.randn(config.gap_test, d, generator=generator, dtype=dtype)
    beta = torch.randn(d, 1, generator=generator, dtype=dtype) / np.sqrt(d)
    y = X @ beta + config.noise * torch.randn(n, 1, generator=generator, dtype=dtype)
    y_test = X_test @ beta + config.noise * torch.randn(config.gap_test, 1, generator=generator, dtype=dtype)
    X, X_test, y, y_test = X.to(device), X_test.to(device), y.to(device), y_test.to(device)
    out: dict[str, float] = {}
    for label, p in (("plain", 0.0), ("dropout", config.dropout)):
        model = RandomFeatures(d, config.gap_features, 1, seed=config.seed + 1).to(device=device, dtype=dtype)
        phi, phi_test = model.features(X), model.features(X_test)
        lr = 1.0 / float(torch.linalg.eigvalsh(phi.T @ phi / n).max())
        optimizer = torch.optim.SGD(model.readout.parameters(), lr=lr)
        drop = nn.Dropout(p).train()
        for _ in range(config.gap_steps):
            optimizer.zero_grad()
            (0.5 * (model.readout(drop(phi)) - y).square().mean()).backward()
            optimizer.step()
        with torch.no_grad():
            out[f"train_{label}"] = float((model.readout(phi) - y).square().mean())
            out[f"test_{label}"] = float((model.readout(phi_test) - y_test).square().mean())
        out[f"gap_{label}"] = out[f"test_{label}"] - out[f"train_{label}"]
        if p > 0:
            w = dropout_ridge_solution((phi / np.sqrt(n)).cpu().numpy(), (y / np.sqrt(n)).cpu().numpy(), p)
            out["train_marginalised"] = float(np.mean((phi.cpu().numpy() @ w - y.cpu().numpy()) ** 2))
            out["test_marginalised"] = float(np.mean((phi_test.cpu().numpy() @ w - y_test.cpu().numpy()) ** 2))
            out["gap_marginalised"] = out["test_marginalised"] - out["train_marginalised"]
    return out


# -------------------------------------------------------------------------------------------- figures
def _paths_figure(
    config: RegularisationConfig, ridge_gd: Array, Xs: Array, ys: Array, lasso: Array, lasso_lams: Array, beta: Array
) -> Figure:
    fig = Figure(figsize=(12.0, 4.6), layout="constrained")
    left, right = fig.subplots(1, 2)
    fine = np.geomspace(min(config.ridge_lams) / 10, max(config.ridge_lams) * 100, 120)
    exact = np.stack([ridge_primal(Xs, ys, lam) for lam in fine])
    true = np.flatnonzero(beta)
    for j in range(Xs.shape[1]):
        color = f"C{list(true).index(j)}" if j in true else "0.75"
        left.semilogx(fine, exact[:, j], "-", color=color, lw=1.0)
        right.semilogx(lasso_lams, lasso[:, j], ".-", color=color, lw=1.0, ms=4)
    for k, lam in enumerate(config.ridge_lams):
        left.semilogx(
            np.full(ridge_gd.shape[1], lam),
            ridge_gd[k],
            "o",
            color="k",
            ms=4,
            mfc="none",
            label="GD with weight decay" if k == 0 else None,
        )
    left.plot([], [], "-", color="0.3", label="ridge closed form")
    left.set_xlabel(r"$\lambda$")
    left.set_ylabel("coefficient")
    left.set_title("L2: every coefficient shrinks smoothly, none is 0")
    left.legend(fontsize=8)
    zeros = (lasso == 0).sum(axis=1)
    twin = right.twinx()
    twin.semilogx(lasso_lams, zeros, "s--", color="C3", ms=4, mfc="none", lw=0.8)
    twin.set_ylabel("coefficients exactly 0", color="C3")
    right.plot([], [], "-", color="C0", label="true support (colours)")
    right.plot([], [], "-", color="0.75", label="other coefficients")
    right.plot([], [], "s--", color="C3", mfc="none", label="number of exact zeros")
    right.set_xlabel(r"$\lambda$ (ISTA, warm started)")
    right.set_ylabel("coefficient")
    right.set_title("L1: coefficients hit exactly 0 (lasso path)")
    right.legend(fontsize=8, loc="lower right")
    fig.suptitle(
        f"Regularisation paths on a sparse problem (n = {config.n}, d = {config.d}, {config.sparsity} true nonzeros)"
    )
    return fig


def _dropout_figure(
    config: RegularisationConfig, h: Array, mc_mean: Array, plain: Array, var: Array, gap: dict[str, float]
) -> Figure:
    fig = Figure(figsize=(12.0, 4.4), layout="constrained")
    left, right = fig.subplots(1, 2)
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
    left.plot(h[order], plain[order], "s", color="C3", ms=3, mfc="none", label="measured, without the 1/(1-p)")
    left.set_xlabel("activation h (dropout off)")
    left.set_ylabel(f"mean over {config.mc_samples} masks")
    left.set_title(f"inverted dropout keeps the expected activation (p = {config.dropout:g})")
    left.legend(fontsize=8)
    labels = ["no dropout", f"dropout p = {config.dropout:g}", "marginalised\n(ridge closed form)"]
    keys = ["plain", "dropout", "marginalised"]
    x = np.arange(3)
    right.bar(x - 0.2, [gap[f"train_{k}"] for k in keys], width=0.4, color="C0", label="train MSE")
    right.bar(x + 0.2, [gap[f"test_{k}"] for k in keys], width=0.4, color="C1", label="test MSE")
    for k, key in enumerate(keys):
        right.annotate(
            "",
            xy=(k + 0.2, gap[f"test_{key}"]),
            xytext=(k + 0.2, gap[f"train_{key}"]),
            arrowprops={"arrowstyle": "<->", "color": "k", "lw": 0.8},
        )
        right.text(
            k + 0.25,
            (gap[f"test_{key}"] + gap[f"train_{key}"]) / 2,
            f"gap {gap[f'gap_{key}']:.2f}",
            fontsize=8,
            bbox={"facecolor": "white", "edgecolor": "none", "pad": 1.0},
        )
    right.axhline(config.noise**2, color="0.5", ls=":", label=r"noise $\sigma^2$")
    right.set_xticks(x, labels)
    right.set_ylabel("mean squared error")
    right.set_title(f"random features (n = {config.gap_n}, {config.gap_features} features): dropout shrinks the gap")
    right.legend(fontsize=8)
    return fig


def _decay_figure(
    traced: dict[str, Array], sgd_gap: Array, adam_gap: Array, Xs: Array, ys: Array, lam: float
) -> Figure:
    fig = Figure(figsize=(12.0, 4.4), layout="constrained")
    left, right = fig.subplots(1, 2)
    t = np.arange(len(sgd_gap))
    left.semilogy(t[1:], np.maximum(sgd_gap[1:], 1e-17), "-", color="C0", label="SGD + L2 vs SGDW")
    left.semilogy(t[1:], np.maximum(adam_gap[1:], 1e-17), "-", color="C3", label="Adam + L2 vs AdamW")
    left.axhline(1e-6, color="0.4", ls=":", label="equality tolerance 1e-6")
    left.set_xlabel("step")
    left.set_ylabel(r"$\|w_t^{L2} - w_t^{decoupled}\| / \max_t \|w_t^{L2}\|$")
    left.set_title("same batches, same lambda': SGD paths coincide, Adam's do not")
    left.legend(fontsize=8)
    ridge = ridge_primal(Xs, ys, lam)
    big = np.argsort(-np.abs(ridge))[:2]
    styles = {
        "SGD, L2 penalty": ("C0", "-"),
        "SGDW, decoupled": ("C9", "--"),
        "Adam, L2 penalty": ("C3", "-"),
        "AdamW, decoupled": ("C1", "--"),
    }
    for name, path in traced.items():
        color, ls = styles[name]
        right.plot(path[:, big[0]], path[:, big[1]], ls, color=color, lw=1.2, label=name)
    right.plot(ridge[big[0]], ridge[big[1]], "k*", ms=10, label=r"ridge solution at $\lambda'$")
    right.set_xlabel(f"$w_{{{big[0] + 1}}}$")
    right.set_ylabel(f"$w_{{{big[1] + 1}}}$")
    right.set_title("trajectories in the two largest coordinates")
    right.legend(fontsize=8)
    fig.suptitle("An L2 penalty and decoupled weight decay (Loshchilov & Hutter 2019)")
    return fig


EXPERIMENT = Experiment(
    name="regularisation",
    claim="Weight decay on a linear model is ridge regression; an L1 penalty sets coefficients exactly to zero; "
    "inverted dropout keeps the expected activation and shrinks the train/test gap; an L2 penalty and decoupled "
    "weight decay coincide for SGD (lambda' = lambda/eta) but not for Adam.",
    config=RegularisationConfig,
    **legacy(run),
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
