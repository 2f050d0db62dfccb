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

The cosines are the `activations` probe's on the circle inputs (`tdlab.data.circle_inputs`). At the same
initialisations, on a teacher-student regression (`tdlab.data.synthetic_regression`, mean squared error), the
experiment measures the gradient norm |dL/dW_l| of every layer (probe `gradient-norm`; BatchNorm's gradients
explode towards the input: Yang et al. 2019), the top Hessian eigenvalue (probe `sharpness`, Lanczos) against
depth (it explodes with depth for the plain residual net, whose output grows like 2^(L/2), and for BatchNorm),
and the number of full-batch gradient-descent steps (`tdlab.train.fit`, `torch.optim.SGD`) each variant needs to
reach a training loss, each at the step eta = 1/lambda_max of its initialisation (half the stability bound
2/lambda_max). BatchNorm normalises with the statistics of the batch it sees throughout (train mode).

Checks (the issue's): at depth 50 the mean cosine of BatchNorm stays below 0.5 while vanilla's exceeds 0.95,
and both residual nets stay below vanilla. The mechanism: vanilla's units lose their variance across inputs
(rel_var at depth L at most half its first layer's), BatchNorm's keep 1 - 1/pi.
"""

from __future__ import annotations

import math
from typing import Literal, get_args

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from pydantic import Field, model_validator
from torch import nn

from tdlab.data import circle_inputs, synthetic_regression
from tdlab.experiments.base import Check, Context, Experiment, ExperimentConfig
from tdlab.experiments.tidy import table
from tdlab.models import MLP
from tdlab.probes import ActivationStats, GradientNorm, ProbeSet, Sharpness
from tdlab.train.trainer import fit

Variant = Literal["vanilla", "batchnorm", "resnet", "resnet-scaled", "mlp-residual", "mlp-residual-scaled"]
VARIANTS: tuple[str, ...] = get_args(Variant)
RESIDUAL = dict(zip(VARIANTS[2:], ("preact", "preact-scaled", "plain", "scaled"), strict=True))  # MLP(residual=)
BATCHNORM_BOUND, VANILLA_BOUND = 0.5, 0.95  # the bounds on the cosine at depth 50
STYLE = {variant: (f"C{i}", "os^v<>"[i]) for i, variant in enumerate(VARIANTS)}  # colour and marker


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
    return MLP(
        in_features,
        out_features,
        width,
        depth,
        "relu",
        norm,
        RESIDUAL.get(variant),
        bias=False,
        init="he",
        seed=generator,
    )


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


def measure(config: CollapseRemediesConfig, context: Context) -> pd.DataFrame:
    """Rows per variant: "cosine", "rel_var" (per-neuron variance across the circle inputs over the unit's second
    moment, `tdlab.probes.activations.activation_statistics`) and "grad_norm" per seed and layer, "hessian_top"
    per depth, and "train_loss" after each GD step until the target (a loss that is not finite ends a diverged
    run)."""
    generator = torch.Generator().manual_seed(config.seed)
    circle = circle_inputs(config.num_inputs, config.in_features, generator)[0].to(context.device)
    data = synthetic_regression(config.n_train, 1, config.in_features, 1, 0.0, "mlp", seed=config.seed)
    train = data.X_train.to(context.device), data.y_train.to(context.device)
    loss_fn = nn.MSELoss()

    def measured(model: nn.Module, probe: object, data: tuple = train) -> dict[str, float]:
        return ProbeSet([probe], model, loss_fn, data, task="regression", eval_mode=False).measure(0)

    def network(variant: str, width: int, depth: int) -> nn.Module:
        return build_variant(variant, config.in_features, 1, width, depth, generator).to(context.device)

    lanczos = {"tol": config.lanczos_tol, "max_iter": config.lanczos_steps, "seed": config.seed}
    rows: list[dict[str, float | int | str]] = []
    for variant in context.track(config.variants, "collapse-remedies: variants"):
        for s in range(config.seeds):
            model = network(variant, config.width, config.depth)
            cos = measured(model, ActivationStats(num_inputs=config.num_inputs), (circle, circle[:, :1]))
            grad = measured(model, GradientNorm())
            for l in range(config.depth):
                where = {"variant": variant, "layer": l + 1, "seed": s}
                rows.append({"name": "cosine", "value": cos[f"act/hidden.{l}/cosine"], **where})
                rows.append({"name": "rel_var", "value": cos[f"act/hidden.{l}/rel_var"], **where})
                rows.append({"name": "grad_norm", "value": grad[f"grad/norm/hidden.{l}.linear.weight"], **where})
    for variant in context.track(config.trained_variants, "collapse-remedies: Hessian and training"):
        for depth in config.hessian_depths:
            value = measured(network(variant, config.hessian_width, depth), Sharpness(**lanczos))["sharpness"]
            rows.append({"name": "hessian_top", "value": value, "variant": variant, "depth": depth})
        model = network(variant, config.train_width, config.train_depth)
        lr = 1.0 / measured(model, Sharpness(**lanczos))["sharpness"]
        # fit's step t evaluates the loss at w_{t-1}: train_steps + 1 steps see w_0 .. w_train_steps
        optimizer, reached = torch.optim.SGD(model.parameters(), lr=lr), lambda t, loss: loss <= config.target_loss
        trained = fit(model, loss_fn, train, optimizer, config.train_steps + 1, callbacks=[reached])
        losses = trained.metrics.query("name == 'train/batch_loss'")
        rows += [
            {"name": "train_loss", "value": v, "variant": variant, "step": t - 1, "eta": lr}
            for t, v in zip(losses["step"], losses["value"], strict=True)
        ]
    return pd.DataFrame(rows)


def steps_to_target(metrics: pd.DataFrame, variant: str, target: float) -> float:
    """The GD steps `variant` took to reach a training loss <= `target` (inf: not reached)."""
    losses = metrics[(metrics["name"] == "train_loss") & (metrics["variant"] == variant)]
    reached = losses["step"][losses["value"] <= target]
    return float(reached.min()) if len(reached) else math.inf


def _mean_by_layer(metrics: pd.DataFrame, name: str, geometric: bool = False) -> dict[str, np.ndarray]:
    """Variant -> the mean over seeds (geometric: exp of the mean log) of the rows `name`, by layer."""
    out = {}
    for variant in metrics[metrics["name"] == name]["variant"].unique():
        values = table(metrics, name, "seed", "layer", variant=variant).to_numpy()
        out[variant] = np.exp(np.log(values).mean(axis=0)) if geometric else values.mean(axis=0)
    return out


def checks(metrics: pd.DataFrame, config: CollapseRemediesConfig) -> list[Check]:
    """The issue's bounds on the mean cosine at depth L, and both residual nets below vanilla."""
    L = config.depth
    at_depth = {v: float(c[-1]) for v, c in _mean_by_layer(metrics, "cosine").items()}
    where = f"layer {L}, width {config.width}, mean of {config.seeds} seeds and {config.num_inputs} inputs"
    out = [
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
        out.append(
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
    out += _collapse_checks(metrics, config)
    return out


COLLAPSED = 0.99  # a mean cosine above this counts as collapsed
VANISHING_BOUND = 0.25  # vanilla: |dL/dW_2| / |dL/dW_L| at most this (gradients vanish towards the input)
EXPLODING_BOUND = 100.0  # BatchNorm: |dL/dW_2| / |dL/dW_L| at least this (gradients explode towards the input)
HESSIAN_RATE = 0.5  # resnet: log2 lambda_max grows at least half the theory's 1 per block
VARIANCE_LOSS = 0.5  # vanilla: rel_var at depth L at most this fraction of its first layer's
BATCHNORM_REL_VAR = 1 - 1 / math.pi  # rel_var of relu(z) for z ~ N(0, 1): 1 - E[relu z]^2 / E[relu(z)^2]
BATCHNORM_REL_VAR_TOL = 0.02  # absolute; per-seed values at quick scale spread 0.674-0.690


def _collapse_checks(metrics: pd.DataFrame, config: CollapseRemediesConfig) -> list[Check]:
    """Checks that a network that does not collapse fails: the post-activation residual net collapses before
    vanilla; vanilla's gradients vanish and BatchNorm's explode towards the input; the unscaled resnet's top
    Hessian eigenvalue grows exponentially with depth."""
    cosines, out = _mean_by_layer(metrics, "cosine"), []
    if "mlp-residual" in cosines:
        first = {v: _first_layer(cosines[v], COLLAPSED) for v in ("mlp-residual", "vanilla")}
        out.append(
            Check.at_most(
                f"mlp-residual collapses first: first layer with mean cosine >= {COLLAPSED}",
                first["mlp-residual"],
                first["vanilla"] - 1,
                detail=f"the post-activation branch adds a non-negative vector; vanilla reaches {COLLAPSED} at layer "
                f"{first['vanilla']:g} (bound: that layer - 1); a net that never collapses gives inf and fails",
            )
        )
    out += _variance_checks(metrics, config)
    grads = _mean_by_layer(metrics, "grad_norm", geometric=True)
    if not {"vanilla", "batchnorm"} <= set(grads):  # measure records both; hand-made metrics may not
        return out
    ratios = {v: float(grads[v][1] / grads[v][-1]) for v in ("vanilla", "batchnorm", "resnet-scaled") if v in grads}
    out.append(
        Check.at_most(
            f"vanilla: gradients vanish towards the input, |dL/dW_2| / |dL/dW_{config.depth}|",
            ratios["vanilla"],
            VANISHING_BOUND,
            detail=f"geometric mean over {config.seeds} seeds; a net whose gradient is preserved (ratio about 1, "
            f"resnet-scaled: {ratios.get('resnet-scaled', math.nan):.3g}) fails",
        )
    )
    out.append(
        Check.at_least(
            f"BatchNorm: gradients explode towards the input, |dL/dW_2| / |dL/dW_{config.depth}|",
            ratios["batchnorm"],
            EXPLODING_BOUND,
            detail=f"geometric mean over {config.seeds} seeds (Yang et al. 2019); a net without the explosion "
            "(ratio about 1) fails",
        )
    )
    hessian = metrics[(metrics["name"] == "hessian_top") & (metrics["variant"] == "resnet")].sort_values("depth")
    if len(hessian) >= 2:
        d, lam = hessian["depth"].to_numpy(), hessian["value"].to_numpy()
        rate = float(np.log2(lam[-1] / lam[0]) / (d[-1] - d[0]))
        out.append(
            Check.at_least(
                "resnet: the top Hessian eigenvalue explodes with depth, log2 growth per block",
                rate,
                HESSIAN_RATE,
                detail=f"lambda_max {lam[0]:.3g} at depth {d[0]:g}, {lam[-1]:.3g} at depth {d[-1]:g}; theory 1 (the "
                f"output's variance doubles per unscaled block, lambda_max ~ 2^L); bound half of it; a net whose "
                "curvature does not grow exponentially fails",
            )
        )
    return out


def _variance_checks(metrics: pd.DataFrame, config: CollapseRemediesConfig) -> list[Check]:
    """Deep nets collapse because each neuron loses its variance across inputs: vanilla's rel_var falls with
    depth, while BatchNorm, which gives every unit's pre-activation mean 0 and variance 1 over the batch, keeps
    the value of a rectified standard normal, 1 - 1/pi (exact when the pre-activations are Gaussian)."""
    rel_var = _mean_by_layer(metrics, "rel_var")
    if not {"vanilla", "batchnorm"} <= set(rel_var):  # stored metrics from before rel_var was measured
        return []
    L, vanilla = config.depth, rel_var["vanilla"]
    return [
        Check.at_most(
            f"vanilla: per-neuron variance lost with depth, rel_var at layer {L} / at layer 1",
            float(vanilla[-1] / vanilla[0]),
            VARIANCE_LOSS,
            detail=f"rel_var {vanilla[0]:.3f} at layer 1 (theory for circle inputs: 1 - 4/pi^2 = "
            f"{1 - 4 / math.pi**2:.3f}), {vanilla[-1]:.3f} at layer {L}; a net whose units keep their variance "
            f"(BatchNorm: ratio {rel_var['batchnorm'][-1] / rel_var['batchnorm'][0]:.2f}) fails",
        ),
        Check.absolute(
            f"BatchNorm: per-neuron variance kept, rel_var at layer {L} = 1 - 1/pi",
            float(rel_var["batchnorm"][-1]),
            BATCHNORM_REL_VAR,
            BATCHNORM_REL_VAR_TOL,
            detail="each unit normalised over the batch before the ReLU; BatchNorm with running statistics at "
            f"initialisation (an identity) behaves like vanilla ({vanilla[-1]:.3f}) and fails, as does a "
            "normalisation over units instead of inputs",
        ),
    ]


def _first_layer(cosine: np.ndarray, level: float) -> float:
    """The first layer (1-based) whose mean cosine reaches `level` (inf: none)."""
    reached = np.flatnonzero(cosine >= level)
    return float(reached[0] + 1) if len(reached) else math.inf


def figures(metrics: pd.DataFrame, config: CollapseRemediesConfig) -> dict[str, Figure]:
    """The cosine against depth, and the gradients, curvature and training of each variant."""
    return {
        "cosine_vs_depth": _cosine_figure(
            config, _mean_by_layer(metrics, "cosine"), _mean_by_layer(metrics, "rel_var")
        ),
        "gradients_curvature_training": _dynamics_figure(metrics, config),
    }


# -------------------------------------------------------------------------------------------- figures
def _cosine_figure(
    config: CollapseRemediesConfig, cosines: dict[str, np.ndarray], rel_vars: dict[str, np.ndarray]
) -> Figure:
    fig = Figure(figsize=(14.0, 5.0), layout="constrained")
    ax, right = fig.subplots(1, 2)
    layers = np.arange(1, config.depth + 1)
    for variant, cos in cosines.items():
        color, marker = STYLE[variant]
        ax.plot(layers, cos, marker=marker, ls="-", lw=0.8, ms=3.5, mfc="none", color=color, label=variant)
    ax.axhline(VANILLA_BOUND, color="0.4", ls=":", lw=1.0, label=f"{VANILLA_BOUND} (vanilla must exceed)")
    ax.axhline(BATCHNORM_BOUND, color="0.4", ls="--", lw=1.0, label=f"{BATCHNORM_BOUND} (BatchNorm must stay below)")
    ax.set(xlabel="layer $l$", ylabel=r"mean cosine between $h_l(x_i)$ and $h_l(x_j)$")
    ax.set_title(f"Collapse and its remedies at initialisation (width {config.width}, {config.seeds} seeds)")
    ax.legend(fontsize=8, loc="lower right", ncol=2)
    for variant, rel_var in rel_vars.items():
        color, marker = STYLE[variant]
        right.plot(layers, rel_var, marker=marker, ls="-", lw=0.8, ms=3.5, mfc="none", color=color, label=variant)
    right.axhline(BATCHNORM_REL_VAR, color="0.4", ls="--", lw=1.0, label=r"$1 - 1/\pi$ (BatchNorm's theory)")
    right.set(
        xlabel="layer $l$", ylabel=r"per-neuron $\mathrm{Var}_i\, h_{l,u}(x_i) \,/\, \mathbb{E}_i\, h_{l,u}(x_i)^2$"
    )
    right.set_title("Each unit's variance across inputs (0: the unit is constant)")
    right.legend(fontsize=8, ncol=2)
    return fig


def _dynamics_figure(metrics: pd.DataFrame, config: CollapseRemediesConfig) -> Figure:
    fig = Figure(figsize=(15.0, 4.6), layout="constrained")
    left, middle, right = fig.subplots(1, 3)
    layers = np.arange(1, config.depth + 1)
    for variant, grad in _mean_by_layer(metrics, "grad_norm", geometric=True).items():
        color, marker = STYLE[variant]
        label = variant if np.all(np.isfinite(grad)) else f"{variant} (overflows float32)"
        left.semilogy(layers, grad, marker=marker, ls="-", lw=0.8, ms=3, mfc="none", color=color, label=label)
    left.set(
        xlabel="layer $l$ (1 = next to the input)",
        ylabel=r"$\|\partial L / \partial W_l\|$ (geometric mean over seeds)",
    )
    left.set_title(f"Gradient norm per layer at initialisation (depth {config.depth})")
    left.legend(fontsize=7)

    for variant, rows in metrics[metrics["name"] == "hessian_top"].groupby("variant", sort=False):
        color, marker = STYLE[variant]
        rows = rows.sort_values("depth")
        middle.semilogy(rows["depth"], rows["value"], marker=marker, ls="-", color=color, mfc="none", label=variant)
    middle.set(xlabel="depth $L$", ylabel=r"top Hessian eigenvalue $\lambda_{max}$ at initialisation")
    middle.set_title(f"Curvature against depth (width {config.hessian_width}, Lanczos)")
    middle.legend(fontsize=8)

    for variant, curve in metrics[metrics["name"] == "train_loss"].groupby("variant", sort=False):
        steps = steps_to_target(metrics, variant, config.target_loss)
        reached = "not reached" if math.isinf(steps) else f"{steps:.0f} steps"
        curve = curve[np.isfinite(curve["value"])].sort_values("step")
        right.semilogy(curve["step"], curve["value"], "-", color=STYLE[variant][0], label=f"{variant}: {reached}")
    right.axhline(config.target_loss, color="0.4", ls="--", lw=1.0, label=f"target {config.target_loss:g}")
    right.set(xlabel=r"GD step (step size $1/\lambda_{max}$ at initialisation)", ylabel="training MSE")
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
    measure=measure,
    checks=checks,
    figures=figures,
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
