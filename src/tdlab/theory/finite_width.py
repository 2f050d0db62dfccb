"""Finite-width fluctuations of the squared activations of a ReLU network at He initialisation.

With weights W^l_ij ~ N(0, 2 / n_{l-1}), no bias and widths n_1, ..., n_L, the mean square of the activations
of one input, M_l = |h_l|^2 / n_l with M_0 = |x|^2 / d, is preserved only on average. Given h_{l-1}, the
pre-activations z^l_i are i.i.d. N(0, 2 M_{l-1}), so

    M_l / M_{l-1} = (2 / n_l) sum_{i <= n_l} relu(xi_i)^2,   xi_i ~ N(0, 1) i.i.d.,

independent of the past (Hanin & Rolnick 2018, "How to start training: the effect of initialization and
architecture", NeurIPS, Theorem 5, for Gaussian weights). With E[relu(xi)^2] = 1/2 and E[relu(xi)^4] = 3/2
each factor has mean 1 and second moment 1 + 5/n_l, hence the exact moments

    E[M_l / M_0] = 1,    Var[M_l / M_0] = prod_{k <= l} (1 + 5/n_k) - 1,

and log(M_l / M_0) has variance close to 5 sum_{k <= l} 1/n_k (5 depth / width for equal widths): the
fluctuations grow with depth over width. The pre-activations Q_l = |z^l|^2 / n_l = 2 M_{l-1} chi^2_{n_l} / n_l
add one chi-square factor of second moment 1 + 2/n_l.
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral

import numpy as np


def _widths(depth: int, width: int | Sequence[int]) -> np.ndarray:
    if isinstance(depth, bool) or not isinstance(depth, Integral) or depth < 0:
        raise ValueError(f"depth: expected a non-negative integer, got {depth!r}")
    widths = np.full(depth, width, dtype=float) if np.isscalar(width) else np.asarray(width, dtype=float)
    if widths.shape != (depth,) or np.any(widths < 1):
        raise ValueError(f"width: expected a positive integer or {depth} positive integers, got {width!r}")
    return widths


def relu_log_norm_variance(depth: int, width: int | Sequence[int]) -> float:
    """Var[log(M_L / M_0)] ~ 5 sum_l 1/n_l, i.e. 5 depth / width (Hanin & Rolnick 2018, Theorem 5).

    Example:
        >>> relu_log_norm_variance(50, 1000)
        0.25
    """
    return float(5.0 * np.sum(1.0 / _widths(depth, width)))


def relu_norm_ratio_variance(depth: int, width: int | Sequence[int]) -> float:
    """Exact Var[M_L / M_0] = prod_l (1 + 5/n_l) - 1 for one input of a He-initialised ReLU net (module
    docstring): the variance of the mean square of its activations at depth L relative to the input's.

    Example:
        >>> round(relu_norm_ratio_variance(1, 5), 12)
        1.0
        >>> round(relu_norm_ratio_variance(50, 1000), 4)  # close to 5 * 50 / 1000 = 0.25
        0.2832
    """
    return float(np.prod(1.0 + 5.0 / _widths(depth, width)) - 1.0)


def relu_preactivation_ratio_variance(layer: int, width: int | Sequence[int]) -> float:
    """Exact Var[Q_l / (2 M_0)] = prod_{k < l} (1 + 5/n_k) (1 + 2/n_l) - 1 for the mean square Q_l of the
    pre-activations of layer l >= 1 of one input (module docstring); `width` gives n_1..n_l.

    Example:
        >>> round(relu_preactivation_ratio_variance(1, 2), 12)  # chi-square with 2 degrees of freedom / 2
        1.0
    """
    if isinstance(layer, bool) or not isinstance(layer, Integral) or layer < 1:
        raise ValueError(f"layer: expected a positive integer, got {layer!r}")
    widths = _widths(layer, width)
    return float(np.prod(1.0 + 5.0 / widths[:-1]) * (1.0 + 2.0 / widths[-1]) - 1.0)
