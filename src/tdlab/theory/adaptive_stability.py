"""Stability thresholds of the adaptive methods on the preconditioned sharpness lambda_1(P^{-1} H).

Freeze a diagonal preconditioner P > 0 and take the quadratic model of the loss with Hessian H. Each method then
runs a linear recurrence along each eigenvector of P^{-1} H (real eigenvalues: P^{-1} H is similar to the
symmetric P^{-1/2} H P^{-1/2}), and is stable iff every eigenvalue lambda stays below a threshold that depends
on the step size eta and the momentum only (Cohen et al. 2022, "Adaptive gradient methods at the edge of
stability", arXiv 2207.14484, sec. 2):

    Adagrad, RMSProp without momentum   theta <- theta - eta P^{-1} g                   lambda < 2/eta
    RMSProp with momentum mu            b <- mu b + P^{-1} g, theta <- theta - eta b    lambda < (2 + 2 mu)/eta
    Adam / AdamW (beta1)                m <- beta1 m + (1 - beta1) g,
                                        theta <- theta - eta P^{-1} m      lambda < (2 + 2 beta1)/((1 - beta1) eta)

The first is gradient descent on P^{-1/2}-scaled coordinates (`tdlab.theory.stability`). The second is heavy
ball on P^{-1} g, stable iff eta lambda < 2 (1 + mu) (Polyak 1964; `tdlab.theory.momentum`); torch's RMSprop
momentum buffer is exactly b <- mu b + g / P, theta <- theta - lr b. The third is heavy ball with gradient
(1 - beta1) g: the exponential moving average m = (1 - beta1) b for the heavy-ball buffer b, so the bound is
eta (1 - beta1) lambda < 2 (1 + beta1); at beta1 = 0.9 it is 38/eta. Adam's preconditioner is
P = (1 - beta1^t) diag(sqrt(v_t / (1 - beta2^t)) + eps): the first-moment bias correction 1/(1 - beta1^t) of
torch's step lr / (1 - beta1^t) is folded into P (it tends to 1), so that the step is -lr P^{-1} m.

Decoupled weight decay wd (AdamW: theta <- (1 - eta wd) theta - eta P^{-1} m) multiplies theta by
c = 1 - eta wd before each step. The recurrence of one eigen-direction in (theta, m) then has the characteristic
polynomial z^2 - (c + beta1 - eta (1 - beta1) lambda) z + beta1 c, whose root crosses z = -1 at

    lambda = (1 + beta1) (1 + c) / ((1 - beta1) eta) = (1 + beta1) (2 - eta wd) / ((1 - beta1) eta),

a relative change of -eta wd / 2 (10^-5 at eta = 10^-3, wd = 0.01). Coupled weight decay (torch's
`weight_decay` of Adam, RMSprop and Adagrad) adds wd theta to the gradient: it is the Hessian that changes,
H -> H + wd I, not the threshold.

Cohen et al. (2022) found that full-batch Adam and RMSProp train at this edge: the preconditioned sharpness
rises until it reaches the threshold, then hovers at it (38/eta for Adam at beta1 = 0.9), the adaptive
analogue of the edge of stability of gradient descent (Cohen et al. 2021).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from tdlab.theory._checks import positive as _positive


def _coefficient(name: str, value: float) -> float:
    value = float(value)
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name}: expected a momentum coefficient in [0, 1), got {value!r}")
    return value


def adam_stability_threshold(
    eta: ArrayLike, beta1: float = 0.9, decoupled_weight_decay: float = 0.0
) -> NDArray[np.float64]:
    """The largest preconditioned sharpness lambda_1(P^{-1} H) at which Adam (AdamW) with step `eta` is linearly
    stable for a frozen preconditioner: (1 + beta1)(2 - eta wd) / ((1 - beta1) eta), which is
    (2 + 2 beta1) / ((1 - beta1) eta) = 38/eta at beta1 = 0.9 without decoupled weight decay wd.

    Source: Cohen, Kaur, Li, Kolter, Nado, Gilmer, Tian & Talwalkar (2022), "Adaptive gradient methods at the
    edge of stability", arXiv 2207.14484, sec. 2 (the bound 38/eta); the decoupled-decay factor from the
    characteristic polynomial in the module docstring.

    Args:
        eta: step size(s) (torch's `lr`), > 0.
        beta1: first-moment coefficient in [0, 1).
        decoupled_weight_decay: AdamW's `weight_decay` (theta <- (1 - eta wd) theta before the step), with
            0 <= eta wd < 1; 0 for Adam (whose coupled decay changes the Hessian instead).

    Example:
        >>> round(float(adam_stability_threshold(0.01)), 9)   # 38/eta
        3800.0
        >>> adam_stability_threshold([1.0, 2.0], beta1=0.5).tolist()
        [6.0, 3.0]
    """
    b = _coefficient("beta1", beta1)
    lr = _positive("eta", eta)
    wd = float(decoupled_weight_decay)
    if not (wd >= 0 and np.all(lr * wd < 1)):
        raise ValueError(f"decoupled_weight_decay: expected wd >= 0 with eta * wd < 1, got {decoupled_weight_decay!r}")
    return 2.0 * (1.0 + b) / ((1.0 - b) * lr) * (1.0 - lr * wd / 2.0)


def rmsprop_stability_threshold(eta: ArrayLike, momentum: float = 0.0) -> NDArray[np.float64]:
    """The largest preconditioned sharpness at which RMSProp with step `eta` is linearly stable for a frozen
    preconditioner: 2/eta, and (2 + 2 mu)/eta with torch's momentum mu (heavy ball on P^{-1} g:
    b <- mu b + g / P, theta <- theta - eta b).

    Source: Cohen et al. (2022), arXiv 2207.14484, sec. 2 (2/eta for RMSProp); Polyak (1964) for the heavy-ball
    bound 2 (1 + mu) on eta lambda.

    Example:
        >>> float(rmsprop_stability_threshold(0.01))
        200.0
        >>> float(rmsprop_stability_threshold(0.1, momentum=0.5))
        30.0
    """
    mu = _coefficient("momentum", momentum)
    return 2.0 * (1.0 + mu) / _positive("eta", eta)


def adagrad_stability_threshold(eta: ArrayLike) -> NDArray[np.float64]:
    """The largest preconditioned sharpness at which Adagrad with step `eta` is linearly stable for a frozen
    preconditioner: 2/eta (gradient descent in the coordinates P^{1/2} theta). With torch's `lr_decay` the step
    of update t is eta = lr / (1 + (t - 1) lr_decay).

    Source: Cohen et al. (2022), arXiv 2207.14484, sec. 2; the GD bound 2/eta (`tdlab.theory.stability`).

    Example:
        >>> adagrad_stability_threshold([0.1, 0.5]).tolist()
        [20.0, 4.0]
    """
    return 2.0 / _positive("eta", eta)
