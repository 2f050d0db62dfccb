r"""Gradient descent as the forward-Euler discretisation of gradient flow, and its global error.

Gradient descent w_{k+1} = w_k - eta grad f(w_k) is the explicit Euler method with step eta for the ODE

.. math:: \dot x = -\nabla f(x), \qquad x(0) = w_0 .

Euler is a first-order method: on a fixed horizon [0, T] the iterates stay within O(eta) of the flow,
w_k - x(k eta) = eta e(k eta) + O(eta^2), where the error coefficient e solves the linear variational equation

.. math::
    \dot e = f_y(x)\, e - \tfrac12 \ddot x = -H(x)\, e - \tfrac12 H(x) \nabla f(x), \qquad e(0) = 0

(Hairer, Norsett & Wanner 1993, "Solving Ordinary Differential Equations I", Thm. II.8.1, with the local error
of Euler h^2 x''/2 and x'' = H(x) grad f(x) along gradient flow). On a diagonal quadratic everything is
explicit: x_i(t) = e^{-lambda_i t} x_{0,i}, w_{k,i} = (1 - eta lambda_i)^k x_{0,i} and
e_i(t) = -(lambda_i^2 t / 2) e^{-lambda_i t} x_{0,i}.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.integrate import solve_ivp

Array = NDArray[np.float64]


def quadratic_flow(eigenvalues: ArrayLike, x0: ArrayLike, t: ArrayLike) -> Array:
    r"""Gradient flow on f(x) = sum_i lambda_i x_i^2 / 2: :math:`x_i(t) = e^{-\lambda_i t} x_{0,i}`.

    Returns shape (len(t), d).

    Example:
        >>> quadratic_flow([1.0, 2.0], [1.0, 1.0], [0.0]).tolist()
        [[1.0, 1.0]]
    """
    lam, x0 = np.asarray(eigenvalues, dtype=float), np.asarray(x0, dtype=float)
    t = np.atleast_1d(np.asarray(t, dtype=float))
    return np.exp(-np.outer(t, lam)) * x0


def quadratic_gd(eigenvalues: ArrayLike, x0: ArrayLike, eta: float, steps: ArrayLike) -> Array:
    r"""Gradient descent on the same quadratic: :math:`w_{k,i} = (1 - \eta \lambda_i)^k x_{0,i}`; shape (len(k), d).

    Example:
        >>> quadratic_gd([1.0], [1.0], 0.5, [0, 1, 2]).ravel().tolist()
        [1.0, 0.5, 0.25]
    """
    lam, x0 = np.asarray(eigenvalues, dtype=float), np.asarray(x0, dtype=float)
    k = np.atleast_1d(np.asarray(steps, dtype=float))
    return (1.0 - eta * lam)[None, :] ** k[:, None] * x0


def quadratic_euler_error(eigenvalues: ArrayLike, x0: ArrayLike, t: ArrayLike) -> Array:
    r"""The error coefficient of GD on a diagonal quadratic: :math:`e_i(t) = -\tfrac12 \lambda_i^2 t\, e^{-\lambda_i t}
    x_{0,i}`, so that w_k - x(k eta) = eta e(k eta) + O(eta^2); shape (len(t), d).

    From (1 - eta lambda)^k = exp(-lambda t - eta lambda^2 t / 2 + O(eta^2)) at t = k eta.

    Example:
        >>> bool(quadratic_euler_error([2.0], [1.0], [0.5]).item() == -np.exp(-1.0))
        True
    """
    lam, x0 = np.asarray(eigenvalues, dtype=float), np.asarray(x0, dtype=float)
    t = np.atleast_1d(np.asarray(t, dtype=float))
    return -0.5 * lam**2 * t[:, None] * np.exp(-np.outer(t, lam)) * x0


def euler_error_coefficient(
    gradient: Callable[[Array], Array],
    hessian: Callable[[Array], Array],
    x0: ArrayLike,
    t: ArrayLike,
    rtol: float = 1e-11,
    atol: float = 1e-13,
) -> tuple[Array, Array]:
    r"""Gradient flow x(t) and the Euler error coefficient e(t) at the times `t`, by solving

    .. math::
        \dot x = -\nabla f(x), \qquad \dot e = -H(x)\, e - \tfrac12 H(x) \nabla f(x), \qquad x(0) = x_0,\ e(0) = 0

    with the explicit Runge-Kutta method of Dormand & Prince (DOP853, order 8, with a dense output of order 7 at
    the times `t`) to tolerances rtol, atol. (On a long horizon with an ill-conditioned H the ODE is stiff: the
    explicit method then needs steps of about 1 / lambda_max and slows down, but stays accurate.) Then GD with
    step eta satisfies w_k = x(k eta) + eta e(k eta) + O(eta^2) (Hairer, Norsett & Wanner 1993, Thm. II.8.1), and

    .. math:: \lim_{\eta \to 0} \frac{1}{\eta} \max_{k \eta \le T} \|w_k - x(k\eta)\| = \max_{t \le T} \|e(t)\| .

    `gradient(x)` and `hessian(x)` take and return NumPy arrays of shapes (d,) and (d, d). Returns (x, e), each
    of shape (len(t), d).

    Example:
        >>> lam = np.array([1.0, 3.0])
        >>> x, e = euler_error_coefficient(lambda x: lam * x, lambda x: np.diag(lam), [1.0, 1.0], [0.0, 1.0])
        >>> np.allclose(e, quadratic_euler_error(lam, [1.0, 1.0], [0.0, 1.0]), atol=1e-9)
        True
    """
    x0 = np.asarray(x0, dtype=float)
    t = np.atleast_1d(np.asarray(t, dtype=float))
    if np.any(np.diff(t) < 0) or t[0] < 0:
        raise ValueError("t: expected non-decreasing times >= 0")
    d = x0.size

    def rhs(_: float, state: Array) -> Array:
        x, e = state[:d], state[d:]
        g, H = gradient(x), hessian(x)
        return np.concatenate([-g, -H @ e - 0.5 * H @ g])

    solution = solve_ivp(
        rhs, (0.0, float(t[-1])), np.concatenate([x0, np.zeros(d)]), method="DOP853", t_eval=t, rtol=rtol, atol=atol
    )
    if not solution.success:
        raise RuntimeError(f"solve_ivp failed: {solution.message}")
    return solution.y[:d].T.copy(), solution.y[d:].T.copy()
