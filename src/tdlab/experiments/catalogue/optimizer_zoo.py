"""optimizer-zoo: GD, momentum, Nesterov, Adagrad, RMSProp and Adam on 2-D test functions.

The lectures' update rules, run exactly as written (`tdlab.optim.reference`) on an elongated quadratic,
Rosenbrock's valley, Beale's plateaus and the saddle x^2 - y^2, and measured against what the lectures say:

1. each rule is what `torch.optim` computes, with the hyperparameter mapping of `tdlab.optim.reference`
   (momentum: lr = eta beta, momentum = 1 - beta, dampening = 0; Nesterov: torch's iterates are the look-ahead
   points): the two trajectories agree to 1e-6 over 200 steps on every test function and on a small network
   (float64);
2. under a constant gradient Adagrad's step shrinks as t^{-1/2} (fitted exponent), while RMSProp's and Adam's do
   not (Adam's is exactly eta |g| / (|g| + eps));
3. Adam's trajectory is invariant to a per-coordinate rescaling of the gradient g -> D g, up to its epsilon
   (exactly, to rounding, with eps = 0), while gradient descent's is not;
4. gradient descent is the forward-Euler discretisation of gradient flow: on a fixed horizon T the GD path stays
   within O(eta) of the ODE solution (solved by Dormand-Prince 8(5,3) to a tolerance of 1e-11): the fitted order of
   max_k ||w_k - x(k eta)|| in eta is 1, and the constant matches max_t ||e(t)|| of the Euler error equation
   (`tdlab.theory.gradient_flow`).

Figures: trajectories over log-spaced contours; loss curves; Adagrad's step against 1/sqrt(t); Adam and GD with a
rescaled gradient; the GD-flow gap against eta.

The trajectories of the reference rules on the test functions stay hand-written loops (they are the claim: the
lectures' rules as written); the torch.optim side is the registry's (`tdlab.optim.registry`: SGD for GD, each
lecture optimiser's `torch_equivalent` for the others), fed the same gradient oracle on the test functions and
trained through `tdlab.train.fit` on the network.
"""

from __future__ import annotations

import copy
import inspect
import math
from collections.abc import Callable

import numpy as np
import pandas as pd
import torch
from matplotlib.axes import Axes
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from pydantic import Field, model_validator
from torch import Tensor, nn

from tdlab.experiments.base import Check, Context, Experiment, ExperimentConfig
from tdlab.experiments.tidy import select, series, value
from tdlab.optim.reference import (
    adagrad_step,
    adam_step,
    gd_step,
    momentum_step,
    nesterov_lookahead,
    nesterov_step,
    rmsprop_step,
)
from tdlab.optim.registry import build_optimizer, lookup
from tdlab.optim.test_functions import TestFunction, get_test_function
from tdlab.oracles import Objective
from tdlab.theory.adaptive_steps import (
    adagrad_constant_gradient_step,
    adagrad_step_exponent_deviation,
    adam_constant_gradient_step,
    rmsprop_constant_gradient_step,
)
from tdlab.theory.gradient_flow import euler_error_coefficient
from tdlab.train.trainer import fit

METHODS = ("gd", "momentum", "nesterov", "adagrad", "rmsprop", "adam")
"""The lectures' rules; each but gd is registered as "lecture-<method>" (gd is torch's SGD)."""
FUNCTIONS = ("quadratic", "rosenbrock", "beale", "saddle")
COLORS = dict(zip(METHODS, ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"), strict=True))
CONSTANT_GRADIENT = (1.0, 0.01)
CONSTANT_GRADIENT_LR = 0.1
LOSS_FLOOR = 1e-20

# Learning rates eta (the lectures' parameterisation) per test function, chosen so that every method is stable
# and its character shows within a few hundred steps: GD at ~1/lambda_max, momentum at ~10x that, the adaptive
# methods at a step length suited to the function's scale.
LEARNING_RATES: dict[str, dict[str, float]] = {
    "quadratic": {"gd": 0.15, "momentum": 0.15, "nesterov": 0.15, "adagrad": 1.0, "rmsprop": 0.05, "adam": 0.1},
    "rosenbrock": {"gd": 1e-3, "momentum": 1e-2, "nesterov": 1e-2, "adagrad": 0.3, "rmsprop": 0.01, "adam": 0.05},
    "beale": {"gd": 0.01, "momentum": 0.05, "nesterov": 0.05, "adagrad": 0.5, "rmsprop": 0.01, "adam": 0.05},
    "saddle": {"gd": 0.01, "momentum": 0.01, "nesterov": 0.01, "adagrad": 0.1, "rmsprop": 0.01, "adam": 0.01},
}
NETWORK_LEARNING_RATES = {"gd": 0.1, "momentum": 0.1, "nesterov": 0.1, "adagrad": 0.05, "rmsprop": 1e-4, "adam": 1e-3}


class OptimizerZooConfig(ExperimentConfig):
    """Steps, hyperparameters and the sizes of the four measurements (defaults: the quick config)."""

    steps: int = Field(500, ge=10, description="steps per method on each test function (trajectories, loss curves)")
    match_steps: int = Field(200, ge=1, description="steps over which reference and torch.optim are compared")
    match_tolerance: float = Field(1e-6, gt=0, description="max |reference - torch| allowed over match_steps")
    kappa: float = Field(10.0, ge=1, description="condition number of the elongated quadratic")
    beta: float = Field(0.1, gt=0, lt=1, description="momentum / Nesterov smoothing: a <- (1 - beta) a + beta g")
    rho: float = Field(0.9, ge=0, lt=1, description="RMSProp decay of the squared-gradient average")
    beta1: float = Field(0.9, ge=0, lt=1, description="Adam first-moment decay")
    beta2: float = Field(0.999, ge=0, lt=1, description="Adam second-moment decay")
    adam_eps: float = Field(1e-8, ge=0, description="Adam and RMSProp epsilon")
    adagrad_eps: float = Field(1e-10, ge=0, description="Adagrad epsilon")
    network_width: int = Field(8, ge=1, description="hidden width of the tanh network of the torch.optim match")
    network_examples: int = Field(32, ge=1, description="training examples of that network")
    constant_gradient_steps: int = Field(1000, ge=20, description="horizon of the constant-gradient step-size test")
    fit_from: int = Field(10, ge=1, description="first step of the fitted step-size exponent")
    rescale: tuple[float, float] = Field(
        (0.5, 0.05), description="the diagonal D of the rescaled gradient D grad f (both entries > 0)"
    )
    flow_functions: tuple[str, ...] = Field(
        ("quadratic", "beale", "saddle"), description="test functions of the GD-versus-gradient-flow test"
    )
    flow_horizon: float = Field(0.25, gt=0, description="time horizon T of the GD-versus-gradient-flow test")
    flow_step_fractions: tuple[float, ...] = Field(
        (0.02, 0.01, 0.005),
        description="step sizes eta = fraction / L, L the largest Hessian eigenvalue along the flow (all in (0, 0.1])",
    )

    @model_validator(mode="after")
    def _consistent(self) -> OptimizerZooConfig:
        if min(self.rescale) <= 0:
            raise ValueError(f"rescale: expected two entries > 0, got {self.rescale}")
        unknown = set(self.flow_functions) - set(FUNCTIONS)
        if unknown or not self.flow_functions:
            raise ValueError(f"flow_functions: expected names among {', '.join(FUNCTIONS)}, got {self.flow_functions}")
        if len(self.flow_step_fractions) < 2 or not all(0 < c <= 0.1 for c in self.flow_step_fractions):
            raise ValueError(
                f"flow_step_fractions: expected at least two numbers in (0, 0.1], got {self.flow_step_fractions}"
            )
        if self.match_steps > self.steps:
            raise ValueError(f"match_steps: expected at most steps = {self.steps}, got {self.match_steps}")
        return self


# ------------------------------------------------------------------------------------------------ trajectories
Gradient = Callable[[Tensor], Tensor]
Rows = list[dict[str, object]]


def _functions(config: OptimizerZooConfig) -> dict[str, TestFunction]:
    return {
        name: get_test_function(name, **({"kappa": config.kappa} if name == "quadratic" else {})) for name in FUNCTIONS
    }


def _hyperparameters(method: str, config: OptimizerZooConfig) -> dict[str, object]:
    return {
        "gd": {},
        "momentum": {"beta": config.beta},
        "nesterov": {"beta": config.beta},
        "adagrad": {"eps": config.adagrad_eps},
        "rmsprop": {"rho": config.rho, "eps": config.adam_eps},
        "adam": {"betas": (config.beta1, config.beta2), "eps": config.adam_eps},
    }[method]


def torch_optimizer(method: str, params: object, lr: float, **hyper: object) -> torch.optim.Optimizer:
    """The registry's `torch.optim` optimiser with the lecture rule's iterates: SGD for gd, the lecture optimiser's
    `torch_equivalent` (hyperparameters mapped, e.g. momentum: lr = eta beta, momentum = 1 - beta) otherwise."""
    if method == "gd":
        return build_optimizer("sgd", params, lr)
    return lookup(f"lecture-{method}").cls.torch_equivalent(params, lr, **hyper)  # type: ignore[attr-defined]


def reference_trajectory(
    method: str, gradient: Gradient, w0: Tensor, steps: int, lr: float, **hyper: object
) -> tuple[Tensor, Tensor]:
    """Iterates w_0..w_steps of the lecture rule, and the points torch.optim's iterates should equal (the same
    iterates, except the look-ahead points for Nesterov). Rows after a non-finite iterate are NaN.

    Example:
        >>> f = get_test_function("quadratic")
        >>> w0 = torch.tensor(f.start, dtype=torch.float64)
        >>> iterates, _ = reference_trajectory("adam", f.gradient, w0, steps=3, lr=0.1)
        >>> iterates.shape
        torch.Size([4, 2])
    """
    w, state = w0.clone(), None
    iterates = torch.full((steps + 1, w0.numel()), math.nan, dtype=w0.dtype, device=w0.device)
    comparable = iterates.clone()
    iterates[0] = comparable[0] = w
    for t in range(1, steps + 1):
        if method == "gd":
            w = gd_step(w, gradient(w), lr)
        elif method == "momentum":
            w, state = momentum_step(w, gradient(w), state, lr, **hyper)
        elif method == "nesterov":
            w, state = nesterov_step(w, gradient(nesterov_lookahead(w, state, lr, **hyper)), state, lr, **hyper)
        elif method == "adagrad":
            w, state = adagrad_step(w, gradient(w), state, lr, **hyper)
        elif method == "rmsprop":
            w, state = rmsprop_step(w, gradient(w), state, lr, **hyper)
        else:
            w, state = adam_step(w, gradient(w), state, lr, **hyper)
        if not torch.isfinite(w).all():
            break
        iterates[t] = w
        comparable[t] = nesterov_lookahead(w, state, lr, **hyper) if method == "nesterov" else w
    return iterates, comparable


def torch_trajectory(method: str, gradient: Gradient, w0: Tensor, steps: int, lr: float, **hyper: object) -> Tensor:
    """Iterates of the `torch.optim` equivalent (`torch_optimizer`) fed the same gradient oracle.

    Example:
        >>> f = get_test_function("quadratic")
        >>> w0 = torch.tensor(f.start, dtype=torch.float64)
        >>> via_torch = torch_trajectory("momentum", f.gradient, w0, steps=5, lr=0.1, beta=0.1)
        >>> ours, _ = reference_trajectory("momentum", f.gradient, w0, steps=5, lr=0.1, beta=0.1)
        >>> bool((via_torch - ours).abs().max() < 1e-12)
        True
    """
    w = w0.clone().requires_grad_(True)
    optimizer = torch_optimizer(method, [w], lr, **hyper)
    out = [w.detach().clone()]
    for _ in range(steps):  # the gradient oracle of the test function, not autograd: no model, no data
        w.grad = gradient(w.detach())
        optimizer.step()
        out.append(w.detach().clone())
    return torch.stack(out)


def _network_gap(method: str, config: OptimizerZooConfig, device: torch.device) -> float:
    """max_t |reference - torch| over the parameters of a small tanh network trained (full batch, `fit`) on random
    regression data, the reference rule run on the same objective's gradient."""
    generator = torch.Generator().manual_seed(config.seed)
    X = torch.randn(config.network_examples, 4, generator=generator, dtype=torch.float64)
    noise = torch.randn(config.network_examples, 1, generator=generator, dtype=torch.float64)
    y = torch.sin(X.sum(1, keepdim=True)) + 0.1 * noise
    with torch.random.fork_rng(devices=[]):  # seeded initialisation without touching the global generator
        torch.manual_seed(config.seed)
        model = nn.Sequential(nn.Linear(4, config.network_width), nn.Tanh(), nn.Linear(config.network_width, 1))
    model = model.to(device=device, dtype=torch.float64)
    objective = Objective(model, nn.MSELoss(), (X, y))
    lr, hyper = NETWORK_LEARNING_RATES[method], _hyperparameters(method, config)
    start = objective.flat_parameters()
    _, reference = reference_trajectory(method, objective.gradient, start, config.match_steps, lr, **hyper)
    twin, gaps = copy.deepcopy(model), [0.0]

    def compare(step: int, loss: float) -> None:
        flat = torch.cat([p.detach().reshape(-1) for p in twin.parameters()])
        gaps.append(float((flat - reference[step]).abs().max()))

    optimizer = torch_optimizer(method, twin.parameters(), lr, **hyper)
    fit(twin, nn.MSELoss(), (X, y), optimizer, config.match_steps, callbacks=[compare])
    return max(gaps)


# ------------------------------------------------------------------------------------------------ measure
def measure(config: OptimizerZooConfig, context: Context) -> pd.DataFrame:
    """The four measurements' rows: trajectories (loss, x, y) and gaps to torch.optim; steps under a constant
    gradient; trajectory changes under g -> D g (with the rescaled paths); GD's gap to gradient flow."""
    functions = _functions(config)
    rows: Rows = []
    _torch_match(config, functions, context, rows)
    _constant_gradient(config, context.device, rows)
    _rescaling(config, functions, context.device, rows)
    _gd_versus_flow(config, functions, context, rows)
    return pd.DataFrame(rows)


def _torch_match(config: OptimizerZooConfig, functions: dict[str, TestFunction], context: Context, rows: Rows) -> None:
    """1. Trajectories of every rule on every test function (loss and position rows), and the largest difference
    from its torch.optim equivalent there and on a small network ("max_abs_diff_vs_torch")."""
    for name, method in context.track([(f, m) for f in FUNCTIONS for m in METHODS], "trajectories"):
        f = functions[name]
        w0 = torch.tensor(f.start, dtype=torch.float64, device=context.device)
        lr, hyper = LEARNING_RATES[name][method], _hyperparameters(method, config)
        iterates, comparable = reference_trajectory(method, f.gradient, w0, config.steps, lr, **hyper)
        via_torch = torch_trajectory(method, f.gradient, w0, config.match_steps, lr, **hyper)
        gap = float((via_torch - comparable[: config.match_steps + 1]).abs().max())
        rows.append({"function": name, "method": method, "name": "max_abs_diff_vs_torch", "value": gap})
        losses, points = f.value(iterates).cpu().numpy(), iterates.cpu().numpy()
        for t in range(config.steps + 1):
            for key, v in (("loss", losses[t]), ("x", points[t, 0]), ("y", points[t, 1])):
                rows.append({"function": name, "method": method, "step": t, "name": key, "value": float(v)})
    for method in context.track(METHODS, "torch.optim on a network"):
        gap = _network_gap(method, config, context.device)
        rows.append({"function": "network", "method": method, "name": "max_abs_diff_vs_torch", "value": gap})


def _constant_gradient(config: OptimizerZooConfig, device: torch.device, rows: Rows) -> None:
    """2. |w_t - w_{t-1}| along the second coordinate (g = 0.01) of each adaptive method fed a constant gradient."""
    g = torch.tensor(CONSTANT_GRADIENT, dtype=torch.float64, device=device)
    for method in ("adagrad", "rmsprop", "adam"):
        hyper, steps = _hyperparameters(method, config), config.constant_gradient_steps
        iterates, _ = reference_trajectory(
            method, lambda w, g=g: g, torch.zeros_like(g), steps, CONSTANT_GRADIENT_LR, **hyper
        )
        sizes = (iterates[1:, 1] - iterates[:-1, 1]).abs().cpu().numpy()
        rows.extend(
            {"method": method, "step": t, "name": "constant_gradient_step", "value": float(v)}
            for t, v in enumerate(sizes, start=1)
        )


def _rescaling(
    config: OptimizerZooConfig, functions: dict[str, TestFunction], device: torch.device, rows: Rows
) -> None:
    """3. For GD and Adam (with its epsilon and with eps = 0): the change of the trajectory when the gradient is
    replaced by D grad f, as max_t ||w_t - w_t^D|| / max_t ||w_t - w_0||; for Adam with eps > 0 also the
    first-order estimate of the epsilon's effect, relative to the same path length; the rescaled paths of GD and
    Adam (with its epsilon) as rows "scaled_x", "scaled_y"."""
    d = torch.tensor(config.rescale, dtype=torch.float64, device=device)
    for name, f in functions.items():
        w0 = torch.tensor(f.start, dtype=torch.float64, device=device)
        for method, eps in (("gd", 0.0), ("adam", config.adam_eps), ("adam", 0.0)):
            lr = LEARNING_RATES[name][method]
            hyper = {"betas": (config.beta1, config.beta2), "eps": eps} if method == "adam" else {}
            plain, _ = reference_trajectory(method, f.gradient, w0, config.steps, lr, **hyper)
            scaled, _ = reference_trajectory(method, lambda w, f=f: d * f.gradient(w), w0, config.steps, lr, **hyper)
            scale = float((plain - w0).norm(dim=1).nan_to_num(math.inf).max())
            change = float((plain - scaled).norm(dim=1).nan_to_num(math.inf).max())
            ids = {"function": name, "method": method, "eps": eps}
            rows.append({**ids, "name": "rescaled_relative_change", "value": change / scale})
            if method == "adam" and eps > 0:
                rows.append(
                    {**ids, "name": "adam_eps_effect_relative", "value": _adam_eps_effect(f, w0, config, lr, d) / scale}
                )
            if method == "gd" or eps > 0:
                points = scaled.cpu().numpy()
                for t in range(config.steps + 1):
                    rows.append({**ids, "step": t, "name": "scaled_x", "value": float(points[t, 0])})
                    rows.append({**ids, "step": t, "name": "scaled_y", "value": float(points[t, 1])})


def _adam_eps_effect(f: TestFunction, w0: Tensor, config: OptimizerZooConfig, lr: float, d: Tensor) -> float:
    """sum_t eta |m_hat| |1/(sqrt(v_hat) + eps) - 1/(sqrt(v_hat) + eps/d)| along the unscaled path: how far the
    epsilon alone moves the iterates of the rescaled run, to first order, before the dynamics amplify or damp it."""
    w, state, total = w0.clone(), None, 0.0
    betas, eps = (config.beta1, config.beta2), config.adam_eps
    for _ in range(config.steps):
        w_next, state = adam_step(w, f.gradient(w), state, lr, betas, eps)
        m_hat = state.m / (1 - betas[0] ** state.step)
        root = (state.v / (1 - betas[1] ** state.step)).sqrt()
        total += float((lr * m_hat.abs() * (1 / (root + eps) - 1 / (root + eps / d)).abs()).norm())
        w = w_next
    return total


def _gd_versus_flow(
    config: OptimizerZooConfig, functions: dict[str, TestFunction], context: Context, rows: Rows
) -> None:
    """4. Max deviation of GD from gradient flow on [0, T] for each eta, the theory constant max_t ||e(t)|| of the
    Euler error equation, and L, the largest Hessian eigenvalue along the flow."""
    T = config.flow_horizon
    for name in context.track(config.flow_functions, "GD versus gradient flow"):
        f = functions[name]

        def grad_np(x: np.ndarray, f: TestFunction = f) -> np.ndarray:
            return f.gradient(torch.from_numpy(x)).numpy()

        def hess_np(x: np.ndarray, f: TestFunction = f) -> np.ndarray:
            return f.hessian(torch.from_numpy(x)).numpy()

        x_dense, _ = euler_error_coefficient(grad_np, hess_np, f.start, np.linspace(0.0, T, 2001))
        L = float(max(np.linalg.eigvalsh(hess_np(x)).max() for x in x_dense))
        for fraction in sorted(config.flow_step_fractions, reverse=True):
            steps = round(T * L / fraction)
            eta = T / steps
            x_flow, e_flow = euler_error_coefficient(grad_np, hess_np, f.start, eta * np.arange(steps + 1))
            w = torch.tensor(f.start, dtype=torch.float64, device=context.device)
            path = [w]
            for _ in range(steps):  # gradient descent on the test function, the claim's own trajectory
                w = gd_step(w, f.gradient(w), eta)
                path.append(w)
            gap = float(np.linalg.norm(torch.stack(path).cpu().numpy() - x_flow, axis=1).max())
            rows.append({"function": name, "eta": eta, "name": "gd_flow_max_deviation", "value": gap})
        # theory: max ||e|| on the finest time grid (the error peaks at t ~ 1/L, which a coarser grid can miss)
        coefficient = float(np.linalg.norm(e_flow, axis=1).max())
        rows.append({"function": name, "name": "euler_error_coefficient_max", "value": coefficient})
        rows.append({"function": name, "name": "largest_hessian_eigenvalue_along_flow", "value": L})


# ------------------------------------------------------------------------------------------------ checks
def _exponent(metrics: pd.DataFrame, method: str, config: OptimizerZooConfig) -> float:
    """The least-squares slope of log|w_t - w_(t-1)| against log t over t >= fit_from."""
    steps, sizes = series(metrics, "constant_gradient_step", method=method)
    kept = steps >= config.fit_from
    return float(np.polyfit(np.log(steps[kept]), np.log(sizes[kept]), 1)[0])


def _flow_fit(metrics: pd.DataFrame, name: str) -> tuple[np.ndarray, np.ndarray, float, float]:
    """etas (decreasing), GD-flow gaps, the fitted order of the gap in eta, and gap / eta extrapolated linearly to
    eta = 0 from the two smallest etas (Richardson: removes the O(eta) term of gap / eta = C + D eta + O(eta^2))."""
    etas, gaps = (a[::-1] for a in series(metrics, "gd_flow_max_deviation", "eta", function=name))
    order = float(np.polyfit(np.log(etas), np.log(gaps), 1)[0])
    (e1, e2), (g1, g2) = etas[-2:], gaps[-2:]
    return etas, gaps, order, float((e1 * g2 / e2 - e2 * g1 / e1) / (e1 - e2))


def _torch_settings(method: str, config: OptimizerZooConfig) -> str:
    """The torch optimiser of `method` in terms of eta: its class and the arguments that differ from torch's."""
    optimizer = torch_optimizer(method, [torch.zeros(1, requires_grad=True)], 1.0, **_hyperparameters(method, config))
    group, signature = optimizer.param_groups[0], inspect.signature(type(optimizer)).parameters
    changed = [
        f"{k}={group[k]!r}"
        for k, p in signature.items()
        if k in group and k not in ("params", "lr") and group[k] != p.default
    ]
    looks = ", compared at the look-ahead points" if method == "nesterov" else ""
    return f"{type(optimizer).__name__}(lr=eta*{group['lr']:g}{''.join(', ' + c for c in changed)}){looks}"


def checks(metrics: pd.DataFrame, config: OptimizerZooConfig) -> list[Check]:
    """Reference rules vs torch.optim; the step exponents of Adagrad and Adam; Adam's invariance to g -> D g and
    GD's lack of it; the order and constant of GD's gap to gradient flow."""
    out = []
    for method in METHODS:
        gaps = select(metrics, "max_abs_diff_vs_torch", method=method).set_index("function")["value"]
        worst = gaps.fillna(math.inf).idxmax()
        out.append(
            Check.at_most(
                f"{method}: reference rule vs torch.optim, max |difference| over {config.match_steps} steps",
                float(gaps[worst]),
                config.match_tolerance,
                detail=f"worst on {worst}; over {', '.join(gaps.index)} in float64; "
                f"torch settings: {_torch_settings(method, config)}",
            )
        )
    deviation = adagrad_step_exponent_deviation(config.fit_from, CONSTANT_GRADIENT[1], config.adagrad_eps)
    out.append(
        Check.absolute(
            "adagrad: fitted exponent of the step size under a constant gradient",
            _exponent(metrics, "adagrad", config),
            -0.5,
            deviation + 1e-9,
            detail=f"least-squares slope of log|w_t - w_(t-1)| vs log t over t = {config.fit_from}..."
            f"{config.constant_gradient_steps} for g = {CONSTANT_GRADIENT}; theory -1/2 (Duchi et al. 2011); "
            f"tolerance eps/(2 sqrt(t_min) |g|) = {deviation:.2g} from epsilon, plus 1e-9 for float64 rounding",
        )
    )
    out.append(
        Check.absolute(
            "adam: fitted exponent of the step size under a constant gradient",
            _exponent(metrics, "adam", config),
            0.0,
            1e-9,
            detail="Adam's bias-corrected step is eta |g| / (|g| + eps) at every t (Kingma & Ba 2015, Sec. 2.1); "
            "tolerance 1e-9 for float64 rounding",
        )
    )
    change = select(metrics, "rescaled_relative_change")
    adam = change[change["method"] == "adam"]
    estimate = float(select(metrics, "adam_eps_effect_relative")["value"].max())
    what = f"max_t ||w_t - w_t^D|| / max_t ||w_t - w_0||, D = diag{config.rescale}, {config.steps} steps"
    out += [
        Check.at_most(
            "adam (eps = 0): trajectory change under g -> D g, relative to the path length",
            float(adam[adam["eps"] == 0.0]["value"].max()),
            1e-10,
            detail=f"max over {', '.join(FUNCTIONS)} of {what}; exact invariance, 1e-10 allows float64 rounding",
        ),
        Check.at_most(
            f"adam (eps = {config.adam_eps:g}): trajectory change under g -> D g, relative to the path length",
            float(adam[adam["eps"] > 0.0]["value"].max()),
            estimate,
            detail=f"max over {', '.join(FUNCTIONS)} of {what}; against the first-order effect of eps: the sum over "
            "steps of eta |m_hat| |1/(sqrt(v_hat) + eps) - 1/(sqrt(v_hat) + eps/d)| along the path, over the path "
            "length (a perturbation the dynamics neither amplify nor damp)",
        ),
        Check.at_least(
            "gd: trajectory change under g -> D g, relative to the path length (not invariant)",
            float(change[change["method"] == "gd"]["value"].min()),
            0.1,
            detail=f"min over {', '.join(FUNCTIONS)} of {what}; GD's step scales with D, so the path changes at "
            "order one (0.1 = clearly not invariant)",
        ),
    ]
    T, c_max, c_min = config.flow_horizon, max(config.flow_step_fractions), min(config.flow_step_fractions)
    for name in config.flow_functions:
        _, _, order, extrapolated = _flow_fit(metrics, name)
        coefficient = value(metrics, "euler_error_coefficient_max", function=name)
        L = value(metrics, "largest_hessian_eigenvalue_along_flow", function=name)
        out += [
            Check.absolute(
                f"{name}: order of the GD-flow gap in eta",
                order,
                1.0,
                2 * c_max,
                detail=f"slope of log max_(k eta <= {T:g}) ||w_k - x(k eta)|| vs log eta for eta L in "
                f"{sorted(config.flow_step_fractions)} (L = {L:.3g}, the largest Hessian eigenvalue along the flow); "
                "forward Euler is order 1 (Hairer et al. 1993, Thm. II.3.4); the O(eta^2) term tilts the slope by "
                f"O(eta L) <= {c_max:g}: tolerance 2 * {c_max:g}",
            ),
            Check.relative(
                f"{name}: GD-flow gap / eta, extrapolated to eta -> 0, vs max ||e(t)|| of the Euler error equation",
                extrapolated,
                coefficient,
                10 * c_min**2,
                detail="e' = -H e - H grad f / 2, e(0) = 0 (Hairer et al. 1993, Thm. II.8.1), max over the grid of "
                "the smallest eta; measured gap / eta at the two smallest etas, extrapolated linearly to 0 "
                f"(Richardson): the remainder is O((eta L)^2) = {c_min**2:.1g}: tolerance 10 * {c_min:g}^2",
            ),
        ]
    return out


# ------------------------------------------------------------------------------------------------ figures
def figures(metrics: pd.DataFrame, config: OptimizerZooConfig) -> dict[str, Figure]:
    """Trajectories, loss curves, Adagrad's step, the rescaled paths and the GD-flow gap, from the metrics."""
    functions = _functions(config)
    return {
        "trajectories": _trajectory_figure(functions, metrics, config),
        "loss_curves": _loss_figure(functions, metrics),
        "adagrad_step": _constant_gradient_figure(metrics, config),
        "rescaling": _rescaling_figure(functions, metrics, config),
        "gd_vs_flow": _flow_figure(metrics, config),
    }


def _path(metrics: pd.DataFrame, x: str, y: str, **ids: object) -> tuple[np.ndarray, np.ndarray]:
    return series(metrics, x, **ids)[1], series(metrics, y, **ids)[1]


def _contours(ax: Axes, f: TestFunction) -> None:
    X, Y, Z = (a.numpy() for a in f.grid(300))
    if f.minimum is not None:
        gap = Z - f.minimum
        levels = np.logspace(np.log10(max(np.quantile(gap, 0.002), 1e-3)), np.log10(gap.max()), 22)
        ax.contour(X, Y, np.maximum(gap, levels[0]), levels=levels, norm=LogNorm(), cmap="Greys", linewidths=0.7)
    else:
        ax.contour(X, Y, Z, levels=18, cmap="Greys", linewidths=0.7)
    for point in f.minimizers:
        ax.plot(*point, marker="*", color="gold", markeredgecolor="k", markersize=14, zorder=5, linestyle="none")
    for point in f.saddles:
        ax.plot(*point, marker="X", color="white", markeredgecolor="k", markersize=9, zorder=5, linestyle="none")
    ax.set_xlim(f.xlim)
    ax.set_ylim(f.ylim)
    ax.set_xlabel("x")
    ax.set_ylabel("y")


def _trajectory_figure(functions: dict[str, TestFunction], metrics: pd.DataFrame, config: OptimizerZooConfig) -> Figure:
    fig = Figure(figsize=(12, 10.5), layout="constrained")
    for ax, name in zip(fig.subplots(2, 2).flat, FUNCTIONS, strict=True):
        f = functions[name]
        _contours(ax, f)
        for method in METHODS:
            x, y = _path(metrics, "x", "y", function=name, method=method)
            label = f"{method} (eta={LEARNING_RATES[name][method]:g})"
            ax.plot(x, y, "-", color=COLORS[method], lw=1.3, marker=".", ms=2.5, label=label)
        ax.plot(*f.start, "o", color="k", ms=6, label="start")
        ax.set_title(f"{f!r}, {config.steps} steps")
        ax.legend(fontsize=7, loc="lower right" if name != "beale" else "lower left")
    fig.suptitle(
        "The optimizer zoo: trajectories of the lecture update rules "
        "(contours of f - f* log-spaced; of f for the saddle; star: minimiser, cross: saddle point)"
    )
    return fig


def _loss_figure(functions: dict[str, TestFunction], metrics: pd.DataFrame) -> Figure:
    fig = Figure(figsize=(12, 8), layout="constrained")
    for ax, name in zip(fig.subplots(2, 2).flat, FUNCTIONS, strict=True):
        f = functions[name]
        for method in METHODS:
            values = series(metrics, "loss", function=name, method=method)[1]
            if f.minimum is not None:
                ax.semilogy(np.maximum(values - f.minimum, LOSS_FLOOR), color=COLORS[method], label=method)
            else:
                ax.plot(values, color=COLORS[method], label=method)
        if f.minimum is None:
            ax.set_yscale("symlog", linthresh=1e-2)
        ax.set_xlabel("step t")
        ax.set_ylabel(
            f"f(w_t) - f* (floored at {LOSS_FLOOR:g})" if f.minimum is not None else "f(w_t) (unbounded below; symlog)"
        )
        ax.set_title(repr(f))
        ax.legend(fontsize=8)
    fig.suptitle("Loss curves")
    return fig


def _constant_gradient_figure(metrics: pd.DataFrame, config: OptimizerZooConfig) -> Figure:
    fig = Figure(figsize=(7, 5), layout="constrained")
    ax = fig.subplots()
    t = np.arange(1, config.constant_gradient_steps + 1)
    g, eta = CONSTANT_GRADIENT[1], CONSTANT_GRADIENT_LR
    theory = {
        "adagrad": adagrad_constant_gradient_step(t, eta, g, config.adagrad_eps),
        "rmsprop": rmsprop_constant_gradient_step(t, eta, g, config.rho, config.adam_eps),
        "adam": adam_constant_gradient_step(t, eta, g, config.adam_eps),
    }
    marks = np.unique(np.round(np.logspace(0, np.log10(t[-1]), 25)).astype(int)) - 1
    for method, curve in theory.items():
        sizes = series(metrics, "constant_gradient_step", method=method)[1]
        ax.loglog(t, curve, "-", color=COLORS[method], lw=1, label=f"{method}: theory")
        label = f"{method}: measured (fitted exponent {_exponent(metrics, method, config):+.4f})"
        ax.loglog(t[marks], sizes[marks], "o", color=COLORS[method], ms=4, mfc="none", label=label)
    ax.set_xlabel("step t")
    ax.set_ylabel("|w_t - w_(t-1)|")
    ax.set_title(
        f"Steps under a constant gradient g = {g:g} (eta = {eta:g}):\nAdagrad's decays as t^(-1/2), "
        "RMSProp's and Adam's do not"
    )
    ax.legend(fontsize=8)
    return fig


def _rescaling_figure(functions: dict[str, TestFunction], metrics: pd.DataFrame, config: OptimizerZooConfig) -> Figure:
    fig = Figure(figsize=(12, 5), layout="constrained")
    for ax, name in zip(fig.subplots(1, 2), ("quadratic", "beale"), strict=True):
        f = functions[name]
        _contours(ax, f)
        for method, eps in (("gd", 0.0), ("adam", config.adam_eps)):
            plain = _path(metrics, "x", "y", function=name, method=method)
            scaled = _path(metrics, "scaled_x", "scaled_y", function=name, method=method, eps=eps)
            ax.plot(*plain, "-", color=COLORS[method], lw=2, label=f"{method}: grad f")
            label = f"{method}: D grad f, D = diag{config.rescale}"
            ax.plot(scaled[0][::5], scaled[1][::5], "o", color=COLORS[method], ms=4, mfc="none", label=label)
        ax.set_title(f"{f!r}: Adam is invariant to g -> D g, GD is not")
        ax.legend(fontsize=8, loc="lower right")
    return fig


def _flow_figure(metrics: pd.DataFrame, config: OptimizerZooConfig) -> Figure:
    fig = Figure(figsize=(7, 5), layout="constrained")
    ax = fig.subplots()
    for i, name in enumerate(config.flow_functions):
        etas, gaps, order, _ = _flow_fit(metrics, name)
        coefficient = value(metrics, "euler_error_coefficient_max", function=name)
        ax.loglog(etas, gaps, "o", color=f"C{i}", ms=7, label=f"{name}: measured (order {order:.3f})")
        label = f"{name}: eta max||e(t)|| (Euler error equation)"
        ax.loglog(etas, coefficient * etas, "-", color=f"C{i}", lw=1, label=label)
    ax.set_xlabel("step size eta")
    ax.set_ylabel(f"max over k eta <= {config.flow_horizon:g} of ||w_k - x(k eta)||")
    ax.set_title("Gradient descent is forward Euler on gradient flow: the gap is O(eta)")
    ax.legend(fontsize=8)
    return fig


EXPERIMENT = Experiment(
    name="optimizer-zoo",
    claim=(
        "GD, momentum, Nesterov, Adagrad, RMSProp and Adam as the lectures write them are the torch.optim rules "
        "(under a derived hyperparameter map); Adagrad's step decays as 1/sqrt(t) under a constant gradient; Adam "
        "is invariant to a diagonal rescaling of the gradient while GD is not; GD stays within O(eta) of "
        "gradient flow."
    ),
    config=OptimizerZooConfig,
    measure=measure,
    checks=checks,
    figures=figures,
    presets={
        "full": {
            "steps": 3000,
            "constant_gradient_steps": 100000,
            "flow_functions": ("quadratic", "rosenbrock", "beale", "saddle"),
            "flow_horizon": 2.0,
            "flow_step_fractions": (0.02, 0.01, 0.005, 0.0025),
            "network_width": 64,
            "network_examples": 256,
        }
    },
    references=(
        "Polyak (1964), Some methods of speeding up the convergence of iteration methods",
        "Nesterov (1983), A method for solving the convex programming problem with convergence rate O(1/k^2)",
        "Sutskever, Martens, Dahl & Hinton (2013), On the importance of initialization and momentum in deep learning",
        "Duchi, Hazan & Singer (2011), Adaptive subgradient methods for online learning and stochastic optimization",
        "Tieleman & Hinton (2012), Lecture 6.5 - RMSProp, COURSERA: Neural Networks for Machine Learning",
        "Kingma & Ba (2015), Adam: a method for stochastic optimization",
        "Hairer, Norsett & Wanner (1993), Solving Ordinary Differential Equations I, Sec. II.3 and II.8",
    ),
    part="optimisation",
)
