"""The elbows of a one-input ReLU layer at Gaussian initialisation follow a Cauchy law.

The unit relu(w x + b) of a one-input network bends at x = -b/w. With w ~ N(0, s_w^2) and b ~ N(0, s_b^2)
independent, -b/w is the ratio of two independent centred Gaussians, which is Cauchy with location 0 and scale
gamma = s_b / s_w (e.g. Johnson, Kotz & Balakrishnan 1994, Continuous Univariate Distributions, vol. 1,
ch. 16): density 1 / (pi gamma (1 + (c/gamma)^2)), distribution function 1/2 + arctan(c/gamma)/pi. At N(0, 1)
initialisation gamma = 1: P(|c| <= 3) = 0.795, P(|c| <= 10) = 0.937, and one elbow in five lies outside
[-3, 3]. The law has no mean: the average of n i.i.d. Cauchy variables is again Cauchy with the same scale
(its characteristic function is exp(-gamma |t|)), so running means never settle and the median of
|mean| stays gamma for every n.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray


def _scale(scale: float) -> float:
    if not np.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale: expected a finite positive number, got {scale!r}")
    return float(scale)


def cauchy_density(c: ArrayLike, scale: float = 1.0) -> NDArray[np.float64]:
    """Density of the elbows, 1 / (pi gamma (1 + (c/gamma)^2)).

    Example:
        >>> cauchy_density([0.0, 1.0]).round(6).tolist()  # 1/pi, 1/(2 pi)
        [0.31831, 0.159155]
    """
    gamma = _scale(scale)
    x = np.asarray(c, dtype=float) / gamma
    return 1.0 / (np.pi * gamma * (1.0 + x**2))


def cauchy_cdf(c: ArrayLike, scale: float = 1.0) -> NDArray[np.float64]:
    """Distribution function 1/2 + arctan(c/gamma)/pi.

    Example:
        >>> cauchy_cdf([-1.0, 0.0, 1.0]).tolist()
        [0.25, 0.5, 0.75]
    """
    return 0.5 + np.arctan(np.asarray(c, dtype=float) / _scale(scale)) / np.pi


def cauchy_interval_probability(a: ArrayLike, scale: float = 1.0) -> NDArray[np.float64]:
    """P(|c| <= a) = (2/pi) arctan(a/gamma): the fraction of elbows in [-a, a].

    Example:
        >>> cauchy_interval_probability([3.0, 10.0]).round(3).tolist()
        [0.795, 0.937]
    """
    a_ = np.asarray(a, dtype=float)
    if np.any(a_ < 0):
        raise ValueError(f"a: expected non-negative half-widths, got {a!r}")
    return 2.0 / np.pi * np.arctan(a_ / _scale(scale))


def elbow_scale(weight_std: float, bias_std: float) -> float:
    """The Cauchy scale gamma = s_b / s_w of the elbows -b/w for w ~ N(0, s_w^2), b ~ N(0, s_b^2).

    Example:
        >>> elbow_scale(2.0, 1.0)
        0.5
    """
    return _scale(bias_std) / _scale(weight_std)


def median_abs_mean(scale: float = 1.0) -> float:
    """Median of |mean of n i.i.d. Cauchy(0, gamma)|, whatever n: gamma, since P(|c| <= gamma) = (2/pi)
    arctan(1) = 1/2. No law of large numbers: for a law with finite variance it would shrink like 1/sqrt(n).

    Example:
        >>> median_abs_mean(2.0)
        2.0
    """
    return _scale(scale)
