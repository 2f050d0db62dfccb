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
  parameters get exactly zero gradient and never move again. The steps are fractions of the stability bound
  2/lambda_max of the loss at initialisation (Lanczos, `tdlab.curvature`); large steps (and long training)
  kill units;
- one hidden layer of elbows represents the piecewise-linear interpolant of any function exactly
  (`tdlab.theory.piecewise_linear`): the MLP loaded with those weights is exact at its knots, and its error on
  a smooth function stays below h^2 max|g''| / 8.
"""

from __future__ import annotations

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

from tdlab.curvature import hessian_eigs
from tdlab.experiments.base import Check, Context, Experiment, ExperimentConfig, Result, legacy
from tdlab.models import MLP, initialise
from tdlab.oracles import Objective
from tdlab.theory import cauchy
from tdlab.theory.piecewise_linear import (
    ReluInterpolant,
    evaluate_interpolant,
    interpolation_error_bound,
    relu_interpolant,
)

KS_LEVEL = 0.01  # the significance level
STANDARD_ERRORS = 3.0  # sampling-error tolerance of the fractions and of the median |mean|
INTERVALS = (3.0, 10.0)  # the intervals [-a, a]
TARGET_KNOTS = (-2.0, -1.0, 0.5, 1.2, 2.0)  # the training target: piecewise linear, bends at -1, 0.5, 1.2
TARGET_VALUES = (0.0, 1.0, -0.5, 0.5, 0.0)
NEAR_KNOT = 0.15  # an elbow within this distance of a bend of the target is "at" it
SMOOTH_CURVATURE = 9.0  # max |g''| of the interpolated function g(x) = sin(3x)


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
    knots: tuple[int, ...] = Field((4, 8, 16, 32, 64), min_length=1, description="pieces of the interpolants")

    @field_validator("group_sizes", "knots")
    @classmethod
    def _positive(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(v < 1 for v in value):
            raise ValueError(f"expected positive integers, got {value}")
        return value

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


def train_replicas(
    params: tuple[Tensor, Tensor, Tensor, Tensor],
    x: Tensor,
    y: Tensor,
    lrs: Tensor,
    steps: int,
    record_every: int,
) -> tuple[tuple[Tensor, ...], NDArray, NDArray, NDArray]:
    """Full-batch gradient descent on the mean squared error of f(x) = c + sum_j a_j relu(w_j x + b_j), one
    replica per step size in `lrs`, all from the same parameters (w, b, a, c) of shapes (m,), (m,), (m,), ().

    Returns the final parameters (each with a leading replica axis), the loss per replica at every
    `record_every`-th step, the dead-unit counts at the same steps, and whether each replica diverged (a
    non-finite loss: its parameters are frozen at their last finite value).

    Example:
        >>> p = (torch.ones(2), torch.zeros(2), torch.ones(2), torch.tensor(0.0))
        >>> x = torch.linspace(-1, 1, 5)
        >>> final, losses, dead, diverged = train_replicas(p, x, x.clamp(min=0), torch.tensor([0.1]), 10, 5)
        >>> losses.shape, dead.shape, diverged.tolist()
        ((1, 3), (1, 3), [False])
    """
    replicas = lrs.numel()
    current = [p.detach().unsqueeze(0).repeat(replicas, *([1] * p.dim())).clone() for p in params]
    rate = [lrs.reshape(-1, *([1] * p.dim())) for p in params]
    diverged = torch.zeros(replicas, dtype=torch.bool, device=x.device)
    losses, dead = [], []
    for t in range(steps + 1):
        w, b, a, c = (p.requires_grad_(True) for p in current)
        z = x[None, :, None] * w[:, None, :] + b[:, None, :]
        f = torch.relu(z) @ a[:, :, None] + c[:, None, None]
        loss = (f[..., 0] - y).square().mean(dim=1)
        diverged |= ~torch.isfinite(loss)
        if t % record_every == 0 or t == steps:
            losses.append(loss.detach().cpu().numpy())
            dead.append(dead_units(w.detach(), b.detach(), x).sum(dim=-1).cpu().numpy())
        if t == steps:
            break
        grads = torch.autograd.grad(torch.where(diverged, 0.0, loss).sum(), current)
        with torch.no_grad():
            current = [
                torch.where(diverged.reshape(r.shape), p, p - r * g)
                for p, r, g in zip(current, rate, grads, strict=True)
            ]
    final = tuple(p.detach() for p in current)
    return final, np.stack(losses, axis=1), np.stack(dead, axis=1), diverged.cpu().numpy()


def run(config: ReluElbowsConfig, context: Context) -> Result:
    """Cauchy law of the elbows at init, elbows and dead units in training, exact interpolants."""
    device = context.device
    generator = torch.Generator().manual_seed(config.seed)
    rows: list[dict[str, float | int | str]] = []
    checks: list[Check] = []

    # -- the law of the elbows at N(0, 1) initialisation
    wide = MLP(1, 1, width=config.elbow_units, depth=1, init="normal", bias_init_std=1.0, seed=generator)
    sample = elbows(wide).double().numpy()
    del wide
    ks = stats.kstest(sample, "cauchy")
    checks.append(
        Check.at_least(
            "Kolmogorov-Smirnov test of the elbows against the standard Cauchy law: p-value",
            float(ks.pvalue),
            KS_LEVEL,
            detail=f"{sample.size} elbows -b/w with w, b ~ N(0, 1); statistic D = {ks.statistic:.2e}; "
            f"the test does not reject at the {KS_LEVEL:.0%} level when p >= {KS_LEVEL}",
        )
    )
    for a in INTERVALS:
        p = float(cauchy.cauchy_interval_probability(a))
        fraction = float(np.mean(np.abs(sample) <= a))
        error = STANDARD_ERRORS * math.sqrt(p * (1 - p) / sample.size)
        checks.append(
            Check.absolute(
                f"fraction of elbows in [-{a:g}, {a:g}]",
                fraction,
                p,
                error,
                detail=f"theory (2/pi) arctan({a:g}) = {p:.4f}; tolerance {STANDARD_ERRORS:g} binomial standard "
                f"errors sqrt(p (1 - p) / {sample.size})",
            )
        )
        rows.append({"name": "fraction_in_interval", "value": fraction, "half_width": a})
    median_abs = {}
    for n in config.group_sizes:
        groups = sample.size // n
        means = sample[: groups * n].reshape(groups, n).mean(axis=1)
        median_abs[n] = (float(np.median(np.abs(means))), groups)
        rows.append({"name": "median_abs_group_mean", "value": median_abs[n][0], "group_size": n})
    largest = max(config.group_sizes)
    value, groups = median_abs[largest]
    # sample median of |mean| ~ N(1, (1/4) / (groups f(1)^2)) with f(1) = 1/pi the density of |Cauchy| at 1
    tolerance = STANDARD_ERRORS * math.pi / (2.0 * math.sqrt(groups))
    checks.append(
        Check.absolute(
            f"median |mean of {largest} elbows| (no law of large numbers)",
            value,
            cauchy.median_abs_mean(),
            tolerance,
            detail=f"{groups} groups; the mean of n standard Cauchy variables is standard Cauchy, median |.| = 1 "
            f"for every n (a law with a variance would give ~0.67 sd/sqrt(n)); tolerance {STANDARD_ERRORS:g} "
            f"standard errors pi/(2 sqrt(groups)) of a sample median; all n: "
            + ", ".join(f"n={n}: {v:.3f}" for n, (v, _) in median_abs.items()),
        )
    )

    # -- training: elbows move to the bends of the target, large steps kill units
    dtype = torch.float64
    model = MLP(1, 1, width=config.width, depth=1, init="normal", bias_init_std=1.0, seed=generator)
    initialise(model.readout, "he", generator=generator)
    model = model.to(device=device, dtype=dtype)
    target = relu_interpolant(TARGET_KNOTS, TARGET_VALUES)
    x = torch.linspace(TARGET_KNOTS[0], TARGET_KNOTS[-1], config.n_train, dtype=dtype, device=device)
    y = torch.as_tensor(evaluate_interpolant(target, x.cpu().numpy()), dtype=dtype, device=device)
    objective = Objective(model, nn.MSELoss(), (x[:, None], y[:, None]))
    sharpness = float(hessian_eigs(objective, k=1, tol=1e-8, max_iter=200).eigenvalues[0])
    fractions = np.array(sorted({*config.step_fractions, config.shown_fraction}))
    lrs = torch.as_tensor(fractions * 2.0 / sharpness, dtype=dtype, device=device)
    start = (
        model.hidden[0].linear.weight[:, 0].detach(),
        model.hidden[0].linear.bias.detach(),
        model.readout.weight[0].detach(),
        model.readout.bias[0].detach(),
    )
    final, losses, dead, diverged = train_replicas(start, x, y, lrs, config.steps, config.record_every)
    recorded = np.append(np.arange(0, config.steps, config.record_every), config.steps)
    recorded = np.unique(recorded)
    for i, fraction in enumerate(fractions):
        rows += [
            {"name": "train_loss", "value": float(losses[i, k]), "step": int(t), "step_fraction": fraction}
            for k, t in enumerate(recorded)
        ]
        rows += [
            {"name": "dead_units", "value": float(dead[i, k]), "step": int(t), "step_fraction": fraction}
            for k, t in enumerate(recorded)
        ]
        rows.append({"name": "diverged", "value": float(diverged[i]), "step_fraction": fraction})
    dead_at_init = dead_units(start[0], start[1], x)
    moved = [
        float(
            max(
                (p[i] - s)[dead_at_init].abs().max() if dead_at_init.any() else 0.0
                for p, s in zip(final[:3], start[:3], strict=True)
            )
        )
        for i in range(len(fractions))
        if not diverged[i]
    ]
    checks.append(
        Check.at_most(
            "largest parameter change of the units dead at initialisation",
            max(moved) if moved else math.nan,
            0.0,
            detail=f"{int(dead_at_init.sum())} of {config.width} units have relu(w x + b) = 0 on every training "
            f"input at init: zero gradient, so exactly no change in any of the {len(moved)} runs that did not "
            "diverge",
        )
    )
    shown = int(np.flatnonzero(fractions == config.shown_fraction)[0])
    near_before = _near_knot_weight(*start[:3], x)
    near_after = _near_knot_weight(*(p[shown] for p in final[:3]), x)
    rows += [
        {"name": "near_bend_weight", "value": near_before, "step": 0, "step_fraction": config.shown_fraction},
        {
            "name": "near_bend_weight",
            "value": near_after,
            "step": config.steps,
            "step_fraction": config.shown_fraction,
        },
    ]
    checks.append(
        Check.holds(
            "training moves the elbows to the bends of the target",
            bool(near_after > near_before) and not bool(diverged[shown]),
            measured=near_after,
            detail=f"share of the slope changes |a_j w_j| of live units within {NEAR_KNOT} of a bend "
            f"({', '.join(f'{k:g}' for k in TARGET_KNOTS[1:-1])}): {near_before:.3f} at init, {near_after:.3f} "
            f"after {config.steps} GD steps at eta = {config.shown_fraction:g} x 2/lambda_max",
        )
    )

    # -- exact interpolants
    grid = np.linspace(-2.0, 2.0, 4001)
    interpolants, errors, bounds, knot_errors = {}, [], [], []
    for pieces in config.knots:
        knots = np.linspace(-2.0, 2.0, pieces + 1)
        net = relu_interpolant(knots, smooth_target(knots))
        mlp = _load_interpolant(net).to(device)
        with torch.no_grad():
            at_knots = mlp(torch.as_tensor(knots, dtype=dtype, device=device)[:, None])[:, 0].cpu().numpy()
            on_grid = mlp(torch.as_tensor(grid, dtype=dtype, device=device)[:, None])[:, 0].cpu().numpy()
        interpolants[pieces] = (knots, on_grid)
        knot_errors.append(float(np.abs(at_knots - smooth_target(knots)).max()))
        errors.append(float(np.abs(on_grid - smooth_target(grid)).max()))
        bounds.append(interpolation_error_bound(knots, SMOOTH_CURVATURE))
        rows += [
            {"name": "interpolant_knot_error", "value": knot_errors[-1], "pieces": pieces},
            {"name": "interpolant_sup_error", "value": errors[-1], "pieces": pieces},
            {"name": "interpolant_error_bound", "value": bounds[-1], "pieces": pieces},
        ]
    checks.append(
        Check.at_most(
            "interpolating ReLU net: largest error at its knots",
            max(knot_errors),
            1e-12,
            detail=f"g(x) = sin(3x) on [-2, 2], K = {list(config.knots)} pieces, an MLP with K units in float64 "
            "loaded with the weights of `relu_interpolant`; exact up to rounding",
        )
    )
    ratio = np.array(errors) / np.array(bounds)
    checks.append(
        Check.at_most(
            "interpolating ReLU net: sup error / (h^2 max|g''| / 8), worst K",
            float(ratio.max()),
            1.0,
            detail="the interpolation error bound of de Boor (2001) on a 4001-point grid; errors "
            + ", ".join(f"K={k}: {e:.2e}" for k, e in zip(config.knots, errors, strict=True)),
        )
    )

    figures = {
        "cauchy_elbows": _cauchy_figure(sample, median_abs),
        "training": _training_figure(config, start, final, shown, x, y, fractions, recorded, dead, diverged, losses),
        "interpolants": _interpolant_figure(config, grid, interpolants, errors, bounds),
    }
    return Result(metrics=pd.DataFrame(rows), checks=checks, figures=figures)


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
def _cauchy_figure(sample: NDArray, median_abs: dict[int, tuple[float, int]]) -> Figure:
    fig = Figure(figsize=(15.0, 4.4), layout="constrained")
    left, middle, right = fig.subplots(1, 3)
    edges = np.linspace(-10, 10, 101)
    inside = sample[np.abs(sample) <= 10]
    left.hist(
        inside,
        bins=edges,
        weights=np.full(inside.size, 1.0 / (sample.size * np.diff(edges)[0])),
        color="C1",
        alpha=0.6,
        label=f"measured ({sample.size} elbows)",
    )
    c = np.linspace(-10, 10, 400)
    left.plot(c, cauchy.cauchy_density(c), "-", color="C0", lw=1.5, label=r"Cauchy $1/(\pi(1+c^2))$")
    left.plot(c, np.exp(-(c**2) / 2) / np.sqrt(2 * np.pi), ":", color="0.4", lw=1.0, label="N(0, 1), for contrast")
    left.set_xlabel("elbow position $c = -b/w$")
    left.set_ylabel("density")
    left.set_title("Elbows at N(0, 1) initialisation")
    left.legend(fontsize=8)

    stream = sample[: min(sample.size, 2**16)].reshape(4, -1)
    n = np.arange(1, stream.shape[1] + 1)
    for k, row in enumerate(stream):
        middle.semilogx(n, np.cumsum(row) / n, "-", lw=0.9, color=f"C{k}")
    middle.semilogx(n, 2 / np.sqrt(n), "--", color="0.4", lw=1.0, label=r"$\pm 2/\sqrt{n}$ (finite variance)")
    middle.semilogx(n, -2 / np.sqrt(n), "--", color="0.4", lw=1.0)
    middle.set_ylim(-6, 6)
    middle.set_xlabel("number of elbows $n$")
    middle.set_ylabel("running mean of the elbows")
    middle.set_title("Running means never settle (4 streams)")
    middle.legend(fontsize=8)

    sizes = np.array(sorted(median_abs))
    values = np.array([median_abs[s][0] for s in sizes])
    groups = np.array([median_abs[s][1] for s in sizes])
    errors = STANDARD_ERRORS * np.pi / (2 * np.sqrt(groups))
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


def _training_figure(
    config: ReluElbowsConfig,
    start: tuple[Tensor, ...],
    final: tuple[Tensor, ...],
    shown: int,
    x: Tensor,
    y: Tensor,
    fractions: NDArray,
    recorded: NDArray,
    dead: NDArray,
    diverged: NDArray,
    losses: NDArray,
) -> Figure:
    fig = Figure(figsize=(12.0, 8.5), layout="constrained")
    (a, b), (c, d) = fig.subplots(2, 2)
    grid = torch.linspace(-2.5, 2.5, 501, dtype=x.dtype, device=x.device)

    def net(params: tuple[Tensor, ...]) -> NDArray:
        w, bias, out, offset = params
        return (torch.relu(grid[:, None] * w + bias) @ out + offset).cpu().numpy()

    after = tuple(p[shown] for p in final)
    g = grid.cpu().numpy()
    a.plot(x.cpu().numpy(), y.cpu().numpy(), "o", color="0.3", ms=3, label="training data (target)")
    a.plot(g, net(start), "-", color="C0", lw=1.2, label="network at init")
    a.plot(g, net(after), "-", color="C1", lw=1.5, label=f"after {config.steps} steps")
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

    for i, fraction in enumerate(fractions):
        label = f"{fraction:g} x 2/λ" + (" (diverged)" if diverged[i] else "")
        c.plot(recorded, dead[i], "-", color=f"C{i}", label=label)
    c.set_xlabel("GD step")
    c.set_ylabel(f"dead units (of {config.width})")
    c.set_title("Units die early, and a few more with long training")
    c.legend(fontsize=8, ncol=2)

    ok = ~diverged
    d.plot(fractions[ok], dead[ok, -1] / config.width, "o-", color="C3", label=f"after {config.steps} steps")
    d.plot(fractions, dead[:, 0] / config.width, "--", color="0.4", label="at initialisation")
    if diverged.any():
        d.plot(fractions[diverged], np.ones(diverged.sum()), "x", color="k", ms=8, label="diverged")
    d.set_xlabel(r"step size $\eta$ in units of $2/\lambda_{max}$ at init")
    d.set_ylabel("fraction of dead units")
    d.set_title("Large steps kill units")
    d.legend(fontsize=8)
    fig.suptitle(f"Training a one-input ReLU net of {config.width} units (full-batch GD, mean squared error)")
    return fig


def _interpolant_figure(
    config: ReluElbowsConfig,
    grid: NDArray,
    interpolants: dict[int, tuple[NDArray, NDArray]],
    errors: list[float],
    bounds: list[float],
) -> Figure:
    fig = Figure(figsize=(11.0, 4.2), layout="constrained")
    left, right = fig.subplots(1, 2)
    left.plot(grid, smooth_target(grid), "-", color="0.3", lw=2.0, label=r"$g(x) = \sin 3x$")
    for k, pieces in enumerate(sorted(interpolants)[:3]):
        knots, values = interpolants[pieces]
        left.plot(grid, values, "-", color=f"C{k}", lw=1.0, label=f"{pieces} units")
        left.plot(knots, smooth_target(knots), "o", color=f"C{k}", ms=3)
    left.set_xlabel("x")
    left.set_ylabel("f(x)")
    left.set_title("One hidden layer of elbows: the interpolant, exact at its knots")
    left.legend(fontsize=8)
    pieces = np.array(config.knots)
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
    **legacy(run),
    presets={
        "full": {
            "elbow_units": 2**23,
            "group_sizes": (16, 256, 4096, 65536),
            "width": 256,
            "n_train": 256,
            "steps": 20000,
            "step_fractions": (0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0, 1.2),
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
