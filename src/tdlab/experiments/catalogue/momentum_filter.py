r"""momentum-filter: the heavy-ball buffer is a first-order low-pass filter of the gradient sequence.

`torch.optim.SGD(lr, momentum=beta)` keeps the buffer b_k = beta b_{k-1} + g_k and steps w_{k+1} = w_k - lr b_k.
As a linear time-invariant filter of the gradients, b = sum_j beta^j g_{k-j}, its frequency response is

.. math:: H(\omega) = \sum_{j \ge 0} \beta^j e^{-i \omega j} = \frac{1}{1 - \beta e^{-i\omega}}, \qquad
    |H(\omega)| = \frac{1}{\sqrt{1 - 2\beta\cos\omega + \beta^2}},

from 1/(1 - beta) at omega = 0 down to 1/(1 + beta) at omega = pi: slowly varying gradient components are amplified
by (1 + beta)/(1 - beta) relative to the fastest (alternating) ones, and the half-power bandwidth shrinks like
1 - beta. The lectures' smoothed gradient a_k = (1 - beta') a_{k-1} + beta' g_k (`tdlab.optim.reference`,
`LectureMomentum`, beta' = 1 - beta) is the same filter normalised to unit gain at omega = 0, (1 - beta) H.
By Parseval, white gradient noise of variance sigma^2 leaves the buffer with the stationary variance
sigma^2 (1/2pi) int |H|^2 = sigma^2 / (1 - beta^2), while a constant gradient is amplified by 1/(1 - beta): per unit of
signal, momentum passes (1 - beta)/(1 + beta) of the noise variance.

Measurement (open loop, float64): each coordinate of one parameter tensor receives the gradient g_k = cos(omega k)
(p.grad is set, no loss), and is stepped by torch's `SGD(lr=1, momentum=beta, dampening=0)` and, separately, by
tdlab's `LectureMomentum(lr=1, beta=1 - beta)`. After `burn_in` steps (the transient beta^k has decayed below 1e-10)
the update u_k = w_k - w_{k+1} over a `window` of steps is fitted by least squares to c cos(omega k) + s sin(omega k):
gain = sqrt(c^2 + s^2), phase = atan2(-s, c). For the noise, `chains` independent coordinates per beta receive i.i.d.
N(0, 1) gradients for as many steps as the variance needs to settle (to 1e-6); the buffers at the last step are then
independent draws of the stationary law.

How the checks fail: a different update (dampening, Nesterov's look-ahead, the buffer b_k = g_k - beta b_{k-1}, a
mis-mapped beta in the lecture form) changes the gain or phase at every omega by far more than the 1e-6 tolerance (the
fit is exact up to rounding once the transient is gone); a high-pass or flat filter fails the monotone-gain check; a
wrong stationary variance (e.g. 1/(1 - beta)^2, the constant-gradient gain squared) falls outside the chi-square
interval by tens of standard errors.
"""

from __future__ import annotations

import math
from typing import Annotated

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from numpy.typing import NDArray
from pydantic import Field, model_validator
from scipy import stats

from tdlab.experiments.base import Check, Context, Experiment, ExperimentConfig
from tdlab.experiments.tidy import rows, table, value
from tdlab.optim.reference import LectureMomentum

Beta = Annotated[float, Field(gt=0.0, lt=1.0)]
TRANSIENT = 1e-10  # beta_max^burn_in must fall below this (1e-4 of the gain tolerance): the fit sees the steady state
STATIONARY = 1e-6  # the noise runs until beta_max^(2k), the relative transient of the variance, falls below this
GAIN_TOLERANCE = 1e-6  # relative; rounding of a float64 least-squares fit is ~1e-12
PHASE_TOLERANCE = 1e-6  # radians
ALPHA = 0.05  # family-wise significance of the noise-variance tests (Bonferroni over the betas)
FORMS = ("torch", "lecture")  # SGD(momentum=beta) and LectureMomentum(beta' = 1 - beta)


class MomentumFilterConfig(ExperimentConfig):
    """Momentum coefficients beta, a frequency grid in [0, pi], and the lengths of the runs."""

    betas: tuple[Beta, ...] = Field((0.5, 0.9, 0.98), min_length=1, description="momentum coefficients (torch's)")
    frequencies: int = Field(24, ge=3, le=200, description="frequencies omega > 0, log-spaced in [lowest, pi], and 0")
    lowest: float = Field(1e-3 * math.pi, gt=0.0, lt=math.pi, description="the smallest non-zero frequency omega")
    burn_in: int = Field(1200, ge=10, description="steps before the fit window (the transient beta^k must decay)")
    window: int = Field(256, ge=8, description="steps over which the steady-state sinusoid is fitted")
    chains: int = Field(2000, ge=10, description="independent coordinates per beta fed white gradient noise")

    @model_validator(mode="after")
    def _consistent(self) -> MomentumFilterConfig:
        if len(set(self.betas)) < len(self.betas):
            raise ValueError(f"betas: expected distinct values, got {list(self.betas)}")
        needed = math.ceil(math.log(TRANSIENT) / math.log(max(self.betas)))
        if self.burn_in < needed:
            raise ValueError(
                f"burn_in: expected at least log({TRANSIENT:g})/log(max(betas)) = {needed} steps for the transient "
                f"to decay, got {self.burn_in}"
            )
        return self


def frequency_grid(config: MomentumFilterConfig) -> NDArray[np.float64]:
    """0 and `frequencies` log-spaced frequencies in [lowest, pi]."""
    return np.concatenate([[0.0], np.geomspace(config.lowest, math.pi, config.frequencies)])


def response(beta: float, omega: NDArray[np.float64]) -> NDArray[np.complex128]:
    """The heavy-ball buffer's frequency response H(omega) = 1/(1 - beta e^{-i omega}) (module docstring)."""
    return 1.0 / (1.0 - beta * np.exp(-1j * np.asarray(omega)))


# ----------------------------------------------------------------------------------------------- measure
def _optimisers(params: dict[str, list[torch.Tensor]], betas: tuple[float, ...]) -> list[torch.optim.Optimizer]:
    """torch's SGD(lr=1, momentum=beta) and LectureMomentum(lr=1, beta=1 - beta), one parameter group per beta."""
    torch_groups = [{"params": [p], "momentum": b} for p, b in zip(params["torch"], betas, strict=True)]
    lecture_groups = [{"params": [p], "beta": 1.0 - b} for p, b in zip(params["lecture"], betas, strict=True)]
    return [
        torch.optim.SGD(torch_groups, lr=1.0, momentum=betas[0], dampening=0.0),
        LectureMomentum(lecture_groups, lr=1.0),
    ]


def _fit_sinusoid(k: NDArray[np.float64], u: NDArray[np.float64], omega: float) -> tuple[float, float, float]:
    """Least-squares u_k ~ c cos(omega k) + s sin(omega k): (gain, phase, largest residual). At omega = 0 or pi the sine
    column vanishes (to rounding) and is left out."""
    columns = [np.cos(omega * k)]
    sine = np.sin(omega * k)
    if np.abs(sine).max() > 1e-6:
        columns.append(sine)
    design = np.stack(columns, axis=1)
    coefficients, *_ = np.linalg.lstsq(design, u, rcond=None)
    c, s = coefficients[0], (coefficients[1] if len(coefficients) > 1 else 0.0)
    return float(math.hypot(c, s)), float(math.atan2(-s, c)), float(np.abs(design @ coefficients - u).max())


def noise_steps(betas: tuple[float, ...]) -> int:
    """Steps of the noise chains: until beta_max^(2k), the relative transient of the buffer's variance, is below
    STATIONARY (from b_0 = 0, Var b_k = (1 - beta^(2k))/(1 - beta^2))."""
    return math.ceil(math.log(STATIONARY) / (2 * math.log(max(betas))))


def measure(config: MomentumFilterConfig, context: Context) -> pd.DataFrame:
    """Feed g_k = cos(omega k) to both momentum forms and white noise to torch's; fit the steady-state update.

    Rows: `gain`, `phase`, `fit_residual` (form, beta, omega); `noise_variance` (beta): the mean square of the
    buffers of the noise chains at their last step; `chains` (the sample size).
    """
    dtype, betas = torch.float64, config.betas
    omega = frequency_grid(config)
    steps = config.burn_in + config.window
    params = {form: [torch.zeros(len(omega), dtype=dtype, requires_grad=True) for _ in betas] for form in FORMS}
    sgd, lecture = _optimisers(params, betas)
    omega_t = torch.as_tensor(omega, dtype=dtype)
    window = {form: np.empty((config.window + 1, len(betas), len(omega))) for form in FORMS}
    for k in context.track(range(1, steps + 1), "momentum on sinusoids", steps):
        g = torch.cos(omega_t * k)  # read, never written, by both optimisers
        for p in params["torch"] + params["lecture"]:
            p.grad = g
        if k > config.burn_in:  # w_k before the k-th step: the update u_k = w_k - w_{k+1}
            for form in FORMS:
                window[form][k - config.burn_in - 1] = torch.stack(params[form]).detach().numpy()
        sgd.step()
        lecture.step()
    for form in FORMS:
        window[form][-1] = torch.stack(params[form]).detach().numpy()
    k = np.arange(config.burn_in + 1, steps + 1, dtype=float)
    frames = []
    for form in FORMS:
        updates = window[form][:-1] - window[form][1:]  # (window, beta, omega)
        fits = np.array(
            [[_fit_sinusoid(k, updates[:, i, j], w) for j, w in enumerate(omega)] for i in range(len(betas))]
        )
        for column, name in enumerate(("gain", "phase", "fit_residual")):
            frames.append(rows(name, fits[:, :, column], form=form, beta=np.array(betas)[:, None], omega=omega))

    generator = torch.Generator().manual_seed(config.seed)
    noise = torch.zeros(len(betas), config.chains, dtype=dtype)
    chains = list(noise.unbind())  # views of one tensor: leaves of no graph, one randn fills every gradient
    noisy = torch.optim.SGD([{"params": [p], "momentum": b} for p, b in zip(chains, betas, strict=True)], lr=1.0)
    gradient = torch.empty_like(noise)
    for p, row in zip(chains, gradient, strict=True):
        p.grad = row
    for _ in range(noise_steps(betas)):
        torch.randn(gradient.shape, generator=generator, dtype=dtype, out=gradient)
        noisy.step()
    buffers = torch.stack([noisy.state[p]["momentum_buffer"] for p in chains]).numpy()  # (beta, chains)
    frames.append(rows("noise_variance", (buffers**2).mean(axis=1), beta=np.array(betas)))
    frames.append(rows("chains", config.chains))
    return pd.concat(frames, ignore_index=True)


# ------------------------------------------------------------------------------------------------- checks
def _curves(metrics: pd.DataFrame, name: str, form: str, config: MomentumFilterConfig) -> NDArray[np.float64]:
    """The rows `name` of one form as an array (beta, omega) in the config's order."""
    return table(metrics, name, "beta", "omega", form=form).loc[list(config.betas)].to_numpy()


def noise_interval(beta: float, chains: int, level: float) -> tuple[float, float]:
    """The two-sided (1 - level) interval of the mean of `chains` squared N(0, 1/(1 - beta^2)) draws: the
    stationary variance times chi^2_chains quantiles over chains."""
    variance = 1.0 / (1.0 - beta**2)
    low, high = stats.chi2.ppf([level / 2, 1 - level / 2], chains)
    return variance * low / chains, variance * high / chains


def checks(metrics: pd.DataFrame, config: MomentumFilterConfig) -> list[Check]:
    """Gain and phase of both forms against H and (1 - beta) H; the gain falls with omega; noise variance."""
    omega = frequency_grid(config)
    betas = np.array(config.betas)
    theory = np.stack([response(b, omega) for b in betas])  # (beta, omega)
    result = []
    for form, scale in (("torch", np.ones_like(betas)), ("lecture", 1.0 - betas)):
        gain = _curves(metrics, "gain", form, config)
        expected = np.abs(theory) * scale[:, None]
        error = np.abs(gain / expected - 1.0)
        i, j = np.unravel_index(np.argmax(error), error.shape)
        label = "SGD(momentum=beta)" if form == "torch" else "LectureMomentum(beta' = 1 - beta)"
        formula = "1/|1 - beta e^(-i omega)|" if form == "torch" else "(1 - beta)/|1 - beta e^(-i omega)|"
        result.append(
            Check.at_most(
                f"{label}: gain vs {formula}, worst relative error",
                float(error.max()),
                GAIN_TOLERANCE,
                detail=f"{error.size} (beta, omega) points, worst at beta = {betas[i]:g}, omega = {omega[j]:.3g}; "
                f"largest fit residual {_curves(metrics, 'fit_residual', form, config).max():.1e}; fails for a "
                "different filter (dampening, Nesterov, wrong beta map) by far more than the tolerance",
            )
        )
    phase = _curves(metrics, "phase", "torch", config)
    phase_error = np.abs(np.angle(np.exp(1j * (phase - np.angle(theory)))))
    result.append(
        Check.at_most(
            "SGD(momentum=beta): phase vs arg 1/(1 - beta e^(-i omega)), worst error (rad)",
            float(phase_error.max()),
            PHASE_TOLERANCE,
            detail="the buffer lags the gradient by -arg H, up to atan(beta/sqrt(1 - beta^2)) rad; a filter with the "
            "right gain but another recursion (e.g. a look-ahead) shifts the phase",
        )
    )
    gain = _curves(metrics, "gain", "torch", config)
    falling = np.diff(gain, axis=1) < 0
    contrast = gain[:, 0] / gain[:, -1]
    result.append(
        Check.holds(
            "low-pass: the gain falls strictly from omega = 0 to omega = pi, for every beta",
            bool(falling.all()),
            detail=f"measured gain(0)/gain(pi) = {', '.join(f'{c:.4g}' for c in contrast)} for beta = "
            f"{list(config.betas)} (theory (1 + beta)/(1 - beta) = "
            f"{', '.join(f'{(1 + b) / (1 - b):.4g}' for b in betas)}); fails for a flat or high-pass response",
        )
    )
    chains = int(value(metrics, "chains"))
    level = ALPHA / len(betas)
    for beta in config.betas:
        measured = value(metrics, "noise_variance", beta=beta)
        low, high = noise_interval(beta, chains, level)
        result.append(
            Check.interval(
                f"noise: stationary buffer variance at beta = {beta:g} vs 1/(1 - beta^2) = {1 / (1 - beta**2):.4g}",
                measured,
                low,
                high,
                detail=f"mean of {chains} squared buffers (i.i.d. N(0, 1) gradients); two-sided chi-square interval at "
                f"level {level:.3g} (alpha = {ALPHA} over {len(betas)} betas, Bonferroni); the constant-gradient "
                f"gain squared 1/(1 - beta)^2 = {1 / (1 - beta) ** 2:.4g} would fail it",
            )
        )
    return result


# ------------------------------------------------------------------------------------------------ figures
def figures(metrics: pd.DataFrame, config: MomentumFilterConfig) -> dict[str, Figure]:
    """The measured frequency responses against the theory; the noise variance against 1/(1 - beta^2)."""
    return {"frequency_response": _response_figure(metrics, config), "noise": _noise_figure(metrics, config)}


def _response_figure(metrics: pd.DataFrame, config: MomentumFilterConfig) -> Figure:
    omega = frequency_grid(config)
    fine = np.geomspace(config.lowest, math.pi, 400)
    fig = Figure(figsize=(14.0, 4.4), layout="constrained")
    axes = fig.subplots(1, 3)
    for i, beta in enumerate(config.betas):
        color = f"C{i}"
        for ax, form, scale in ((axes[0], "torch", 1.0), (axes[1], "lecture", 1.0 - beta)):
            ax.loglog(fine, scale * np.abs(response(beta, fine)), "-", color=color, lw=1.2)
            gain = _curves(metrics, "gain", form, config)[i]
            ax.loglog(omega[1:], gain[1:], "o", color=color, ms=4, mfc="none", label=rf"$\beta = {beta:g}$")
            ax.axhline(gain[0], color=color, ls=":", lw=0.8)
        axes[2].semilogx(fine, -np.angle(response(beta, fine)), "-", color=color, lw=1.2)
        phase = _curves(metrics, "phase", "torch", config)[i]
        axes[2].semilogx(omega[1:], -phase[1:], "o", color=color, ms=4, mfc="none", label=rf"$\beta = {beta:g}$")
        cutoff = math.acos(1 - (1 - beta) ** 2 / (2 * beta)) if beta > 3 - 2 * math.sqrt(2) else math.pi
        for ax in axes[:2]:
            ax.axvline(cutoff, color=color, ls="--", lw=0.6)
    axes[0].set_title(r"torch SGD(momentum=$\beta$): $|H| = 1/|1-\beta e^{-i\omega}|$")
    axes[1].set_title(r"lecture form $a_k$: $(1-\beta)|H|$ (unit gain at $\omega = 0$)")
    axes[2].set_title(r"phase lag $-\arg H(\omega)$")
    for ax in axes:
        ax.set_xlabel(r"frequency $\omega$ of the gradient $g_k = \cos(\omega k)$")
        ax.legend(fontsize=8)
    axes[0].set_ylabel("gain of the update (markers measured, lines theory)")
    axes[2].set_ylabel("radians")
    fig.suptitle(
        "Momentum is a low-pass filter of the gradients (dotted: measured gain at omega = 0; dashed: half-power cutoff)"
    )
    return fig


def _noise_figure(metrics: pd.DataFrame, config: MomentumFilterConfig) -> Figure:
    betas = np.array(config.betas)
    chains = int(value(metrics, "chains"))
    fine = np.linspace(0.0, max(betas.max(), 0.5), 300)
    measured = np.array([value(metrics, "noise_variance", beta=b) for b in betas])
    intervals = np.array([noise_interval(b, chains, ALPHA / len(betas)) for b in betas])
    fig = Figure(figsize=(6.4, 4.4), layout="constrained")
    ax = fig.subplots()
    ax.semilogy(fine, 1 / (1 - fine**2), "-", color="C0", label=r"noise: $1/(1-\beta^2)$")
    ax.semilogy(fine, 1 / (1 - fine) ** 2, "--", color="C3", label=r"constant gradient: $1/(1-\beta)^2$")
    ax.errorbar(
        betas,
        measured,
        yerr=[measured - intervals[:, 0], intervals[:, 1] - measured],
        fmt="o",
        color="k",
        mfc="none",
        capsize=3,
        label=f"measured ({chains} chains, {1 - ALPHA:.0%} family-wise interval of the theory)",
    )
    ax.set_xlabel(r"momentum $\beta$")
    ax.set_ylabel("variance / squared gain of the buffer")
    ax.set_title("White gradient noise passes (1 - beta)/(1 + beta) of the signal's gain squared")
    ax.legend(fontsize=8)
    return fig


EXPERIMENT = Experiment(
    name="momentum-filter",
    claim="Momentum is a low-pass filter of the gradient sequence: the heavy-ball buffer's response to a gradient "
    "cos(omega k) has gain 1/|1 - beta e^(-i omega)|, from 1/(1 - beta) at omega = 0 to 1/(1 + beta) at omega = pi, "
    "so white gradient noise keeps the variance 1/(1 - beta^2).",
    config=MomentumFilterConfig,
    measure=measure,
    checks=checks,
    figures=figures,
    presets={
        "full": {
            "betas": (0.3, 0.5, 0.7, 0.9, 0.95, 0.99, 0.995),
            "frequencies": 80,
            "chains": 40000,
            "burn_in": 6000,
            "window": 2048,
        }
    },
    references=(
        "Polyak (1964), Some methods of speeding up the convergence of iteration methods",
        "Goh (2017), Why Momentum Really Works, Distill",
        "Oppenheim & Schafer (2010), Discrete-Time Signal Processing, 3rd ed., ch. 5",
    ),
    part="optimisation",
)
