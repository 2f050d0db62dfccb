"""weight-symmetries: permutations and ReLU rescalings leave the function unchanged; they move the sharpness,
and aligning two networks' units by weight matching lowers the loss barrier between them.

A ReLU MLP computes the same function after permuting the units of a hidden layer, or after multiplying a
layer's incoming weights and bias by k > 0 and its outgoing weights by 1/k (`tdlab.landscape.symmetries`).
The experiment measures, in float64:

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
from typing import Literal

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from pydantic import Field, field_validator
from torch import Tensor, nn

from tdlab.curvature import HessianOperator, LinearOperator, hessian_eigs
from tdlab.data import Dataset, classification_sample
from tdlab.experiments.base import Check, Context, Experiment, ExperimentConfig, Result, legacy
from tdlab.landscape import (
    barrier_height,
    mlp_chain,
    path_profile,
    permute_units,
    random_permutations,
    rescale_units,
    train_flat,
    weight_matching,
)
from tdlab.landscape.symmetries import Chain
from tdlab.models import MLP
from tdlab.oracles import Objective
from tdlab.oracles.flat import flatten, unflatten
from tdlab.theory.landscape import rescaled_sharpness_bound

INVARIANCE_TOLERANCE = 1e-6  # the tolerance on the change of the function
IDENTITY_TOLERANCE = 1e-6  # float64 products: the identity H(D theta) = D^-1 H D^-1 holds to rounding
TIGHTNESS_TOLERANCE = 0.01  # relative, at the largest k >= 10: the O(1/k^2) second-order correction
BARRIER_RATIO = 0.5  # the issue's: barrier after alignment at most half the barrier before


class WeightSymmetriesConfig(ExperimentConfig):
    """Quick defaults: one-hidden-layer ReLU MLPs of width 128 on 500 mnist1d examples, 1000 SGD steps each."""

    dataset: Literal["mnist1d", "digits"] = Field("mnist1d", description="training set (digits: first n_train)")
    n_train: int = Field(500, ge=50, le=4000, description="number of training examples")
    width: int = Field(128, ge=2, description="hidden units per layer (the default width of the barrier check)")
    depth: int = Field(1, ge=1, description="number of hidden layers")
    lr: float = Field(0.3, gt=0, description="SGD step size")
    steps: int = Field(1000, ge=1, description="SGD steps per network")
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


class _ScaledHessian(LinearOperator):
    """v -> s * H(theta) (s * v) for a fixed vector s: D^{-1} H D^{-1} for s = 1/D, a principal block of H for
    a 0/1 mask s (its top eigenvalue is the block's, the rest of the spectrum zero)."""

    def __init__(self, obj: Objective, theta: Tensor, s: Tensor):
        super().__init__((obj.dim, obj.dim), obj.dtype, obj.device)
        self.hessian = HessianOperator(obj, theta)
        self.s = s.to(obj.device, obj.dtype)

    def _matvec(self, v: Tensor) -> Tensor:
        return self.s * (self.hessian @ (self.s * v))


def _train_pair(
    data: Dataset, width: int, config: WeightSymmetriesConfig, device: torch.device
) -> tuple[Objective, Chain, Tensor, Tensor, bool]:
    """Two networks of the same architecture from seeds (seed, seed + 1), trained by SGD with different
    mini-batch orders; one objective serves both (it depends on the architecture only)."""
    thetas, diverged = [], False
    for offset in (0, 1):
        model = MLP(
            data.in_features,
            data.out_features,
            width=width,
            depth=config.depth,
            activation="relu",
            seed=config.seed + offset,
        ).to(device, torch.float64)
        obj = Objective(model, nn.CrossEntropyLoss(), data.train)
        run = train_flat(
            obj,
            obj.flat_parameters(),
            "sgd",
            config.lr,
            config.steps,
            config.batch_size,
            torch.Generator().manual_seed(config.seed + offset),
        )
        thetas.append(run.theta)
        diverged = diverged or run.diverged
    return obj, mlp_chain(model), thetas[0], thetas[1], diverged


def _barriers(obj: Objective, chain: Chain, theta_a: Tensor, theta_b: Tensor, config: WeightSymmetriesConfig) -> dict:
    alphas = torch.arange(config.num_alphas, dtype=torch.float64) / (config.num_alphas - 1)
    params_a, params_b = unflatten(theta_a, obj.params), unflatten(theta_b, obj.params)
    perms = weight_matching(params_a, params_b, chain, generator=torch.Generator().manual_seed(config.seed))
    aligned = flatten(permute_units(params_b, chain, perms))
    before = path_profile(obj, theta_a, theta_b, alphas)
    after = path_profile(obj, theta_a, aligned, alphas)
    return {
        "alphas": alphas,
        "before": before.loss,
        "after": after.loss,
        "aligned": aligned,
        "barrier_before": barrier_height(alphas, before.loss),
        "barrier_after": barrier_height(alphas, after.loss),
        "moved": sum(int((p != torch.arange(p.numel())).sum()) for p in perms),
    }


def _relative_change(obj: Objective, theta: Tensor, other: Tensor) -> float:
    """max |f_other(x) - f_theta(x)| / max |f_theta(x)| over the training inputs."""
    with torch.no_grad():
        inputs = obj.data.tensors[0]  # type: ignore[index]
        reference = obj.outputs(unflatten(theta, obj.params), inputs)
        changed = obj.outputs(unflatten(other, obj.params), inputs)
    return float((changed - reference).abs().max() / reference.abs().max())


def _sharpness(obj: Objective, chain: Chain, theta: Tensor, config: WeightSymmetriesConfig) -> dict:
    layer = config.rescale_layer
    params = unflatten(theta, obj.params)
    incoming = {f"{chain.linear[layer]}.weight", f"{chain.linear[layer]}.bias"}
    outgoing = {f"{chain.linear[layer + 1]}.weight"}
    masks = {
        side: flatten({n: torch.full_like(t, float(n in names)) for n, t in obj.params.items()})
        for side, names in (("in", incoming), ("out", outgoing))
    }
    top = {
        side: float(hessian_eigs(_ScaledHessian(obj, theta, m), tol=config.lanczos_tol).eigenvalues[0])
        for side, m in masks.items()
    }
    ones = {n: torch.ones_like(t) for n, t in obj.params.items()}
    probe = torch.randn(obj.dim, generator=torch.Generator().manual_seed(config.seed), dtype=torch.float64)
    probe = probe.to(obj.device)
    rows = []
    for k in config.scales:
        rescaled = flatten(rescale_units(params, chain, layer, k))
        D = flatten(rescale_units(ones, chain, layer, k))
        eig = hessian_eigs(obj, tol=config.lanczos_tol, theta=rescaled)
        predicted = obj.hvp(probe / D, theta) / D
        identity_error = float((obj.hvp(probe, rescaled) - predicted).norm() / predicted.norm())
        rows.append(
            {
                "k": k,
                "sharpness": float(eig.eigenvalues[0]),
                "converged": eig.converged,
                "bound": float(rescaled_sharpness_bound(k, top["out"], top["in"])),
                "identity_error": identity_error,
                "loss": float(obj.value(rescaled)),
                "function_change": _relative_change(obj, theta, rescaled),
            }
        )
    return {"top_in": top["in"], "top_out": top["out"], "rows": rows}


def run(config: WeightSymmetriesConfig, context: Context) -> Result:
    if config.rescale_layer >= config.depth:
        raise ValueError(f"rescale_layer: expected a hidden layer in 0..{config.depth - 1}, got {config.rescale_layer}")
    data = classification_sample(config.dataset, config.n_train, config.seed).to(context.device, torch.float64)
    if config.batch_size > data.num_train:
        raise ValueError(f"batch_size: at most n_train = {data.num_train}, got {config.batch_size}")
    rows: list[dict] = []
    checks: list[Check] = []
    obj, chain, theta_a, theta_b, diverged = _train_pair(data, config.width, config, context.device)
    if diverged:
        checks.append(
            Check.holds(
                "SGD training stays finite",
                False,
                detail=f"a loss became non-finite at lr = {config.lr:g}; nothing to measure",
            )
        )
        return Result(pd.DataFrame(rows, columns=["width", "k", "alpha", "name", "value"]), checks, {})

    generator = torch.Generator().manual_seed(config.seed)
    params_a = unflatten(theta_a, obj.params)
    permuted = flatten(permute_units(params_a, chain, random_permutations(params_a, chain, generator)))
    rescaled = params_a
    for layer in range(chain.num_hidden):
        units = params_a[f"{chain.linear[layer]}.weight"].shape[0]
        factors = 10 ** (2 * torch.rand(units, generator=generator, dtype=torch.float64) - 1)
        rescaled = rescale_units(rescaled, chain, layer, factors.to(context.device))
    barrier = _barriers(obj, chain, theta_a, theta_b, config)
    changes = {
        "random permutation of every hidden layer": _relative_change(obj, theta_a, permuted),
        "random per-unit rescaling (k in [0.1, 10]) of every hidden layer": _relative_change(
            obj, theta_a, flatten(rescaled)
        ),
        "weight-matching permutation of network B": _relative_change(obj, theta_b, barrier["aligned"]),
    }
    for what, change in changes.items():
        rows.append({"width": config.width, "name": f"function_change: {what}", "value": change})
        checks.append(
            Check.at_most(
                f"function unchanged by {what}",
                change,
                INVARIANCE_TOLERANCE,
                detail="max |f'(x) - f(x)| / max |f(x)| over the training inputs, float64; tolerance 1e-6 "
                "(the issue's)",
            )
        )

    sharp = _sharpness(obj, chain, theta_a, config)
    for r in sharp["rows"]:
        for name in ("sharpness", "bound", "identity_error", "loss", "function_change"):
            rows.append({"width": config.width, "k": r["k"], "name": name, "value": r[name]})
    rows += [{"width": config.width, "name": f"top_{side}", "value": sharp[f"top_{side}"]} for side in ("in", "out")]
    checks += _sharpness_checks(sharp, config)

    sweep = {config.width: barrier}
    for width in context.track([w for w in config.sweep_widths if w != config.width], "barriers against width"):
        obj_w, chain_w, a_w, b_w, diverged_w = _train_pair(data, width, config, context.device)
        sweep[width] = None if diverged_w else _barriers(obj_w, chain_w, a_w, b_w, config)
    for width, b in sorted(sweep.items()):
        if b is None:
            rows.append({"width": width, "name": "diverged", "value": 1.0})
            continue
        rows += [{"width": width, "name": n, "value": float(b[n])} for n in ("barrier_before", "barrier_after")]
        for a, before, after in zip(b["alphas"].tolist(), b["before"].tolist(), b["after"].tolist(), strict=True):
            rows.append({"width": width, "alpha": a, "name": "loss_before", "value": before})
            rows.append({"width": width, "alpha": a, "name": "loss_after", "value": after})
    checks.append(
        Check.at_most(
            f"barrier after weight matching / before, width {config.width}",
            barrier["barrier_after"] / barrier["barrier_before"] if barrier["barrier_before"] > 0 else math.nan,
            BARRIER_RATIO,
            detail=f"training-loss barrier max_a L(a) - chord on {config.num_alphas} points of the straight path "
            f"between two SGD solutions (seeds {config.seed}, {config.seed + 1}): "
            f"{barrier['barrier_before']:.4g} before, "
            f"{barrier['barrier_after']:.4g} after aligning B's units to A's (Hungarian weight matching, "
            f"{barrier['moved']} units moved); the issue asks for at most half",
        )
    )
    metrics = pd.DataFrame(rows, columns=["width", "k", "alpha", "name", "value"])
    figures = {"barrier": _barrier_figure(sweep, config), "sharpness": _sharpness_figure(sharp, config)}
    return Result(metrics, checks, figures)


def _sharpness_checks(sharp: dict, config: WeightSymmetriesConfig) -> list[Check]:
    rows = sharp["rows"]
    checks = [
        Check.at_most(
            "Hessian after rescaling = D^-1 H D^-1",
            max(r["identity_error"] for r in rows),
            IDENTITY_TOLERANCE,
            detail=f"max over k in {list(config.scales)} of |H(D theta) v - D^-1 H(theta) D^-1 v| / "
            "|D^-1 H D^-1 v| for a random v, float64 (Dinh et al. 2017: L(D theta) = L(theta))",
        ),
        Check.at_least(
            "sharpness >= max(k^2 lambda_out, lambda_in / k^2)",
            min(r["sharpness"] / r["bound"] for r in rows),
            1.0,
            tolerance=1e-6,
            detail=f"min over k of lambda_max(H(D theta)) / bound; lambda_max of the outgoing block "
            f"{sharp['top_out']:.4g}, of the incoming block {sharp['top_in']:.4g} (Lanczos, tol "
            f"{config.lanczos_tol:g}; Ritz values underestimate, hence the 1e-6 slack)",
        ),
    ]
    largest = rows[-1]
    if largest["k"] >= 10:
        checks.append(
            Check.relative(
                f"sharpness at k = {largest['k']:g} / (k^2 lambda_out)",
                largest["sharpness"] / (largest["k"] ** 2 * sharp["top_out"]),
                1.0,
                TIGHTNESS_TOLERANCE,
                detail=f"the outgoing block dominates as k grows, with a second-order O(1/k^2) correction from the "
                f"off-diagonal blocks; sharpness {largest['sharpness']:.4g} at k = {largest['k']:g} against "
                f"{_at_one(rows):.4g} at k = 1, "
                f"same loss (spread {max(r['loss'] for r in rows) - min(r['loss'] for r in rows):.1e})",
            )
        )
    return checks


def _at_one(rows: list[dict]) -> float:
    return next((r["sharpness"] for r in rows if r["k"] == 1.0), math.nan)


def _barrier_figure(sweep: dict[int, dict | None], config: WeightSymmetriesConfig) -> Figure:
    done = {w: b for w, b in sorted(sweep.items()) if b is not None}
    main = done.get(config.width)
    ncols = 2 if len(done) > 1 else 1
    fig, axes = plt.subplots(1, ncols, figsize=(6.4 * ncols, 4.8), squeeze=False)
    ax = axes[0, 0]
    if main is not None:
        a = main["alphas"].numpy()
        for key, color, label in (("before", "tab:red", "A to B"), ("after", "tab:blue", "A to aligned B")):
            loss = main[key].numpy()
            ax.plot(a, loss, "o", color=color, ms=5, label=f"{label}: measured (barrier {main['barrier_' + key]:.3g})")
            ax.plot([0, 1], [loss[0], loss[-1]], "-", color=color, alpha=0.5, lw=1, label=f"{label}: chord")
        ax.set_xlabel("alpha (0: network A, 1: network B)")
        ax.set_ylabel("training loss (cross-entropy)")
        ax.set_title(f"Straight path between two SGD solutions (ReLU MLP {config.depth}x{config.width})")
        ax.legend(fontsize=8, loc="upper left")
    if ncols == 2:
        ax = axes[0, 1]
        widths = np.array(list(done))
        before = np.array([b["barrier_before"] for b in done.values()])
        after = np.array([b["barrier_after"] for b in done.values()])
        ax.plot(widths, before, "o-", color="tab:red", label="before alignment")
        ax.plot(widths, after, "s-", color="tab:blue", label="after weight matching")
        ax.plot(widths, BARRIER_RATIO * before, ":", color="0.4", label="half the barrier before")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("hidden width")
        ax.set_ylabel("loss barrier")
        ax.set_title("Barrier against width")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _sharpness_figure(sharp: dict, config: WeightSymmetriesConfig) -> Figure:
    rows = sharp["rows"]
    k = np.array([r["k"] for r in rows])
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    line = np.geomspace(k.min(), k.max(), 200)
    ax.loglog(
        line,
        line**2 * sharp["top_out"],
        "--",
        color="tab:orange",
        label=f"k^2 lambda_max(H_out), lambda_max(H_out) = {sharp['top_out']:.3g}",
    )
    ax.loglog(
        line,
        sharp["top_in"] / line**2,
        "--",
        color="tab:green",
        label=f"lambda_max(H_in) / k^2, lambda_max(H_in) = {sharp['top_in']:.3g}",
    )
    ax.loglog(
        line,
        rescaled_sharpness_bound(line, sharp["top_out"], sharp["top_in"]),
        "-",
        color="0.3",
        lw=1,
        label="lower bound: the larger of the two",
    )
    measured = np.array([r["sharpness"] for r in rows])
    ax.loglog(k, measured, "o", color="k", ms=7, label="measured lambda_max(H) (Lanczos)")
    ax.set_ylim(0.3 * measured.min(), 3 * measured.max())
    losses = [r["loss"] for r in rows]
    ax.set_xlabel(f"rescaling factor k of hidden layer {config.rescale_layer} (incoming x k, outgoing x 1/k)")
    ax.set_ylabel("sharpness lambda_max(H)")
    ax.set_title(
        f"Same function, any sharpness: training loss {np.mean(losses):.4g} at every k "
        f"(spread {max(losses) - min(losses):.0e})",
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
    **legacy(run),
    presets={
        "full": {
            "n_train": 4000,
            "width": 512,
            "depth": 2,
            "steps": 6000,
            "batch_size": 128,
            "lr": 0.1,
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
