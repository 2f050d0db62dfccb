"""One hidden layer of ReLU units represents every continuous piecewise-linear function of one input.

The interpolant of g at knots x_0 < x_1 < ... < x_K is linear on each [x_k, x_{k+1}] with slope
s_k = (g(x_{k+1}) - g(x_k)) / (x_{k+1} - x_k). On [x_0, x_K] it equals exactly

    f(x) = g(x_0) + sum_{k=0}^{K-1} a_k relu(x - x_k),    a_0 = s_0,  a_k = s_k - s_{k-1}  (k >= 1),

a network with K hidden units, unit k having weight 1, bias -x_k (its elbow at x_k) and readout weight a_k,
the change of slope at its knot (the constructive universality of ReLU networks in one dimension; e.g. Arora,
Basu, Mianjy & Mukherjee 2018, "Understanding deep neural networks with rectified linear units", ICLR,
Theorem 2.2). For twice differentiable g the interpolation error is at most h^2 max|g''| / 8 on a grid of
spacing h (de Boor 2001, A Practical Guide to Splines, ch. III, eq. (2)): the error falls like 1/K^2.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray


class ReluInterpolant(NamedTuple):
    """f(x) = offset + sum_k readout_k relu(weight_k x + bias_k), one entry per hidden unit."""

    weight: NDArray[np.float64]
    bias: NDArray[np.float64]
    readout: NDArray[np.float64]
    offset: float


def relu_interpolant(knots: ArrayLike, values: ArrayLike) -> ReluInterpolant:
    """The one-hidden-layer ReLU network equal to the piecewise-linear interpolant of (knots, values) on
    [knots[0], knots[-1]] (module docstring); K = len(knots) - 1 hidden units.

    Example:
        >>> net = relu_interpolant([0.0, 1.0, 2.0], [0.0, 1.0, 0.0])  # a tent
        >>> net.bias.tolist(), net.readout.tolist(), net.offset
        ([-0.0, -1.0], [1.0, -2.0], 0.0)
    """
    x = np.asarray(knots, dtype=float)
    y = np.asarray(values, dtype=float)
    if x.ndim != 1 or x.size < 2 or y.shape != x.shape:
        raise ValueError(f"knots, values: expected two 1-D arrays of equal length >= 2, got {x.shape}, {y.shape}")
    if not np.all(np.isfinite(x)) or not np.all(np.isfinite(y)):
        raise ValueError("knots, values: expected finite numbers")
    if np.any(np.diff(x) <= 0):
        raise ValueError("knots: expected strictly increasing values")
    slopes = np.diff(y) / np.diff(x)
    readout = np.diff(slopes, prepend=0.0)
    return ReluInterpolant(np.ones(x.size - 1), -x[:-1], readout, float(y[0]))


def evaluate_interpolant(net: ReluInterpolant, x: ArrayLike) -> NDArray[np.float64]:
    """f(x) = offset + sum_k readout_k relu(weight_k x + bias_k), in NumPy.

    Example:
        >>> evaluate_interpolant(relu_interpolant([0.0, 1.0, 2.0], [0.0, 1.0, 0.0]), [0.5, 1.5]).tolist()
        [0.5, 0.5]
    """
    x_ = np.asarray(x, dtype=float)[..., None]
    return net.offset + np.maximum(net.weight * x_ + net.bias, 0.0) @ net.readout


def interpolation_error_bound(knots: ArrayLike, second_derivative_bound: float) -> float:
    """max_k h_k^2 M / 8: the largest |g - interpolant| on the knots' interval when |g''| <= M (de Boor 2001).

    Example:
        >>> interpolation_error_bound([0.0, 0.5, 1.0], second_derivative_bound=2.0)
        0.0625
    """
    x = np.asarray(knots, dtype=float)
    if x.ndim != 1 or x.size < 2 or np.any(np.diff(x) <= 0):
        raise ValueError("knots: expected a strictly increasing 1-D array of length >= 2")
    if not np.isfinite(second_derivative_bound) or second_derivative_bound < 0:
        raise ValueError(
            f"second_derivative_bound: expected a finite non-negative number, got {second_derivative_bound}"
        )
    return float(np.max(np.diff(x)) ** 2 * second_derivative_bound / 8.0)
