"""initialisation: N(0, 1), Xavier and He initialisation of deep tanh and ReLU MLPs against the variance map.

For each activation (tanh, ReLU) and scheme (`tdlab.models.init`: "normal" Var W = 1, "xavier"
Var W = 2/(fan_in + fan_out), "he" Var W = 2/fan_in; no bias) the experiment builds `seeds` MLPs of `depth`
layers of `width` units in float64 (N(0, 1) makes ReLU activations grow like (width/2)^l, past float32's range),
feeds N Gaussian inputs, and measures layer by layer

- forward: the mean square of the pre-activations, Q_l = mean over inputs and units of (z^l)^2;
- backward: the mean square of the gradient with respect to the pre-activations, G_l, for the scalar loss
  sum_i <g_i, f(x_i)> with a fixed Gaussian output direction g (the backward pass of an arbitrary error
  signal), relative to the last layer's.

Theory (`tdlab.theory.mean_field`): with sigma_w,l^2 = fan_in * Var W^l, the variance map
q^1 = sigma_w,1^2 |x|^2/d, q^l = sigma_w,l^2 E[phi(sqrt(q^{l-1}) z)^2], and backwards the factor
sigma_w,l+1^2 E[phi'(sqrt(q^l) z)^2] per layer. For ReLU both factors are sigma_w^2 / 2: He (sigma_w^2 = 2)
preserves the scale both ways, Xavier (sigma_w^2 = 1) halves it per layer, N(0, 1) (sigma_w^2 = width)
multiplies it by width/2 per layer. For tanh, N(0, 1) saturates the units (q ~ width) and the gradient
explodes, Xavier lets q decay to 0 slowly while the gradient is nearly preserved, He sits in the chaotic
phase with a finite q* and a mildly growing gradient.

The forward moments are read by the `activations` probe (`tdlab.probes.ActivationStats` on the pre-activations,
Q_l = var + mean^2 of its statistics); the backward ones, which no probe measures, by a hook on the same modules.
No training: the networks are measured at initialisation.

Checks (the issue's): under He the ReLU forward variance, averaged over seeds, stays at its input value within
a tolerance derived from the finite-width fluctuation (3 standard errors of Q_l / q^l, whose exact
single-input variance is (1 + 5/n)^(l-1) (1 + 2/n) - 1, `tdlab.theory.finite_width`); under N(0, 1) it grows by
the factor width/2 per layer within 10% at every layer (the per-seed factor Q_l / Q_{l-1}, averaged over
seeds, whose expectation is exactly width/2).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from numpy.typing import NDArray
from pydantic import Field
from torch import Tensor

from tdlab.experiments.base import Check, Context, Experiment, ExperimentConfig
from tdlab.experiments.tidy import select, series
from tdlab.models import MLP, init_variance
from tdlab.probes import ActivationStats, ProbeSet
from tdlab.theory import finite_width, mean_field

Activation = Literal["tanh", "relu"]
Scheme = Literal["normal", "xavier", "he"]
GROWTH_TOLERANCE = 0.10  # the relative tolerance on the per-layer growth factor under N(0, 1)
STANDARD_ERRORS = 3.0
COLORS = {"normal": "C3", "xavier": "C0", "he": "C2"}
LABELS = {"normal": "N(0, 1)", "xavier": "Xavier", "he": "He"}


class InitialisationConfig(ExperimentConfig):
    """Quick defaults: width 512, 12 layers, 8 seeds, 16 inputs (full: width 1024, 50 layers, 10 seeds)."""

    width: int = Field(512, ge=8, description="hidden units per layer")
    depth: int = Field(12, ge=2, description="number of hidden layers")
    seeds: int = Field(8, ge=2, description="initialisations averaged over")
    num_inputs: int = Field(16, ge=1, description="Gaussian inputs x ~ N(0, I_d)")
    in_features: int = Field(20, ge=1, description="input dimension d")
    out_features: int = Field(10, ge=1, description="outputs (the backward pass starts from a Gaussian direction)")
    activations: tuple[Activation, ...] = Field(("tanh", "relu"), min_length=1, description="activations")
    schemes: tuple[Scheme, ...] = Field(("normal", "xavier", "he"), min_length=1, description="initialisations")


def layer_sigma_w2(scheme: str, in_features: int, width: int, depth: int) -> NDArray[np.float64]:
    """sigma_w,l^2 = fan_in * Var W^l for the hidden layers l = 1..depth of an MLP (`tdlab.models.init`).

    Example:
        >>> layer_sigma_w2("xavier", 20, 100, 3).round(4).tolist()  # 20 * 2/120 first, then 1
        [0.3333, 1.0, 1.0]
    """
    fans = [(in_features, width)] + [(width, width)] * (depth - 1)
    return np.array([fan_in * init_variance(scheme, fan_in, fan_out) for fan_in, fan_out in fans])


def second_moments(model: MLP, X: Tensor, direction: Tensor) -> tuple[NDArray, NDArray]:
    """Per hidden layer, shapes (depth,) each: Q_l = mean over the inputs and units of (z^l)^2, from the
    `activations` probe on the pre-activations z^l (the `linear` modules; Q_l = var + mean^2 of its statistics),
    and G_l, the same for dL/dz^l with L = sum_i <direction_i, f(x_i)> (the backward pass of an arbitrary error
    signal; by hooks, as no probe measures it).

    Example:
        >>> model = MLP(3, 2, width=8, depth=4, init="he", bias=False, seed=0)
        >>> [m.shape for m in second_moments(model, torch.randn(5, 3), torch.randn(5, 2))]
        [(4,), (4,)]
    """
    layers = [f"hidden.{l}.linear" for l in range(len(model.hidden))]
    loss = lambda outputs, g: (outputs * g).sum()  # noqa: E731
    stats = ProbeSet([ActivationStats(layers=layers, num_inputs=X.shape[0])], model, loss, (X, direction)).measure(0)
    captured: list[Tensor] = []

    def keep(module: torch.nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        output.retain_grad()
        captured.append(output)

    handles = [model.get_submodule(name).register_forward_hook(keep) for name in layers]
    try:
        loss(model(X), direction).backward()
    finally:
        for handle in handles:
            handle.remove()
    forward = [stats[f"act/{name}/var"] + stats[f"act/{name}/mean"] ** 2 for name in layers]
    return np.array(forward), np.array([float(z.grad.square().mean()) for z in captured])


def measure(config: InitialisationConfig, context: Context) -> pd.DataFrame:
    """Per activation, scheme and layer: Q_l per seed ("forward_second_moment", column seed) and its mean over
    seeds (no seed), G_l / G_L ("backward_second_moment_relative"), both variance maps ("..._theory"), and under
    N(0, 1) with ReLU the per-layer growth (Q_l / Q_{l-1}) / (width/2), averaged over seeds ("growth_factor_relative").
    """
    generator = torch.Generator().manual_seed(config.seed)
    X = torch.randn(config.num_inputs, config.in_features, generator=generator, dtype=torch.float64)
    direction = torch.randn(config.num_inputs, config.out_features, generator=generator, dtype=torch.float64)
    X, direction = X.to(context.device), direction.to(context.device)
    n, L = config.width, config.depth
    rows: list[dict[str, float | int | str]] = []
    combos = [(a, s) for a in config.activations for s in config.schemes]
    for activation, scheme in context.track(combos, "initialisation: activation x scheme"):
        forward, backward = np.empty((config.seeds, L)), np.empty((config.seeds, L))
        for s in range(config.seeds):
            model = MLP(
                config.in_features, config.out_features, n, L, activation, bias=False, init=scheme, seed=generator
            )
            model = model.to(device=context.device, dtype=torch.float64)
            forward[s], backward[s] = second_moments(model, X, direction)
        sw = layer_sigma_w2(scheme, config.in_features, n, L)
        theory_q = mean_field.preactivation_variances(float(X.square().mean()), sw, 0.0, activation)
        series = {
            "forward_second_moment": forward.mean(axis=0),
            "forward_second_moment_theory": theory_q,
            "backward_second_moment_relative": backward.mean(axis=0) / backward.mean(axis=0)[-1],
            "backward_second_moment_relative_theory": mean_field.gradient_variances(theory_q, sw[1:], activation),
        }
        ids = {"activation": activation, "init": scheme}
        for l in range(L):
            rows += [{"name": name, "value": float(v[l]), "layer": l + 1, **ids} for name, v in series.items()]
            rows += [
                {"name": "forward_second_moment", "value": forward[s, l], "seed": s, "layer": l + 1, **ids}
                for s in range(config.seeds)
            ]
        if (activation, scheme) == ("relu", "normal"):
            growth = (forward[:, 1:] / forward[:, :-1]).mean(axis=0) / (n / 2.0)
            rows += [
                {"name": "growth_factor_relative", "value": float(v), "layer": l + 2, **ids}
                for l, v in enumerate(growth)
            ]
    return pd.DataFrame(rows)


def _he_ratio(metrics: pd.DataFrame, config: InitialisationConfig) -> tuple[NDArray, NDArray] | None:
    """Q_l / q^l per seed, averaged over seeds, for ReLU under He, and its tolerance band (3 standard errors of the
    finite-width fluctuation); None when that combination was not measured."""
    he = metrics[(metrics.activation == "relu") & (metrics.init == "he")]
    if he.empty:
        return None
    per_seed = select(he, "forward_second_moment").dropna(subset=["seed"])
    per_seed = per_seed.pivot(index="seed", columns="layer", values="value").to_numpy()
    theory = series(he, "forward_second_moment_theory", "layer")[1]
    band = [
        STANDARD_ERRORS * math.sqrt(finite_width.relu_preactivation_ratio_variance(l, config.width) / config.seeds)
        for l in range(1, config.depth + 1)
    ]
    return (per_seed / theory).mean(axis=0), np.array(band)


def _growth(metrics: pd.DataFrame) -> NDArray | None:
    """(Q_l / Q_{l-1}) / (width/2) under N(0, 1) with ReLU, layers 2..L; None when not measured."""
    growth = series(metrics, "growth_factor_relative", "layer")[1]
    return growth if growth.size else None


def checks(metrics: pd.DataFrame, config: InitialisationConfig) -> list[Check]:
    out: list[Check] = []
    n, L = config.width, config.depth
    if (he := _he_ratio(metrics, config)) is not None:
        he_ratio, band = he
        normalised = np.abs(he_ratio - 1.0) / band
        worst = int(normalised.argmax())
        out.append(
            Check.at_most(
                "He, ReLU: |mean Q_l / q^l - 1| in units of its tolerance, worst layer",
                float(normalised.max()),
                1.0,
                detail=f"q^l = 2 |x|^2/d for every layer (sigma_w^2 = 2); tolerance at layer l = {STANDARD_ERRORS:g} "
                f"sqrt(((1 + 5/n)^(l-1) (1 + 2/n) - 1) / seeds), the exact single-input variance of Q_l/q^l "
                f"(finite width n = {n}, Hanin & Rolnick 2018) over {config.seeds} seeds; worst at layer "
                f"{worst + 1}: {he_ratio[worst]:.3f} +- {band[worst]:.3f}; layer {L}: {he_ratio[-1]:.3f} +- "
                f"{band[-1]:.3f}",
            )
        )
    if (growth := _growth(metrics)) is not None:
        worst = int(np.abs(growth - 1.0).argmax())
        out.append(
            Check.at_most(
                "N(0, 1), ReLU: per-layer growth Q_l / Q_{l-1} vs width/2, worst relative error",
                float(np.abs(growth - 1.0).max()),
                GROWTH_TOLERANCE,
                detail=f"layers 2..{L}, width {n}, factor per seed averaged over {config.seeds} seeds (its "
                f"expectation is exactly width/2); worst at layer {worst + 2}: {growth[worst] * n / 2:.1f} vs "
                f"{n / 2:g}; tolerance {GROWTH_TOLERANCE:.0%} per layer from the issue",
            )
        )
    return out


def figures(metrics: pd.DataFrame, config: InitialisationConfig) -> dict[str, Figure]:
    out = {"variance_maps": _maps_figure(metrics, config)}
    he, growth = _he_ratio(metrics, config), _growth(metrics)
    if he is not None or growth is not None:
        out["relu_checks"] = _checks_figure(config, *(he or (None, None)), growth)
    return out


# -------------------------------------------------------------------------------------------- figures
def _maps_figure(metrics: pd.DataFrame, config: InitialisationConfig) -> Figure:
    cols = len(config.activations)
    fig = Figure(figsize=(6.0 * cols, 8.0), layout="constrained")
    axes = fig.subplots(2, cols, squeeze=False)
    layers = np.arange(1, config.depth + 1)
    means = metrics[metrics.seed.isna()]
    for j, activation in enumerate(config.activations):
        top, bottom = axes[0, j], axes[1, j]
        for scheme in config.schemes:
            rows = means[(means.activation == activation) & (means.init == scheme)]
            curve = {name: group.sort_values("layer")["value"].to_numpy() for name, group in rows.groupby("name")}
            for ax, name in ((top, "forward_second_moment"), (bottom, "backward_second_moment_relative")):
                ax.semilogy(layers, curve[f"{name}_theory"], "-", color=COLORS[scheme], lw=1.3)
                ax.semilogy(layers, curve[name], "o", color=COLORS[scheme], ms=4, mfc="none", label=LABELS[scheme])
        top.set_title(f"{activation}: forward")
        top.set_xlabel("layer $l$")
        top.set_ylabel(r"$q^l$ = mean square of the pre-activations")
        bottom.set_title(f"{activation}: backward")
        bottom.set_xlabel("layer $l$")
        bottom.set_ylabel(r"mean square of $\partial L/\partial z^l$, relative to layer $L$")
        for ax in (top, bottom):
            ax.plot([], [], "-", color="0.3", label="theory (variance map)")
            ax.legend(fontsize=8)
    fig.suptitle(
        f"Initialisation and the variance map: markers measured (mean of {config.seeds} seeds, width "
        f"{config.width}), lines theory"
    )
    return fig


def _checks_figure(
    config: InitialisationConfig, he_ratio: NDArray | None, band: NDArray | None, growth: NDArray | None
) -> Figure:
    fig = Figure(figsize=(11.0, 4.2), layout="constrained")
    left, right = fig.subplots(1, 2)
    layers = np.arange(1, config.depth + 1)
    if he_ratio is not None and band is not None:
        left.fill_between(layers, 1 - band, 1 + band, color="C2", alpha=0.15, lw=0, label="tolerance (finite width)")
        left.axhline(1.0, color="C2", lw=1.3, label="theory: preserved")
        left.plot(
            layers,
            he_ratio,
            "o",
            color="C2",
            mfc="none",
            ms=4,
            label=f"measured (mean of {config.seeds} seeds)",
        )
        left.legend(fontsize=8)
    left.set_xlabel("layer $l$")
    left.set_ylabel(r"$Q_l / q^l$")
    left.set_title("He, ReLU: forward variance preserved")
    if growth is not None:
        right.fill_between(
            layers[1:],
            1 - GROWTH_TOLERANCE,
            1 + GROWTH_TOLERANCE,
            color="C3",
            alpha=0.15,
            lw=0,
            label=f"tolerance $\\pm${GROWTH_TOLERANCE:.0%}",
        )
        right.axhline(1.0, color="C3", lw=1.3, label="theory: width/2 per layer")
        right.plot(layers[1:], growth, "o", color="C3", mfc="none", ms=4, label="measured")
        right.legend(fontsize=8, loc="lower left")
    right.set_xlabel("layer $l$")
    right.set_ylabel(r"$(Q_l / Q_{l-1}) / (n/2)$")
    right.set_title(f"N(0, 1), ReLU: growth by width/2 = {config.width / 2:g} per layer")
    return fig


EXPERIMENT = Experiment(
    name="initialisation",
    claim="Under N(0, 1), Xavier and He initialisation the activations and gradients of deep tanh and ReLU MLPs "
    "explode, vanish or are preserved layer by layer as the mean-field variance map predicts.",
    config=InitialisationConfig,
    measure=measure,
    checks=checks,
    figures=figures,
    presets={"full": {"width": 1024, "depth": 50, "seeds": 10, "num_inputs": 32}},
    references=(
        "Glorot & Bengio (2010), Understanding the difficulty of training deep feedforward neural networks, AISTATS",
        "He, Zhang, Ren & Sun (2015), Delving deep into rectifiers, ICCV",
        "Poole et al. (2016), Exponential expressivity in deep neural networks through transient chaos, NeurIPS",
        "Schoenholz, Gilmer, Ganguli & Sohl-Dickstein (2017), Deep information propagation, ICLR",
        "Hanin & Rolnick (2018), How to start training: the effect of initialization and architecture, NeurIPS",
    ),
    part="signal propagation",
)
