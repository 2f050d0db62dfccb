"""relu-collapse: at initialisation a deep ReLU MLP maps all inputs to nearly the same output.

N inputs lie on a great circle of the input space, x(theta) = sqrt(d) (cos theta u + sin theta v) with u, v
orthonormal, so that their cosines cos(theta_i - theta_j) cover [-1, 1] and |x|^2 / d = 1. Through `seeds`
He-initialised ReLU MLPs (`tdlab.models.MLP`, no bias) of `depth` layers of `width` units the experiment
measures, at every layer l:

- the mean cosine similarity between the representations h_l of different inputs (the probe
  `tdlab.probes.activation_statistics`), and the whole cosine matrix as a function of the input angle;
- the per-neuron variance across inputs relative to its second moment: the probe's `rel_var` (mean over units
  of Var_i h_iu / E_i h_iu^2) and the pooled ratio sum_u Var_i h_iu / sum_u E_i h_iu^2;
- the mean square of the activations of each input relative to the input's, M_l / M_0 = |h_l|^2 / (n |x|^2/d);
- the spread of the output of the network cut after layer l (its readout applied to h_l) across inputs.

Theory (`tdlab.theory.mean_field`): the cosine of h_l of two inputs is the ReLU correlation map iterated l
times from their input cosine, c^l = R^l(c^0) with R(c) = (sqrt(1 - c^2) + (pi - arccos c) c)/pi, which tends
to 1 for every pair; the pooled relative variance (and, on average over readouts, the output spread) is then
(N - 1)/N (1 - mean_{i != j} c^l_ij); the variance map q' = sigma_w^2 q / 2 keeps M_l / M_0 = 1 under He's
sigma_w^2 = 2, up to finite-width fluctuations with Var[M_l / M_0] = (1 + 5/n)^l - 1 ~ 5 l / n
(`tdlab.theory.finite_width`, Hanin & Rolnick 2018). Those norm fluctuations differ from input to input, so
at depth, where 1 - cosine is of order 1%, they add visibly to the measured spreads (the theory line assumes
equal norms).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from numpy.typing import NDArray
from pydantic import Field
from torch import Tensor

from tdlab.experiments.base import Check, Context, Experiment, ExperimentConfig, Result, legacy
from tdlab.models import MLP
from tdlab.probes.activations import activation_statistics, representations
from tdlab.theory import finite_width, mean_field

COSINE_TOLERANCE = 0.03  # the tolerance at width 1024 over 10 seeds
REFERENCE_WIDTH_SEEDS = 1024 * 10  # the setting that tolerance was stated for
STANDARD_ERRORS = 3.0  # width of the variance-map band, in standard errors of the seed average


class ReluCollapseConfig(ExperimentConfig):
    """Quick defaults: width 256, 50 layers, 10 seeds, 32 inputs on a circle (full: width 1024)."""

    width: int = Field(256, ge=8, description="hidden units per layer")
    depth: int = Field(50, ge=2, description="number of hidden layers")
    seeds: int = Field(10, ge=2, description="independent initialisations averaged over")
    num_inputs: int = Field(32, ge=4, description="inputs, evenly spaced on a great circle")
    in_features: int = Field(20, ge=2, description="input dimension d")
    out_features: int = Field(10, ge=1, description="outputs of the readout")
    shown_layers: tuple[int, ...] = Field(
        (1, 5, 10, 25, 50), min_length=1, description="layers whose cosine kernel and output are drawn"
    )


def circle_inputs(num_inputs: int, in_features: int, generator: torch.Generator) -> tuple[Tensor, NDArray]:
    """N inputs x_k = sqrt(d) (cos theta_k u + sin theta_k v), theta_k = 2 pi k / N, with u, v orthonormal and
    random (from `generator`); returns (X, theta). Every input has |x|^2 / d = 1.

    Example:
        >>> X, theta = circle_inputs(8, 5, torch.Generator().manual_seed(0))
        >>> X.shape, round(float(X.square().mean(dim=1).max()), 5)
        (torch.Size([8, 5]), 1.0)
    """
    basis, _ = torch.linalg.qr(torch.randn(in_features, 2, generator=generator, dtype=torch.float64))
    theta = 2.0 * math.pi * torch.arange(num_inputs, dtype=torch.float64) / num_inputs
    X = math.sqrt(in_features) * (torch.cos(theta)[:, None] * basis[:, 0] + torch.sin(theta)[:, None] * basis[:, 1])
    return X.float(), theta.numpy()


def cosine_matrix(h: Tensor) -> Tensor:
    """Cosine similarities <h_i, h_j> / (|h_i| |h_j|) of the rows of h (n x units), an n x n matrix.

    Example:
        >>> cosine_matrix(torch.tensor([[1.0, 0.0], [1.0, 1.0]], dtype=torch.float64)).round(decimals=4).tolist()
        [[1.0, 0.7071], [0.7071, 1.0]]
    """
    unit = h / torch.linalg.vector_norm(h, dim=1, keepdim=True).clamp_min(torch.finfo(h.dtype).tiny)
    return unit @ unit.T


def pooled_relative_variance(h: Tensor) -> float:
    """sum_u Var_i(h_iu) / sum_u E_i(h_iu^2) over the inputs i and units u of h (n x units): 0 when every
    input has the same representation, 1 when their mean is 0.

    Example:
        >>> pooled_relative_variance(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
        0.5
    """
    return float(h.var(dim=0, correction=0).sum() / h.square().mean(dim=0).sum())


def spread_theory(mean_cosine: NDArray, num_inputs: int) -> NDArray:
    """(N - 1)/N (1 - mean cosine): the pooled relative variance of N equal-norm representations with that
    mean pairwise cosine (and the expected output spread through a random linear readout).

    Example:
        >>> spread_theory(np.array([0.0, 1.0]), 4).tolist()
        [0.75, 0.0]
    """
    return (num_inputs - 1) / num_inputs * (1.0 - mean_cosine)


def run(config: ReluCollapseConfig, context: Context) -> Result:
    """Measure cosines, relative variances, activation scale and output spread layer by layer over seeds."""
    generator = torch.Generator().manual_seed(config.seed)
    X, theta = circle_inputs(config.num_inputs, config.in_features, generator)
    X = X.to(context.device)
    n, L, N = config.width, config.depth, config.num_inputs
    pairs = np.triu_indices(N, 1)
    cosines = np.empty((config.seeds, L))
    kernels = np.zeros((L, N, N))
    rel_var, pooled, ratio, spread = (np.empty((config.seeds, L)) for _ in range(4))
    ratio_per_input = np.empty((config.seeds, L, N))
    outputs = np.empty((L, N))
    input_moment = X.square().mean(dim=1)
    for s in context.track(range(config.seeds), "relu-collapse: seeds"):
        model = MLP(config.in_features, config.out_features, n, L, "relu", bias=False, init="he", seed=generator)
        model = model.to(context.device)
        layers = {str(l): layer for l, layer in enumerate(model.hidden_layers())}
        hidden = representations(model, layers, X)
        with torch.no_grad():
            for l in range(L):
                h = hidden[str(l)]
                stats = activation_statistics(h)
                cosines[s, l], rel_var[s, l] = stats["cosine"], stats["rel_var"]
                kernels[l] += cosine_matrix(h).cpu().double().numpy() / config.seeds
                pooled[s, l] = pooled_relative_variance(h)
                per_input = (h.square().mean(dim=1) / input_moment).cpu().double().numpy()
                ratio_per_input[s, l] = per_input
                ratio[s, l] = per_input.mean()
                f = model.readout(h)
                spread[s, l] = pooled_relative_variance(f)
                if s == 0:
                    outputs[l] = f[:, 0].cpu().double().numpy()

    input_cosines = cosine_matrix(X.double()).cpu().numpy()
    theory_kernels = mean_field.correlation_trajectory(input_cosines, L, sigma_w2=2.0, activation="relu")[1:]
    theory_cosine = theory_kernels[:, pairs[0], pairs[1]].mean(axis=1)
    theory_spread = spread_theory(theory_cosine, N)
    layer_index = np.arange(1, L + 1)

    rows: list[dict[str, float | int | str]] = []
    for name, values in (
        ("cosine", cosines),
        ("rel_var", rel_var),
        ("pooled_rel_var", pooled),
        ("second_moment_ratio", ratio),
        ("output_spread", spread),
    ):
        rows += [
            {"name": name, "value": float(values[s, l]), "layer": l + 1, "seed": s}
            for s in range(config.seeds)
            for l in range(L)
        ]
    rows += [
        {"name": "cosine_theory", "value": float(v), "layer": l}
        for l, v in zip(layer_index, theory_cosine, strict=True)
    ]
    rows += [
        {"name": "spread_theory", "value": float(v), "layer": l}
        for l, v in zip(layer_index, theory_spread, strict=True)
    ]

    # -- check 1: the cosine per layer against the iterated map
    mean_cosine = cosines.mean(axis=0)
    deviation = np.abs(mean_cosine - theory_cosine)
    scale = math.sqrt(max(1.0, REFERENCE_WIDTH_SEEDS / (n * config.seeds)))
    tolerance = COSINE_TOLERANCE * scale
    worst = int(deviation.argmax())
    checks = [
        Check.at_most(
            f"mean cosine per layer vs iterated ReLU correlation map, worst of {L} layers",
            float(deviation.max()),
            tolerance,
            detail=f"mean over {config.seeds} seeds and {N * (N - 1) // 2} input pairs; worst at layer "
            f"{worst + 1} (measured {mean_cosine[worst]:.4f}, theory {theory_cosine[worst]:.4f}); tolerance "
            f"{COSINE_TOLERANCE} from the issue for width 1024 x 10 seeds"
            + (
                f", scaled by sqrt(1024 * 10 / (width * seeds)) = {scale:.2f} for width {n} x {config.seeds} "
                "seeds (the seed average of an O(1/sqrt(width)) fluctuation)"
                if scale > 1.0
                else ""
            ),
        )
    ]

    # -- check 2: the variance map, within the finite-width fluctuation
    mean_ratio = ratio.mean(axis=0)
    band = np.array(
        [STANDARD_ERRORS * math.sqrt(finite_width.relu_norm_ratio_variance(l, n) / config.seeds) for l in layer_index]
    )
    normalised = np.abs(mean_ratio - 1.0) / band
    worst = int(normalised.argmax())
    checks.append(
        Check.at_most(
            "variance map: |mean M_l/M_0 - 1| in units of its tolerance, worst layer",
            float(normalised.max()),
            1.0,
            detail=f"M_l = |h_l|^2/width, theory M_l/M_0 = (sigma_w^2/2)^l = 1 (He); tolerance at layer l = "
            f"{STANDARD_ERRORS:g} sqrt(((1 + 5/n)^l - 1) / seeds), the exact single-input variance of M_l/M_0 "
            f"(~ 5 l/n, Hanin & Rolnick 2018) over {config.seeds} seeds (averaging over inputs only shrinks it); "
            f"worst at layer {worst + 1}: {mean_ratio[worst]:.3f} +- {band[worst]:.3f}; layer {L}: "
            f"{mean_ratio[-1]:.3f} +- {band[-1]:.3f}",
        )
    )
    for l, v in zip(layer_index, band, strict=True):
        rows.append({"name": "second_moment_ratio_tolerance", "value": float(v), "layer": int(l)})

    shown = [l for l in config.shown_layers if 1 <= l <= L]
    figures = {
        "collapse": _collapse_figure(
            config,
            cosines,
            theory_cosine,
            pooled,
            rel_var,
            spread,
            theory_spread,
            theta,
            kernels,
            theory_kernels,
            outputs,
            shown,
            tolerance,
        ),
        "variance_map": _variance_figure(config, ratio, band, ratio_per_input),
    }
    return Result(metrics=pd.DataFrame(rows), checks=checks, figures=figures)


# -------------------------------------------------------------------------------------------- figures
def _collapse_figure(
    config: ReluCollapseConfig,
    cosines: NDArray,
    theory_cosine: NDArray,
    pooled: NDArray,
    rel_var: NDArray,
    spread: NDArray,
    theory_spread: NDArray,
    theta: NDArray,
    kernels: NDArray,
    theory_kernels: NDArray,
    outputs: NDArray,
    shown: list[int],
    tolerance: float,
) -> Figure:
    fig = Figure(figsize=(12.0, 8.5), layout="constrained")
    (a, b), (c, d) = fig.subplots(2, 2)
    layers = np.arange(1, config.depth + 1)
    se = cosines.std(axis=0, ddof=1) / math.sqrt(config.seeds)
    a.plot(layers, theory_cosine, "-", color="C0", lw=1.5, label="theory: ReLU correlation map iterated")
    a.fill_between(
        layers,
        theory_cosine - tolerance,
        np.minimum(theory_cosine + tolerance, 1.0),
        color="C0",
        alpha=0.15,
        lw=0,
        label=f"tolerance $\\pm${tolerance:.2g}",
    )
    a.errorbar(
        layers,
        cosines.mean(axis=0),
        yerr=se,
        fmt="o",
        color="C1",
        ms=3.5,
        mfc="none",
        elinewidth=0.8,
        label=f"measured (mean of {config.seeds} seeds $\\pm$ s.e.)",
    )
    a.set_xlabel("layer $l$")
    a.set_ylabel(r"mean cosine between $h_l(x_i)$ and $h_l(x_j)$")
    a.set_title("Representations of different inputs align")
    a.legend(loc="lower right", fontsize=8)

    b.plot(layers, theory_spread, "-", color="C0", lw=1.5, label=r"theory $\frac{N-1}{N}(1 - \overline{\cos})$")
    b.plot(
        layers,
        pooled.mean(axis=0),
        "o",
        color="C1",
        ms=3.5,
        mfc="none",
        label=r"unit variance across inputs / 2nd moment (pooled)",
    )
    b.plot(
        layers,
        spread.mean(axis=0),
        "s",
        color="C2",
        ms=3.5,
        mfc="none",
        label="output spread across inputs (net cut at $l$)",
    )
    b.plot(
        layers,
        rel_var.mean(axis=0),
        "^",
        color="C3",
        ms=3.5,
        mfc="none",
        label="mean of the per-unit ratios (probe rel_var; no closed form)",
    )
    b.set_xlabel("layer $l$")
    b.set_ylabel("variance across inputs / second moment")
    b.set_title("Units and outputs stop varying with the input")
    b.legend(fontsize=8, loc="lower left")

    order = np.argsort(theta)
    delta = (theta - theta[0])[order]
    for k, l in enumerate(shown):
        c.plot(np.degrees(delta), theory_kernels[l - 1, 0, order], "-", color=f"C{k}", lw=1.2)
        c.plot(
            np.degrees(delta),
            kernels[l - 1, 0, order],
            "o",
            color=f"C{k}",
            ms=3.5,
            mfc="none",
            label=f"layer {l}",
        )
    c.plot(np.degrees(delta), np.cos(delta), ":", color="0.4", lw=1.0, label="input cosine")
    c.set_xlabel(r"angle between the inputs $\theta_i - \theta_j$ (degrees)")
    c.set_ylabel("cosine of the representations")
    c.set_title("Cosine kernel: markers measured, lines theory")
    c.legend(fontsize=8, ncol=2, loc="lower center")

    for k, l in enumerate(shown):
        f = outputs[l - 1, order]
        d.plot(
            np.degrees(theta[order]),
            (f - f.mean()) / np.sqrt(np.mean(f**2)),
            "-o",
            color=f"C{k}",
            ms=2.5,
            lw=1.0,
            label=f"depth {l}",
        )
    d.set_xlabel(r"input angle $\theta$ (degrees)")
    d.set_ylabel(r"$(f_1(x(\theta)) - \mathrm{mean}_\theta f_1)$ / rms$_\theta f_1$")
    d.set_title("Output of the network cut at depth $l$ varies less and less (seed 0)")
    d.legend(fontsize=8, ncol=2)
    fig.suptitle(f"ReLU collapse at He initialisation: width {config.width}, {config.num_inputs} inputs on a circle")
    return fig


def _variance_figure(config: ReluCollapseConfig, ratio: NDArray, band: NDArray, per_input: NDArray) -> Figure:
    fig = Figure(figsize=(12.0, 4.5), layout="constrained")
    left, right = fig.subplots(1, 2)
    layers = np.arange(1, config.depth + 1)
    for s in range(config.seeds):
        left.plot(layers, ratio[s], "-", color="0.75", lw=0.8, label="single seeds" if s == 0 else None)
    left.fill_between(
        layers,
        1 - band,
        1 + band,
        color="C0",
        alpha=0.15,
        lw=0,
        label=rf"tolerance $\pm{STANDARD_ERRORS:g}\sqrt{{((1+5/n)^l - 1)/S}}$",
    )
    left.axhline(1.0, color="C0", lw=1.5, label=r"theory $q' = \sigma_w^2 q/2$ with $\sigma_w^2 = 2$")
    left.plot(layers, ratio.mean(axis=0), "o", color="C1", ms=3.5, mfc="none", label="mean over seeds")
    left.set_xlabel("layer $l$")
    left.set_ylabel(r"$M_l / M_0 = (|h_l|^2/n) / (|x|^2/d)$")
    left.set_title("Variance map: preserved on average")
    left.legend(fontsize=8, loc="upper left")

    logs = np.log(per_input)
    variance = logs.var(axis=0, ddof=1).mean(axis=1)
    right.plot(layers, 5.0 * layers / config.width, "-", color="C0", lw=1.5, label=r"$5\,l/n$ (Hanin & Rolnick 2018)")
    error = variance * math.sqrt(2.0 / (config.seeds - 1))
    right.errorbar(
        layers,
        variance,
        yerr=error,
        fmt="o",
        color="C1",
        ms=3.5,
        mfc="none",
        elinewidth=0.8,
        label=rf"measured over {config.seeds} seeds (mean over inputs; $\pm$ s.e. of a variance)",
    )
    right.set_xlabel("layer $l$")
    right.set_ylabel(r"Var $\log(M_l / M_0)$")
    right.set_title("Finite width: the log-norm fluctuation grows like depth / width")
    right.legend(fontsize=8)
    fig.suptitle(f"Mean square of ReLU activations at He initialisation, width n = {config.width}")
    return fig


EXPERIMENT = Experiment(
    name="relu-collapse",
    claim="At He initialisation a deep ReLU MLP maps all inputs to nearly the same output: the cosine between "
    "the representations of two inputs follows the iterated ReLU correlation map towards 1, while the variance "
    "map keeps the activations' scale.",
    config=ReluCollapseConfig,
    **legacy(run),
    presets={"full": {"width": 1024, "depth": 50, "seeds": 10, "num_inputs": 64}},
    references=(
        "Cho & Saul (2009), Kernel methods for deep learning, NeurIPS",
        "Poole et al. (2016), Exponential expressivity in deep neural networks through transient chaos, NeurIPS",
        "Hanin & Rolnick (2018), How to start training: the effect of initialization and architecture, NeurIPS",
        "Daneshmand et al. (2020), Batch normalization provably avoids rank collapse for randomly initialised "
        "deep networks, NeurIPS",
    ),
    part="signal propagation",
)
