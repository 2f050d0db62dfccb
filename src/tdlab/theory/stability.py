"""The stability bound of gradient descent read as a bound on the sharpness, and the edge of stability.

Near a point where the loss is well approximated by its quadratic model with Hessian H, one step of gradient
descent with step eta multiplies the component of the error along an eigenvector of H with eigenvalue lambda
by 1 - eta lambda, so the iteration is linearly stable iff every |1 - eta lambda| <= 1, i.e. iff the
sharpness S = lambda_max(H) satisfies

    S <= 2/eta                                                   (gradient descent)
    S <= 2 (1 + beta)/eta                                        (heavy ball, v <- beta v + g, w <- w - eta v)

(the heavy-ball bound is where a root of z^2 - (1 + beta - eta lambda) z + beta crosses z = -1; see
`tdlab.theory.momentum`). Cohen, Kaur, Li, Kolter & Talwalkar (2021), "Gradient descent on neural networks
typically occurs at the edge of stability", ICLR, found that full-batch GD on neural networks does not stay
in the region S < 2/eta where the classical analysis applies: S rises during training ("progressive
sharpening") until it reaches 2/eta and then hovers just above it ("edge of stability") while the loss keeps
decreasing over long times, non-monotonically (their fig. 1 and sec. 3); they report the same with heavy-ball
momentum at the bound 2 (1 + beta)/eta. The normalised sharpness eta S / (2 (1 + beta)) is then close to 1.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from tdlab.theory._checks import positive as _positive
from tdlab.theory.momentum import heavy_ball_stability_threshold


def max_stable_sharpness(eta: ArrayLike, momentum: float = 0.0) -> NDArray[np.float64]:
    """The largest sharpness at which GD (heavy ball when `momentum` > 0) with step `eta` is linearly stable:
    S_max = 2 (1 + beta) / eta, which is 2/eta for plain gradient descent.

    Source: the linear stability of GD on a quadratic (e.g. Nesterov 2004, Introductory Lectures on Convex
    Optimization, sec. 1.2.3) and the heavy-ball bound of Polyak (1964); both as the edge of stability in
    Cohen et al. (2021).

    Args:
        eta: step size(s), > 0.
        momentum: heavy-ball coefficient beta in [0, 1).

    Example:
        >>> max_stable_sharpness([0.01, 0.02]).tolist()
        [200.0, 100.0]
        >>> float(max_stable_sharpness(0.01, momentum=0.9))
        380.0
    """
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"momentum: expected a heavy-ball coefficient in [0, 1), got {momentum!r}")
    return heavy_ball_stability_threshold(momentum) / _positive("eta", eta)


def normalised_sharpness(sharpness: ArrayLike, eta: ArrayLike, momentum: float = 0.0) -> NDArray[np.float64]:
    """The sharpness in units of its stability bound, S / S_max = eta S / (2 (1 + beta)).

    Below 1 the quadratic model of the loss is stable under the step; at the edge of stability it hovers
    around 1 (Cohen et al. 2021, fig. 1: "sharpness hovers just above 2/eta").

    Example:
        >>> normalised_sharpness([90.0, 100.0, 110.0], 0.02).round(6).tolist()
        [0.9, 1.0, 1.1]
    """
    S = np.asarray(sharpness, dtype=float)
    return S / max_stable_sharpness(eta, momentum)
