r"""The trust-region subproblem: its exact solution for a symmetric quadratic model, and the Cauchy decrease.

For m(p) = g^T p + p^T B p / 2 and the ball ||p|| <= Delta, p* is a global minimiser iff for some lambda >= 0

.. math:: (B + \lambda I) p^* = -g, \qquad \lambda (\Delta - \|p^*\|) = 0, \qquad B + \lambda I \succeq 0

(Moré & Sorensen 1983; Nocedal & Wright 2006, Thm. 4.1): p* = -B^{-1} g if B is positive definite and that step
lies in the ball, else the unique lambda > max(0, -lambda_min(B)) with ||(B + lambda I)^{-1} g|| = Delta (a
monotone secular equation).
The same conditions give the minimiser of a convex quadratic over a Euclidean ball, the fixed point of projected
gradient descent onto that ball.

The Cauchy point, the model minimiser along -g inside the ball, decreases the model by at least

.. math:: m(0) - m(p^C) \ge \tfrac12 \|g\| \min\Bigl(\Delta, \frac{\|g\|}{\|B\|}\Bigr)

(Nocedal & Wright 2006, Lemma 4.3), and so does every Steihaug-CG step (whose first iterate is the Cauchy
point, Thm. 7.3); this sufficient decrease drives the global convergence of trust-region methods (Thm. 4.5).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import brentq

Array = NDArray[np.float64]


class TrustRegionStep(NamedTuple):
    """The exact minimiser of the quadratic model over the ball and the multiplier lambda of the constraint
    (0 when the minimiser is interior)."""

    step: Array
    multiplier: float


def trust_region_step(H: ArrayLike, g: ArrayLike, radius: float) -> TrustRegionStep:
    r"""argmin_{||p|| <= radius} g^T p + p^T H p / 2 for any symmetric H, and its multiplier (Moré & Sorensen 1983).

    In the eigenbasis H = Q diag(mu) Q^T, c = Q^T g, ||p(lambda)|| = ||c / (mu + lambda)||. The minimiser is the
    Newton step -H^{-1} g (lambda = 0) if H is positive definite and that step lies in the ball; otherwise lambda
    is the root in (max(0, -mu_1), ||g|| / radius + max(0, -mu_1)] of the secular equation in Moré & Sorensen's
    well-conditioned form 1/||p(lambda)|| = 1/radius, increasing in lambda, found by Brent's method to machine
    precision. When g has a component c_b in H's bottom eigenspace and mu_1 <= 0, ||p(-mu_1 + delta)|| >=
    ||c_b|| / delta > radius for delta = ||c_b|| / (2 radius), which brackets the root away from the pole. The
    hard case (g orthogonal to the bottom eigenspace of an indefinite H, with ||p(-mu_1)|| < radius) is not
    handled: a ValueError names it.

    Example:
        >>> result = trust_region_step(np.eye(2), [-3.0, -4.0], radius=1.0)  # lambda = ||g|| / r - 1
        >>> result.step.round(12).tolist(), round(result.multiplier, 12)
        ([0.6, 0.8], 4.0)
        >>> trust_region_step(np.diag([1.0, -1.0]), [1.0, 1.0], radius=10.0).multiplier > 1  # indefinite
        True
    """
    H, g = np.asarray(H, dtype=float), np.asarray(g, dtype=float)
    if radius <= 0:
        raise ValueError(f"radius: expected a number > 0, got {radius}")
    if np.abs(H - H.T).max() > 1e-12 * max(1.0, np.abs(H).max()):
        raise ValueError("H: expected a symmetric matrix")
    eigenvalues, Q = np.linalg.eigh(H)
    c = Q.T @ g
    kept = c != 0  # components of g along H's eigenvectors; the others add nothing to p
    if not kept.any():
        return TrustRegionStep(np.zeros_like(g), 0.0)
    if eigenvalues[0] > 0 and np.linalg.norm(c / eigenvalues) <= radius:
        return TrustRegionStep(-Q @ (c / eigenvalues), 0.0)
    mu, ck = eigenvalues[kept], c[kept]

    def secular(shift: float) -> float:
        return 1.0 / float(np.sqrt(np.sum((ck / (mu + shift)) ** 2))) - 1.0 / radius

    low = max(0.0, -float(eigenvalues[0]))
    bottom = float(np.linalg.norm(c[eigenvalues == eigenvalues[0]]))
    if eigenvalues[0] <= 0 and bottom > 0:  # the pole of ||p|| at -mu_1: step off it, still below the root
        low += 0.5 * bottom / radius
    elif secular(low) > 0:
        raise ValueError("g: the hard case (g orthogonal to H's bottom eigenvectors) is not handled")
    high = float(np.linalg.norm(c)) / radius + max(0.0, -float(eigenvalues[0]))  # ||p(high)|| <= radius
    shift = brentq(secular, low, high, xtol=1e-15, rtol=4 * np.finfo(float).eps)
    return TrustRegionStep(-Q @ (c / (eigenvalues + shift)), float(shift))


def ball_constrained_minimizer(B: ArrayLike, g: ArrayLike, radius: float) -> NDArray[np.float64]:
    r"""argmin_{||p|| <= radius} g^T p + p^T B p / 2 for B symmetric positive definite: `trust_region_step`'s
    step, with B's definiteness checked.

    Example:
        >>> ball_constrained_minimizer(np.eye(2), [-3.0, -4.0], radius=1.0).round(12).tolist()
        [0.6, 0.8]
    """
    smallest = np.linalg.eigvalsh(np.asarray(B, dtype=float))[0]
    if smallest <= 0:
        raise ValueError(f"B: expected a positive definite matrix, smallest eigenvalue {smallest:g}")
    return trust_region_step(B, g, radius).step


def cauchy_decrease_bound(g_norm: ArrayLike, radius: ArrayLike, B_norm: ArrayLike) -> NDArray[np.float64]:
    r"""The guaranteed model decrease of the Cauchy point, :math:`\tfrac12 \|g\| \min(\Delta, \|g\| / \|B\|)`.

    Example:
        >>> cauchy_decrease_bound(2.0, 0.5, 1.0).item(), cauchy_decrease_bound(2.0, 5.0, 1.0).item()
        (0.5, 2.0)
    """
    g_norm, radius, B_norm = (np.asarray(a, dtype=float) for a in (g_norm, radius, B_norm))
    return 0.5 * g_norm * np.minimum(radius, g_norm / B_norm)
