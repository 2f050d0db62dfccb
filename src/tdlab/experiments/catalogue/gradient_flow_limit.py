r"""gradient-flow-limit: gradient descent is the forward-Euler discretisation of gradient flow; an (implicit) ODE solver
follows the flow with steps far beyond GD's limit 2/L, and GD converges to the flow at order 1 as eta -> 0.

On f(w) = 1/2 w^T H w, H = Q diag(lambda) Q^T with eigenvalues geometrically spaced in [mu, L] = [1/kappa, 1],
gradient flow dw/dt = -H w has the closed form w(t) = exp(-t H) w_0 = Q exp(-t Lambda) Q^T w_0 (in the checks).
GD, w_{k+1} = w_k - eta H w_k, is Euler's method with step eta on this ODE; it is stable iff eta < 2/L and otherwise
diverges at the rate |1 - eta L| per step, although the flow itself decays for every t. On the horizon [0, T] Euler
is first order (Hairer, Norsett & Wanner 1993, Thm II.8.1; `tdlab.theory.gradient_flow`):

.. math:: w_k - w(k\eta) = \eta\, e(k\eta) + O(\eta^2), \qquad e(t) = -\tfrac12\, t\, H^2 e^{-tH} w_0,

so E(eta) = max_k ||w_k - w(k eta)|| halves when eta halves, and E(eta)/eta -> max_t ||e(t)||.

Measurements: (1) `scipy.integrate.solve_ivp` with the implicit, A-stable Radau IIA method (order 5, with the exact
Jacobian -H) integrates the flow over [0, horizon/mu] at relative tolerance `rtol`; its accepted steps are recorded.
The explicit Dormand-Prince RK45 on the same problem is recorded for contrast: on a stiff problem its steps stay at the
edge of its stability region (about 3.3/L) whatever the accuracy asks for. (2) GD is `torch.optim.SGD` through
`tdlab.optim.quadratics.descend` at eta L = 2 (1 -/+ `edge_offset`); its coordinate along H's top eigenvector is
recorded. (3) GD at eta = eta_0 / 2^j, j < `halvings` (rows of one run), up to the time `track_time`, its iterates
kept at the times of a common grid.

How the checks fail: an explicit solver would need steps below ~3.3/L (RK45 measures max h L ~ 6, far under the
required 10 x 2), and an inaccurate or wrongly signed flow misses exp(-tH) w_0 by orders of magnitude more than
10 x rtol; GD with a threshold other than 2/L converges or diverges on the wrong side, its top mode at a factor
other than 1 - eta L; a method of another order (a symplectic/midpoint step: 2, a lagged gradient: still 1 but
with another constant) changes the fitted order or the error constant beyond 0.1 and 5%.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from numpy.typing import NDArray
from pydantic import Field, model_validator
from scipy.integrate import solve_ivp

from tdlab.experiments.base import Check, Context, Experiment, ExperimentConfig
from tdlab.experiments.tidy import rows, select, series, table
from tdlab.optim.quadratics import QuadraticRun, descend, rotated_quadratics, spectrum
from tdlab.theory.gradient_flow import quadratic_euler_error

SOLVERS = ("Radau", "RK45")
ORDER_TOLERANCE = 0.1  # on the fitted exponent of E(eta) ~ eta^p
CONSTANT_TOLERANCE = 0.05  # relative, on E(eta)/eta at the smallest eta against max_t ||e(t)||
FACTOR_TOLERANCE = 1e-6  # relative, on GD's per-step factor of the top mode (exact up to rounding)
STEP_MULTIPLE = 10.0  # the implicit solver's largest step must exceed this many times GD's limit 2/L
ACCURACY_MULTIPLE = 10.0  # the solver's error must stay within this many times its rtol (relative to ||w_0||)


class GradientFlowLimitConfig(ExperimentConfig):
    """A rotated quadratic with eigenvalues geometrically spaced in [1/kappa, 1] (L = 1), the solver's settings and the
    step sizes of GD."""

    dim: int = Field(10, ge=2, description="dimension of the quadratic")
    kappa: float = Field(100.0, gt=1.0, description="condition number L/mu: the stiffness of the flow")
    horizon: float = Field(20.0, gt=0.0, description="the solver integrates over [0, horizon/mu]")
    rtol: float = Field(1e-6, gt=0.0, lt=1e-2, description="relative tolerance of the ODE solvers")
    edge_offset: float = Field(0.05, gt=0.0, lt=0.5, description="GD runs at eta L = 2 (1 - offset) and 2 (1 + offset)")
    edge_steps: int = Field(60, ge=2, description="GD steps at each of the two step sizes around 2/L")
    eta0: float = Field(0.25, gt=0.0, lt=2.0, description="largest eta L of the order-of-convergence runs")
    halvings: int = Field(6, ge=3, le=14, description="step sizes eta0 / 2^j, j = 0..halvings - 1")
    track_time: float = Field(5.0, gt=0.0, description="the order runs follow the flow over [0, track_time] (1/L)")

    @model_validator(mode="after")
    def _consistent(self) -> GradientFlowLimitConfig:
        if self.track_time < self.eta0:
            raise ValueError(f"track_time: expected at least eta0 = {self.eta0} (one step), got {self.track_time}")
        return self


def _problem(config: GradientFlowLimitConfig) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """The Hessian H (d, d), the start w_0 (d,) and the top eigenvector q_L of H (the last of the ascending
    spectrum), drawn from the seed."""
    generator = torch.Generator().manual_seed(config.seed)
    H, Q = rotated_quadratics(spectrum(config.kappa, config.dim, "geometric").unsqueeze(0), generator)
    start = torch.randn(config.dim, generator=generator, dtype=torch.float64)
    return H[0].numpy(), start.numpy(), Q[0, :, -1].numpy()


def time_grid(config: GradientFlowLimitConfig) -> NDArray[np.float64]:
    """The times at which every order run is compared with the flow: multiples of eta0 in (0, track_time]."""
    return config.eta0 * np.arange(1, int(config.track_time / config.eta0 + 1e-9) + 1)


def step_sizes(config: GradientFlowLimitConfig) -> NDArray[np.float64]:
    """eta0 / 2^j for j = 0..halvings - 1."""
    return config.eta0 / 2.0 ** np.arange(config.halvings)


# ----------------------------------------------------------------------------------------------- measure
def measure(config: GradientFlowLimitConfig, context: Context) -> pd.DataFrame:
    """The solvers' paths, GD's rates around 2/L, and GD's iterates on the common time grid per step size.

    Rows: `hessian` (row, column) and `start` (coordinate): the problem; `solver_state` (time, coordinate) at Radau's
    accepted steps; `solver_time` (solver, index): each solver's accepted times; `solver_evaluations` (solver);
    `gd_top_mode` (eta, step): the coordinate q_L^T w_k of GD around 2/L along H's top eigenvector; `gd_state` (eta,
    time, coordinate) on `time_grid`.
    """
    H, w0, top = _problem(config)
    d = config.dim
    frames = [
        rows("hessian", H, row=np.arange(d)[:, None], column=np.arange(d)),
        rows("start", w0, coordinate=np.arange(d)),
    ]
    end = config.horizon * config.kappa  # horizon / mu
    for solver in SOLVERS:
        jacobian = {"jac": -H} if solver == "Radau" else {}
        solution = solve_ivp(
            lambda _, w: -H @ w,
            (0.0, end),
            w0,
            method=solver,
            rtol=config.rtol,
            atol=1e-6 * config.rtol * float(np.linalg.norm(w0)),
            **jacobian,
        )
        if not solution.success:
            raise RuntimeError(f"solve_ivp ({solver}) failed: {solution.message}")
        frames += [
            rows("solver_time", solution.t, solver=solver, index=np.arange(len(solution.t))),
            rows("solver_evaluations", solution.nfev, solver=solver),
        ]
        if solver == "Radau":  # the explicit solver's path is kept only for its step sizes
            frames.append(rows("solver_state", solution.y.T, time=solution.t[:, None], coordinate=np.arange(d)))

    H_t, w0_t = torch.as_tensor(H).unsqueeze(0), torch.as_tensor(w0).unsqueeze(0)
    edge = 2.0 * np.array([1.0 - config.edge_offset, 1.0 + config.edge_offset])
    edge_run = QuadraticRun(H_t.expand(2, d, d), w0_t.expand(2, d), torch.as_tensor(edge))
    (edge_path,) = descend([edge_run], config.edge_steps, keep_iterates=True)
    top_mode = (edge_path.iterates() @ torch.as_tensor(top)).numpy()  # (steps + 1, 2)
    frames.append(rows("gd_top_mode", top_mode, eta=edge, step=np.arange(config.edge_steps + 1)[:, None]))

    times, etas = time_grid(config), step_sizes(config)
    per_time = np.rint(config.eta0 / etas).astype(int)  # steps between grid times: 2^j
    order_run = QuadraticRun(H_t.expand(len(etas), d, d), w0_t.expand(len(etas), d), torch.as_tensor(etas))
    (order_path,) = descend([order_run], int(per_time[-1]) * len(times), keep_iterates=True)  # all etas, one run
    iterates = order_path.iterates().numpy()  # (steps + 1, eta, d)
    for j, eta in enumerate(etas):
        states = iterates[per_time[j] * np.arange(1, len(times) + 1), j]  # w_k at k eta = times
        frames.append(rows("gd_state", states, eta=eta, time=times[:, None], coordinate=np.arange(d)))
    return pd.concat(frames, ignore_index=True)


# ------------------------------------------------------------------------------------------------- checks
def _stored_problem(metrics: pd.DataFrame) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    return table(metrics, "hessian", "row", "column").to_numpy(), series(metrics, "start", "coordinate")[1]


def flow(H: NDArray[np.float64], w0: NDArray[np.float64], times: NDArray[np.float64]) -> NDArray[np.float64]:
    """The closed-form gradient flow exp(-t H) w_0 = Q exp(-t Lambda) Q^T w_0 at `times`, shape (len(times), d)."""
    eigenvalues, Q = np.linalg.eigh(H)
    return (np.exp(-np.outer(times, eigenvalues)) * (Q.T @ w0)) @ Q.T


def _solver_path(metrics: pd.DataFrame) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Radau's accepted times and states."""
    states = table(metrics, "solver_state", "time", "coordinate")
    return states.index.to_numpy(dtype=float), states.to_numpy()


def _solver_times(metrics: pd.DataFrame, solver: str) -> NDArray[np.float64]:
    return series(metrics, "solver_time", "index", solver=solver)[1]


def top_mode_factor(mode: NDArray[np.float64]) -> float:
    """The per-step factor of a geometric sequence: exp of the least-squares slope of log |e_k| against k, with the
    sign of the majority of the ratios e_(k+1)/e_k."""
    slope = np.polyfit(np.arange(len(mode)), np.log(np.abs(mode)), 1)[0]
    sign = 1.0 if np.median(np.sign(mode[1:] / mode[:-1])) > 0 else -1.0
    return float(sign * np.exp(slope))


def order_errors(metrics: pd.DataFrame, config: GradientFlowLimitConfig) -> NDArray[np.float64]:
    """E(eta) = max over the time grid of ||w_k - exp(-k eta H) w_0||, per eta of `step_sizes`."""
    H, w0 = _stored_problem(metrics)
    times = time_grid(config)
    exact = flow(H, w0, times)
    errors = []
    for eta in step_sizes(config):
        gd = table(metrics, "gd_state", "time", "coordinate", eta=eta).to_numpy()
        errors.append(np.linalg.norm(gd - exact, axis=1).max())
    return np.array(errors)


def error_constant(metrics: pd.DataFrame, config: GradientFlowLimitConfig) -> float:
    """max over the time grid of ||e(t)||, e(t) = -1/2 t H^2 exp(-tH) w_0, in H's eigenbasis."""
    H, w0 = _stored_problem(metrics)
    eigenvalues, Q = np.linalg.eigh(H)
    coefficient = quadratic_euler_error(eigenvalues, Q.T @ w0, time_grid(config))
    return float(np.linalg.norm(coefficient, axis=1).max())


def checks(metrics: pd.DataFrame, config: GradientFlowLimitConfig) -> list[Check]:
    """The solver against exp(-tH) w_0 and its step sizes; GD's top mode on both sides of 2/L; Euler's order and
    constant."""
    H, w0 = _stored_problem(metrics)
    L = float(np.linalg.eigvalsh(H).max())
    result = []
    times, states = _solver_path(metrics)
    error = np.linalg.norm(states - flow(H, w0, times), axis=1).max() / np.linalg.norm(w0)
    steps = np.diff(_solver_times(metrics, "Radau"))
    result.append(
        Check.at_most(
            "Radau (implicit) vs the closed-form flow exp(-tH) w0: max ||error|| / ||w0||",
            float(error),
            ACCURACY_MULTIPLE * config.rtol,
            detail=f"{len(steps)} steps over [0, {times[-1]:g}] at rtol {config.rtol:g}; the flow decays by "
            f"{np.linalg.norm(states[-1]) / np.linalg.norm(w0):.1e}",
        )
    )
    rk_times = _solver_times(metrics, "RK45")
    rk_steps = np.diff(rk_times)
    result.append(
        Check.at_least(
            "Radau's largest accepted step h L, against GD's limit eta L < 2",
            float(steps.max() * L),
            STEP_MULTIPLE * 2.0,
            detail=f"at least {STEP_MULTIPLE:g} x GD's limit: no step-size limit, only accuracy; median h L "
            f"{np.median(steps) * L:.3g}. The explicit RK45 on the same flow: {len(rk_steps)} steps, largest h L "
            f"{rk_steps.max() * L:.3g}, median {np.median(rk_steps) * L:.3g} (its stability edge ~3.3): an explicit "
            f"method fails this check; GD needs >= {times[-1] * L / 2:.0f} steps for the same horizon",
        )
    )
    for eta in sorted(select(metrics, "gd_top_mode")["eta"].unique()):
        steps_, mode = series(metrics, "gd_top_mode", eta=eta)
        factor = top_mode_factor(mode)
        theory = 1.0 - eta * L
        side, verdict = ("below", "converges") if abs(theory) < 1 else ("above", "diverges")
        result.append(
            Check.relative(
                f"GD at eta L = {eta * L:.3g} ({side} 2/L) {verdict}: top-mode factor vs 1 - eta L = {theory:.4g}",
                factor,
                theory,
                FACTOR_TOLERANCE,
                detail=f"q_L^T w_(k+1) / q_L^T w_k fitted over {len(steps_) - 1} steps (|.| from the log-slope, sign "
                f"from the ratios): the flow's top mode decays as exp(-L t) for every t, while GD's "
                f"{'shrinks' if abs(theory) < 1 else 'grows'} by |1 - eta L| per step",
            )
        )
    etas, errors = step_sizes(config), order_errors(metrics, config)
    slope = float(np.polyfit(np.log(etas), np.log(errors), 1)[0])
    result.append(
        Check.absolute(
            "order of GD -> gradient flow: slope of log max_k ||w_k - w(k eta)|| vs log eta",
            slope,
            1.0,
            ORDER_TOLERANCE,
            detail=f"eta L in [{etas[-1]:.3g}, {etas[0]:.3g}], horizon {config.track_time:g}/L; error ratios at "
            f"halving {', '.join(f'{r:.3f}' for r in errors[:-1] / errors[1:])} (theory -> 2)",
        )
    )
    constant = error_constant(metrics, config)
    result.append(
        Check.relative(
            "Euler's error constant: E(eta)/eta at the smallest eta vs max_t ||1/2 t H^2 exp(-tH) w0||",
            float(errors[-1] / etas[-1]),
            constant,
            CONSTANT_TOLERANCE,
            detail=f"eta = {etas[-1]:.3g}: the next term is O(eta) relative; E/eta at each eta "
            f"{', '.join(f'{e:.4g}' for e in errors / etas)}",
        )
    )
    return result


# ------------------------------------------------------------------------------------------------ figures
def figures(metrics: pd.DataFrame, config: GradientFlowLimitConfig) -> dict[str, Figure]:
    """The flow and the solvers' steps; GD's error against eta."""
    return {"solver_steps": _solver_figure(metrics, config), "euler_order": _order_figure(metrics, config)}


def _solver_figure(metrics: pd.DataFrame, config: GradientFlowLimitConfig) -> Figure:
    H, w0 = _stored_problem(metrics)
    L = float(np.linalg.eigvalsh(H).max())
    fig = Figure(figsize=(12.0, 4.4), layout="constrained")
    left, right = fig.subplots(1, 2)
    times, states = _solver_path(metrics)
    fine = np.geomspace(max(times[1], 1e-3), times[-1], 300)
    exact = flow(H, w0, fine)
    left.loglog(fine, np.linalg.norm(exact, axis=1), "-", color="0.3", lw=1.2, label="exp(-tH) w0")
    left.loglog(times[1:], np.linalg.norm(states[1:], axis=1), "o", color="C0", ms=3, mfc="none", label="Radau")
    for eta in sorted(select(metrics, "gd_top_mode")["eta"].unique()):
        steps, mode = series(metrics, "gd_top_mode", eta=eta)
        left.loglog(
            (steps[1:] * eta) / L,
            np.abs(mode[1:]),
            "--",
            lw=1.0,
            label=f"GD top mode |q_L^T w_k|, eta L = {eta * L:.3g}",
        )
    top = abs(float(_top(H) @ w0))
    left.loglog(fine, top * np.exp(-L * fine), ":", color="0.3", lw=1.0, label="flow's top mode exp(-Lt) |q_L^T w0|")
    left.set_xlabel("time t (units of 1/L)")
    left.set_ylabel("||w(t)||")
    left.set_title(f"Gradient flow on a quadratic with kappa = {config.kappa:g}")
    left.legend(fontsize=8)
    for i, solver in enumerate(SOLVERS):
        t = _solver_times(metrics, solver)
        right.loglog(t[1:], np.diff(t) * L, ".", color=f"C{i}", ms=3, label=f"{solver}: {len(t) - 1} steps")
    right.axhline(2.0, color="k", ls="--", lw=1.0, label="GD's limit eta L = 2")
    right.set_xlabel("time t")
    right.set_ylabel("accepted step h L")
    right.set_title("Implicit steps grow with t; explicit ones stay at their stability edge", fontsize=10)
    right.legend(fontsize=8)
    return fig


def _top(H: NDArray[np.float64]) -> NDArray[np.float64]:
    """H's top eigenvector (its sign as returned by eigh)."""
    return np.linalg.eigh(H)[1][:, -1]


def _order_figure(metrics: pd.DataFrame, config: GradientFlowLimitConfig) -> Figure:
    etas, errors = step_sizes(config), order_errors(metrics, config)
    constant = error_constant(metrics, config)
    fig = Figure(figsize=(6.4, 4.6), layout="constrained")
    ax = fig.subplots()
    ax.loglog(etas, errors, "o", color="C1", mfc="none", label="measured max_k ||w_k - w(k eta)||")
    ax.loglog(etas, constant * etas, "-", color="C0", label=r"theory $\eta \max_t \|\frac{1}{2} t H^2 e^{-tH} w_0\|$")
    ax.set_xlabel(r"step size $\eta L$")
    ax.set_ylabel(f"largest distance to the flow on [0, {config.track_time:g}]")
    ax.set_title("GD is Euler's method: first order in eta")
    ax.legend(fontsize=8)
    return fig


EXPERIMENT = Experiment(
    name="gradient-flow-limit",
    claim="Gradient descent is Euler's method for gradient flow dw/dt = -grad f(w): an implicit ODE solver follows the "
    "flow with steps far beyond 2/L, GD with eta < 2/L converges and with eta > 2/L diverges, and as eta -> 0 GD "
    "tracks the flow at time eta k with an error proportional to eta.",
    config=GradientFlowLimitConfig,
    measure=measure,
    checks=checks,
    figures=figures,
    presets={"full": {"dim": 50, "kappa": 10000.0, "rtol": 1e-8, "halvings": 10, "edge_steps": 100}},
    references=(
        "Hairer, Norsett & Wanner (1993), Solving Ordinary Differential Equations I, Thm II.8.1",
        "Hairer & Wanner (1996), Solving Ordinary Differential Equations II: Stiff Problems, sec. IV.5 (Radau IIA)",
        "Scieur, Roulet, Bach & d'Aspremont (2017), Integration methods and accelerated optimization algorithms",
    ),
    part="optimisation",
)
