r"""Small steps: the trust-region step as its radius shrinks, and how far a one-step method's path strays from
its flow.

**The trust-region multiplier.** For the model m(p) = g^T p + p^T H p / 2 with any symmetric H, p* minimises m
over the ball ||p|| <= r iff for some lambda >= 0

.. math:: (H + \lambda I) p^* = -g, \qquad \lambda (r - \|p^*\|) = 0, \qquad H + \lambda I \succeq 0

(Moré & Sorensen 1983; Nocedal & Wright 2006, Thm. 4.1): the step is the proximal (Levenberg-Marquardt) step of
the model with weight lambda, and lambda is the ball constraint's multiplier. On the boundary lambda solves the
secular equation ||(H + lambda I)^{-1} g|| = r. Expanding (H + lambda I)^{-1} = lambda^{-1} (I - H / lambda + ...)
with u = g / ||g||, q = u^T H u and P = I - u u^T:

.. math::
    \frac{\lambda(r)\, r}{\|g\|} = 1 - \frac{q\, r}{\|g\|} + O(r^2), \qquad
    p^*(r) = -r u + \frac{r^2}{\|g\|} P H u + O(r^3),

so lambda(r) ~ ||g|| / r -> infinity as r -> 0, and the step's angle to -g is ||P H u|| r / ||g|| + O(r^2): the
trust-region step of the quadratic model becomes the trust-region step of the linear model (-r u), which is the
gradient step -eta g with eta = r / ||g|| ~ 1 / lambda.

**The path of a one-step method.** A method x_{k+1} = x_k + h F(x_k) + h^2 D(x_k) + O(h^3) is consistent of order
1 with the flow x' = F(x): its iterates satisfy x_k = x(k h) + h e(k h) + O(h^2) on bounded intervals, where the
error coefficient solves

.. math:: \dot e = J(x)\, e + D(x) - \tfrac12 J(x) F(x), \qquad e(0) = 0, \qquad J = \partial F / \partial x

(Hairer, Norsett & Wanner 1993, Thm. II.8.1: D - J F / 2 is the principal error function, J F = x''). The
component of e along the flow only shifts the iterate's clock; the path strays from the flow's curve by the
transverse part. For a time change of gradient flow, F = -c(x) grad f with c > 0, the curve's tangent is -n,
n = grad f / ||grad f||, and the level sets of f cross it at right angles; cutting the path and the curve where f
first falls to a level, the Hausdorff distance between the path (a polyline) and the curve is

.. math:: d_H(h) = h \max_t \bigl\|(I - n n^T) e(t)\bigr\| + O(h^2)

(in the plane ||(I - n n^T) e|| = |e . nu|, nu the curve's normal: `across_curve`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.integrate import solve_ivp

Array = NDArray[np.float64]
Field = Callable[[Array], Array]


def small_radius_multiplier(H: ArrayLike, g: ArrayLike, radius: ArrayLike) -> Array:
    r"""The first-order prediction of lambda(r) r / ||g||: :math:`1 - u^T H u \; r / \|g\|`, u = g / ||g||.

    Example:
        >>> small_radius_multiplier(np.eye(2), [3.0, 4.0], 0.5).item()  # exact for H = I: lambda = ||g|| / r - 1
        0.9
    """
    H, g, r = np.asarray(H, dtype=float), np.asarray(g, dtype=float), np.asarray(radius, dtype=float)
    norm = np.linalg.norm(g)
    u = g / norm
    return 1.0 - float(u @ H @ u) * r / norm


def small_radius_angle(H: ArrayLike, g: ArrayLike, radius: ArrayLike) -> Array:
    r"""The first-order prediction of the angle between the trust-region step and -g: :math:`\|(I - u u^T) H u\|
    \, r / \|g\|`, u = g / ||g||.

    Example:
        >>> small_radius_angle(np.diag([1.0, 3.0]), [1.0, 1.0], 0.1).round(12).item()  # P H u = (-1, 1) / sqrt 2
        0.070710678119
    """
    H, g, r = np.asarray(H, dtype=float), np.asarray(g, dtype=float), np.asarray(radius, dtype=float)
    norm = np.linalg.norm(g)
    u = g / norm
    Hu = H @ u
    return float(np.linalg.norm(Hu - (u @ Hu) * u)) * r / norm


class ErrorPath(NamedTuple):
    """The flow x(t) and the error coefficient e(t) of a one-step method at the times `time`, and the time
    `duration` at which the flow reached the stopping level (the end of `time`)."""

    time: Array
    x: Array
    e: Array
    duration: float


def one_step_error(
    field: Field,
    jacobian: Field,
    x0: ArrayLike,
    stop: Field,
    horizon: float,
    correction: Field | None = None,
    points: int = 2001,
    rtol: float = 1e-10,
    atol: float = 1e-12,
    method: str = "LSODA",
) -> ErrorPath:
    r"""Integrate x' = F(x) with the error coefficient e' = J e + D - J F / 2 (module docstring) until stop(x) falls
    to 0, and return both at `points` equally spaced times.

    `field(x)` is F, `jacobian(x)` its Jacobian J, `correction(x)` the method's h^2 term D (None: D = 0, Euler's
    method), `stop(x)` a scalar function positive at x0; the flow must reach stop = 0 before `horizon`.
    Integrated by `scipy.integrate.solve_ivp` with `method` at tolerances rtol, atol (LSODA switches to BDF where
    the flow is stiff, as gradient flows in a narrow valley are); the stopping time is located by its event.

    Example (Euler on x' = -x: e(t) = -t e^{-t} / 2):
        >>> path = one_step_error(lambda x: -x, lambda x: -np.eye(1), [1.0], lambda x: x[0] - np.exp(-1.0), 10.0)
        >>> round(path.duration, 9), bool(abs(path.e[-1, 0] + 0.5 * np.exp(-1.0)) < 1e-9)
        (1.0, True)
    """
    x0 = np.asarray(x0, dtype=float)
    d = x0.size
    if not stop(x0) > 0:
        raise ValueError(f"stop: expected a positive value at x0, got {stop(x0)}")

    def rhs(_: float, state: Array) -> Array:
        x, e = state[:d], state[d:]
        F, J = field(x), jacobian(x)
        drift = J @ e - 0.5 * J @ F
        return np.concatenate([F, drift if correction is None else drift + correction(x)])

    def reached(_: float, state: Array) -> float:
        return float(stop(state[:d]))

    reached.terminal = True  # type: ignore[attr-defined]
    reached.direction = -1  # type: ignore[attr-defined]
    solution = solve_ivp(
        rhs,
        (0.0, horizon),
        np.concatenate([x0, np.zeros(d)]),
        method=method,
        rtol=rtol,
        atol=atol,
        events=reached,
        dense_output=True,
    )
    if not solution.success or len(solution.t_events[0]) == 0:
        raise RuntimeError(f"one_step_error: the flow did not reach stop = 0 before t = {horizon} ({solution.message})")
    duration = float(solution.t_events[0][0])
    time = np.linspace(0.0, duration, points)
    state = solution.sol(time).T
    return ErrorPath(time, state[:, :d].copy(), state[:, d:].copy(), duration)


def across_curve(e: ArrayLike, g: ArrayLike) -> Array:
    r"""In the plane, the signed component of each row of `e` across the curve of a time-changed gradient flow:
    e . nu, nu the direction of travel -g/||g|| turned by +90 degrees (rows: points along the curve, g the gradient
    there); its size is ||(I - n n^T) e||, n = g / ||g||, the first-order distance per unit step (module docstring).

    Example:
        >>> across_curve([[1.0, 2.0]], [[0.0, -3.0]]).tolist()  # travel along +y, nu = -x
        [-1.0]
    """
    e, g = np.atleast_2d(np.asarray(e, dtype=float)), np.atleast_2d(np.asarray(g, dtype=float))
    if e.shape[1] != 2 or g.shape != e.shape:
        raise ValueError(f"e, g: expected two arrays of the same shape (n, 2), got {e.shape} and {g.shape}")
    u = g / np.linalg.norm(g, axis=1, keepdims=True)
    return e[:, 0] * u[:, 1] - e[:, 1] * u[:, 0]
