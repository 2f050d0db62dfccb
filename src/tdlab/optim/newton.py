r"""Newton's method on Hessian-vector products: the Newton-CG direction, a pure Newton step, and line-search
Newton-CG ("damped Newton", Nocedal & Wright 2006, Alg. 7.1).

The Newton step minimises the local quadratic model m(p) = f + g^T p + p^T H p / 2, i.e. solves H p = -g. Here
it is solved matrix-free by conjugate gradients on Hessian-vector products (`Objective.hvp` for a network, the
closed-form Hessian for a test function), stopped at the forcing tolerance

.. math:: \|H p + g\| \le \epsilon, \qquad \epsilon = \min(0.5, \|g\|)\, \|g\| \quad \text{by default},

which keeps Newton's local quadratic convergence (Nocedal & Wright 2006, Thm. 7.2). On a strictly convex
quadratic with tolerance 0 the step lands on the minimiser (to rounding) in one step.

Callables: `fun(w) -> f(w)` (0-d tensor), `grad(w) -> grad f(w)`, `hvp(w, v) -> H(w) v`; w, v flat vectors.
For an `Objective` use `fun=obj.value, grad=obj.gradient, hvp=lambda w, v: obj.hvp(v, w)`. To train a model in
any loop, `NewtonCG` is the same step as a `torch.optim.Optimizer` (registered as "newton").

Example:
    >>> import torch
    >>> A = torch.tensor([[3.0, 1.0], [1.0, 2.0]], dtype=torch.float64)
    >>> b = torch.tensor([1.0, -1.0], dtype=torch.float64)
    >>> w1 = newton_step(torch.zeros(2, dtype=torch.float64), -b, lambda v: A @ v, forcing=0.0)
    >>> torch.allclose(A @ w1, b)
    True
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import torch
from torch import Tensor

from tdlab.optim._base import SecondOrderOptimizer, evaluate, split_like
from tdlab.optim._validation import check_in_interval, check_nonnegative, check_positive

Function = Callable[[Tensor], Tensor]
HVP = Callable[[Tensor, Tensor], Tensor]


class NewtonDirection(NamedTuple):
    """A Newton-CG direction, the Hessian-vector products it took, and whether negative curvature stopped CG."""

    direction: Tensor
    num_hvp: int
    negative_curvature: bool


def _tolerance(g_norm: float, forcing: float | None) -> float:
    """epsilon = eta ||g|| with eta = min(0.5, ||g||) (quadratic rate) unless a forcing term is given."""
    return (min(0.5, g_norm) if forcing is None else forcing) * g_norm


def newton_direction(
    g: Tensor, hvp: Function, forcing: float | None = None, max_iter: int | None = None
) -> NewtonDirection:
    r"""Approximate Newton direction p ~ -H^{-1} g by CG, stopping at negative curvature (N&W 2006, Alg. 7.1).

    .. math::
        &z_0 = 0,\ r_0 = g,\ d_0 = -g; \quad \textbf{for } j = 0, 1, \dots: \\
        &\quad \textbf{if } d_j^T H d_j \le 0: \ \textbf{return } -g \text{ if } j = 0 \text{ else } z_j \\
        &\quad \alpha_j = r_j^T r_j / d_j^T H d_j,\ z_{j+1} = z_j + \alpha_j d_j,\ r_{j+1} = r_j + \alpha_j H d_j \\
        &\quad \textbf{if } \|r_{j+1}\| \le \epsilon: \textbf{return } z_{j+1} \\
        &\quad \beta_{j+1} = r_{j+1}^T r_{j+1} / r_j^T r_j,\ d_{j+1} = -r_{j+1} + \beta_{j+1} d_j

    `hvp(v)` is H v at the current point; `forcing` the relative tolerance eta in eps = eta ||g|| (default
    min(0.5, ||g||)); `max_iter` defaults to 2 n. The result is always a descent direction.

    Example:
        >>> H = torch.diag(torch.tensor([1.0, 4.0], dtype=torch.float64))
        >>> newton_direction(torch.tensor([1.0, 1.0], dtype=torch.float64), lambda v: H @ v, 0.0).direction
        tensor([-1.0000, -0.2500], dtype=torch.float64)
    """
    g_norm = float(torch.linalg.vector_norm(g))
    if forcing is not None:
        check_nonnegative("forcing", forcing)
    max_iter = 2 * g.numel() if max_iter is None else max_iter
    eps = _tolerance(g_norm, forcing)
    z = torch.zeros_like(g)
    r = g.clone()
    d = -r
    rr = float(r @ r)
    for j in range(max_iter):
        if rr**0.5 <= eps:
            return NewtonDirection(z, j, False)
        hd = hvp(d)
        curvature = float(d @ hd)
        if curvature <= 0:
            return NewtonDirection(-g if j == 0 else z, j + 1, True)
        alpha = rr / curvature
        z = z + alpha * d
        r = r + alpha * hd
        rr_new = float(r @ r)
        d = -r + (rr_new / rr) * d
        rr = rr_new
    return NewtonDirection(z, max_iter, False)


def newton_step(w: Tensor, g: Tensor, hvp: Function, forcing: float | None = None) -> Tensor:
    r"""One (undamped) Newton step :math:`w - H^{-1} g`, with H^{-1} g by CG on `hvp` (see `newton_direction`).

    Example:
        >>> w = torch.tensor([2.0], dtype=torch.float64)
        >>> newton_step(w, 3 * w, lambda v: 3 * v).tolist()  # f = 3 w^2 / 2: one step to 0
        [0.0]
    """
    return w + newton_direction(g, hvp, forcing).direction


def backtracking(
    fun: Function,
    w: Tensor,
    direction: Tensor,
    value: float,
    slope: float,
    c1: float = 1e-4,
    shrink: float = 0.5,
    max_halvings: int = 60,
) -> float:
    r"""Armijo backtracking (Nocedal & Wright 2006, Alg. 3.1): the first alpha in 1, shrink, shrink^2, ... with

    .. math:: f(w + \alpha p) \le f(w) + c_1 \alpha\, \nabla f(w)^T p .

    `slope` is grad f(w)^T p (< 0 for a descent direction). Returns 0.0 if no step length is accepted.

    Example:
        >>> f = lambda w: (w**2).sum()
        >>> w = torch.tensor([1.0], dtype=torch.float64)
        >>> backtracking(f, w, torch.tensor([-2.0], dtype=torch.float64), value=1.0, slope=-4.0)
        0.5
    """
    check_in_interval("c1", c1, 0.0, 1.0, closed_high=False)
    check_in_interval("shrink", shrink, 0.0, 1.0, closed_high=False)
    alpha = 1.0
    for _ in range(max_halvings):
        trial = float(fun(w + alpha * direction))
        if trial <= value + c1 * alpha * slope:
            return alpha
        alpha *= shrink
    return 0.0


class NewtonResult(NamedTuple):
    """The outcome of `newton_cg`: the final point, the path w_0..w_K (K + 1, n), the step lengths alpha_k, the
    gradient norms at the visited points, whether ||grad f|| <= gtol was reached, and the HVPs used."""

    w: Tensor
    path: Tensor
    step_sizes: list[float]
    grad_norms: list[float]
    converged: bool
    num_hvp: int


def newton_cg(
    fun: Function,
    grad: Function,
    hvp: HVP,
    w0: Tensor,
    gtol: float = 1e-10,
    max_iter: int = 100,
    forcing: float | None = None,
) -> NewtonResult:
    r"""Line-search Newton-CG, "damped Newton" (Nocedal & Wright 2006, Alg. 7.1).

    .. math::
        &\textbf{for } k = 0, 1, \dots \text{ until } \|\nabla f(w_k)\| \le \text{gtol}: \\
        &\quad p_k = \text{newton\_direction}(\nabla f(w_k), H(w_k)) \quad \text{(CG; } -\nabla f \text{ on
            immediate negative curvature)} \\
        &\quad \alpha_k = \text{Armijo backtracking from } 1, \qquad w_{k+1} = w_k + \alpha_k p_k

    Far from a minimiser the line search damps the step; close to a strict minimiser alpha = 1 is accepted and
    convergence is quadratic.

    Example:
        >>> from tdlab.optim.test_functions import Rosenbrock
        >>> f = Rosenbrock()
        >>> result = newton_cg(f.value, f.gradient, f.hvp, torch.tensor([-1.2, 1.0], dtype=torch.float64))
        >>> result.converged, [round(x, 8) for x in result.w.tolist()]
        (True, [1.0, 1.0])
    """
    check_positive("gtol", gtol)
    w = w0.clone()
    path, step_sizes, grad_norms, num_hvp, converged = [w], [], [], 0, False
    for _ in range(max_iter):
        g = grad(w)
        grad_norms.append(float(torch.linalg.vector_norm(g)))
        if grad_norms[-1] <= gtol:
            converged = True
            break
        step = newton_direction(g, lambda v, w=w: hvp(w, v), forcing)
        num_hvp += step.num_hvp
        alpha = backtracking(fun, w, step.direction, float(fun(w)), float(g @ step.direction))
        if alpha == 0.0:
            break
        w = w + alpha * step.direction
        step_sizes.append(alpha)
        path.append(w)
    return NewtonResult(w, torch.stack(path), step_sizes, grad_norms, converged, num_hvp)


def check_max_iter(max_iter: int | None) -> None:
    """Raise ValueError unless `max_iter` (CG iterations) is None or an integer >= 1."""
    if max_iter is not None and (isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1):
        raise ValueError(f"max_iter: expected an integer >= 1 or None, got {max_iter!r}")


class NewtonCG(SecondOrderOptimizer):
    r"""Newton's method on Hessian-vector products, as an optimiser (Nocedal & Wright 2006, Sec. 7.1):

    .. math::
        p_t = \text{newton\_direction}(\nabla f(w_t), H(w_t)) \approx -H(w_t)^{-1} \nabla f(w_t), \qquad
        w_{t+1} = w_t + \eta\, p_t

    with the direction by CG on H v (`newton_direction`: stopped at ||H p + g|| <= forcing ||g||, forcing
    min(0.5, ||g||) by default, or at negative curvature, where it falls back to -g). lr = eta = 1 is the pure
    Newton step, a smaller lr damps it. All parameters with a gradient are one vector (one CG; `forcing` and
    `max_iter` of the first parameter group). `create_graph = True`: the trainer backpropagates with
    `create_graph=True`, and H v is a second backward pass through p.grad. On a strictly convex quadratic (linear
    least squares) with forcing = 0 one step reaches the minimiser, to rounding.

    Example:
        >>> w = torch.nn.Parameter(torch.tensor([2.0, -1.0], dtype=torch.float64))
        >>> opt = NewtonCG([w], forcing=0.0)
        >>> ((w - 1.0) ** 2 * torch.tensor([1.0, 10.0], dtype=torch.float64)).sum().backward(create_graph=True)
        >>> opt.step()
        >>> [round(x, 12) for x in w.tolist()]
        [1.0, 1.0]
    """

    def __init__(
        self, params: Iterable[Any], lr: float = 1.0, forcing: float | None = None, max_iter: int | None = None
    ):
        super().__init__(params, {"lr": lr, "forcing": forcing, "max_iter": max_iter})

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group, validating `lr`, `forcing` and `max_iter` (the defaults' when the group does not set them)."""
        check_positive("lr", param_group.get("lr", self.defaults["lr"]))
        forcing = param_group.get("forcing", self.defaults["forcing"])
        if forcing is not None:
            check_nonnegative("forcing", forcing)
        check_max_iter(param_group.get("max_iter", self.defaults["max_iter"]))
        super().add_param_group(param_group)

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:  # type: ignore[override]
        """One Newton-CG step from the gradients in p.grad (with their graph); `closure` re-evaluates them first."""
        loss = evaluate(closure)
        params, g, hvp = self._curvature()
        if not params:
            return loss
        first = self.param_groups[0]
        direction = newton_direction(g, hvp, first["forcing"], first["max_iter"]).direction
        lrs = {p: group["lr"] for group in self.param_groups for p in group["params"]}
        for p, piece in zip(params, split_like(direction, params), strict=True):
            p.add_(piece, alpha=lrs[p])
        return loss
