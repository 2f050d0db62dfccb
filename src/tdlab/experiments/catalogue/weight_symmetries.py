"""weight-symmetries: permutations and ReLU rescalings leave the function unchanged; they move the sharpness,
and aligning two networks' units by weight matching lowers the loss barrier between them.

A ReLU MLP computes the same function after permuting the units of a hidden layer, or after multiplying a
layer's incoming weights and bias by k > 0 and its outgoing weights by 1/k (`tdlab.landscape.symmetries`).
The experiment trains two such networks (`model` section) on a training set (`data` section) by
`tdlab.train.fit` with the `optimizer` section (SGD by default), and measures, in float64:

- invariance: the largest change of the outputs on the training inputs under a random permutation of every
  hidden layer, a random per-unit rescaling (k log-uniform in [0.1, 10]) and the weight-matching permutation,
  relative to the largest output (tolerance 1e-6, the issue's);
- sharpness under rescaling (Dinh et al. 2017): the Hessian at the rescaled point is H(D theta) =
  D^{-1} H(theta) D^{-1}, checked on a random vector at each k (relative error, tolerance 1e-6); the top
  eigenvalue (Lanczos) is at least max(k^2 lambda_max(H_out), lambda_max(H_in) / k^2) (the principal blocks of
  the outgoing and incoming weights at k = 1; `tdlab.theory.landscape.rescaled_sharpness_bound`) and approaches
  k^2 lambda_max(H_out) as k grows, the off-diagonal blocks entering at second order, O(1/k^2) relative
  (checked within 1% at the largest k >= 10): the same function, any sharpness;
- the loss barrier on the straight path between two networks trained from different seeds (`barrier_height`),
  before and after permuting the second network's hidden units by weight matching (Ainsworth et al. 2023);
  check: after <= half of before at the default width (the issue's). An optional sweep over widths draws the
  barriers against width.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from pydantic import Field, field_validator, model_validator
from torch import Tensor, nn

from tdlab.curvature import HessianOperator, LinearOperator, hessian_eigs
from tdlab.data import Dataset
from tdlab.experiments.base import Check, Context, Experiment, ExperimentConfig
from tdlab.experiments.fields import describe, seeded
from tdlab.experiments.tidy import select, series, value
from tdlab.landscape import (
    barrier_height,
    mlp_chain,
    path_profile,
    permute_units,
    random_permutations,
    rescale_units,
    weight_matching,
)
from tdlab.landscape.symmetries import Chain
from tdlab.oracles import Objective
from tdlab.oracles.flat import flatten, unflatten
from tdlab.theory.landscape import rescaled_sharpness_bound
from tdlab.train.builders import build_data, build_network, build_optimizer
from tdlab.train.config import DataConfig, ModelConfig, OptimizerConfig
from tdlab.train.trainer import fit

INVARIANCE_TOLERANCE = 1e-6  # the tolerance on the change of the function
IDENTITY_TOLERANCE = 1e-6  # float64 products: the identity H(D theta) = D^-1 H D^-1 holds to rounding
TIGHTNESS_TOLERANCE = 0.01  # relative, at the largest k >= 10: the O(1/k^2) second-order correction
BARRIER_RATIO = 0.5  # the issue's: barrier after alignment at most half the barrier before
SYMMETRIES = (
    "random permutation of every hidden layer",
    "random per-unit rescaling (k in [0.1, 10]) of every hidden layer",
    "weight-matching permutation of network B",
)


class WeightSymmetriesConfig(ExperimentConfig):
    """Quick defaults: one-hidden-layer ReLU MLPs of width 128 on 500 mnist1d examples, 1000 SGD steps each.
    `seed` seeds the data (unless its section sets its own); the two networks use seeds `seed` and `seed + 1`."""

    data: DataConfig = Field(default_factory=lambda: DataConfig(name="mnist1d", n_train=500, n_test=10))
    model: ModelConfig = Field(
        default_factory=lambda: ModelConfig(name="mlp", width=128, depth=1, activation="relu"),
        description="a ReLU MLP (positively homogeneous units); its width is the default width of the barrier check",
    )
    optimizer: OptimizerConfig = Field(default_factory=lambda: OptimizerConfig(name="sgd", lr=0.3))
    steps: int = Field(1000, ge=1, description="optimiser steps per network")
    batch_size: int = Field(64, ge=1, description="mini-batch size")
    scales: tuple[float, ...] = Field(
        (0.01, 0.1, 1.0, 10.0, 100.0), min_length=2, description="rescaling factors k of the sharpness curve"
    )
    rescale_layer: int = Field(0, ge=0, description="hidden layer whose units are rescaled (0-based)")
    num_alphas: int = Field(21, ge=3, description="points on the path alpha in [0, 1] (odd: includes 1/2)")
    sweep_widths: tuple[int, ...] = Field((), description="extra widths for the barrier-against-width figure")
    lanczos_tol: float = Field(1e-8, gt=0, lt=1e-3, description="relative residual tolerance of Lanczos")

    @field_validator("scales")
    @classmethod
    def _positive_increasing(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(not k > 0 for k in value) or list(value) != sorted(set(value)):
            raise ValueError(f"scales: expected distinct positive factors in increasing order, got {value}")
        return value

    @field_validator("sweep_widths")
    @classmethod
    def _widths(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(w < 2 for w in value) or list(value) != sorted(set(value)):
            raise ValueError(f"sweep_widths: expected distinct widths >= 2 in increasing order, got {value}")
        return value

    @model_validator(mode="after")
    def _hidden_layer(self) -> WeightSymmetriesConfig:
        depth = self.model.kwargs().get("depth", 3)  # MLP's default
        if self.rescale_layer >= depth:
            raise ValueError(f"rescale_layer: expected a hidden layer in 0..{depth - 1}, got {self.rescale_layer}")
        return self


class _ScaledHessian(LinearOperator):
    """v -> s * H(theta) (s * v) for a fixed vector s: D^{-1} H D^{-1} for s = 1/D, a principal block of H for
    a 0/1 mask s (its top eigenvalue is the block's, the rest of the spectrum zero)."""

    def __init__(self, obj: Objective, theta: Tensor, s: Tensor):
        super().__init__((obj.dim, obj.dim), obj.dtype, obj.device)
        self.hessian = HessianOperator(obj, theta)
        self.s = s.to(obj.device, obj.dtype)

    def _matvec(self, v: Tensor) -> Tensor:
        return self.s * (self.hessian @ (self.s * v))


def _train_pair(data: Dataset, width: int | None, config: WeightSymmetriesConfig) -> tuple[Objective, Chain, list]:
    """Two networks of the same architecture (`width` if given) from seeds (seed, seed + 1), trained by
    `tdlab.train.fit` with different mini-batch orders: one objective (it depends on the architecture only), the
    chain of its layers and the trained flat vectors (fewer than two when a loss became non-finite)."""
    thetas = []
    for offset in (0, 1):
        section = {**config.model.model_dump(), "seed": config.seed + offset} | ({"width": width} if width else {})
        model = build_network(ModelConfig.model_validate(section), data)
        obj = Objective(model, nn.CrossEntropyLoss(), data.train)
        optimizer = build_optimizer(model.parameters(), config.optimizer)
        seed = config.seed + offset
        if fit(
            model, obj.loss_fn, data.train, optimizer, config.steps, batch_size=config.batch_size, seed=seed
        ).diverged:
            break
        thetas.append(obj.flat_parameters())
    return obj, mlp_chain(model), thetas


def _barrier_rows(obj: Objective, chain: Chain, theta_a: Tensor, theta_b: Tensor, config: WeightSymmetriesConfig):
    """Rows "loss_before", "loss_after" by alpha (A to B, A to B aligned by weight matching), "barrier_before",
    "barrier_after", "moved" (units the matching moved); and the aligned B."""
    alphas = torch.arange(config.num_alphas, dtype=torch.float64) / (config.num_alphas - 1)
    params_a, params_b = unflatten(theta_a, obj.params), unflatten(theta_b, obj.params)
    perms = weight_matching(params_a, params_b, chain, generator=torch.Generator().manual_seed(config.seed))
    aligned = flatten(permute_units(params_b, chain, perms))
    rows = []
    for key, end in (("before", theta_b), ("after", aligned)):
        loss = path_profile(obj, theta_a, end, alphas).loss
        rows += [
            {"alpha": a, "name": f"loss_{key}", "value": v} for a, v in zip(alphas.tolist(), loss.tolist(), strict=True)
        ]
        rows.append({"name": f"barrier_{key}", "value": barrier_height(alphas, loss)})
    rows.append({"name": "moved", "value": sum(int((p != torch.arange(p.numel())).sum()) for p in perms)})
    return rows, aligned


def _relative_change(obj: Objective, theta: Tensor, other: Tensor) -> float:
    """max |f_other(x) - f_theta(x)| / max |f_theta(x)| over the training inputs."""
    with torch.no_grad():
        inputs = obj.data.tensors[0]  # type: ignore[index]
        reference = obj.outputs(unflatten(theta, obj.params), inputs)
        changed = obj.outputs(unflatten(other, obj.params), inputs)
    return float((changed - reference).abs().max() / reference.abs().max())


def _sharpness_rows(obj: Objective, chain: Chain, theta: Tensor, config: WeightSymmetriesConfig) -> list[dict]:
    """Rows "top_in", "top_out" (lambda_max of the principal blocks of the rescaled layer's incoming and outgoing
    weights) and, by k, "sharpness" (Lanczos at the rescaled point), "bound", "identity_error", "loss",
    "function_change"."""
    layer = config.rescale_layer
    params = unflatten(theta, obj.params)
    incoming = {f"{chain.linear[layer]}.weight", f"{chain.linear[layer]}.bias"}
    outgoing = {f"{chain.linear[layer + 1]}.weight"}
    top = {}
    for side, names in (("in", incoming), ("out", outgoing)):
        mask = flatten({n: torch.full_like(t, float(n in names)) for n, t in obj.params.items()})
        top[side] = float(hessian_eigs(_ScaledHessian(obj, theta, mask), tol=config.lanczos_tol).eigenvalues[0])
    ones = {n: torch.ones_like(t) for n, t in obj.params.items()}
    probe = torch.randn(obj.dim, generator=torch.Generator().manual_seed(config.seed), dtype=torch.float64)
    probe = probe.to(obj.device)
    rows = [{"name": f"top_{side}", "value": value} for side, value in top.items()]
    for k in config.scales:
        rescaled = flatten(rescale_units(params, chain, layer, k))
        D = flatten(rescale_units(ones, chain, layer, k))
        predicted = obj.hvp(probe / D, theta) / D
        measured = {
            "sharpness": float(hessian_eigs(obj, tol=config.lanczos_tol, theta=rescaled).eigenvalues[0]),
            "bound": float(rescaled_sharpness_bound(k, top["out"], top["in"])),
            "identity_error": float((obj.hvp(probe, rescaled) - predicted).norm() / predicted.norm()),
            "loss": float(obj.value(rescaled)),
            "function_change": _relative_change(obj, theta, rescaled),
        }
        rows += [{"k": k, "name": name, "value": value} for name, value in measured.items()]
    return rows


def measure(config: WeightSymmetriesConfig, context: Context) -> pd.DataFrame:
    """Rows (width, k, alpha, name, value): at the model's width "function_change: WHAT" for the three
    symmetries, the sharpness rows (`_sharpness_rows`), and for it and every sweep width the barrier rows
    (`_barrier_rows`), or "diverged" (1.0) when training became non-finite."""
    data = build_data(seeded(config.data, config.seed), context.device, torch.float64)
    columns = ["width", "k", "alpha", "name", "value"]
    obj, chain, thetas = _train_pair(data, None, config)
    width = obj.model.width
    if len(thetas) < 2:
        return pd.DataFrame([{"width": width, "name": "diverged", "value": 1.0}], columns=columns)
    theta_a, theta_b = thetas
    generator = torch.Generator().manual_seed(config.seed)
    params_a = unflatten(theta_a, obj.params)
    permuted = flatten(permute_units(params_a, chain, random_permutations(params_a, chain, generator)))
    rescaled = params_a
    for layer in range(chain.num_hidden):
        units = params_a[f"{chain.linear[layer]}.weight"].shape[0]
        factors = 10 ** (2 * torch.rand(units, generator=generator, dtype=torch.float64) - 1)
        rescaled = rescale_units(rescaled, chain, layer, factors.to(context.device))
    barrier, aligned = _barrier_rows(obj, chain, theta_a, theta_b, config)
    changes = [
        _relative_change(obj, theta_a, permuted),
        _relative_change(obj, theta_a, flatten(rescaled)),
        _relative_change(obj, theta_b, aligned),
    ]
    rows = [
        {"name": f"function_change: {what}", "value": change} for what, change in zip(SYMMETRIES, changes, strict=True)
    ]
    frames = [pd.DataFrame(rows + _sharpness_rows(obj, chain, theta_a, config) + barrier).assign(width=width)]
    for w in context.track([w for w in config.sweep_widths if w != width], "barriers against width"):
        obj_w, chain_w, thetas = _train_pair(data, w, config)
        rows = (
            _barrier_rows(obj_w, chain_w, *thetas, config)[0]
            if len(thetas) == 2
            else [{"name": "diverged", "value": 1.0}]
        )
        frames.append(pd.DataFrame(rows).assign(width=w))
    return pd.concat(frames, ignore_index=True).reindex(columns=columns)


def _main(metrics: pd.DataFrame) -> tuple[int, pd.DataFrame]:
    """The model's width (the width of the symmetry measurements) and its rows."""
    width = int(metrics["width"].iloc[0])
    return width, metrics[metrics["width"] == width]


def _by_k(rows: pd.DataFrame) -> pd.DataFrame:
    """The sharpness rows as a table: one row per k (ascending), a column per name."""
    return rows[rows["k"].notna()].pivot_table(index="k", columns="name", values="value").sort_index()


def checks(metrics: pd.DataFrame, config: WeightSymmetriesConfig) -> list[Check]:
    """Invariance under the three symmetries, the rescaled Hessian, the sharpness bound and its tightness, and the
    barrier ratio (module docstring)."""
    width, rows = _main(metrics)
    if (rows["name"] == "diverged").any():
        detail = f"a loss became non-finite with {config.optimizer.name} at lr = {config.optimizer.lr:g}"
        return [Check.holds("training stays finite", False, detail=detail + "; nothing to measure")]
    out = [
        Check.at_most(
            f"function unchanged by {what}",
            value(rows, f"function_change: {what}"),
            INVARIANCE_TOLERANCE,
            detail="max |f'(x) - f(x)| / max |f(x)| over the training inputs, float64; tolerance 1e-6 (the issue's)",
        )
        for what in SYMMETRIES
    ]
    by_k, top_in, top_out = _by_k(rows), value(rows, "top_in"), value(rows, "top_out")
    out += [
        Check.at_most(
            "Hessian after rescaling = D^-1 H D^-1",
            float(by_k["identity_error"].max()),
            IDENTITY_TOLERANCE,
            detail=f"max over k in {list(config.scales)} of |H(D theta) v - D^-1 H(theta) D^-1 v| / "
            "|D^-1 H D^-1 v| for a random v, float64 (Dinh et al. 2017: L(D theta) = L(theta))",
        ),
        Check.at_least(
            "sharpness >= max(k^2 lambda_out, lambda_in / k^2)",
            float((by_k["sharpness"] / by_k["bound"]).min()),
            1.0,
            tolerance=1e-6,
            detail=f"min over k of lambda_max(H(D theta)) / bound; lambda_max of the outgoing block "
            f"{top_out:.4g}, of the incoming block {top_in:.4g} (Lanczos, tol "
            f"{config.lanczos_tol:g}; Ritz values underestimate, hence the 1e-6 slack)",
        ),
    ]
    k, largest = by_k.index[-1], by_k.iloc[-1]
    if k >= 10:
        at_one = by_k["sharpness"].get(1.0, math.nan)
        out.append(
            Check.relative(
                f"sharpness at k = {k:g} / (k^2 lambda_out)",
                largest["sharpness"] / (k**2 * top_out),
                1.0,
                TIGHTNESS_TOLERANCE,
                detail=f"the outgoing block dominates as k grows, with a second-order O(1/k^2) correction from the "
                f"off-diagonal blocks; sharpness {largest['sharpness']:.4g} at k = {k:g} against "
                f"{at_one:.4g} at k = 1, same loss (spread {np.ptp(by_k['loss']):.1e})",
            )
        )
    before, after = value(rows, "barrier_before"), value(rows, "barrier_after")
    out.append(
        Check.at_most(
            f"barrier after weight matching / before, width {width}",
            after / before if before > 0 else math.nan,
            BARRIER_RATIO,
            detail=f"training-loss barrier max_a L(a) - chord on {config.num_alphas} points of the straight path "
            f"between two {config.optimizer.name} solutions (seeds {config.seed}, {config.seed + 1}): "
            f"{before:.4g} before, {after:.4g} after aligning B's units to A's (Hungarian weight matching, "
            f"{value(rows, 'moved'):.0f} units moved); the issue asks for at most half",
        )
    )
    return out


def figures(metrics: pd.DataFrame, config: WeightSymmetriesConfig) -> dict[str, Figure]:
    """The barriers (paths at the model's width, against width when swept) and the sharpness against k."""
    width, rows = _main(metrics)
    if (rows["name"] == "diverged").any():
        return {}
    return {"barrier": _barrier_figure(metrics, width, config), "sharpness": _sharpness_figure(rows, config)}


def _barrier_figure(metrics: pd.DataFrame, width: int, config: WeightSymmetriesConfig) -> Figure:
    diverged = set(select(metrics, "diverged")["width"])
    done = metrics[~metrics["width"].isin(diverged)]
    barriers = done[done["name"].str.startswith("barrier_")].pivot_table(index="width", columns="name", values="value")
    ncols = 2 if len(barriers) > 1 else 1
    fig, axes = plt.subplots(1, ncols, figsize=(6.4 * ncols, 4.8), squeeze=False)
    ax = axes[0, 0]
    main = done[done["width"] == width]
    for key, color, label in (("before", "tab:red", "A to B"), ("after", "tab:blue", "A to aligned B")):
        alphas, loss = series(main, f"loss_{key}", "alpha")
        barrier = barriers.loc[width, f"barrier_{key}"]
        ax.plot(alphas, loss, "o", color=color, ms=5, label=f"{label}: measured (barrier {barrier:.3g})")
        ax.plot([0, 1], [loss[0], loss[-1]], "-", color=color, alpha=0.5, lw=1, label=f"{label}: chord")
    ax.set_xlabel("alpha (0: network A, 1: network B)")
    ax.set_ylabel("training loss (cross-entropy)")
    ax.set_title(f"Straight path between two {config.optimizer.name} solutions ({describe(config.model)})", fontsize=9)
    ax.legend(fontsize=8, loc="upper left")
    if ncols == 2:
        ax = axes[0, 1]
        ax.plot(barriers.index, barriers["barrier_before"], "o-", color="tab:red", label="before alignment")
        ax.plot(barriers.index, barriers["barrier_after"], "s-", color="tab:blue", label="after weight matching")
        ax.plot(
            barriers.index,
            BARRIER_RATIO * barriers["barrier_before"],
            ":",
            color="0.4",
            label="half the barrier before",
        )
        ax.set_xscale("log", base=2)
        ax.set_xlabel("hidden width")
        ax.set_ylabel("loss barrier")
        ax.set_title("Barrier against width")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _sharpness_figure(rows: pd.DataFrame, config: WeightSymmetriesConfig) -> Figure:
    by_k, top_in, top_out = _by_k(rows), value(rows, "top_in"), value(rows, "top_out")
    k = by_k.index.to_numpy()
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    line = np.geomspace(k.min(), k.max(), 200)
    label = f"k^2 lambda_max(H_out), lambda_max(H_out) = {top_out:.3g}"
    ax.loglog(line, line**2 * top_out, "--", color="tab:orange", label=label)
    label = f"lambda_max(H_in) / k^2, lambda_max(H_in) = {top_in:.3g}"
    ax.loglog(line, top_in / line**2, "--", color="tab:green", label=label)
    bound = rescaled_sharpness_bound(line, top_out, top_in)
    ax.loglog(line, bound, "-", color="0.3", lw=1, label="lower bound: the larger of the two")
    measured = by_k["sharpness"].to_numpy()
    ax.loglog(k, measured, "o", color="k", ms=7, label="measured lambda_max(H) (Lanczos)")
    ax.set_ylim(0.3 * measured.min(), 3 * measured.max())
    losses = by_k["loss"]
    ax.set_xlabel(f"rescaling factor k of hidden layer {config.rescale_layer} (incoming x k, outgoing x 1/k)")
    ax.set_ylabel("sharpness lambda_max(H)")
    ax.set_title(
        f"Same function, any sharpness: training loss {losses.mean():.4g} at every k (spread {np.ptp(losses):.0e})",
        fontsize=10,
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


EXPERIMENT = Experiment(
    name="weight-symmetries",
    claim="Permuting hidden units and rescaling a ReLU layer by k (the next by 1/k) leave the function unchanged; "
    "rescaling makes an equivalent minimum arbitrarily sharp (Dinh et al. 2017), and aligning two networks' "
    "units by weight matching lowers the loss barrier between them (Ainsworth et al. 2023).",
    config=WeightSymmetriesConfig,
    measure=measure,
    checks=checks,
    figures=figures,
    presets={
        "full": {
            "data": {"name": "mnist1d", "n_train": 4000, "n_test": 10},
            "model": {"name": "mlp", "width": 512, "depth": 2, "activation": "relu"},
            "optimizer": {"name": "sgd", "lr": 0.1},
            "steps": 6000,
            "batch_size": 128,
            "scales": (0.001, 0.01, 0.1, 0.3, 1.0, 3.0, 10.0, 100.0, 1000.0),
            "num_alphas": 41,
            "sweep_widths": (32, 64, 128, 256, 512, 1024),
        },
    },
    references=(
        "Dinh, Pascanu, Bengio & Bengio (2017), Sharp minima can generalize for deep nets, ICML",
        "Ainsworth, Hayase & Srinivasa (2023), Git Re-Basin: merging models modulo permutation symmetries, ICLR",
        "Entezari, Sedghi, Saukh & Neyshabur (2022), The role of permutation invariance in linear mode "
        "connectivity of neural networks, ICLR",
    ),
    part="loss landscapes",
)
