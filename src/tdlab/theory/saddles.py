"""Gradient descent near a strict saddle point: the linearised dynamics and the escape time.

Near a critical point theta* with Hessian H = sum_i lambda_i v_i v_i^T, gradient descent with step eta moves
each eigen-coordinate c_i = v_i . (theta - theta*) on its own, to first order in the displacement:

    c_i(t) = (1 - eta lambda_i)^t c_i(0).

At a strict saddle (lambda_min < 0) the coordinate along v_min grows geometrically, by 1 + eta |lambda_min| per
step, while the stable ones (0 < eta lambda_i < 2) decay; GD leaves along the most negative direction. Starting
at distance delta along v_min, it reaches distance r after

    T = log(r / delta) / log(1 + eta |lambda_min|)

steps (Dauphin et al. 2014, "Identifying and attacking the saddle point problem in high-dimensional non-convex
optimization", sec. 3: the escape is slow where |lambda_min| is small; the same linearisation underlies the
escape analyses of Ge et al. 2015 and Jin et al. 2017). Exact for a quadratic; for a loss with third
derivatives it holds while r is small against the scale on which the Hessian changes.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from tdlab.theory._checks import finite as _finite


def linearised_coordinate(steps: ArrayLike, initial: float, eta: float, eigenvalue: float) -> NDArray[np.float64]:
    """The eigen-coordinate of GD linearised at a critical point, c(t) = (1 - eta lambda)^t c(0), at `steps`.

    Example:
        >>> linearised_coordinate([0, 1, 2], initial=1e-3, eta=0.5, eigenvalue=-2.0).tolist()
        [0.001, 0.002, 0.004]
    """
    t = _finite("steps", steps)
    if not eta > 0:
        raise ValueError(f"eta: expected a positive step size, got {eta!r}")
    return float(_finite("initial", initial)) * (1.0 - eta * float(_finite("eigenvalue", eigenvalue))) ** t


def escape_time(radius: float, delta: float, eta: float, eigenvalue: float) -> float:
    """Steps T = log(r / delta) / log(1 + eta |lambda|) for GD to carry a displacement delta along a direction of
    negative curvature lambda < 0 out to r > delta (module docstring).

    Example:
        >>> round(escape_time(radius=1e-2, delta=1e-8, eta=0.5, eigenvalue=-2.0), 6)  # log(1e6) / log(2)
        19.931569
    """
    r, d, lam = (
        float(_finite("radius", radius)),
        float(_finite("delta", delta)),
        float(_finite("eigenvalue", eigenvalue)),
    )
    if not 0 < d < r:
        raise ValueError(f"delta, radius: expected 0 < delta < radius, got {delta!r} and {radius!r}")
    if not eta > 0:
        raise ValueError(f"eta: expected a positive step size, got {eta!r}")
    if not lam < 0:
        raise ValueError(f"eigenvalue: expected a negative curvature (a strict saddle), got {eigenvalue!r}")
    return float(np.log(r / d) / np.log1p(eta * abs(lam)))


def quadratic_loss_change(
    steps: ArrayLike, initial: ArrayLike, eta: float, eigenvalues: ArrayLike
) -> NDArray[np.float64]:
    """The loss change of GD linearised at a critical point, on the second-order model:
    L(theta_t) - L(theta*) = 1/2 sum_i lambda_i (1 - eta lambda_i)^(2t) c_i(0)^2, with c_i(0) the start's
    eigen-coordinates; negative once the directions of negative curvature dominate.

    Example:
        >>> quadratic_loss_change([0, 1], initial=[1.0, 1.0], eta=0.5, eigenvalues=[1.0, -2.0]).tolist()
        [-0.5, -3.875]
    """
    t = _finite("steps", steps).reshape(-1, 1)
    c0, lam = _finite("initial", initial).reshape(1, -1), _finite("eigenvalues", eigenvalues).reshape(1, -1)
    if c0.shape != lam.shape:
        raise ValueError(f"initial: expected one coordinate per eigenvalue ({lam.size}), got {c0.size}")
    if not eta > 0:
        raise ValueError(f"eta: expected a positive step size, got {eta!r}")
    return 0.5 * np.sum(lam * (1.0 - eta * lam) ** (2 * t) * c0**2, axis=1)
