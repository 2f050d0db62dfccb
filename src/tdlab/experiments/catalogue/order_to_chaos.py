"""order-to-chaos: tanh networks at initialisation over (sigma_w^2, sigma_b^2), after Poole et al. (2016) and
Schoenholz et al. (2017).

Theory (`tdlab.theory.mean_field`, Gaussian expectations by Gauss-Hermite quadrature): the fixed point q* of the
length map, chi_1 = sigma_w^2 E[phi'(sqrt(q*) z)^2] and the critical line chi_1 = 1 that separates the ordered
phase (all inputs become alike, c* = 1) from the chaotic one (c* < 1), and the correlation depth scale
xi_c = -1/log(chi_c): |c^l - c*| ~ exp(-l / xi_c).

Measurement: tanh MLPs (`tdlab.models.MLP`, `init="he"` with `init_scale` sqrt(sigma_w^2 / 2), so that
Var W = sigma_w^2 / fan_in, and `bias_init_std` sigma_b) of `width` units, fed pairs of inputs scaled so that
the first pre-activations have variance q* and correlation c^1. The correlation c^l of the pre-activations of
each pair is read layer by layer and averaged over pairs and seeds. The deviation from the fixed point

    ordered phase:  D_l = 1 - c^l,                        pairs started at c^1 = 1 - delta;
    chaotic phase:  D_l = (c^l_+ - c^l_-) / 2,            pairs started at c^1 = c* + delta and c* - delta,

decays like exp(-l / xi_c). In the chaotic phase the two pairs share their first input and direction, so their
finite-width fluctuations largely cancel in the difference, and so do the even-order terms of the map around c*
(D_l stays in the linear regime). The measured xi is -1/slope of a least-squares fit of log D_l against l,
each layer weighted by D_l / (its standard error over seeds). Check (the issue's): measured xi within 10% of
xi_c at three points off criticality.

The pre-activations are read by the probes' forward hooks (`tdlab.probes.activations.representations`); the
theory curves are closed forms. The `full` preset adds the trainability heat map of Schoenholz et al. (2017,
fig. 5): tanh networks of many depths and sigma_w^2 trained by SGD on MNIST-1D (`heatmap_data`) through
`tdlab.train.fit`, all sigma_w^2 of one depth at once as a stacked ensemble (`tdlab.ensemble`), their training
accuracy drawn against depth and sigma_w^2 together with the curve 6 xi_c beyond which signals no longer
propagate. The preset keeps the paper's SGD learning rate 1e-3 (1000 steps of batches of 64, width 128): the
same SGD time lr x steps at a larger rate is not the same heat map, as deep near-critical networks then train
less (depth 100, sigma_w^2 = 1.76 and 2.2, width 128, batch 128: accuracy 0.32, 0.35 after 1e-3 x 1000 steps,
0.27, 0.25 after 3e-3 x 333, 0.19, 0.10 after 1e-2 x 100).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from numpy.typing import NDArray
from pydantic import Field, model_validator
from torch import Tensor, nn

from tdlab.ensemble import Members, StackedModels, member_losses
from tdlab.ensemble.updates import unsupported
from tdlab.experiments.base import Check, Context, Experiment, ExperimentConfig
from tdlab.experiments.tidy import select, series, value
from tdlab.models import MLP
from tdlab.probes.activations import hidden_modules, representations
from tdlab.theory import mean_field
from tdlab.train.builders import build_data, build_optimizer
from tdlab.train.config import DataConfig, OptimizerConfig
from tdlab.train.trainer import fit

XI_TOLERANCE = 0.10  # the relative tolerance on the measured depth scale
TRAINABLE_DEPTHS = 6.0  # Schoenholz et al. (2017): networks deeper than ~6 xi_c do not train


class OrderToChaosConfig(ExperimentConfig):
    """Quick defaults: three points off criticality at sigma_b^2 = 0.05, width 128, 48 seeds, 20 layers; no heat
    map (the `full` preset draws it)."""

    sigma_b2: float = Field(0.05, ge=0, description="bias variance sigma_b^2")
    sigma_w2_points: tuple[float, ...] = Field(
        (1.2, 3.0, 5.0), min_length=1, description="sigma_w^2 at which xi_c is measured (off criticality)"
    )
    width: int = Field(128, ge=8, description="hidden units per layer")
    depth: int = Field(20, ge=3, description="layers over which the convergence rate is fitted")
    seeds: int = Field(48, ge=2, description="initialisations averaged over")
    pairs: int = Field(32, ge=1, description="input pairs per network")
    in_features: int = Field(64, ge=2, description="input dimension")
    delta: float = Field(0.15, gt=0, lt=0.5, description="initial distance of the pairs' correlation from c*")
    curve_points: int = Field(40, ge=5, description="sigma_w^2 values of the theory curves")
    sigma_w2_range: tuple[float, float] = Field((0.5, 5.0), description="range of the theory curves and heat map")
    heatmap_depths: tuple[int, ...] = Field((), description="depths of the trainability heat map (empty: none)")
    heatmap_sigma_w2: tuple[float, ...] = Field((), description="sigma_w^2 values of the heat map")
    heatmap_width: int = Field(256, ge=4, description="width of the trained networks")
    heatmap_steps: int = Field(300, ge=1, description="SGD steps per trained network")
    heatmap_batch: int = Field(128, ge=1, description="SGD batch size (drawn with replacement)")
    heatmap_data: DataConfig = Field(
        default_factory=lambda: DataConfig(name="mnist1d", n_train=4000, n_test=10), description="trained on"
    )
    heatmap_optimizer: OptimizerConfig = Field(
        default_factory=lambda: OptimizerConfig(name="sgd", lr=1e-3), description="Schoenholz et al. (2017): SGD, 1e-3"
    )

    @model_validator(mode="after")
    def _consistent(self) -> OrderToChaosConfig:
        low, high = self.sigma_w2_range
        if not 0 < low < high:
            raise ValueError(f"sigma_w2_range: expected 0 < low < high, got {self.sigma_w2_range}")
        if any(s <= 0 for s in (*self.sigma_w2_points, *self.heatmap_sigma_w2)):
            raise ValueError("sigma_w2_points, heatmap_sigma_w2: expected positive values")
        if bool(self.heatmap_depths) != bool(self.heatmap_sigma_w2):
            raise ValueError("heatmap_depths, heatmap_sigma_w2: give both (a heat map) or neither")
        if any(d < 1 for d in self.heatmap_depths):
            raise ValueError(f"heatmap_depths: expected positive depths, got {self.heatmap_depths}")
        reason = unsupported(self.heatmap_optimizer.name, self.heatmap_optimizer.kwargs())
        if reason is not None:
            raise ValueError(f"heatmap_{reason}")
        return self


def tanh_network(
    in_features: int,
    out_features: int,
    width: int,
    depth: int,
    sigma_w2: float,
    sigma_b2: float,
    generator: torch.Generator,
) -> MLP:
    """A tanh MLP with W_ij ~ N(0, sigma_w^2 / fan_in) and b_i ~ N(0, sigma_b^2) in every layer.

    Example:
        >>> net = tanh_network(100, 1, 400, 2, 2.5, 0.1, torch.Generator().manual_seed(0))
        >>> round(float(net.hidden[1].linear.weight.detach().var() * 400), 1)  # sigma_w^2
        2.5
    """
    return MLP(
        in_features,
        out_features,
        width,
        depth,
        "tanh",
        init="he",
        init_scale=math.sqrt(sigma_w2 / 2.0),
        bias_init_std=math.sqrt(sigma_b2),
        seed=generator,
    )


def pair_inputs(
    first_correlation: float,
    q_star: float,
    sigma_w2: float,
    sigma_b2: float,
    directions: tuple[Tensor, Tensor],
) -> tuple[Tensor, Tensor]:
    """Pairs (x_a, x_b) whose first-layer pre-activations have variance q* and correlation c^1:
    |x|^2/d = (q* - sigma_b^2)/sigma_w^2 and x_a.x_b/d = (c^1 q* - sigma_b^2)/sigma_w^2, along the orthonormal
    directions (u, v) given per pair, shapes (pairs, d).

    Example:
        >>> u, v = torch.eye(4)[:1], torch.eye(4)[1:2]
        >>> xa, xb = pair_inputs(0.5, 1.0, 1.0, 0.0, (u, v))
        >>> float((xa * xb).sum() / 4), float(xa.square().sum() / 4)
        (0.5, 1.0)
    """
    d = directions[0].shape[1]
    moment = (q_star - sigma_b2) / sigma_w2
    cosine = (first_correlation * q_star - sigma_b2) / (sigma_w2 * moment)
    if moment <= 0 or abs(cosine) > 1:
        raise ValueError(f"first_correlation: {first_correlation} is not reachable with sigma_b2 = {sigma_b2}")
    u, v = directions
    scale = math.sqrt(d * moment)
    return scale * u, scale * (cosine * u + math.sqrt(1.0 - cosine**2) * v)


def pair_correlations(model: MLP, first: Tensor, second: Tensor) -> Tensor:
    """Correlation <z_a, z_b> / (|z_a| |z_b|) of the pre-activations of each pair at every layer, (depth, pairs).

    Example:
        >>> net = tanh_network(3, 1, 16, 4, 1.5, 0.05, torch.Generator().manual_seed(0))
        >>> x = torch.randn(2, 3)
        >>> pair_correlations(net, x, x).round(decimals=5).unique().tolist()
        [1.0]
    """
    layers = hidden_modules(model, [f"hidden.{l}.linear" for l in range(len(model.hidden))])
    z = representations(model, layers, torch.cat([first, second])).values()
    n = first.shape[0]
    return torch.stack([nn.functional.cosine_similarity(h[:n], h[n:], dim=1) for h in z])


def fitted_depth_scale(deviation: NDArray, standard_error: NDArray) -> float:
    """xi = -1/slope of the least-squares fit of log D_l against l = 1, 2, ..., weighting layer l by
    D_l / se_l (the inverse standard error of log D_l); layers with D_l <= 0 are left out.

    Example:
        >>> layers = np.arange(1, 11)
        >>> round(fitted_depth_scale(0.2 * np.exp(-layers / 4.0), np.full(10, 1e-3)), 6)
        4.0
    """
    layers = np.arange(1, deviation.size + 1)
    keep = (deviation > 0) & (standard_error > 0)
    if keep.sum() < 2:
        raise ValueError("deviation: fewer than two layers with a positive deviation to fit")
    slope = np.polyfit(layers[keep], np.log(deviation[keep]), 1, w=(deviation / standard_error)[keep])[0]
    return math.inf if slope >= 0 else -1.0 / float(slope)


def measure(config: OrderToChaosConfig, context: Context) -> pd.DataFrame:
    """Theory curves ("q_star_theory", "chi_1_theory", "xi_c_theory" against sigma_w2, "critical_sigma_w2"); at
    each point the deviation D_l and its standard error over seeds ("deviation", "deviation_se", column layer),
    "xi_measured" and "xi_theory"; with a heat map, "train_accuracy" per (depth, sigma_w2)."""
    generator = torch.Generator().manual_seed(config.seed)
    device, sb2 = context.device, config.sigma_b2
    rows: list[dict[str, float | int | str]] = []
    for sw2 in np.linspace(*config.sigma_w2_range, config.curve_points):
        for name, curve in (("q_star", mean_field.fixed_point_variance), ("chi_1", mean_field.chi_1)):
            rows.append({"name": f"{name}_theory", "value": curve(sw2, sb2), "sigma_w2": sw2, "sigma_b2": sb2})
        rows.append(
            {"name": "xi_c_theory", "value": mean_field.correlation_depth(sw2, sb2), "sigma_w2": sw2, "sigma_b2": sb2}
        )
    rows.append({"name": "critical_sigma_w2", "value": mean_field.critical_sigma_w2(sb2), "sigma_b2": sb2})

    for sw2 in context.track(config.sigma_w2_points, "order-to-chaos: points"):
        q_star, c_star = mean_field.fixed_point_variance(sw2, sb2), mean_field.fixed_point_correlation(sw2, sb2)
        xi = mean_field.correlation_depth(sw2, sb2)
        if not math.isfinite(xi):
            raise ValueError(f"sigma_w2_points: {sw2} is on the critical line (xi_c infinite); choose points off it")
        ordered = c_star == 1.0
        starts = (1.0 - config.delta,) if ordered else (c_star + config.delta, c_star - config.delta)
        deviation = np.empty((config.seeds, config.depth))
        for s in range(config.seeds):
            u = torch.randn(config.pairs, config.in_features, generator=generator)
            u = u / u.norm(dim=1, keepdim=True)
            v = torch.randn(config.pairs, config.in_features, generator=generator)
            v = v - (v * u).sum(dim=1, keepdim=True) * u
            v = v / v.norm(dim=1, keepdim=True)
            pairs = [pair_inputs(c1, q_star, sw2, sb2, (u, v)) for c1 in starts]
            first = torch.cat([p[0] for p in pairs]).to(device)
            second = torch.cat([p[1] for p in pairs]).to(device)
            model = tanh_network(config.in_features, 1, config.width, config.depth, sw2, sb2, generator).to(device)
            c = pair_correlations(model, first, second).double().cpu().numpy()
            if ordered:
                deviation[s] = 1.0 - c.mean(axis=1)
            else:
                deviation[s] = (c[:, : config.pairs].mean(axis=1) - c[:, config.pairs :].mean(axis=1)) / 2.0
        mean = deviation.mean(axis=0)
        error = deviation.std(axis=0, ddof=1) / math.sqrt(config.seeds)
        ids = {"sigma_w2": sw2, "sigma_b2": sb2, "phase": "ordered" if ordered else "chaotic"}
        for l in range(config.depth):
            rows.append({"name": "deviation", "value": float(mean[l]), "layer": l + 1, **ids})
            rows.append({"name": "deviation_se", "value": float(error[l]), "layer": l + 1, **ids})
        rows.append({"name": "xi_measured", "value": fitted_depth_scale(mean, error), **ids})
        rows.append({"name": "xi_theory", "value": xi, **ids})
    if config.heatmap_depths:
        rows += trainability(config, context, generator)
    return pd.DataFrame(rows)


def trainability(config: OrderToChaosConfig, context: Context, generator: torch.Generator) -> list[dict]:
    """Training accuracy after `heatmap_steps` SGD steps (`tdlab.train.fit`, batches drawn with replacement) of a
    tanh network for every (depth, sigma_w^2) of the heat map, as "train_accuracy" rows; nan where the trained
    network's loss is not finite.

    The networks of one depth train together as one stacked ensemble (`tdlab.ensemble.StackedModels`): the loss
    is the sum of the members' finite mean losses, so each member's slice of the stacked parameters receives its
    own gradient, and the optimiser (one that acts element by element, `tdlab.ensemble.updates.unsupported`)
    updates every member as it would alone. All members see the same batches, as the sequential runs of one seed
    do, and start from the weights those runs draw (same generator, same order).

    Example:
        >>> config = OrderToChaosConfig(heatmap_depths=(2,), heatmap_sigma_w2=(1.5,), heatmap_width=8,
        ...                             heatmap_steps=2, heatmap_batch=10,
        ...                             heatmap_data={"name": "mnist1d", "n_train": 20, "n_test": 10})
        >>> [row["name"] for row in trainability(config, Context(torch.device("cpu")), torch.Generator())]
        ['train_accuracy']
    """
    data = build_data(config.heatmap_data, context.device)
    losses_of, rows = member_losses(nn.CrossEntropyLoss()), []
    X, y = data.train
    members = len(config.heatmap_sigma_w2)
    for depth in context.track(config.heatmap_depths, "order-to-chaos: trainability"):
        nets = [
            tanh_network(
                data.in_features, data.out_features, config.heatmap_width, depth, sw2, config.sigma_b2, generator
            )
            for sw2 in config.heatmap_sigma_w2
        ]
        module = Members(StackedModels.of(nets, device=context.device))

        def summed(outputs: Tensor, targets: Tensor) -> Tensor:
            losses = losses_of(outputs, targets.expand(members, *targets.shape))
            return torch.where(torch.isfinite(losses), losses, 0.0).sum()

        optimizer = build_optimizer(module.parameters(), config.heatmap_optimizer)
        fit(
            module,
            summed,
            data.train,
            optimizer,
            config.heatmap_steps,
            batch_size=config.heatmap_batch,
            batch_order="replacement",
            seed=config.seed,
        )
        with torch.no_grad():
            outputs = module(X)
            loss = losses_of(outputs, y.expand(members, *y.shape))
            accuracy = (outputs.argmax(dim=-1) == y).double().mean(dim=1)
        for sw2, l, a in zip(config.heatmap_sigma_w2, loss.tolist(), accuracy.tolist(), strict=True):
            rows.append(
                {
                    "name": "train_accuracy",
                    "value": a if math.isfinite(l) else math.nan,
                    "depth": depth,
                    "sigma_w2": sw2,
                    "sigma_b2": config.sigma_b2,
                }
            )
    return rows


def checks(metrics: pd.DataFrame, config: OrderToChaosConfig) -> list[Check]:
    """The measured depth scale within 10% of xi_c at every point."""
    out, sb2 = [], config.sigma_b2
    for sw2 in config.sigma_w2_points:
        point = metrics[metrics.sigma_w2 == sw2].set_index("name")
        xi, phase = float(point.value["xi_theory"]), point.phase["xi_theory"]
        q_star, c_star = mean_field.fixed_point_variance(sw2, sb2), mean_field.fixed_point_correlation(sw2, sb2)
        critical = mean_field.critical_sigma_w2(sb2)
        what = "1 - c^l from c^1 = 1 - delta" if phase == "ordered" else "(c^l_+ - c^l_-)/2 from c^1 = c* +- delta"
        out.append(
            Check.relative(
                f"correlation depth scale at sigma_w^2 = {sw2:g}, sigma_b^2 = {sb2:g} ({phase})",
                float(point.value["xi_measured"]),
                xi,
                XI_TOLERANCE,
                detail=f"theory xi_c = -1/log chi_c = {xi:.3f} (q* = {q_star:.4f}, c* = {c_star:.4f}, critical "
                f"sigma_w^2 = {critical:.4f}); measured: weighted log-linear fit of D_l = {what} (delta = "
                f"{config.delta:g}) over layers 1..{config.depth}, width {config.width}, {config.seeds} seeds x "
                f"{config.pairs} pairs; tolerance {XI_TOLERANCE:.0%} from the issue",
            )
        )
    return out


def figures(metrics: pd.DataFrame, config: OrderToChaosConfig) -> dict[str, Figure]:
    out = {"phase_diagram": _phase_figure(metrics, config), "correlation_decay": _decay_figure(metrics, config)}
    if config.heatmap_depths:
        out["trainability"] = _heatmap_figure(metrics, config)
    return out


# -------------------------------------------------------------------------------------------- figures
def _phase_figure(metrics: pd.DataFrame, config: OrderToChaosConfig) -> Figure:
    fig = Figure(figsize=(15.0, 4.5), layout="constrained")
    left, middle, right = fig.subplots(1, 3)
    critical = value(metrics, "critical_sigma_w2")
    points, xi_theory = series(metrics, "xi_theory", "sigma_w2")
    xi_measured = series(metrics, "xi_measured", "sigma_w2")[1]
    sigma_b2 = np.linspace(0.0, math.sqrt(0.3), 30) ** 2
    line = np.array([mean_field.critical_sigma_w2(s) for s in sigma_b2])
    left.plot(line, sigma_b2, "-", color="k", lw=1.5, label=r"critical line $\chi_1 = 1$")
    left.fill_betweenx(sigma_b2, config.sigma_w2_range[0], line, color="C0", alpha=0.15, label="ordered")
    left.fill_betweenx(sigma_b2, line, 2 * config.sigma_w2_range[1], color="C3", alpha=0.15, label="chaotic")
    left.plot(points, [config.sigma_b2] * len(points), "o", color="C1", label="measured points")
    left.set_xlim(config.sigma_w2_range[0], max(config.sigma_w2_range[1], *points) * 1.05)
    left.set_xlabel(r"$\sigma_w^2$")
    left.set_ylabel(r"$\sigma_b^2$")
    left.set_title("Phase diagram of tanh networks")
    left.legend(fontsize=8, loc="upper left")

    for name, color, label in (("q_star", "C0", r"$q^*$"), ("chi_1", "C3", r"$\chi_1$")):
        middle.plot(*series(metrics, f"{name}_theory", "sigma_w2"), "-", color=color, label=label)
    middle.axhline(1.0, color="0.5", ls=":", lw=1.0)
    middle.axvline(critical, color="k", ls="--", lw=1.0, label=rf"critical $\sigma_w^2 = {critical:.3f}$")
    middle.set_xlabel(r"$\sigma_w^2$")
    middle.set_title(rf"Fixed point and $\chi_1$ at $\sigma_b^2 = {config.sigma_b2:g}$")
    middle.legend(fontsize=8)

    right.semilogy(
        *series(metrics, "xi_c_theory", "sigma_w2"), "-", color="C0", label=r"theory $\xi_c = -1/\log\chi_c$"
    )
    right.errorbar(
        points,
        xi_theory,
        yerr=XI_TOLERANCE * xi_theory,
        fmt="none",
        ecolor="C0",
        capsize=4,
        label=f"tolerance $\\pm${XI_TOLERANCE:.0%}",
    )
    right.plot(points, xi_measured, "o", color="C1", mfc="none", ms=7, label="measured")
    right.axvline(critical, color="k", ls="--", lw=1.0)
    right.set_xlabel(r"$\sigma_w^2$")
    right.set_ylabel(r"correlation depth scale $\xi_c$ (layers)")
    right.set_title("Depth scale diverges at the critical line")
    right.legend(fontsize=8)
    return fig


def _decay_figure(metrics: pd.DataFrame, config: OrderToChaosConfig) -> Figure:
    fig = Figure(figsize=(7.5, 5.0), layout="constrained")
    ax = fig.subplots()
    layers = np.arange(1, config.depth + 1)
    for k, sw2 in enumerate(config.sigma_w2_points):
        mean, error = (series(metrics, name, "layer", sigma_w2=sw2)[1] for name in ("deviation", "deviation_se"))
        xi, xi_measured = (value(metrics, name, sigma_w2=sw2) for name in ("xi_theory", "xi_measured"))
        ax.errorbar(
            layers,
            mean,
            yerr=error,
            fmt="o",
            color=f"C{k}",
            ms=4,
            mfc="none",
            elinewidth=0.8,
            label=rf"$\sigma_w^2 = {sw2:g}$: measured $\xi = {xi_measured:.2f}$",
        )
        ax.semilogy(
            layers,
            mean[0] * np.exp(-(layers - 1) / xi),
            "-",
            color=f"C{k}",
            lw=1.2,
            label=rf"theory slope, $\xi_c = {xi:.2f}$",
        )
    ax.set_xlabel("layer $l$")
    ax.set_ylabel(r"deviation from the fixed point $D_l$")
    ax.set_title(r"Correlations approach their fixed point like $e^{-l/\xi_c}$")
    ax.legend(fontsize=8)
    return fig


def _heatmap_figure(metrics: pd.DataFrame, config: OrderToChaosConfig) -> Figure:
    fig = Figure(figsize=(8.0, 5.5), layout="constrained")
    ax = fig.subplots()
    sw2 = np.array(config.heatmap_sigma_w2)
    depths = np.array(config.heatmap_depths)
    heat = select(metrics, "train_accuracy").pivot_table(
        index="depth", columns="sigma_w2", values="value", dropna=False
    )
    heat = heat.reindex(index=depths, columns=sw2).to_numpy()
    mesh = ax.pcolormesh(sw2, depths, heat, shading="nearest", cmap="viridis", vmin=0.0, vmax=1.0)
    fig.colorbar(mesh, ax=ax, label="training accuracy")
    fine = np.linspace(sw2.min(), sw2.max(), 200)
    xi = np.array([mean_field.correlation_depth(s, config.sigma_b2) for s in fine])
    curve = np.where(np.isfinite(xi), TRAINABLE_DEPTHS * xi, 1e6)  # the critical line: xi_c infinite
    ax.plot(fine, curve, "-", color="w", lw=2.0, label=r"$6\,\xi_c$")
    ax.set_ylim(depths.min() - 0.5, depths.max() + 0.5)
    ax.set_xlabel(r"$\sigma_w^2$")
    ax.set_ylabel("depth $L$")
    ax.set_title(
        f"Trainability after {config.heatmap_steps} SGD steps on MNIST-1D "
        f"($\\sigma_b^2 = {config.sigma_b2:g}$, width {config.heatmap_width})"
    )
    ax.legend(loc="upper right")
    return fig


EXPERIMENT = Experiment(
    name="order-to-chaos",
    claim="Random tanh networks have an ordered and a chaotic phase separated by the critical line chi_1 = 1; "
    "correlations between inputs approach their fixed point at the depth scale xi_c = -1/log chi_c, which "
    "diverges at criticality, and only networks shallower than about 6 xi_c train.",
    config=OrderToChaosConfig,
    measure=measure,
    checks=checks,
    figures=figures,
    presets={
        "full": {
            "width": 1000,
            "seeds": 32,
            "depth": 30,
            "sigma_w2_points": (1.0, 1.2, 2.5, 3.0, 5.0),
            "curve_points": 100,
            "sigma_w2_range": (1.0, 4.0),
            "heatmap_depths": (10, 20, 30, 45, 70, 100),
            "heatmap_sigma_w2": tuple(float(s) for s in np.round(np.linspace(1.0, 4.0, 13), 3)),
            "heatmap_width": 128,
            "heatmap_batch": 64,
            "heatmap_steps": 1000,
        }
    },
    references=(
        "Poole, Lahiri, Raghu, Sohl-Dickstein & Ganguli (2016), Exponential expressivity in deep neural networks "
        "through transient chaos, NeurIPS",
        "Schoenholz, Gilmer, Ganguli & Sohl-Dickstein (2017), Deep information propagation, ICLR",
    ),
    part="signal propagation",
)
