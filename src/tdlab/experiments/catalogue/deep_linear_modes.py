"""deep-linear-modes: a deep linear network learns the singular modes of its target one at a time, the mode of
singular value s at a time proportional to 1/s, and its loss shows a plateau between modes (Saxe et al. 2014).

A depth-N linear network f(x) = W_N ... W_1 x (`tdlab.models.MLP` with the "linear" activation and no bias) is
trained by full-batch gradient descent (`tdlab.train.fit`, step eta) on the squared loss against a target map
W* = U diag(s) V^T with known singular values, on whitened inputs (X^T X / n = I), so that the loss is exactly
(1/2) |W_N ... W_1 - W*|_F^2. It starts small and in Saxe et al.'s decoupled, balanced form: W_1 = b R_1 V^T,
W_l = b R_l R_{l-1}^T, W_N = b U R_{N-1}^T with orthonormal R_l, so that every mode i starts at the strength
a_i(0) = u_i^T W_N ... W_1 v_i = b^N = a0 and the modes evolve independently. Measured every step: each mode's
strength a_i(t) and the loss.

Theory (gradient flow with time t * eta, each layer's mode factor equal by balance, a = (factor)^N):

    da/dt = N a^(2 - 2/N) (s - a) eta                                       (Saxe et al. 2014, Eq. 12 for N = 2;
                                                                              Arora et al. 2018 for any N)

For N = 2 it integrates in closed form, the sigmoid a(t) = s e^(2 s eta t) / (e^(2 s eta t) - 1 + s / a0), which
reaches s/2 at t_half = ln(s / a0 - 1) / (2 s eta): proportional to 1/s up to the logarithm. For N = 3 the flow is
integrated numerically (`mode_strength_flow`), and t_half ~ a0^(-1/3) / (eta s). The loss (1/2) sum_i (s_i - a_i)^2
therefore sits on the plateau (1/2) sum_{j > i} s_j^2 between the learning of mode i and of mode i + 1.

Checks, per depth (each can fail):

1. trajectory: the step at which each mode crosses a/s = 0.1, 0.2, ..., 0.9 against the flow's, worst relative
   error <= 5% (GD lags the flow by about eta s / 2 per unit time: 2% for the fastest mode here); a network that
   learned its modes together, exponentially instead of sigmoidally, or at a rate not proportional to s fails it;
2. the claim's scaling: the spread max_i / min_i of s_i t_half,i - 1 at most the flow's own spread (the
   logarithm's, ~10%) + 0.05; t_half proportional to 1/s^2 or independent of s gives a spread of 300%;
3. the plateaus: the loss midway (geometric mean of the half-times) between two consecutive modes against
   (1/2) sum_{j > i} s_j^2, within 10%; modes learned simultaneously give no plateau and fail it.

Depth 2 from a small random Gaussian initialisation (not decoupled) learns its modes in the same order
(the figure shows it; it is checked: half-times ordered by s, s t_half spread within 25%).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from pydantic import Field, field_validator, model_validator
from scipy.integrate import solve_ivp
from torch import Tensor

from tdlab.data import half_squared_error
from tdlab.experiments.base import Check, Context, Experiment, ExperimentConfig
from tdlab.experiments.tidy import rows, series
from tdlab.models import MLP
from tdlab.train.trainer import fit

LEVELS = np.round(np.arange(0.1, 0.91, 0.1), 2)  # fractions of s whose crossing times are compared with the flow
TIME_TOLERANCE = 0.05
SPREAD_SLACK = 0.05
PLATEAU_TOLERANCE = 0.10
RANDOM_SPREAD = 0.25


class DeepLinearModesConfig(ExperimentConfig):
    """A rank-3 target with singular values 4, 2, 1; depths 2 and 3 from decoupled small initialisations."""

    singular_values: tuple[float, ...] = Field((4.0, 2.0, 1.0), description="the target's singular values s_i")
    in_features: int = Field(6, ge=1, description="input dimension d")
    out_features: int = Field(5, ge=1, description="output dimension")
    width: int = Field(8, ge=1, description="hidden width (at least the number of modes)")
    examples: int = Field(32, ge=1, description="training inputs, whitened (at least in_features)")
    depths: tuple[int, ...] = Field((2, 3), min_length=1, description="numbers of weight matrices N >= 2")
    initial_strengths: tuple[float, ...] = Field(
        (1e-6, 1e-3), description="a0 = u_i^T W v_i at the start, one per depth (b = a0^(1/N) per layer)"
    )
    random_init: bool = Field(True, description="also train depth 2 from a random Gaussian initialisation")
    eta: float = Field(0.01, gt=0.0, description="the GD step")
    steps: int = Field(1100, ge=10, description="GD steps for every network")

    @field_validator("singular_values")
    @classmethod
    def _distinct(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if len(value) < 2 or any(s <= 0 for s in value) or len(set(value)) != len(value):
            raise ValueError(f"expected at least 2 distinct positive singular values, got {value}")
        return tuple(sorted(value, reverse=True))

    @model_validator(mode="after")
    def _consistent(self) -> DeepLinearModesConfig:
        r = len(self.singular_values)
        if r > min(self.in_features, self.out_features, self.width):
            raise ValueError(
                f"singular_values: expected at most min(in_features, out_features, width) = "
                f"{min(self.in_features, self.out_features, self.width)} modes, got {r}"
            )
        if self.examples < self.in_features:
            raise ValueError(f"examples: expected at least in_features = {self.in_features}, got {self.examples}")
        if any(n < 2 for n in self.depths) or len(set(self.depths)) != len(self.depths):
            raise ValueError(f"depths: expected distinct numbers of weight matrices >= 2, got {self.depths}")
        if len(self.initial_strengths) != len(self.depths) or any(
            not 0 < a < min(self.singular_values) / 2 for a in self.initial_strengths
        ):
            raise ValueError(
                f"initial_strengths: expected one value in (0, min(s)/2) per depth {self.depths}, "
                f"got {self.initial_strengths}"
            )
        return self


def sigmoid_strength(s: float, a0: float, eta: float, t: np.ndarray) -> np.ndarray:
    """Saxe et al.'s closed form for depth 2: a(t) = s e^(2 s eta t) / (e^(2 s eta t) - 1 + s/a0).

    Example:
        >>> t_half = math.log(2.0 / 1e-3 - 1) / (2 * 2.0 * 0.01)
        >>> round(float(sigmoid_strength(2.0, 1e-3, 0.01, np.array([t_half]))[0]), 12)
        1.0
    """
    growth = np.exp(2 * s * eta * np.asarray(t, dtype=float))
    return s * growth / (growth - 1 + s / a0)


def mode_strength_flow(s: float, a0: float, eta: float, depth: int, t: np.ndarray) -> np.ndarray:
    """a(t) of the balanced depth-N flow da/dt = N a^(2 - 2/N) (s - a) eta, from a(0) = a0, at the times t
    (the closed form for N = 2, a numerical solution with relative tolerance 1e-10 otherwise).

    Example:
        >>> t = np.array([0.0, 50.0, 200.0])
        >>> np.allclose(mode_strength_flow(2.0, 1e-3, 0.01, 2, t), sigmoid_strength(2.0, 1e-3, 0.01, t), rtol=1e-9)
        True
    """
    t = np.asarray(t, dtype=float)
    if depth == 2:
        return sigmoid_strength(s, a0, eta, t)
    power = 2 - 2 / depth
    solution = solve_ivp(
        lambda _, a: depth * np.abs(a) ** power * (s - a) * eta,
        (0.0, float(t.max())),
        [a0],
        t_eval=t,
        method="LSODA",
        rtol=1e-10,
        atol=1e-14 * s,
    )
    return solution.y[0]


def crossing_times(t: np.ndarray, a: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """The first time a(t) reaches each level, interpolated linearly between samples; nan if it never does.

    Example:
        >>> crossing_times(np.array([0.0, 1.0, 2.0]), np.array([0.0, 0.2, 1.0]), np.array([0.1, 0.6])).tolist()
        [0.5, 1.5]
    """
    out = np.full(len(levels), np.nan)
    for k, level in enumerate(levels):
        above = np.flatnonzero(a >= level)
        if above.size and above[0] > 0:
            i = above[0]
            out[k] = t[i - 1] + (level - a[i - 1]) / (a[i] - a[i - 1]) * (t[i] - t[i - 1])
        elif above.size:
            out[k] = t[0]
    return out


def _orthonormal(rows_: int, cols: int, generator: torch.Generator) -> Tensor:
    return torch.linalg.qr(torch.randn(rows_, cols, generator=generator, dtype=torch.float64))[0]


def _decoupled(model: MLP, U: Tensor, V: Tensor, b: float, generator: torch.Generator) -> None:
    """W_1 = b R_1 V^T, W_l = b R_l R_{l-1}^T, W_N = b U R_{N-1}^T (Saxe et al.'s decoupled, balanced start)."""
    layers = [layer.linear for layer in model.hidden_layers()] + [model.readout]
    R = [_orthonormal(model.width, U.shape[1], generator) for _ in range(len(layers) - 1)]
    maps = [R[0] @ V.T] + [R[l] @ R[l - 1].T for l in range(1, len(R))] + [U @ R[-1].T]
    with torch.no_grad():
        for layer, matrix in zip(layers, maps, strict=True):
            layer.weight.copy_(b * matrix)


def measure(config: DeepLinearModesConfig, context: Context) -> pd.DataFrame:
    """Per network (columns depth, init): "strength" (u_i^T W v_i per step and mode) and "loss" (per step, from 0:
    the initialisation, to `steps`); and "singular_value" (per mode)."""
    generator = torch.Generator().manual_seed(config.seed)
    d, k, r, n = config.in_features, config.out_features, len(config.singular_values), config.examples
    U, V = _orthonormal(k, r, generator), _orthonormal(d, r, generator)
    s = torch.tensor(config.singular_values, dtype=torch.float64)
    X = math.sqrt(n) * _orthonormal(n, d, generator)  # X^T X / n = I
    Y = X @ (U @ torch.diag(s) @ V.T).T
    device = context.device
    Xd, Yd, Ud, Vd = (t.to(device) for t in (X, Y, U, V))
    runs = [(depth, "decoupled", a0) for depth, a0 in zip(config.depths, config.initial_strengths, strict=True)]
    if config.random_init:
        runs.append((2, "random", config.initial_strengths[config.depths.index(2)] if 2 in config.depths else 1e-6))
    frames = [rows("singular_value", s.numpy(), mode=np.arange(r))]
    for depth, init, a0 in context.track(runs, "networks"):
        model = MLP(d, k, width=config.width, depth=depth - 1, activation="linear", bias=False, init="zeros")
        model = model.to(device=device, dtype=torch.float64)
        if init == "decoupled":
            _decoupled(model, U, V, a0 ** (1 / depth), generator)
        else:  # i.i.d. N(0, sigma^2) entries with E (u^T W_2 W_1 v)^2 = width sigma^4 = a0^2
            with torch.no_grad():
                for p in model.parameters():
                    p.copy_(
                        torch.randn(p.shape, generator=generator, dtype=torch.float64) * (a0**2 / config.width) ** 0.25
                    )
        strengths: list[Tensor] = []

        def record(*_: object, model: MLP = model, strengths: list[Tensor] = strengths) -> None:
            with torch.no_grad():
                strengths.append((Ud * model(Vd.T).T).sum(dim=0).cpu())  # u_i^T W v_i, W = the network's map

        record()
        optimizer = torch.optim.SGD(model.parameters(), lr=config.eta)
        trained = fit(model, half_squared_error, (Xd, Yd), optimizer, config.steps, callbacks=[record])
        with torch.no_grad():
            final_loss = float(half_squared_error(model(Xd), Yd))
        batch_loss = trained.metrics.query("name == 'train/batch_loss'")  # at step t: the loss of w_(t-1)
        losses = np.append(batch_loss.sort_values("step")["value"].to_numpy(), final_loss)
        a = torch.stack(strengths).numpy()
        steps = np.arange(a.shape[0])
        ids = {"depth": depth, "init": init}
        frames += [
            rows("strength", a, step=steps[:, None], mode=np.arange(r)).assign(**ids),
            rows("loss", losses, step=steps).assign(**ids),
        ]
    return pd.concat(frames, ignore_index=True)


def _crossings(metrics: pd.DataFrame, depth: int, init: str, s: np.ndarray) -> np.ndarray:
    """The measured steps at which each mode of one network crosses the LEVELS (fractions of s), mode x level."""
    times = []
    for i, s_i in enumerate(s):
        t, a = series(metrics, "strength", depth=depth, init=init, mode=i)
        times.append(crossing_times(t, a, LEVELS * s_i))
    return np.array(times)


def flow_times(s: np.ndarray, a0: float, eta: float, depth: int, horizon: float) -> np.ndarray:
    """The flow's crossing times of the LEVELS, mode x level, on a fine grid up to `horizon` steps."""
    grid = np.linspace(0.0, horizon, int(horizon * 20) + 1)
    return np.array([crossing_times(grid, mode_strength_flow(s_i, a0, eta, depth, grid), LEVELS * s_i) for s_i in s])


def checks(metrics: pd.DataFrame, config: DeepLinearModesConfig) -> list[Check]:
    """Per depth: crossing times against the flow, the spread of s t_half against the flow's, the plateaus; for
    the random start: the order and the spread."""
    s = np.asarray(config.singular_values)
    half = int(np.flatnonzero(LEVELS == 0.5)[0])
    out = []
    for depth, a0 in zip(config.depths, config.initial_strengths, strict=True):
        measured = _crossings(metrics, depth, "decoupled", s)
        theory = flow_times(s, a0, config.eta, depth, 2.0 * config.steps)
        error = np.abs(measured - theory) / theory
        worst = np.unravel_index(np.nanargmax(error), error.shape) if np.all(np.isfinite(error)) else (0, 0)
        worst_error = float(error[worst]) if np.all(np.isfinite(error)) else float("nan")
        product, product_theory = s * measured[:, half], s * theory[:, half]
        spread = float(product.max() / product.min() - 1)
        spread_theory = float(product_theory.max() / product_theory.min() - 1)
        name = f"depth {depth}"
        out.append(
            Check.at_most(
                f"{name}: steps to reach a/s = 0.1..0.9 vs the gradient flow{' (closed form)' if depth == 2 else ''}, "
                "worst relative error",
                worst_error,
                TIME_TOLERANCE,
                detail=f"{len(s)} modes x {len(LEVELS)} levels; worst: mode s = {s[worst[0]]:g} at a/s = "
                f"{LEVELS[worst[1]]:g} ({measured[worst]:.1f} vs {theory[worst]:.1f} steps); half-times "
                f"{', '.join(f'{m:.1f}' for m in measured[:, half])} (flow "
                f"{', '.join(f'{m:.1f}' for m in theory[:, half])}); "
                f"tolerance {TIME_TOLERANCE}: GD lags the flow by ~eta s/2 = {config.eta * s.max() / 2:.3f}; modes "
                "learned together, exponentially or at a rate not proportional to s fail it",
            )
        )
        out.append(
            Check.at_most(
                f"{name}: s_i t_half,i constant across modes: max/min - 1",
                spread,
                spread_theory + SPREAD_SLACK,
                detail=f"s t_half = {', '.join(f'{p:.1f}' for p in product)} for s = {', '.join(map(str, s))}; "
                "the flow's spread "
                f"{spread_theory:.3f} (the logarithm ln(s/a0)) + {SPREAD_SLACK}; t independent of s or ~1/s^2 "
                f"gives {s.max() / s.min() - 1:.1f}",
            )
        )
        t_loss, loss = series(metrics, "loss", depth=depth, init="decoupled")
        ratios = []
        for i in range(len(s) - 1):
            middle = math.sqrt(measured[i, half] * measured[i + 1, half])
            plateau = 0.5 * float(np.sum(s[i + 1 :] ** 2))
            at = float(np.interp(middle, t_loss, loss)) if math.isfinite(middle) else float("nan")
            ratios.append((middle, at, plateau))
        deviation = max(abs(at / plateau - 1) for _, at, plateau in ratios)
        out.append(
            Check.at_most(
                f"{name}: loss plateaus between modes: |loss / (1/2) sum_(j>i) s_j^2 - 1|, worst",
                float(deviation),
                PLATEAU_TOLERANCE,
                detail="; ".join(f"at step {m:.0f}: {at:.3f} vs {p:g}" for m, at, p in ratios)
                + f" (steps: geometric means of consecutive half-times); tolerance {PLATEAU_TOLERANCE}; modes learned "
                "together leave no plateau",
            )
        )
    if config.random_init:
        measured = _crossings(metrics, 2, "random", s)
        t_half = measured[:, half]
        product = s * t_half
        out.append(
            Check.holds(
                "depth 2, random small start: modes learned in decreasing order of s, s t_half spread <= "
                f"{RANDOM_SPREAD}",
                bool(np.all(np.diff(t_half) > 0)) and float(product.max() / product.min() - 1) <= RANDOM_SPREAD,
                detail=f"half-times {', '.join(f'{t:.1f}' for t in t_half)}, s t_half "
                f"{', '.join(f'{p:.1f}' for p in product)}; the measured a_i(0) differ from mode to mode, which the "
                f"logarithm ln(s/a_i(0)) turns into a spread of about 10-20%",
                measured=float(product.max() / product.min() - 1),
            )
        )
    return out


def figures(metrics: pd.DataFrame, config: DeepLinearModesConfig) -> dict[str, Figure]:
    """Each depth's mode strengths against the flow, the loss with its plateaus, and s t_half per mode."""
    s = np.asarray(config.singular_values)
    runs = [(depth, "decoupled", a0) for depth, a0 in zip(config.depths, config.initial_strengths, strict=True)]
    if config.random_init:
        runs.append((2, "random", None))
    fig = Figure(figsize=(5.0 * len(runs), 8.0), layout="constrained")
    axes = fig.subplots(2, len(runs), squeeze=False)
    for column, (depth, init, a0) in enumerate(runs):
        top, bottom = axes[0, column], axes[1, column]
        for i, s_i in enumerate(s):
            t, a = series(metrics, "strength", depth=depth, init=init, mode=i)
            top.plot(
                t,
                a,
                "o",
                color=f"C{i}",
                ms=2,
                mfc="none",
                markevery=max(1, len(t) // 120),
                label=f"mode {i + 1}, s = {s_i:g}",
            )
            if a0 is not None:
                top.plot(t, mode_strength_flow(s_i, a0, config.eta, depth, t), "-", color=f"C{i}", lw=1.0)
        top.set(xlabel="GD step", ylabel=r"mode strength $u_i^\top W_N\cdots W_1 v_i$")
        title = f"depth {depth}, " + ("decoupled start, lines: flow" if a0 is not None else "random small start")
        top.set_title(title)
        top.legend(fontsize=8)
        t, loss = series(metrics, "loss", depth=depth, init=init)
        bottom.semilogy(t, loss, "-", color="k", lw=1.2, label="training loss")
        for i in range(1, len(s)):
            bottom.axhline(0.5 * float(np.sum(s[i:] ** 2)), color="0.6", ls=":", lw=0.8)
        bottom.axhline(
            0.5 * float(np.sum(s**2)), color="0.6", ls=":", lw=0.8, label=r"plateaus $\frac{1}{2}\sum_{j>i}s_j^2$"
        )
        bottom.set(xlabel="GD step", ylabel="loss")
        bottom.set_title("The loss drops mode by mode, with plateaus between")
        bottom.legend(fontsize=8)
    fig.suptitle(
        "Deep linear networks learn singular modes one at a time "
        f"(target s = {', '.join(f'{v:g}' for v in s)}, eta = {config.eta:g})"
    )
    return {"modes": fig}


EXPERIMENT = Experiment(
    name="deep-linear-modes",
    claim="From a small initialisation a deep linear network learns the singular modes of its target one at a time, "
    "the mode of singular value s at a time proportional to 1/s, following the sigmoid of Saxe et al.'s exact "
    "solution, and its loss shows plateaus between modes.",
    config=DeepLinearModesConfig,
    measure=measure,
    checks=checks,
    figures=figures,
    presets={
        "full": {
            "singular_values": (8.0, 4.0, 2.0, 1.0),
            "in_features": 16,
            "out_features": 12,
            "width": 32,
            "examples": 64,
            "depths": (2, 3, 4),
            "initial_strengths": (1e-6, 1e-3, 3e-3),
            "eta": 0.005,
            "steps": 2200,
        }
    },
    references=(
        "Saxe, McClelland & Ganguli (2014), Exact solutions to the nonlinear dynamics of learning in deep linear "
        "neural networks, ICLR",
        "Saxe, McClelland & Ganguli (2019), A mathematical theory of semantic development in deep neural "
        "networks, PNAS",
        "Arora, Cohen & Hazan (2018), On the optimization of deep networks: implicit acceleration by "
        "overparameterization, ICML",
    ),
    part="loss landscapes",
)
