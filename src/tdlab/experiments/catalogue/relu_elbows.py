"""relu-elbows: a one-input ReLU network is piecewise linear, with an elbow at -b/w for each unit.

f(x) = c + sum_j a_j relu(w_j x + b_j) bends at e_j = -b_j/w_j by a_j |w_j| (the change of slope). The
experiment follows the elbows of `tdlab.models.MLP(1, 1, width, depth=1)`:

- at N(0, 1) initialisation (w_j, b_j ~ N(0, 1), `init="normal"`, `bias_init_std=1`) the elbows are standard
  Cauchy (`tdlab.theory.cauchy`): a Kolmogorov-Smirnov test, the fractions in [-3, 3] and [-10, 10]
  ((2/pi) arctan 3 = 0.795, (2/pi) arctan 10 = 0.937), and the mean: the mean of n Cauchy elbows is again
  standard Cauchy, so the median of |mean| over groups of n elbows stays 1 for every n (it would shrink like
  1/sqrt(n) for a law with a variance) and running means never settle;
- in training (full-batch gradient descent on the mean squared error to a piecewise-linear target on [-2, 2],
  the readout re-initialised by He, Var a_j = 2/width) the elbows move to where the target bends, and units
  whose elbow leaves the data on their flat side (relu(w x + b) = 0 for every training x) are dead: their
  parameters get exactly zero gradient and never move again (a property of the gradient, tested in tests/, not
  a claim checked here). The steps are fractions of the stability bound 2/lambda_max of the loss at
  initialisation (the `sharpness` probe). Each step size trains its own copy through `tdlab.train.fit`
  (`torch.optim.SGD`, full batch), with the `loss` and `activations` probes (its "dead" statistic counts the dead
  units) every `record_every` steps;
- large steps kill units: `kill_seeds` initialisations (the one above and `kill_seeds - 1` more, trained at once
  as `tdlab.ensemble.Members`) train at the smallest and the largest step fraction; check: a one-sided Wilcoxon
  signed-rank test over the seeds of (dead units after training at the largest step) - (at the smallest) rejects
  "no difference" at alpha = 0.05 (with 5 seeds only if every seed has more dead units at the large step: the
  exact p is then 1/32). It fails if the step size does not change which units die (all differences zero or
  of either sign), e.g. when the dead units are counted at initialisation or the step is not applied; a large
  step that diverges fails it too (no count);
- one hidden layer of elbows represents the piecewise-linear interpolant of any function exactly
  (`tdlab.theory.piecewise_linear`): the MLP loaded with those weights is exact at its knots, and its error on
  a smooth function stays below h^2 max|g''| / 8 (closed forms, no training).
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator
from numpy.typing import NDArray
from pydantic import Field, field_validator, model_validator
from scipy import stats
from torch import Tensor, nn

from tdlab.ensemble import Members, StackedModels, member_losses
from tdlab.experiments.base import Check, Context, Experiment, ExperimentConfig
from tdlab.experiments.tidy import select, series, value
from tdlab.models import MLP, initialise
from tdlab.probes import ActivationStats, LossProbe, ProbeSet, Sharpness
from tdlab.theory import cauchy
from tdlab.theory.piecewise_linear import (
    ReluInterpolant,
    evaluate_interpolant,
    interpolation_error_bound,
    relu_interpolant,
)
from tdlab.train.trainer import fit

KS_LEVEL = 0.01  # the significance level
KILL_LEVEL = 0.05  # significance level of the one-sided Wilcoxon test that large steps kill more units
STANDARD_ERRORS = 3.0  # sampling-error tolerance of the fractions and of the median |mean|
INTERVALS = (3.0, 10.0)  # the intervals [-a, a]
TARGET_KNOTS = (-2.0, -1.0, 0.5, 1.2, 2.0)  # the training target: piecewise linear, bends at -1, 0.5, 1.2
TARGET_VALUES = (0.0, 1.0, -0.5, 0.5, 0.0)
NEAR_KNOT = 0.15  # an elbow within this distance of a bend of the target is "at" it
SMOOTH_CURVATURE = 9.0  # max |g''| of the interpolated function g(x) = sin(3x)
STREAMS, STREAM_LENGTH = 4, 2**14  # running means drawn (at log-spaced n)
UNIT = ("unit_weight", "unit_bias", "unit_readout")  # rows of the drawn network's parameters, per unit


def smooth_target(x: NDArray) -> NDArray:
    """g(x) = sin(3x), the smooth function interpolated by elbows (|g''| <= 9)."""
    return np.sin(3.0 * x)


class ReluElbowsConfig(ExperimentConfig):
    """Quick defaults: 2^20 elbows for the Cauchy law; 64 units trained 1500 steps at 6 step sizes."""

    elbow_units: int = Field(2**20, ge=1024, description="units drawn at N(0, 1) for the law of the elbows")
    group_sizes: tuple[int, ...] = Field((16, 256, 4096), min_length=1, description="n of the means of n elbows")
    width: int = Field(64, ge=2, description="hidden units of the trained network")
    n_train: int = Field(64, ge=4, description="training inputs, evenly spaced in [-2, 2]")
    steps: int = Field(1500, ge=1, description="full-batch GD steps")
    step_fractions: tuple[float, ...] = Field(
        (0.25, 0.5, 0.9, 1.5, 2.0, 3.0), min_length=2, description="steps in units of 2/lambda_max at init"
    )
    shown_fraction: float = Field(0.9, gt=0, description="the step fraction of the trained net that is drawn")
    record_every: int = Field(25, ge=1, description="steps between dead-unit counts")
    kill_fractions: tuple[float, float] = Field(
        (0.25, 2.0), description="the small and the large step fraction of the large-step test (in step_fractions)"
    )
    kill_seeds: int = Field(
        5, ge=5, description="initialisations of the large-step test (5: the least that can reach p < 0.05)"
    )
    knots: tuple[int, ...] = Field((4, 8, 16, 32, 64), min_length=1, description="pieces of the interpolants")

    @field_validator("group_sizes", "knots")
    @classmethod
    def _positive(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(v < 1 for v in value):
            raise ValueError(f"expected positive integers, got {value}")
        return value

    @model_validator(mode="after")
    def _kill_fractions_trained(self) -> ReluElbowsConfig:
        low, high = self.kill_fractions
        if not low < high or not {low, high} <= set(self.step_fractions):
            raise ValueError(
                f"kill_fractions: expected a small and a larger fraction among step_fractions {self.step_fractions}, "
                f"got {self.kill_fractions}"
            )
        return self

    @model_validator(mode="after")
    def _enough_groups(self) -> ReluElbowsConfig:
        groups = self.elbow_units // max(self.group_sizes)
        if groups < 16:
            raise ValueError(
                f"group_sizes: {max(self.group_sizes)} leaves {groups} groups of elbows (< 16); raise elbow_units"
            )
        return self


def elbows(model: MLP) -> Tensor:
    """The elbows e_j = -b_j / w_j of the hidden units of a one-input, one-hidden-layer MLP.

    Example:
        >>> model = MLP(1, 1, width=3, depth=1, init="normal", bias_init_std=1.0, seed=0)
        >>> elbows(model).shape
        torch.Size([3])
    """
    layer = model.hidden[0].linear
    if layer.in_features != 1 or len(model.hidden) != 1:
        raise ValueError("model: expected a one-input MLP with one hidden layer")
    return -(layer.bias / layer.weight[:, 0]).detach()


def dead_units(weight: Tensor, bias: Tensor, x: Tensor) -> Tensor:
    """Which units relu(w x + b) are zero on every input in x (elbow outside the data on the flat side); the
    last axis of weight and bias runs over units, leading axes over replicas.

    Example:
        >>> dead_units(torch.tensor([1.0, -1.0]), torch.tensor([-5.0, 0.0]), torch.linspace(-1, 1, 5)).tolist()
        [True, False]
    """
    z = x.reshape(-1, *([1] * weight.dim())) * weight + bias
    return (z <= 0).all(dim=0)


def measure(config: ReluElbowsConfig, context: Context) -> pd.DataFrame:
    """The law of the elbows at initialisation, training at every step size, and the exact interpolants."""
    generator = torch.Generator().manual_seed(config.seed)
    return pd.concat(
        [
            _elbow_law(config, generator),
            _training(config, context, generator),
            _kills(config, context),
            _interpolants(config, context),
        ],
        ignore_index=True,
    )


def _elbow_law(config: ReluElbowsConfig, generator: torch.Generator) -> pd.DataFrame:
    """The elbows of `elbow_units` units at N(0, 1): the KS test against Cauchy ("ks_pvalue", "ks_statistic"), the
    fractions in [-a, a], the median |mean| of groups of n, their density on [-10, 10] ("elbow_density", column
    elbow: the bin's centre) and running means of 4 streams at log-spaced n ("running_mean", columns stream, n)."""
    wide = MLP(1, 1, width=config.elbow_units, depth=1, init="normal", bias_init_std=1.0, seed=generator)
    sample = elbows(wide).double().numpy()
    del wide
    ks = stats.kstest(sample, "cauchy")
    rows = [{"name": "ks_pvalue", "value": ks.pvalue}, {"name": "ks_statistic", "value": ks.statistic}]
    rows += [
        {"name": "fraction_in_interval", "value": np.mean(np.abs(sample) <= a), "half_width": a} for a in INTERVALS
    ]
    for n in config.group_sizes:
        means = sample[: (sample.size // n) * n].reshape(-1, n).mean(axis=1)
        rows.append({"name": "median_abs_group_mean", "value": np.median(np.abs(means)), "group_size": n})
    edges = np.linspace(-10, 10, 101)
    density = np.histogram(sample, bins=edges)[0] / (sample.size * np.diff(edges)[0])
    rows += [{"name": "elbow_density", "value": v, "elbow": c} for c, v in zip(edges[:-1] + 0.1, density, strict=True)]
    length = min(STREAM_LENGTH, sample.size // STREAMS)
    n = np.unique(np.geomspace(1, length, 600).astype(int))
    for k, stream in enumerate(sample[: STREAMS * length].reshape(STREAMS, -1)):
        running = np.cumsum(stream)[n - 1] / n
        rows += [
            {"name": "running_mean", "value": v, "stream": k, "n": int(m)} for m, v in zip(n, running, strict=True)
        ]
    return pd.DataFrame(rows)


def _target(config: ReluElbowsConfig, dtype: torch.dtype = torch.float64) -> tuple[Tensor, Tensor]:
    """The training set: `n_train` evenly spaced x in [-2, 2] and the piecewise-linear target, shapes (n, 1)."""
    x = torch.linspace(TARGET_KNOTS[0], TARGET_KNOTS[-1], config.n_train, dtype=dtype)
    y = evaluate_interpolant(relu_interpolant(TARGET_KNOTS, TARGET_VALUES), x.numpy())
    return x[:, None], torch.as_tensor(y, dtype=dtype)[:, None]


def _units(model: MLP) -> tuple[Tensor, Tensor, Tensor]:
    """The parameters (w_j, b_j, a_j) of the units of f(x) = c + sum_j a_j relu(w_j x + b_j), on the CPU."""
    params = (model.hidden[0].linear.weight[:, 0], model.hidden[0].linear.bias, model.readout.weight[0])
    return tuple(p.detach().cpu() for p in params)  # type: ignore[return-value]


def _unit_rows(model: MLP, step: int) -> list[dict]:
    """The parameters (w_j, b_j, a_j) of every unit and the offset c, as rows at `step`."""
    rows = [
        {"name": name, "value": v, "unit": j, "step": step}
        for name, p in zip(UNIT, _units(model), strict=True)
        for j, v in enumerate(p.tolist())
    ]
    return rows + [{"name": "readout_bias", "value": float(model.readout.bias.detach()[0]), "step": step}]


def _training(config: ReluElbowsConfig, context: Context, generator: torch.Generator) -> pd.DataFrame:
    """Full-batch GD from one initialisation at every step fraction of 2/lambda_max: "train_loss" and
    "dead_units" every `record_every` steps, "diverged", the largest change of the units dead at init
    ("dead_at_init_change"); "sharpness" and "dead_at_init" at init; for the drawn fraction the units'
    parameters at init and at the end (`UNIT`, "readout_bias") and the share of slope change near a bend
    ("near_bend_weight")."""
    model = _initial_network(config, generator)
    x, y = _target(config)
    loss_fn = nn.MSELoss()
    sharpness = ProbeSet([Sharpness(tol=1e-8, max_iter=200)], model, loss_fn, (x, y)).measure(0)["sharpness"]
    start = _units(model)
    dead = dead_units(start[0], start[1], x[:, 0])
    rows = [{"name": "sharpness", "value": sharpness, "step": 0}, {"name": "dead_at_init", "value": int(dead.sum())}]
    for fraction in sorted({*config.step_fractions, config.shown_fraction}):
        net = copy.deepcopy(model).to(context.device)
        every = config.record_every
        probes = ProbeSet(
            [LossProbe(every, None), ActivationStats(every, num_inputs=config.n_train)], net, loss_fn, (x, y)
        )
        optimizer = torch.optim.SGD(net.parameters(), lr=fraction * 2.0 / sharpness)
        trained = fit(net, loss_fn, (x, y), optimizer, config.steps, probes=probes)
        if trained.steps % every:
            probes.measure(trained.steps)
        history = probes.to_frame()
        loss = select(history, "train/loss").assign(name="train_loss")
        killed = select(history, "act/hidden.0/dead").assign(name="dead_units")
        killed["value"] = (killed["value"] * config.width).round()
        change = max(
            float((p - p0)[dead].abs().max()) if dead.any() else 0.0 for p, p0 in zip(_units(net), start, strict=True)
        )
        rows += [
            *(loss.assign(step_fraction=fraction).to_dict("records")),
            *(killed.assign(step_fraction=fraction).to_dict("records")),
            {"name": "diverged", "value": float(trained.diverged), "step_fraction": fraction},
            {"name": "dead_at_init_change", "value": change, "step_fraction": fraction},
        ]
        if fraction == config.shown_fraction:
            rows += _unit_rows(model, 0) + _unit_rows(net, config.steps)
            for step, m in ((0, model), (config.steps, net)):
                weight = _near_knot_weight(*_units(m), x[:, 0])
                rows.append({"name": "near_bend_weight", "value": weight, "step": step, "step_fraction": fraction})
    return pd.DataFrame(rows)


def _initial_network(config: ReluElbowsConfig, generator: torch.Generator) -> MLP:
    """The trained network at initialisation: N(0, 1) weights and biases, He readout, float64."""
    model = MLP(1, 1, width=config.width, depth=1, init="normal", bias_init_std=1.0, seed=generator)
    initialise(model.readout, "he", generator=generator)
    return model.to(dtype=torch.float64)


def _kills(config: ReluElbowsConfig, context: Context) -> pd.DataFrame:
    """Dead units after `steps` GD steps at the two `kill_fractions`, for the initialisations
    of seeds seed + 1 .. seed + kill_seeds - 1 (seed itself is the net of `_training`). All 2 (kill_seeds - 1)
    runs train at once as `Members`; member m's loss is weighted by eta_m / eta_0, so SGD with step eta_0 takes
    its own step eta_m = fraction x 2 / lambda_max(m). Rows "kill_dead" (columns seed, step_fraction) and
    "kill_diverged"."""
    x, y = _target(config)
    loss_fn = nn.MSELoss()
    low, high = config.kill_fractions
    models, etas, keys = [], [], []
    for k in range(1, config.kill_seeds):
        model = _initial_network(config, torch.Generator().manual_seed(config.seed + k))
        sharpness = ProbeSet([Sharpness(tol=1e-8, max_iter=200)], model, loss_fn, (x, y)).measure(0)["sharpness"]
        for fraction in (low, high):
            models.append(copy.deepcopy(model))
            etas.append(fraction * 2.0 / sharpness)
            keys.append((k, fraction))
    members = Members(StackedModels.of(models)).to(context.device)
    weights = torch.tensor(etas, dtype=torch.float64, device=context.device) / etas[0]
    each = member_losses(loss_fn)
    targets = y[:, None, :].expand(-1, len(models), -1).to(context.device)
    trained = fit(
        members,
        lambda outputs, t: (weights * each(outputs, t.movedim(1, 0))).sum(),
        (x.to(context.device), targets),
        torch.optim.SGD(members.parameters(), lr=etas[0]),
        config.steps,
    )
    weight, bias = (p.detach().cpu().reshape(len(models), config.width) for p in list(members.parameters())[:2])
    dead = dead_units(weight, bias, x[:, 0]).sum(dim=-1)
    rows = [
        {"name": "kill_dead", "value": float(d), "seed": k, "step_fraction": f}
        for (k, f), d in zip(keys, dead.tolist(), strict=True)
    ]
    return pd.DataFrame(rows + [{"name": "kill_diverged", "value": float(trained.diverged)}])


def _interpolants(config: ReluElbowsConfig, context: Context) -> pd.DataFrame:
    """For K pieces: the MLP loaded with the interpolant's weights, its largest error at the knots and on a 4001-point
    grid, the bound h^2 max|g''| / 8, and its values at the knots ("interpolant_at_knot", column x)."""
    grid, rows = np.linspace(-2.0, 2.0, 4001), []
    for pieces in config.knots:
        knots = np.linspace(-2.0, 2.0, pieces + 1)
        mlp = _load_interpolant(relu_interpolant(knots, smooth_target(knots))).to(context.device)
        with torch.no_grad():
            at_knots, on_grid = (
                mlp(torch.as_tensor(t, dtype=torch.float64, device=context.device)[:, None])[:, 0].cpu().numpy()
                for t in (knots, grid)
            )
        errors = {
            "knot_error": np.abs(at_knots - smooth_target(knots)).max(),
            "sup_error": np.abs(on_grid - smooth_target(grid)).max(),
            "error_bound": interpolation_error_bound(knots, SMOOTH_CURVATURE),
        }
        rows += [{"name": f"interpolant_{key}", "value": v, "pieces": pieces} for key, v in errors.items()]
        rows += [
            {"name": "interpolant_at_knot", "value": v, "pieces": pieces, "x": k}
            for k, v in zip(knots, at_knots, strict=True)
        ]
    return pd.DataFrame(rows)


def checks(metrics: pd.DataFrame, config: ReluElbowsConfig) -> list[Check]:
    out = [
        Check.at_least(
            "Kolmogorov-Smirnov test of the elbows against the standard Cauchy law: p-value",
            value(metrics, "ks_pvalue"),
            KS_LEVEL,
            detail=f"{config.elbow_units} elbows -b/w with w, b ~ N(0, 1); statistic D = "
            f"{value(metrics, 'ks_statistic'):.2e}; the test does not reject at the {KS_LEVEL:.0%} "
            f"level when p >= {KS_LEVEL}",
        )
    ]
    for a in INTERVALS:
        p = float(cauchy.cauchy_interval_probability(a))
        out.append(
            Check.absolute(
                f"fraction of elbows in [-{a:g}, {a:g}]",
                value(metrics, "fraction_in_interval", half_width=a),
                p,
                STANDARD_ERRORS * math.sqrt(p * (1 - p) / config.elbow_units),
                detail=f"theory (2/pi) arctan({a:g}) = {p:.4f}; tolerance {STANDARD_ERRORS:g} binomial standard "
                f"errors sqrt(p (1 - p) / {config.elbow_units})",
            )
        )
    largest, (sizes, medians) = max(config.group_sizes), series(metrics, "median_abs_group_mean", "group_size")
    groups = config.elbow_units // largest
    # sample median of |mean| ~ N(1, (1/4) / (groups f(1)^2)) with f(1) = 1/pi the density of |Cauchy| at 1
    out.append(
        Check.absolute(
            f"median |mean of {largest} elbows| (no law of large numbers)",
            value(metrics, "median_abs_group_mean", group_size=largest),
            cauchy.median_abs_mean(),
            STANDARD_ERRORS * math.pi / (2.0 * math.sqrt(groups)),
            detail=f"{groups} groups; the mean of n standard Cauchy variables is standard Cauchy, median |.| = 1 "
            f"for every n (a law with a variance would give ~0.67 sd/sqrt(n)); tolerance {STANDARD_ERRORS:g} "
            f"standard errors pi/(2 sqrt(groups)) of a sample median; all n: "
            + ", ".join(f"n={int(n)}: {v:.3f}" for n, v in zip(sizes, medians, strict=True)),
        )
    )
    out.append(_kill_check(metrics, config))
    near = series(metrics, "near_bend_weight")[1]
    before, after = float(near[0]), float(near[-1])
    out.append(
        Check.holds(
            "training moves the elbows to the bends of the target",
            after > before and not value(metrics, "diverged", step_fraction=config.shown_fraction),
            measured=after,
            detail=f"share of the slope changes |a_j w_j| of live units within {NEAR_KNOT} of a bend "
            f"({', '.join(f'{k:g}' for k in TARGET_KNOTS[1:-1])}): {before:.3f} at init, {after:.3f} "
            f"after {config.steps} GD steps at eta = {config.shown_fraction:g} x 2/lambda_max",
        )
    )
    pieces, errors = series(metrics, "interpolant_sup_error", "pieces")
    out.append(
        Check.at_most(
            "interpolating ReLU net: largest error at its knots",
            float(select(metrics, "interpolant_knot_error")["value"].max()),
            1e-12,
            detail=f"g(x) = sin(3x) on [-2, 2], K = {list(config.knots)} pieces, an MLP with K units in float64 "
            "loaded with the weights of `relu_interpolant`; exact up to rounding",
        )
    )
    out.append(
        Check.at_most(
            "interpolating ReLU net: sup error / (h^2 max|g''| / 8), worst K",
            float((errors / series(metrics, "interpolant_error_bound", "pieces")[1]).max()),
            1.0,
            detail="the interpolation error bound of de Boor (2001) on a 4001-point grid; errors "
            + ", ".join(f"K={int(k)}: {e:.2e}" for k, e in zip(pieces, errors, strict=True)),
        )
    )
    return out


def figures(metrics: pd.DataFrame, config: ReluElbowsConfig) -> dict[str, Figure]:
    return {
        "cauchy_elbows": _cauchy_figure(metrics, config),
        "training": _training_figure(metrics, config),
        "interpolants": _interpolant_figure(metrics, config),
    }


def _near_knot_weight(w: Tensor, b: Tensor, a: Tensor, x: Tensor) -> float:
    """Share of sum_j |a_j w_j| over live units with elbow inside the data range that sits near a bend."""
    e = -b / w
    weight = (a * w).abs() * (~dead_units(w, b, x)) * (e > x.min()) * (e < x.max())
    near = torch.zeros_like(e, dtype=torch.bool)
    for knot in TARGET_KNOTS[1:-1]:
        near |= (e - knot).abs() <= NEAR_KNOT
    return float((weight * near).sum() / weight.sum())


def _load_interpolant(net: ReluInterpolant) -> MLP:
    mlp = MLP(1, 1, width=net.weight.size, depth=1, init="zeros").double()
    with torch.no_grad():
        mlp.hidden[0].linear.weight.copy_(torch.as_tensor(net.weight)[:, None])
        mlp.hidden[0].linear.bias.copy_(torch.as_tensor(net.bias))
        mlp.readout.weight.copy_(torch.as_tensor(net.readout)[None, :])
        mlp.readout.bias.fill_(net.offset)
    return mlp


# -------------------------------------------------------------------------------------------- figures
def _cauchy_figure(metrics: pd.DataFrame, config: ReluElbowsConfig) -> Figure:
    fig = Figure(figsize=(15.0, 4.4), layout="constrained")
    left, middle, right = fig.subplots(1, 3)
    elbow, density = series(metrics, "elbow_density", "elbow")
    edges = np.linspace(-10, 10, 101)
    left.hist(
        elbow,
        bins=edges,
        weights=density,
        color="C1",
        alpha=0.6,
        label=f"measured ({config.elbow_units} elbows)",
    )
    c = np.linspace(-10, 10, 400)
    left.plot(c, cauchy.cauchy_density(c), "-", color="C0", lw=1.5, label=r"Cauchy $1/(\pi(1+c^2))$")
    left.plot(c, np.exp(-(c**2) / 2) / np.sqrt(2 * np.pi), ":", color="0.4", lw=1.0, label="N(0, 1), for contrast")
    left.set_xlabel("elbow position $c = -b/w$")
    left.set_ylabel("density")
    left.set_title("Elbows at N(0, 1) initialisation")
    left.legend(fontsize=8)

    running = select(metrics, "running_mean")
    for k, stream in running.groupby("stream"):
        middle.semilogx(stream.n, stream.value, "-", lw=0.9, color=f"C{int(k)}")
    n = np.geomspace(1, running.n.max(), 200)
    middle.semilogx(n, 2 / np.sqrt(n), "--", color="0.4", lw=1.0, label=r"$\pm 2/\sqrt{n}$ (finite variance)")
    middle.semilogx(n, -2 / np.sqrt(n), "--", color="0.4", lw=1.0)
    middle.set_ylim(-6, 6)
    middle.set_xlabel("number of elbows $n$")
    middle.set_ylabel("running mean of the elbows")
    middle.set_title(f"Running means never settle ({STREAMS} streams)")
    middle.legend(fontsize=8)

    sizes, values = series(metrics, "median_abs_group_mean", "group_size")
    errors = STANDARD_ERRORS * np.pi / (2 * np.sqrt(config.elbow_units // sizes))
    right.errorbar(sizes, values, yerr=errors, fmt="o", color="C1", mfc="none", label="measured (3 s.e.)")
    right.axhline(cauchy.median_abs_mean(), color="C0", lw=1.5, label="Cauchy: 1 for every n")
    right.loglog(
        sizes,
        values[0] * np.sqrt(sizes[0] / sizes),
        "--",
        color="0.4",
        lw=1.0,
        label=r"$\propto 1/\sqrt{n}$ (a law with a variance)",
    )
    right.set_xlabel("group size $n$")
    right.set_ylabel("median |mean of n elbows|")
    right.set_title("No law of large numbers")
    right.legend(fontsize=8)
    return fig


def _training_figure(metrics: pd.DataFrame, config: ReluElbowsConfig) -> Figure:
    fig = Figure(figsize=(12.0, 8.5), layout="constrained")
    (a, b), (c, d) = fig.subplots(2, 2)
    x, y = (t[:, 0] for t in _target(config))
    grid = torch.linspace(-2.5, 2.5, 501, dtype=torch.float64)
    start, after = (
        tuple(torch.tensor(series(metrics, name, "unit", step=t)[1]) for name in UNIT) for t in (0, config.steps)
    )

    def net(params: tuple[Tensor, ...], step: int) -> NDArray:
        w, bias, out = params
        return (torch.relu(grid[:, None] * w + bias) @ out + value(metrics, "readout_bias", step=step)).numpy()

    a.plot(x.numpy(), y.numpy(), "o", color="0.3", ms=3, label="training data (target)")
    a.plot(grid.numpy(), net(start, 0), "-", color="C0", lw=1.2, label="network at init")
    a.plot(grid.numpy(), net(after, config.steps), "-", color="C1", lw=1.5, label=f"after {config.steps} steps")
    low, high = float(y.min()) - 0.8, float(y.max()) + 0.8
    for params, color, level in ((start, "C0", low + 0.15), (after, "C1", low + 0.4)):
        e = (-params[1] / params[0]).cpu().numpy()
        live = ~dead_units(params[0], params[1], x).cpu().numpy()
        a.plot(e[live], np.full(live.sum(), level), "|", color=color, ms=12, mew=1.5)
    for k in TARGET_KNOTS[1:-1]:
        a.axvline(k, color="0.5", ls=":", lw=1.0)
    a.set_xlim(-2.5, 2.5)
    a.set_ylim(low, high)
    a.set_xlabel("x")
    a.set_ylabel("f(x)")
    a.set_title(rf"Fit at $\eta$ = {config.shown_fraction:g} x 2/$\lambda_{{max}}$; ticks: elbows of live units")
    a.legend(fontsize=8)

    edges = np.linspace(-2, 2, 41)
    for params, color, label in ((start, "C0", "init"), (after, "C1", "trained")):
        w, bias, out = params[:3]
        e = (-bias / w).cpu().numpy()
        weight = ((out * w).abs() * ~dead_units(w, bias, x)).cpu().numpy()
        b.hist(e, bins=edges, weights=weight, histtype="step", color=color, lw=1.5, label=label)
    for k in TARGET_KNOTS[1:-1]:
        b.axvline(k, color="0.5", ls=":", lw=1.0)
    b.plot([], [], ":", color="0.5", label="bends of the target")
    b.set_xlabel("elbow position $-b/w$")
    b.set_ylabel(r"slope change $\sum |a_j w_j|$ (live units)")
    b.set_title("Elbows move to where the target bends")
    b.legend(fontsize=8)

    dead = select(metrics, "dead_units")
    fractions, diverged = series(metrics, "diverged", "step_fraction")
    for i, (fraction, curve) in enumerate(dead.groupby("step_fraction")):
        label = f"{fraction:g} x 2/λ" + (" (diverged)" if value(metrics, "diverged", step_fraction=fraction) else "")
        c.plot(curve.step, curve.value, "-", color=f"C{i}", label=label)
    c.set_xlabel("GD step")
    c.set_ylabel(f"dead units (of {config.width})")
    c.set_title("Units die early, and a few more with long training")
    c.legend(fontsize=8, ncol=2)

    ok = diverged == 0
    first, last = (dead.sort_values("step").groupby("step_fraction")["value"].agg(k) for k in ("first", "last"))
    d.plot(fractions[ok], last.to_numpy()[ok] / config.width, "o-", color="C3", label=f"after {config.steps} steps")
    d.plot(fractions, first.to_numpy() / config.width, "--", color="0.4", label="at initialisation")
    if not ok.all():
        d.plot(fractions[~ok], np.ones((~ok).sum()), "x", color="k", ms=8, label="diverged")
    d.set_xlabel(r"step size $\eta$ in units of $2/\lambda_{max}$ at init")
    d.set_ylabel("fraction of dead units")
    d.set_title("Large steps kill units")
    d.legend(fontsize=8)
    fig.suptitle(f"Training a one-input ReLU net of {config.width} units (full-batch GD, mean squared error)")
    return fig


def _kill_check(metrics: pd.DataFrame, config: ReluElbowsConfig) -> Check:
    """Large steps kill units: the one-sided Wilcoxon signed-rank test over seeds (module docstring)."""
    low, high = config.kill_fractions
    final = select(metrics, "dead_units").sort_values("step").groupby("step_fraction")["value"].last()
    small, large = [final[low]], [final[high]]
    kills = select(metrics, "kill_dead")
    for _, seed in kills.groupby("seed"):
        by = seed.set_index("step_fraction")["value"]
        small.append(by[low])
        large.append(by[high])
    difference = np.array(large) - np.array(small)
    diverged = value(metrics, "kill_diverged") or value(metrics, "diverged", step_fraction=high)
    if diverged or not difference.any():
        p_value = 1.0
    else:
        p_value = float(stats.wilcoxon(difference, alternative="greater", method="exact").pvalue)
    return Check.at_most(
        f"large steps kill units: one-sided Wilcoxon signed-rank p-value (alpha = {KILL_LEVEL:g})",
        p_value,
        KILL_LEVEL,
        detail=f"dead units of {config.width} after {config.steps} GD steps at eta = {high:g} x 2/lambda_max minus at "
        f"{low:g} x 2/lambda_max, {len(difference)} initialisations: "
        + ", ".join(f"{int(a)}-{int(b)}" for a, b in zip(large, small, strict=True))
        + f"; H1: more die at the large step; passes when p < {KILL_LEVEL:g}"
        + ("; the large step diverged" if diverged else ""),
    )


def _interpolant_figure(metrics: pd.DataFrame, config: ReluElbowsConfig) -> Figure:
    fig = Figure(figsize=(11.0, 4.2), layout="constrained")
    left, right = fig.subplots(1, 2)
    grid = np.linspace(-2.0, 2.0, 4001)
    left.plot(grid, smooth_target(grid), "-", color="0.3", lw=2.0, label=r"$g(x) = \sin 3x$")
    for k, pieces in enumerate(sorted(config.knots)[:3]):
        knots, at_knots = series(metrics, "interpolant_at_knot", "x", pieces=pieces)
        left.plot(knots, at_knots, "-", color=f"C{k}", lw=1.0, label=f"{pieces} units")  # linear between knots
        left.plot(knots, smooth_target(knots), "o", color=f"C{k}", ms=3)
    left.set_xlabel("x")
    left.set_ylabel("f(x)")
    left.set_title("One hidden layer of elbows: the interpolant, exact at its knots")
    left.legend(fontsize=8)
    pieces = np.array(config.knots)
    bounds, errors = (
        np.array([value(metrics, f"interpolant_{name}", pieces=k) for k in pieces])
        for name in ("error_bound", "sup_error")
    )
    right.loglog(pieces, bounds, "-", color="C0", label=r"bound $h^2 \max|g''| / 8$")
    right.loglog(pieces, errors, "o", color="C1", mfc="none", label="measured sup error")
    right.set_xticks(pieces, labels=[str(k) for k in pieces])
    right.xaxis.set_minor_locator(NullLocator())
    right.set_xlabel("hidden units K (pieces)")
    right.set_ylabel(r"$\max_x |f(x) - g(x)|$")
    right.set_title(r"Error falls like $1/K^2$")
    right.legend(fontsize=8)
    return fig


EXPERIMENT = Experiment(
    name="relu-elbows",
    claim="A one-input ReLU net is piecewise linear with an elbow at -b/w per unit: at N(0, 1) initialisation "
    "the elbows are Cauchy distributed (no mean), training moves them to where the target bends, dead units "
    "stop learning and large steps kill units, and one hidden layer of elbows interpolates any continuous "
    "function exactly at its knots.",
    config=ReluElbowsConfig,
    measure=measure,
    checks=checks,
    figures=figures,
    presets={
        "full": {
            "elbow_units": 2**23,
            "group_sizes": (16, 256, 4096, 65536),
            "width": 256,
            "n_train": 256,
            "steps": 20000,
            "step_fractions": (0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0, 1.2, 2.0),
            "kill_fractions": (0.2, 2.0),
            "record_every": 100,
            "knots": (2, 4, 8, 16, 32, 64, 128, 256),
        }
    },
    references=(
        "Arora, Basu, Mianjy & Mukherjee (2018), Understanding deep neural networks with rectified linear units, ICLR",
        "Lu, Shin, Su & Karniadakis (2020), Dying ReLU and initialization: theory and numerical examples",
        "de Boor (2001), A Practical Guide to Splines, ch. III",
    ),
    part="signal propagation",
)
