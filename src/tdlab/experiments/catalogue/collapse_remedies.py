"""collapse-remedies: BatchNorm and residual connections keep deep ReLU representations apart.

The measurement of `relu-collapse` (the mean cosine between the representations of N inputs on a circle, layer
by layer, He initialisation, no bias) repeated for these variants of a depth-L ReLU network:

    vanilla               h_l = relu(W_l h_{l-1})                                  (`tdlab.models.MLP`)
    batchnorm             h_l = relu(BN(W_l h_{l-1})), batch statistics            (`MLP(norm="batchnorm")`)
    resnet                h_1 = W_1 x,  h_l = h_{l-1} + W_l relu(h_{l-1})          (`MLP(residual="preact")`)
    resnet-scaled         the same with the branch scaled by 1/sqrt(L)             (`residual="preact-scaled"`)
    mlp-residual          h_l = h_{l-1} + relu(W_l h_{l-1})                        (`MLP(residual="plain")`)
    mlp-residual-scaled   the same with 1/sqrt(L)                                  (`MLP(residual="scaled")`)

The residual block of He et al. (2016b, "Identity mappings in deep residual networks") ends its branch with a
linear layer, so the branch adds a zero-mean vector to the stream; with one layer per branch it is the block
h + alpha W relu(h) of Hayou et al. (2021, "Stable ResNet"). A post-activation branch ends with the ReLU
instead: it adds a non-negative vector, the common positive direction of all inputs grows, and the cosine goes
to 1 faster than without the skip connection; both are measured and drawn, the checks use the former.

At the same initialisations, on a teacher-student regression (`tdlab.data.synthetic_regression`, mean squared
error), the experiment measures the gradient norm |dL/dW_l| of every layer (BatchNorm's gradients explode
towards the input: Yang et al. 2019), the top Hessian eigenvalue (Lanczos, `tdlab.curvature.hessian_eigs`)
against depth (it explodes with depth for the plain residual net, whose output grows like 2^(L/2), and for
BatchNorm), and the number of full-batch gradient-descent steps each variant needs to reach a training loss,
each at the step eta = 1/lambda_max of its initialisation (half the stability bound 2/lambda_max).

Checks (the issue's): at depth 50 the mean cosine of BatchNorm stays below 0.5 while vanilla's exceeds 0.95,
and both residual nets stay below vanilla.
"""

from __future__ import annotations

import math
from typing import Literal, get_args

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from numpy.typing import NDArray
from pydantic import Field, model_validator
from torch import Tensor, nn

from tdlab.curvature import hessian_eigs
from tdlab.data import synthetic_regression
from tdlab.experiments.base import Check, Context, Experiment, ExperimentConfig, Result, legacy
from tdlab.experiments.catalogue.relu_collapse import circle_inputs
from tdlab.models import MLP
from tdlab.oracles import Objective
from tdlab.probes.activations import activation_statistics, representations

Variant = Literal["vanilla", "batchnorm", "resnet", "resnet-scaled", "mlp-residual", "mlp-residual-scaled"]
VARIANTS: tuple[str, ...] = get_args(Variant)
BATCHNORM_BOUND, VANILLA_BOUND = 0.5, 0.95  # the bounds on the cosine at depth 50
STYLE = {
    "vanilla": ("C0", "o"),
    "batchnorm": ("C1", "s"),
    "resnet": ("C2", "^"),
    "resnet-scaled": ("C3", "v"),
    "mlp-residual": ("C4", "<"),
    "mlp-residual-scaled": ("C5", ">"),
}


def build_variant(
    variant: str, in_features: int, out_features: int, width: int, depth: int, generator: torch.Generator
) -> nn.Module:
    """The network `variant` (one of `VARIANTS`, see the module docstring), He-initialised from `generator`,
    in train mode (BatchNorm normalises with the statistics of the batch it sees).

    Example:
        >>> net = build_variant("batchnorm", 3, 1, 8, 4, torch.Generator().manual_seed(0))
        >>> type(net).__name__, net.training
        ('MLP', True)
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant: expected one of {', '.join(VARIANTS)}, got {variant!r}")
    norm = "batchnorm" if variant == "batchnorm" else None
    residual = {
        "resnet": "preact",
        "resnet-scaled": "preact-scaled",
        "mlp-residual": "plain",
        "mlp-residual-scaled": "scaled",
    }.get(variant)
    return MLP(in_features, out_features, width, depth, "relu", norm, residual, bias=False, init="he", seed=generator)


def layer_gradient_norms(model: nn.Module, X: Tensor, y: Tensor) -> NDArray[np.float64]:
    """|dL/dW_l| (Frobenius) for the first `nn.Linear` of each hidden layer, L the mean squared error of
    model(X) against y; the model's gradients are left set.

    Example:
        >>> net = build_variant("vanilla", 3, 1, 8, 4, torch.Generator().manual_seed(0))
        >>> layer_gradient_norms(net, torch.randn(16, 3), torch.randn(16, 1)).shape
        (4,)
    """
    model.zero_grad()
    nn.functional.mse_loss(model(X), y).backward()
    weights = [next(m for m in layer.modules() if isinstance(m, nn.Linear)).weight for layer in model.hidden_layers()]
    return np.array([float(w.grad.norm()) for w in weights])


def top_hessian_eigenvalue(model: nn.Module, X: Tensor, y: Tensor, tol: float, max_iter: int) -> float:
    """lambda_max of the Hessian of the mean squared error of model(X) against y, by Lanczos.

    Example:
        >>> net = build_variant("vanilla", 3, 1, 8, 2, torch.Generator().manual_seed(0))
        >>> top_hessian_eigenvalue(net, torch.randn(16, 3), torch.randn(16, 1), 1e-6, 100) > 0
        True
    """
    objective = Objective(model, nn.MSELoss(), (X, y))
    return float(hessian_eigs(objective, k=1, which="LA", tol=tol, max_iter=max_iter).eigenvalues[0])


def steps_to_loss(model: nn.Module, X: Tensor, y: Tensor, lr: float, steps: int, target: float) -> NDArray:
    """Full-batch gradient descent (`torch.optim.SGD`, no momentum) on the mean squared error, stopped once the
    loss is at most `target`; returns the loss before each step, length steps + 1 (nan after the stop, inf
    from the first non-finite loss on: a diverged run).

    Example:
        >>> net = build_variant("vanilla", 3, 1, 8, 2, torch.Generator().manual_seed(0))
        >>> losses = steps_to_loss(net, torch.randn(16, 3), torch.randn(16, 1), 0.01, 5, 0.0)
        >>> losses.shape
        (6,)
    """
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    losses = np.full(steps + 1, np.inf)
    for t in range(steps + 1):
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(X), y)
        losses[t] = float(loss.detach())
        if not math.isfinite(losses[t]):
            losses[t:] = np.inf
            break
        if t == steps or losses[t] <= target:
            losses[t + 1 :] = np.nan  # stopped: reached the target
            break
        loss.backward()
        optimizer.step()
    return losses


class CollapseRemediesConfig(ExperimentConfig):
    """Quick defaults: cosines and gradients at width 256, depth 50, 3 seeds; Hessians at width 32 for depths
    2, 6, 18; training at width 32, depth 8 for at most 150 steps (full: the issue's scale)."""

    width: int = Field(256, ge=8, description="hidden units per layer of the cosine and gradient measurement")
    depth: int = Field(50, ge=2, description="hidden layers of the cosine and gradient measurement")
    seeds: int = Field(3, ge=1, description="initialisations averaged over")
    num_inputs: int = Field(32, ge=4, description="inputs on a circle for the cosines")
    in_features: int = Field(20, ge=2, description="input dimension")
    variants: tuple[Variant, ...] = Field(VARIANTS, min_length=1, description="networks compared")
    n_train: int = Field(128, ge=8, description="examples of the teacher-student regression")
    hessian_width: int = Field(32, ge=4, description="width of the networks whose Hessian is measured")
    hessian_depths: tuple[int, ...] = Field((2, 6, 18), min_length=1, description="depths of the Hessian panel")
    lanczos_tol: float = Field(1e-3, gt=0, lt=1, description="relative residual tolerance of Lanczos")
    lanczos_steps: int = Field(30, ge=2, description="most Lanczos steps per eigenvalue")
    train_width: int = Field(32, ge=4, description="width of the trained networks")
    train_depth: int = Field(8, ge=2, description="depth of the trained networks")
    train_steps: int = Field(150, ge=1, description="most full-batch GD steps")
    target_loss: float = Field(0.3, gt=0, description="training MSE to reach (the teacher's outputs have variance 1)")
    trained_variants: tuple[Variant, ...] = Field(
        ("vanilla", "batchnorm", "resnet", "resnet-scaled"),
        min_length=1,
        description="variants whose Hessian and training are measured",
    )

    @model_validator(mode="after")
    def _checked_variants_present(self) -> CollapseRemediesConfig:
        missing = {"vanilla", "batchnorm", "resnet", "resnet-scaled"} - set(self.variants)
        if missing:
            raise ValueError(
                f"variants: the checks need vanilla, batchnorm, resnet and resnet-scaled; missing {sorted(missing)}"
            )
        if any(d < 2 for d in self.hessian_depths):
            raise ValueError(f"hessian_depths: expected depths >= 2, got {self.hessian_depths}")
        return self


def run(config: CollapseRemediesConfig, context: Context) -> Result:
    """Cosines and gradient norms per layer, Hessian against depth, and steps to a training loss per variant."""
    generator = torch.Generator().manual_seed(config.seed)
    device = context.device
    circle, _ = circle_inputs(config.num_inputs, config.in_features, generator)
    data = synthetic_regression(config.n_train, 1, config.in_features, 1, 0.0, "mlp", seed=config.seed)
    X, y, circle = data.X_train.to(device), data.y_train.to(device), circle.to(device)
    L = config.depth
    rows: list[dict[str, float | int | str]] = []
    cosines: dict[str, NDArray] = {}
    gradients: dict[str, NDArray] = {}
    for variant in context.track(config.variants, "collapse-remedies: variants"):
        cos = np.empty((config.seeds, L))
        grad = np.empty((config.seeds, L))
        for s in range(config.seeds):
            model = build_variant(variant, config.in_features, 1, config.width, L, generator).to(device)
            layers = {str(l): layer for l, layer in enumerate(model.hidden_layers())}
            hidden = representations(model, layers, circle)
            cos[s] = [activation_statistics(hidden[str(l)])["cosine"] for l in range(L)]
            grad[s] = layer_gradient_norms(model, X, y)
            rows += [
                {"name": "cosine", "value": float(cos[s, l]), "variant": variant, "layer": l + 1, "seed": s}
                for l in range(L)
            ]
            rows += [
                {
                    "name": "grad_norm",
                    "value": float(grad[s, l]),
                    "variant": variant,
                    "layer": l + 1,
                    "seed": s,
                }
                for l in range(L)
            ]
        cosines[variant], gradients[variant] = cos.mean(axis=0), np.exp(np.log(grad).mean(axis=0))

    sharpness: dict[str, list[float]] = {}
    losses: dict[str, NDArray] = {}
    steps: dict[str, float] = {}
    for variant in context.track(config.trained_variants, "collapse-remedies: Hessian and training"):
        sharpness[variant] = []
        for depth in config.hessian_depths:
            model = build_variant(variant, config.in_features, 1, config.hessian_width, depth, generator).to(device)
            value = top_hessian_eigenvalue(model, X, y, config.lanczos_tol, config.lanczos_steps)
            sharpness[variant].append(value)
            rows.append({"name": "hessian_top", "value": value, "variant": variant, "depth": depth})
        model = build_variant(variant, config.in_features, 1, config.train_width, config.train_depth, generator)
        model = model.to(device)
        lr = 1.0 / top_hessian_eigenvalue(model, X, y, config.lanczos_tol, config.lanczos_steps)
        losses[variant] = steps_to_loss(model, X, y, lr, config.train_steps, config.target_loss)
        reached = np.flatnonzero(losses[variant] <= config.target_loss)
        steps[variant] = float(reached[0]) if reached.size else math.inf
        rows += [
            {"name": "train_loss", "value": float(v), "variant": variant, "step": t, "eta": lr}
            for t, v in enumerate(losses[variant])
            if not math.isnan(v)
        ]
        rows.append({"name": "steps_to_target", "value": steps[variant], "variant": variant, "eta": lr})

    at_depth = {v: float(c[-1]) for v, c in cosines.items()}
    where = f"layer {L}, width {config.width}, mean of {config.seeds} seeds and {config.num_inputs} inputs"
    checks = [
        Check.at_most(
            f"BatchNorm: mean cosine at depth {L}",
            at_depth["batchnorm"],
            BATCHNORM_BOUND,
            detail=f"{where}; bound from the issue (representations stay apart)",
        ),
        Check.at_least(
            f"vanilla: mean cosine at depth {L}",
            at_depth["vanilla"],
            VANILLA_BOUND,
            detail=f"{where}; bound from the issue (collapse)",
        ),
    ]
    for variant in ("resnet", "resnet-scaled"):
        checks.append(
            Check.at_most(
                f"{variant}: mean cosine at depth {L} below vanilla's",
                at_depth[variant],
                at_depth["vanilla"],
                detail=f"{where}; pre-activation blocks h + alpha W relu(h), alpha = "
                f"{'1/sqrt(L)' if variant == 'resnet-scaled' else '1'}"
                + "".join(f"; {v}: {at_depth[v]:.4f}" for v in ("mlp-residual", "mlp-residual-scaled") if v in at_depth)
                + " (MLP's post-activation branch, drawn, not checked)",
            )
        )

    figures = {
        "cosine_vs_depth": _cosine_figure(config, cosines),
        "gradients_curvature_training": _dynamics_figure(config, gradients, sharpness, losses, steps),
    }
    return Result(metrics=pd.DataFrame(rows), checks=checks, figures=figures)


# -------------------------------------------------------------------------------------------- figures
def _cosine_figure(config: CollapseRemediesConfig, cosines: dict[str, NDArray]) -> Figure:
    fig = Figure(figsize=(8.0, 5.0), layout="constrained")
    ax = fig.subplots()
    layers = np.arange(1, config.depth + 1)
    for variant, cos in cosines.items():
        color, marker = STYLE[variant]
        ax.plot(layers, cos, marker=marker, ls="-", lw=0.8, ms=3.5, mfc="none", color=color, label=variant)
    ax.axhline(VANILLA_BOUND, color="0.4", ls=":", lw=1.0, label=f"{VANILLA_BOUND} (vanilla must exceed)")
    ax.axhline(BATCHNORM_BOUND, color="0.4", ls="--", lw=1.0, label=f"{BATCHNORM_BOUND} (BatchNorm must stay below)")
    ax.set_xlabel("layer $l$")
    ax.set_ylabel(r"mean cosine between $h_l(x_i)$ and $h_l(x_j)$")
    ax.set_title(f"Collapse and its remedies at initialisation (width {config.width}, {config.seeds} seeds)")
    ax.legend(fontsize=8, loc="lower right", ncol=2)
    return fig


def _dynamics_figure(
    config: CollapseRemediesConfig,
    gradients: dict[str, NDArray],
    sharpness: dict[str, list[float]],
    losses: dict[str, NDArray],
    steps: dict[str, float],
) -> Figure:
    fig = Figure(figsize=(15.0, 4.6), layout="constrained")
    left, middle, right = fig.subplots(1, 3)
    layers = np.arange(1, config.depth + 1)
    for variant, grad in gradients.items():
        color, marker = STYLE[variant]
        label = variant if np.all(np.isfinite(grad)) else f"{variant} (overflows float32)"
        left.semilogy(layers, grad, marker=marker, ls="-", lw=0.8, ms=3, mfc="none", color=color, label=label)
    left.set_xlabel("layer $l$ (1 = next to the input)")
    left.set_ylabel(r"$\|\partial L / \partial W_l\|$ (geometric mean over seeds)")
    left.set_title(f"Gradient norm per layer at initialisation (depth {config.depth})")
    left.legend(fontsize=7)

    for variant, values in sharpness.items():
        color, marker = STYLE[variant]
        middle.semilogy(config.hessian_depths, values, marker=marker, ls="-", color=color, mfc="none", label=variant)
    middle.set_xlabel("depth $L$")
    middle.set_ylabel(r"top Hessian eigenvalue $\lambda_{max}$ at initialisation")
    middle.set_title(f"Curvature against depth (width {config.hessian_width}, Lanczos)")
    middle.legend(fontsize=8)

    for variant, curve in losses.items():
        color, _ = STYLE[variant]
        reached = "not reached" if math.isinf(steps[variant]) else f"{steps[variant]:.0f} steps"
        finite = np.isfinite(curve)
        right.semilogy(np.flatnonzero(finite), curve[finite], "-", color=color, label=f"{variant}: {reached}")
    right.axhline(config.target_loss, color="0.4", ls="--", lw=1.0, label=f"target {config.target_loss:g}")
    right.set_xlabel(r"GD step (step size $1/\lambda_{max}$ at initialisation)")
    right.set_ylabel("training MSE")
    right.set_title(f"Steps to the target loss (depth {config.train_depth}, width {config.train_width})")
    right.legend(fontsize=8)
    fig.suptitle("Vanishing and exploding gradients, exploding curvature, and what it costs in training")
    return fig


EXPERIMENT = Experiment(
    name="collapse-remedies",
    claim="BatchNorm keeps the representations of different inputs apart at depth 50 and residual connections "
    "slow their collapse; the variants differ in their per-layer gradients, in how the top Hessian eigenvalue "
    "grows with depth, and in the steps they need to reach a training loss.",
    config=CollapseRemediesConfig,
    **legacy(run),
    presets={
        "full": {
            "width": 1024,
            "seeds": 10,
            "num_inputs": 64,
            "n_train": 512,
            "hessian_width": 128,
            "hessian_depths": (2, 5, 10, 20, 50),
            "train_width": 256,
            "train_depth": 50,
            "train_steps": 2000,
        }
    },
    references=(
        "He, Zhang, Ren & Sun (2016), Identity mappings in deep residual networks, ECCV",
        "Yang, Pennington, Rao, Sohl-Dickstein & Schoenholz (2019), A mean field theory of batch normalization, ICLR",
        "Daneshmand, Kohler, Bach, Hofmann & Lucchi (2020), Batch normalization provably avoids rank collapse for "
        "randomly initialised deep networks, NeurIPS",
        "Hayou, Clerico, He, Deligiannidis, Doucet & Rousseau (2021), Stable ResNet, AISTATS",
    ),
    part="signal propagation",
)
