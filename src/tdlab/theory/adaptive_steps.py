r"""Step sizes of the adaptive methods under a constant gradient: Adagrad decays, RMSProp and Adam do not.

Feed a method the same gradient g at every step (a linear objective f(w) = g^T w). Coordinate-wise, with
G_t = t g^2 for Adagrad, v_t = (1 - rho^t) g^2 for RMSProp and m_hat_t = g, v_hat_t = g^2 for Adam, the size of
the t-th update (t = 1, 2, ...) is

.. math::
    \text{Adagrad: } \frac{\eta |g|}{\sqrt{t}\, |g| + \epsilon} \sim \eta\, t^{-1/2}, \qquad
    \text{RMSProp: } \frac{\eta |g|}{\sqrt{1 - \rho^t}\, |g| + \epsilon} \to \eta, \qquad
    \text{Adam: } \frac{\eta |g|}{|g| + \epsilon} .

Adagrad's 1/sqrt(t) decay is what makes it a no-regret method for convex online learning (Duchi, Hazan & Singer
2011, Thm. 5) and what makes it stall in non-convex training; RMSProp (Tieleman & Hinton 2012) and Adam
(Kingma & Ba 2015, Sec. 2.1: "the effective step ... is bounded by eta") replace the sum by a moving average.
The local log-log slope of Adagrad's step is

.. math:: \frac{d \log s_t}{d \log t} = -\frac12\, \frac{\sqrt{t} |g|}{\sqrt{t} |g| + \epsilon},

within eps / (2 sqrt(t) |g|) of -1/2.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

Array = NDArray[np.float64]


def _steps(t: ArrayLike) -> Array:
    t = np.asarray(t, dtype=float)
    if np.any(t < 1):
        raise ValueError("t: expected step numbers >= 1")
    return t


def adagrad_constant_gradient_step(t: ArrayLike, eta: float, g: float, eps: float = 1e-10) -> Array:
    r"""|w_t - w_{t-1}| of Adagrad under a constant gradient g: :math:`\eta |g| / (\sqrt{t} |g| + \epsilon)`.

    Example:
        >>> adagrad_constant_gradient_step([1, 4], eta=1.0, g=2.0, eps=0.0).tolist()
        [1.0, 0.5]
    """
    return eta * abs(g) / (np.sqrt(_steps(t)) * abs(g) + eps)


def rmsprop_constant_gradient_step(t: ArrayLike, eta: float, g: float, rho: float, eps: float = 1e-8) -> Array:
    r"""|w_t - w_{t-1}| of RMSProp under a constant gradient g: :math:`\eta |g| / (\sqrt{1 - \rho^t} |g| + \epsilon)`.

    Example:
        >>> rmsprop_constant_gradient_step([1], eta=1.0, g=1.0, rho=0.75, eps=0.0).tolist()
        [2.0]
    """
    return eta * abs(g) / (np.sqrt(1.0 - rho ** _steps(t)) * abs(g) + eps)


def adam_constant_gradient_step(t: ArrayLike, eta: float, g: float, eps: float = 1e-8) -> Array:
    r"""|w_t - w_{t-1}| of Adam (with bias correction) under a constant gradient g: :math:`\eta |g| / (|g| + \epsilon)`
    at every t.

    Example:
        >>> adam_constant_gradient_step([1, 100], eta=0.5, g=3.0, eps=0.0).tolist()
        [0.5, 0.5]
    """
    return np.full_like(_steps(t), eta * abs(g) / (abs(g) + eps))


def adagrad_step_exponent_deviation(t_min: float, g: float, eps: float) -> float:
    r"""Bound on |slope + 1/2| of log(step) against log(t) over t >= t_min: :math:`\epsilon / (2 \sqrt{t_{min}} |g|)`.

        A least-squares fit of log-steps against log-t over t >= t_min averages local slopes that each lie within
        this distance of -1/2, so the fitted exponent does too (the least-squares slope is a weighted average of secant
    slopes, each an average of local slopes).

        Example:
            >>> adagrad_step_exponent_deviation(t_min=4, g=1.0, eps=0.1)
            0.025
    """
    return float(eps / (2.0 * np.sqrt(t_min) * abs(g)))
