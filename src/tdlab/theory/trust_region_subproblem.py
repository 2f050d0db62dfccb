r"""The trust-region subproblem: its exact solution for a convex quadratic, and the Cauchy decrease.

For m(p) = g^T p + p^T B p / 2 and the ball ||p|| <= Delta, p* is a global minimiser iff for some lambda >= 0

.. math:: (B + \lambda I) p^* = -g, \qquad \lambda (\Delta - \|p^*\|) = 0, \qquad B + \lambda I \succeq 0

(Moré & Sorensen 1983; Nocedal & Wright 2006, Thm. 4.1). For B positive definite: p* = -B^{-1} g if it lies in
the ball, else the unique lambda > 0 with ||(B + lambda I)^{-1} g|| = Delta (a monotone secular equation).
The same conditions give the minimiser of a convex quadratic over a Euclidean ball, the fixed point of projected
gradient descent onto that ball.

The Cauchy point, the model minimiser along -g inside the ball, decreases the model by at least

.. math:: m(0) - m(p^C) \ge \tfrac12 \|g\| \min\Bigl(\Delta, \frac{\|g\|}{\|B\|}\Bigr)

(Nocedal & Wright 2006, Lemma 4.3), and so does every Steihaug-CG step (whose first iterate is the Cauchy
point, Thm. 7.3); this sufficient decrease drives the global convergence of trust-region methods (Thm. 4.5).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import brentq


def ball_constrained_minimizer(B: ArrayLike, g: ArrayLike, radius: float) -> NDArray[np.float64]:
    r"""argmin_{||p|| <= radius} g^T p + p^T B p / 2 for B symmetric positive definite (Moré & Sorensen 1983).

    Solved in the eigenbasis B = Q diag(lambda) Q^T: ||p(lambda')||^2 = sum_i (q_i^T g)^2 / (lambda_i + lambda')^2
    decreases in lambda' >= 0, so the root of ||p(lambda')|| = radius is bracketed and found by Brent's method to
    machine precision.

    Example:
        >>> ball_constrained_minimizer(np.eye(2), [-3.0, -4.0], radius=1.0).round(12).tolist()
        [0.6, 0.8]
    """
    B, g = np.asarray(B, dtype=float), np.asarray(g, dtype=float)
    eigenvalues, Q = np.linalg.eigh(B)
    if eigenvalues[0] <= 0:
        raise ValueError(f"B: expected a positive definite matrix, smallest eigenvalue {eigenvalues[0]:g}")
    if radius <= 0:
        raise ValueError(f"radius: expected a number > 0, got {radius}")
    c = Q.T @ g

    def norm(shift: float) -> float:
        return float(np.linalg.norm(c / (eigenvalues + shift)))

    if norm(0.0) <= radius:
        return -Q @ (c / eigenvalues)
    upper = np.linalg.norm(c) / radius  # norm(upper) <= ||c|| / upper = radius
    shift = brentq(lambda s: norm(s) - radius, 0.0, upper, xtol=1e-15, rtol=4 * np.finfo(float).eps, maxiter=500)
    return -Q @ (c / (eigenvalues + shift))


def cauchy_decrease_bound(g_norm: ArrayLike, radius: ArrayLike, B_norm: ArrayLike) -> NDArray[np.float64]:
    r"""The guaranteed model decrease of the Cauchy point, :math:`\tfrac12 \|g\| \min(\Delta, \|g\| / \|B\|)`.

    Example:
        >>> cauchy_decrease_bound(2.0, 0.5, 1.0).item(), cauchy_decrease_bound(2.0, 5.0, 1.0).item()
        (0.5, 2.0)
    """
    g_norm, radius, B_norm = (np.asarray(a, dtype=float) for a in (g_norm, radius, B_norm))
    return 0.5 * g_norm * np.minimum(radius, g_norm / B_norm)
