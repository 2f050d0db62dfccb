r"""Convergence guarantee of ISTA (proximal gradient descent) for F = f + lambda ||.||_1.

For f convex with L-Lipschitz gradient and step 1/L, the iterates of ISTA satisfy, for every k >= 1 and every
minimiser w*,

.. math:: F(w_k) - F(w^*) \le \frac{L \|w_0 - w^*\|^2}{2 k}

(Beck & Teboulle 2009, "A fast iterative shrinkage-thresholding algorithm for linear inverse problems", SIAM J.
Imaging Sci. 2(1), Thm. 3.1). When f is mu-strongly convex (e.g. least squares with a full-column-rank design)
the convergence is linear, ||w_k - w*|| <= (1 - mu/L)^k ||w_0 - w*||: w* is a fixed point of the ISTA map, the
prox is non-expansive (Combettes & Wajs 2005, Lemma 2.4) and the gradient step w - grad f(w)/L is a
(1 - mu/L)-contraction when mu I <= H <= L I (its Jacobian is I - H/L).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray


def ista_objective_bound(k: ArrayLike, L: float, initial_distance: float) -> NDArray[np.float64]:
    r"""Beck & Teboulle's bound :math:`L \|w_0 - w^*\|^2 / (2k)` on F(w_k) - F* for ISTA with step 1/L.

    Example:
        >>> ista_objective_bound([1, 10], L=2.0, initial_distance=3.0).tolist()
        [9.0, 0.9]
    """
    k = np.asarray(k, dtype=float)
    if np.any(k < 1):
        raise ValueError("k: expected iteration numbers >= 1")
    return L * initial_distance**2 / (2.0 * k)


def ista_distance_bound(k: ArrayLike, L: float, mu: float, initial_distance: float) -> NDArray[np.float64]:
    r"""Linear-rate bound :math:`(1 - \mu/L)^k \|w_0 - w^*\|` on ||w_k - w*|| for ISTA with step 1/L when f is
    mu-strongly convex.

    Example:
        >>> ista_distance_bound([0, 1, 2], L=2.0, mu=1.0, initial_distance=4.0).tolist()
        [4.0, 2.0, 1.0]
    """
    if not 0 < mu <= L:
        raise ValueError(f"mu: expected 0 < mu <= L = {L}, got {mu}")
    return (1.0 - mu / L) ** np.asarray(k, dtype=float) * initial_distance
