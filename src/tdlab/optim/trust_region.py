r"""Trust-region Newton-CG: Steihaug-Toint CG for the subproblem and the standard radius update.

At w_k the method minimises the quadratic model inside a ball,

.. math:: \min_{\|p\| \le \Delta_k} m_k(p) = f_k + g_k^T p + \tfrac12 p^T H_k p ,

approximately, by conjugate gradients that stop at the boundary or at negative curvature (Steihaug 1983;
Toint 1981; Nocedal & Wright 2006, Alg. 7.2), then compares actual and predicted reduction,

.. math:: \rho_k = \frac{f(w_k) - f(w_k + p_k)}{m_k(0) - m_k(p_k)},

to accept the step and adapt the radius (Nocedal & Wright 2006, Alg. 4.1). It needs only Hessian-vector
products, handles indefinite Hessians, and every step decreases the model at least as much as the Cauchy
point, m_k(0) - m_k(p_k) >= ||g_k|| min(Delta_k, ||g_k|| / ||H_k||) / 2 (N&W Lemma 4.3, Thm. 7.3).

Callables as in `tdlab.optim.newton`: `fun(w)`, `grad(w)`, `hvp(w, v)` on flat vectors. To train a model in any
loop, `TrustRegion` is the same method as a `torch.optim.Optimizer` (registered as "trust-region").

Example:
    >>> import torch
    >>> from tdlab.optim.test_functions import Rosenbrock
    >>> f = Rosenbrock()
    >>> result = trust_region(f.value, f.gradient, f.hvp, torch.tensor([-1.2, 1.0], dtype=torch.float64))
    >>> result.converged, [round(x, 8) for x in result.w.tolist()]
    (True, [1.0, 1.0])
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, Literal, NamedTuple

import torch
from torch import Tensor

from tdlab.optim._base import SecondOrderOptimizer, evaluate, split_like
from tdlab.optim._validation import check_in_interval, check_positive
from tdlab.optim.newton import check_max_iter

Function = Callable[[Tensor], Tensor]
HVP = Callable[[Tensor, Tensor], Tensor]
Termination = Literal["converged", "boundary", "negative curvature", "max_iter"]


class SteihaugResult(NamedTuple):
    """The subproblem step, the model decrease m(0) - m(p) it achieves, why CG stopped, and the HVPs it took."""

    step: Tensor
    decrease: float
    termination: Termination
    num_hvp: int


def boundary_crossings(z: Tensor, d: Tensor, radius: float) -> tuple[float, float]:
    r"""The roots tau_- <= 0 <= tau_+ of ||z + tau d|| = radius (for ||z|| <= radius).

    .. math:: \tau_\pm = \frac{-z^T d \pm \sqrt{(z^T d)^2 + \|d\|^2 (\Delta^2 - \|z\|^2)}}{\|d\|^2}

    Example:
        >>> boundary_crossings(torch.zeros(2), torch.tensor([3.0, 4.0]), radius=10.0)
        (-2.0, 2.0)
    """
    dd, zd, zz = float(d @ d), float(z @ d), float(z @ z)
    root = math.sqrt(max(zd * zd + dd * (radius * radius - zz), 0.0))
    # the numerically stable pair: avoid cancelling -zd against root
    if zd >= 0:
        q = -(zd + root)
        return (q / dd, (zz - radius * radius) / q if q != 0 else 0.0)
    q = root - zd
    return ((zz - radius * radius) / q, q / dd)


def steihaug_cg(g: Tensor, hvp: Function, radius: float, max_iter: int | None = None) -> SteihaugResult:
    r"""Approximate trust-region step by Steihaug-Toint CG (Nocedal & Wright 2006, Alg. 7.2).

    .. math::
        &z_0 = 0,\ r_0 = g,\ d_0 = -g,\ \epsilon = \min(0.5, \|g\|) \|g\|; \quad \textbf{for } j = 0, 1, \dots: \\
        &\quad \textbf{if } d_j^T H d_j \le 0: \textbf{return } z_j + \tau d_j
            \text{ on the boundary, the root with the lower model value} \\
        &\quad \alpha_j = r_j^T r_j / d_j^T H d_j, \ z_{j+1} = z_j + \alpha_j d_j \\
        &\quad \textbf{if } \|z_{j+1}\| \ge \Delta: \textbf{return } z_j + \tau d_j, \ \tau \ge 0,
            \ \|z_j + \tau d_j\| = \Delta \\
        &\quad r_{j+1} = r_j + \alpha_j H d_j; \ \textbf{if } \|r_{j+1}\| \le \epsilon: \textbf{return } z_{j+1} \\
        &\quad \beta_{j+1} = r_{j+1}^T r_{j+1} / r_j^T r_j, \ d_{j+1} = -r_{j+1} + \beta_{j+1} d_j

    The model decrease is tracked along the way: m(z + tau d) - m(z) = tau r^T d + tau^2 d^T H d / 2 (r = g + H z
    is the CG residual), so no extra Hessian-vector product is needed. The first iterate z_1 (or its
    boundary point) is the Cauchy point; the model decreases monotonically along CG (N&W Thm. 7.3).

    Example:
        >>> H = torch.diag(torch.tensor([1.0, 1.0], dtype=torch.float64))
        >>> g = torch.tensor([-3.0, -4.0], dtype=torch.float64)
        >>> result = steihaug_cg(g, lambda v: H @ v, radius=1.0)  # Newton step (3, 4) is outside
        >>> [round(x, 12) for x in result.step.tolist()], result.termination
        ([0.6, 0.8], 'boundary')
    """
    check_positive("radius", radius)
    max_iter = 2 * g.numel() if max_iter is None else max_iter
    eps = min(0.5, float(torch.linalg.vector_norm(g))) * float(torch.linalg.vector_norm(g))
    z, r = torch.zeros_like(g), g.clone()
    d, rr, decrease = -r, float(r @ r), 0.0
    for j in range(max_iter):
        if rr**0.5 <= eps:
            return SteihaugResult(z, decrease, "converged", j)
        hd = hvp(d)
        curvature, rd = float(d @ hd), float(r @ d)

        def model_change(tau: float, rd: float = rd, curvature: float = curvature) -> float:
            return tau * rd + 0.5 * tau * tau * curvature

        if curvature <= 0:
            tau = min(boundary_crossings(z, d, radius), key=model_change)
            return SteihaugResult(z + tau * d, decrease - model_change(tau), "negative curvature", j + 1)
        alpha = rr / curvature
        if float(torch.linalg.vector_norm(z + alpha * d)) >= radius:
            tau = boundary_crossings(z, d, radius)[1]
            return SteihaugResult(z + tau * d, decrease - model_change(tau), "boundary", j + 1)
        z, r = z + alpha * d, r + alpha * hd
        decrease -= model_change(alpha)
        rr_new = float(r @ r)
        d, rr = -r + (rr_new / rr) * d, rr_new
    return SteihaugResult(z, decrease, "max_iter", max_iter)


def update_radius(radius: float, rho: float, step_norm: float, max_radius: float) -> float:
    r"""The standard radius update (Nocedal & Wright 2006, Alg. 4.1).

    .. math::
        \Delta_{k+1} = \begin{cases} \Delta_k / 4 & \rho_k < 1/4 \\
        \min(2 \Delta_k, \hat\Delta) & \rho_k > 3/4 \text{ and } \|p_k\| = \Delta_k \\
        \Delta_k & \text{otherwise} \end{cases}

    (||p_k|| = Delta_k is tested to a relative 1e-6.)

    Example:
        >>> update_radius(1.0, rho=0.9, step_norm=1.0, max_radius=10.0), update_radius(1.0, 0.1, 0.5, 10.0)
        (2.0, 0.25)
    """
    if not rho >= 0.25:  # also for rho = nan (a non-finite trial value)
        return radius / 4
    if rho > 0.75 and step_norm >= (1 - 1e-6) * radius:
        return min(2 * radius, max_radius)
    return radius


class TrustRegionResult(NamedTuple):
    """The outcome of `trust_region`: the final point, the iterates w_0..w_K (rejected steps repeat the point),
    the radii Delta_k, the ratios rho_k, the predicted decreases m(0) - m(p_k), the gradient norms, whether
    ||grad f|| <= gtol was reached, and the Hessian-vector products used."""

    w: Tensor
    path: Tensor
    radii: list[float]
    rhos: list[float]
    predicted: list[float]
    grad_norms: list[float]
    converged: bool
    num_hvp: int


def trust_region(
    fun: Function,
    grad: Function,
    hvp: HVP,
    w0: Tensor,
    radius: float = 1.0,
    max_radius: float = 100.0,
    eta: float = 0.15,
    gtol: float = 1e-10,
    max_iter: int = 200,
) -> TrustRegionResult:
    r"""Trust-region Newton-CG (Nocedal & Wright 2006, Alg. 4.1 with the Steihaug step of Alg. 7.2).

    .. math::
        &\textbf{for } k = 0, 1, \dots \text{ until } \|\nabla f(w_k)\| \le \text{gtol}: \\
        &\quad p_k = \text{steihaug\_cg}(\nabla f(w_k), H(w_k), \Delta_k), \quad
            \rho_k = \frac{f(w_k) - f(w_k + p_k)}{m_k(0) - m_k(p_k)} \\
        &\quad \Delta_{k+1} = \text{update\_radius}(\Delta_k, \rho_k, \|p_k\|, \hat\Delta), \quad
            w_{k+1} = w_k + p_k \text{ if } \rho_k > \eta \text{ else } w_k

    `radius` is Delta_0, `max_radius` Delta-hat, `eta` in [0, 1/4) the acceptance threshold.

    Example:
        >>> H = torch.tensor([[2.0, 0.0], [0.0, 20.0]], dtype=torch.float64)
        >>> result = trust_region(lambda w: 0.5 * w @ H @ w, lambda w: H @ w, lambda w, v: H @ v,
        ...                       torch.tensor([3.0, 1.0], dtype=torch.float64))
        >>> result.converged, result.w.abs().max().item() < 1e-10
        (True, True)
    """
    check_positive("radius", radius)
    check_positive("max_radius", max_radius)
    check_in_interval("eta", eta, 0.0, 0.25, closed_high=False)
    check_positive("gtol", gtol)
    if radius > max_radius:
        raise ValueError(f"radius: expected a number <= max_radius = {max_radius}, got {radius}")
    w, value = w0.clone(), float(fun(w0))
    path, radii, rhos, predicted, grad_norms, num_hvp, converged = [w], [], [], [], [], 0, False
    for _ in range(max_iter):
        g = grad(w)
        grad_norms.append(float(torch.linalg.vector_norm(g)))
        if grad_norms[-1] <= gtol:
            converged = True
            break
        sub = steihaug_cg(g, lambda v, w=w: hvp(w, v), radius)
        num_hvp += sub.num_hvp
        trial = float(fun(w + sub.step))
        rho = (value - trial) / sub.decrease if sub.decrease > 0 else float("nan")
        radii.append(radius)
        rhos.append(rho)
        predicted.append(sub.decrease)
        radius = update_radius(radius, rho, float(torch.linalg.vector_norm(sub.step)), max_radius)
        if rho > eta:
            w, value = w + sub.step, trial
        path.append(w)
    return TrustRegionResult(w, torch.stack(path), radii, rhos, predicted, grad_norms, converged, num_hvp)


class TrustRegion(SecondOrderOptimizer):
    r"""Trust-region Newton-CG as an optimiser: one iteration of `trust_region` per step (Nocedal & Wright 2006,
    Alg. 4.1 with the Steihaug step of Alg. 7.2):

    .. math::
        p_t = \text{steihaug\_cg}(\nabla f(w_t), H(w_t), \Delta_t), \quad
        \rho_t = \frac{f(w_t) - f(w_t + p_t)}{m_t(0) - m_t(p_t)}, \quad
        w_{t+1} = w_t + p_t \text{ if } \rho_t > \eta \text{ else } w_t, \quad
        \Delta_{t+1} = \text{update\_radius}(\Delta_t, \rho_t, \|p_t\|, \hat\Delta)

    `lr` is the initial radius Delta_0 (later radii follow the radius update, not a learning-rate schedule),
    `max_radius` Delta-hat, `eta` in [0, 1/4) the acceptance threshold, `max_iter` the CG iterations (2 n by
    default). All parameters with a gradient are one vector, with the first parameter group's settings; the radius
    and the last ratio rho are in the state of the first parameter. A step whose predicted decrease m(0) - m(p) is
    below the loss's rounding (machine epsilon times |f|, e.g. at a minimiser) is not taken and leaves the radius
    (rho would be rounding noise). `needs_closure = True`: the step calls the
    closure (which re-evaluates the loss and backpropagates) at w_t and at the trial point w_t + p_t;
    `create_graph = True`: that backward keeps the graph for the Hessian-vector products.

    Example:
        >>> w = torch.nn.Parameter(torch.tensor([3.0, 1.0], dtype=torch.float64))
        >>> opt = TrustRegion([w], lr=10.0)
        >>> def closure():
        ...     opt.zero_grad()
        ...     loss = (w**2 * torch.tensor([1.0, 10.0], dtype=torch.float64)).sum()
        ...     loss.backward(create_graph=True)
        ...     return loss
        >>> for _ in range(3):
        ...     _ = opt.step(closure)
        >>> w.abs().max().item() < 1e-12
        True
    """

    needs_closure = True

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1.0,
        max_radius: float = 100.0,
        eta: float = 0.15,
        max_iter: int | None = None,
    ):
        super().__init__(params, {"lr": lr, "max_radius": max_radius, "eta": eta, "max_iter": max_iter})

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group, validating its settings (the defaults' when the group does not set them)."""
        settings = {key: param_group.get(key, value) for key, value in self.defaults.items()}
        check_positive("lr", settings["lr"])
        check_positive("max_radius", settings["max_radius"])
        check_in_interval("eta", settings["eta"], 0.0, 0.25, closed_high=False)
        check_max_iter(settings["max_iter"])
        if settings["lr"] > settings["max_radius"]:
            raise ValueError(f"lr: the initial radius, expected at most max_radius = {settings['max_radius']}")
        super().add_param_group(param_group)

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor:  # type: ignore[override]
        """One trust-region iteration; `closure` zeroes the gradients, evaluates the loss and backpropagates."""
        if closure is None:
            raise RuntimeError("TrustRegion: step needs a closure that re-evaluates the loss and calls backward")
        loss = evaluate(closure)
        params, g, hvp = self._curvature()
        if not params:
            return loss
        settings, state = self.param_groups[0], self.state[params[0]]
        radius = state.get("radius", settings["lr"])
        sub = steihaug_cg(g, hvp, radius, settings["max_iter"])
        value = float(loss.detach())
        if sub.decrease <= torch.finfo(g.dtype).eps * max(1.0, abs(value)):  # below the loss's rounding: stay
            return loss
        start = [p.detach().clone() for p in params]
        for p, piece in zip(params, split_like(sub.step, params), strict=True):
            p.add_(piece)
        with torch.enable_grad():
            trial = float(closure().detach())
        rho = (value - trial) / sub.decrease if sub.decrease > 0 else float("nan")
        state["radius"] = update_radius(radius, rho, float(torch.linalg.vector_norm(sub.step)), settings["max_radius"])
        state["rho"] = rho
        if not rho > settings["eta"]:  # rejected (also for rho = nan): back to w_t
            for p, w in zip(params, start, strict=True):
                p.copy_(w)
        return loss
