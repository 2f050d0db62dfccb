"""The second-order (Taylor) model of one gradient step, its best step, and when it can be trusted.

Along the step w - eps g from a point w with gradient g and Hessian H, Taylor's theorem gives

    Delta f(eps) = f(w - eps g) - f(w) = -eps g.g + eps^2/2 g.Hg - eps^3/6 T[g, g, g] + O(eps^4),

so the first-order model -eps g.g errs by O(eps^2) and the second-order model -eps g.g + eps^2/2 g.Hg by
O(eps^3): the error of the order-k model shrinks as eps^(k+1) (Taylor's theorem with the Lagrange remainder).
When g.Hg > 0 the second-order model is minimised by

    eps* = g.g / g.Hg,        with predicted decrease  Delta f(eps*) = -(g.g)^2 / (2 g.Hg),

the exact line-search step of steepest descent on a quadratic (Nocedal & Wright 2006, Numerical Optimization,
2nd ed., sec. 3.3; the Cauchy step of a trust-region method, their sec. 4.1).

How good is eps* on the real loss? Write r for the relative error of the quadratic model at its own minimiser,

    r = (Delta f(eps*) - Delta q(eps*)) / |Delta q(eps*)|,      Delta q(eps*) = -(g.g)^2 / (2 g.Hg).

If the remainder is a cubic c eps^3 / 6, then r = c eps* / (3 g.Hg), and the minimiser of the cubic model is
eps* u with u solving (3 r / 2) u^2 + u - 1 = 0, i.e.

    u(r) = 2 / (1 + sqrt(1 + 6 r))         (u = 1 - 3 r / 2 + O(r^2); no local minimum when r < -1/6),

so the best step is within 10% of eps* when -0.055 <= r <= 0.082 (elementary algebra on the cubic model;
higher-order terms, e.g. the flat logistic tails of a cross-entropy loss, can move it further).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from tdlab.theory._checks import finite as _finite


def _squared_norm(gg: ArrayLike) -> NDArray[np.float64]:
    array = np.asarray(gg, dtype=float)
    if not np.all(np.isfinite(array)) or np.any(array < 0):
        raise ValueError(f"gg: expected a finite squared gradient norm g.g >= 0, got {gg!r}")
    return array


def first_order_change(eps: ArrayLike, gg: float) -> NDArray[np.float64]:
    """The first-order prediction of the loss change of the step -eps g: -eps g.g.

    Example:
        >>> first_order_change([0.0, 0.5, 1.0], gg=2.0).tolist()
        [-0.0, -1.0, -2.0]
    """
    return -_finite("eps", eps) * _squared_norm(gg)


def second_order_change(eps: ArrayLike, gg: float, gHg: float) -> NDArray[np.float64]:
    """The second-order prediction of the loss change of the step -eps g: -eps g.g + eps^2/2 g.Hg.

    Exact for a quadratic loss; otherwise its error is O(eps^3) (module docstring).

    Example:
        >>> second_order_change([0.5, 1.0, 2.0], gg=2.0, gHg=2.0).tolist()
        [-0.75, -1.0, 0.0]
    """
    e = _finite("eps", eps)
    return -e * _squared_norm(gg) + 0.5 * e**2 * _finite("gHg", gHg)


def taylor_error_exponent(order: int) -> int:
    """The exponent p of the error |Delta f(eps) - model_k(eps)| ~ C eps^p of the order-k Taylor model: k + 1.

    Source: Taylor's theorem with the Lagrange remainder, for a loss with k + 1 continuous derivatives along the
    step (smooth activations: not ReLU, whose kinks break the expansion at small eps).

    Example:
        >>> taylor_error_exponent(2)
        3
    """
    if isinstance(order, bool) or not isinstance(order, int) or order < 0:
        raise ValueError(f"order: expected a non-negative integer, got {order!r}")
    return order + 1


def best_step(gg: float, gHg: float) -> float:
    """The minimiser eps* = g.g / g.Hg of the second-order model along -g; inf when g.Hg <= 0 (the model then
    decreases without bound along -g and has no minimiser).

    Source: Nocedal & Wright (2006), sec. 3.3 (exact line search on a quadratic).

    Example:
        >>> best_step(gg=2.0, gHg=4.0)
        0.5
        >>> best_step(gg=2.0, gHg=-1.0)
        inf
    """
    a, b = float(_squared_norm(gg)), float(_finite("gHg", gHg))
    return a / b if b > 0 else float("inf")


def best_decrease(gg: float, gHg: float) -> float:
    """The loss change the second-order model predicts at its minimiser, -(g.g)^2 / (2 g.Hg); -inf when
    g.Hg <= 0.

    Example:
        >>> best_decrease(gg=2.0, gHg=4.0)
        -0.5
    """
    a, b = float(_squared_norm(gg)), float(_finite("gHg", gHg))
    return -(a * a) / (2.0 * b) if b > 0 else float("-inf")


def cubic_best_step_ratio(model_error: ArrayLike) -> NDArray[np.float64]:
    """The best step of the cubic model through the measured loss at eps*, in units of eps*:
    u(r) = 2 / (1 + sqrt(1 + 6 r)), where r is the quadratic model's relative error at eps* (module
    docstring); nan when r < -1/6 (the cubic model has no local minimum along -g).

    u(r) = 1 - 3 r / 2 + O(r^2): a model that overestimates the decrease (r > 0) overshoots, one that
    underestimates it (r < 0) stops short.

    Example:
        >>> cubic_best_step_ratio([0.0, 0.5, -1 / 8]).round(6).tolist()
        [1.0, 0.666667, 1.333333]
    """
    r = _finite("model_error", model_error)
    disc = 1.0 + 6.0 * r
    root = np.sqrt(np.where(disc >= 0, disc, np.nan))
    return 2.0 / (1.0 + root)
