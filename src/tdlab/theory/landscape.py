"""Second-order geometry of the loss along lines and planes, and how a rescaling symmetry moves the curvature.

Along a line theta(alpha) = theta_0 + (alpha - alpha_0) d, Taylor's theorem gives

    L(alpha) = L(alpha_0) + (alpha - alpha_0) g.d + (alpha - alpha_0)^2 / 2 d^T H d + O(|alpha - alpha_0|^3),

and on the plane theta + a v_1 + b v_2 spanned by two Hessian eigenvectors (H v_i = lambda_i v_i, orthonormal,
so v_1^T H v_2 = 0)

    L(a, b) = L + a g.v_1 + b g.v_2 + (lambda_1 a^2 + lambda_2 b^2) / 2 + O(r^3),    r^2 = a^2 + b^2.

The central second difference [L(h) - 2 L(0) + L(-h)] / h^2 measures L''(0) with the bias h^2 L''''(0) / 12
(Taylor to fourth order; e.g. LeVeque 2007, Finite Difference Methods, sec. 1.2).

Rescaling symmetry (Dinh et al. 2017, "Sharp minima can generalize for deep nets"): if L(D theta) = L(theta)
for a diagonal D (a ReLU layer's incoming weights times k, the next layer's times 1/k), differentiating twice
gives H(D theta) = D^{-1} H(theta) D^{-1}. The block of the outgoing weights is multiplied by k^2 and that of the
incoming weights by 1/k^2; since the largest eigenvalue of a symmetric matrix is at least that of any principal
block (Rayleigh quotient restricted to the block's coordinates),

    lambda_max(H(D theta)) >= max(k^2 lambda_max(H_out), lambda_max(H_in) / k^2),

with equality to leading order as k -> infinity (resp. 0): an equivalent minimum with any sharpness.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from tdlab.theory._checks import finite as _finite


def quadratic_path(
    alpha: ArrayLike, value: float, slope: float, curvature: float, centre: float = 1.0
) -> NDArray[np.float64]:
    """The second-order model of the loss along a line, expanded at alpha_0 = `centre`:
    L(alpha_0) + (alpha - alpha_0) g.d + (alpha - alpha_0)^2 / 2 d^T H d.

    Example:
        >>> quadratic_path([0.0, 1.0, 2.0], value=1.0, slope=0.0, curvature=2.0).tolist()
        [2.0, 1.0, 2.0]
    """
    t = _finite("alpha", alpha) - float(_finite("centre", centre))
    return (
        float(_finite("value", value))
        + t * float(_finite("slope", slope))
        + 0.5 * t**2 * float(_finite("curvature", curvature))
    )


def quadratic_plane(
    a: ArrayLike,
    b: ArrayLike,
    value: float,
    slopes: tuple[float, float],
    eigenvalues: tuple[float, float],
) -> NDArray[np.float64]:
    """The second-order model on the plane of two orthonormal Hessian eigenvectors:
    L + a g.v_1 + b g.v_2 + (lambda_1 a^2 + lambda_2 b^2) / 2 (broadcast over a and b).

    Example:
        >>> quadratic_plane([1.0, 0.0], [0.0, 2.0], value=0.5, slopes=(0.0, 1.0), eigenvalues=(4.0, 1.0)).tolist()
        [2.5, 4.5]
    """
    a, b = _finite("a", a), _finite("b", b)
    (s1, s2), (l1, l2) = _finite("slopes", slopes), _finite("eigenvalues", eigenvalues)
    return float(_finite("value", value)) + a * s1 + b * s2 + 0.5 * (l1 * a**2 + l2 * b**2)


def central_difference_bias(step: ArrayLike, fourth_derivative: float) -> NDArray[np.float64]:
    """Leading error of the central second difference, h^2 L''''(0) / 12 (to O(h^4)).

    Example:
        >>> central_difference_bias([0.1, 0.2], fourth_derivative=12.0).round(12).tolist()
        [0.01, 0.04]
    """
    return _finite("step", step) ** 2 * float(_finite("fourth_derivative", fourth_derivative)) / 12.0


def rescaled_sharpness_bound(scale: ArrayLike, top_outgoing: float, top_incoming: float) -> NDArray[np.float64]:
    """Lower bound on the sharpness after rescaling a ReLU layer by k (incoming weights and bias times k,
    outgoing weights times 1/k): max(k^2 lambda_max(H_out), lambda_max(H_in) / k^2), tight to leading order
    as k -> infinity or 0 (module docstring).

    Args:
        scale: k > 0.
        top_outgoing: lambda_max of the Hessian block of the outgoing weights at k = 1.
        top_incoming: lambda_max of the Hessian block of the incoming weights and bias at k = 1.

    Example:
        >>> rescaled_sharpness_bound([0.1, 1.0, 10.0], top_outgoing=2.0, top_incoming=3.0).round(9).tolist()
        [300.0, 3.0, 200.0]
    """
    k = _finite("scale", scale)
    if np.any(k <= 0):
        raise ValueError(f"scale: expected positive values, got {scale!r}")
    return np.maximum(
        k**2 * float(_finite("top_outgoing", top_outgoing)), float(_finite("top_incoming", top_incoming)) / k**2
    )
