"""Gradient descent on a quadratic: per-mode factors, the rate, the stability bound and the best fixed step.

On f(w) = 1/2 (w - w*)^T A (w - w*) with A = Q diag(lambda_1..lambda_d) Q^T and eigenvalues in [mu, L],
gradient descent w_{t+1} = w_t - eta grad f(w_t) acts on each eigen-coordinate e_i = q_i^T (w - w*) alone:

    e_i(t) = (1 - eta lambda_i)^t e_i(0),

so the error contracts at the rate max_i |1 - eta lambda_i| = max(|1 - eta mu|, |1 - eta L|), GD is stable
iff eta < 2/L, and the step 2/(L + mu) equalises the two extreme factors, giving the rate
(kappa - 1)/(kappa + 1) with kappa = L/mu. Sources: Polyak (1987), Introduction to Optimization; Nesterov
(2004), Introductory Lectures on Convex Optimization, Thm 2.1.15; Goh (2017), "Why Momentum Really Works",
Distill.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from tdlab.theory._checks import positive as _positive


def _condition_number(kappa: ArrayLike) -> NDArray[np.float64]:
    array = np.asarray(kappa, dtype=float)
    if array.size == 0 or not np.all(np.isfinite(array)) or np.any(array < 1):
        raise ValueError(f"kappa: expected finite values >= 1, got {kappa!r}")
    return array


def gd_factor(eta: ArrayLike, eigenvalues: ArrayLike) -> NDArray[np.float64]:
    """The per-step factor of each mode, 1 - eta lambda (broadcast over `eta` and `eigenvalues`).

    Example:
        >>> gd_factor(0.5, [1.0, 2.0, 3.0]).tolist()
        [0.5, 0.0, -0.5]
    """
    return 1.0 - _positive("eta", eta) * _positive("eigenvalues", eigenvalues)


def gd_mode_error(eta: float, eigenvalue: float, steps: int) -> NDArray[np.float64]:
    """The error of one mode relative to its start, e(t)/e(0) = (1 - eta lambda)^t for t = 0..steps.

    Example:
        >>> gd_mode_error(1.5, 1.0, 3).tolist()
        [1.0, -0.5, 0.25, -0.125]
    """
    if steps < 0:
        raise ValueError(f"steps: expected a non-negative integer, got {steps}")
    return gd_factor(eta, eigenvalue) ** np.arange(steps + 1)


def gd_rate(eta: ArrayLike, eigenvalues: ArrayLike) -> NDArray[np.float64]:
    """The contraction rate of GD, max_i |1 - eta lambda_i|, for each step size in `eta`.

    Above 1 it is the rate at which the error grows (the divergence rate |1 - eta L| once eta > 2/L).

    Example:
        >>> gd_rate([0.5, 1.0, 2.5], [0.5, 2.0]).round(3).tolist()
        [0.75, 1.0, 4.0]
    """
    eta_ = _positive("eta", eta)
    lam = _positive("eigenvalues", eigenvalues).ravel()
    return np.abs(1.0 - eta_[..., None] * lam).max(axis=-1)


def gd_stability_threshold(L: float) -> float:
    """The largest stable step, eta_c = 2/L: GD on a quadratic converges iff eta < 2/L.

    Example:
        >>> gd_stability_threshold(4.0)
        0.5
    """
    return 2.0 / float(_positive("L", L))


def gd_best_step(mu: float, L: float) -> float:
    """The fixed step minimising max(|1 - eta mu|, |1 - eta L|): eta* = 2/(L + mu).

    Example:
        >>> gd_best_step(1.0, 3.0)
        0.5
    """
    mu_, L_ = float(_positive("mu", mu)), float(_positive("L", L))
    if mu_ > L_:
        raise ValueError(f"mu: expected mu <= L, got mu={mu_} and L={L_}")
    return 2.0 / (L_ + mu_)


def gd_best_rate(kappa: ArrayLike) -> NDArray[np.float64]:
    """The rate at the best fixed step, (kappa - 1)/(kappa + 1), with kappa = L/mu.

    Example:
        >>> float(gd_best_rate(3.0))
        0.5
    """
    k = _condition_number(kappa)
    return (k - 1.0) / (k + 1.0)


def gd_regime(eta: float, eigenvalue: float, rtol: float = 1e-12) -> str:
    """The regime of one mode as eta grows, read from h = eta lambda.

    `monotone` (0 < h < 1: the error shrinks without changing sign), `one-step` (h = 1: zero after one step),
    `oscillating` (1 < h < 2: the sign flips and the error shrinks), `period-two` (h = 2: the sign flips at
    constant size), `diverging` (h > 2: the sign flips and the error grows). h = 1 and h = 2 are matched
    within `rtol`.

    Example:
        >>> [gd_regime(eta, 1.0) for eta in (0.5, 1.0, 1.5, 2.0, 2.5)]
        ['monotone', 'one-step', 'oscillating', 'period-two', 'diverging']
    """
    h = float(_positive("eta", eta) * _positive("eigenvalue", eigenvalue))
    if abs(h - 1.0) <= rtol:
        return "one-step"
    if abs(h - 2.0) <= 2.0 * rtol:
        return "period-two"
    if h < 1.0:
        return "monotone"
    return "oscillating" if h < 2.0 else "diverging"


def gd_steps_to_tolerance(eta: float, eigenvalues: ArrayLike, tol: float) -> NDArray[np.float64]:
    """The first t with |1 - eta lambda_i|^t <= tol for each mode: ceil(log tol / log|1 - eta lambda_i|).

    A mode with factor 0 needs one step; a mode with |factor| >= 1 never gets there (inf). So at a fixed eta
    the modes converge in the order of |1 - eta lambda_i|, not of lambda_i.

    Example:
        >>> gd_steps_to_tolerance(0.45, [0.5, 2.0, 3.8], 1e-6).tolist()
        [55.0, 6.0, 41.0]
    """
    if not 0.0 < tol < 1.0:
        raise ValueError(f"tol: expected a value in (0, 1), got {tol}")
    factor = np.abs(gd_factor(eta, eigenvalues))
    steps = np.full(factor.shape, np.inf)
    steps[factor == 0.0] = 1.0
    shrinking = (factor > 0.0) & (factor < 1.0)
    # a small slack so that a factor landing exactly on tol^(1/t) counts as reaching tol at t
    steps[shrinking] = np.ceil(np.log(tol) / np.log(factor[shrinking]) - 1e-9)
    return steps
