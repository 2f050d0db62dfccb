"""Signal propagation in wide random networks: the mean-field variance and correlation maps.

A fully connected network with weights W^l_ij ~ N(0, sigma_w^2 / n_{l-1}), biases b^l_i ~ N(0, sigma_b^2) and
activation phi has, in the limit of infinite width, Gaussian pre-activations z^l = W^l phi(z^{l-1}) + b^l whose
variance q^l and correlation c^l between two inputs follow deterministic maps (Poole, Lahiri, Raghu,
Sohl-Dickstein & Ganguli 2016, "Exponential expressivity in deep neural networks through transient chaos",
eqs. 3 and 5; Schoenholz, Gilmer, Ganguli & Sohl-Dickstein 2017, "Deep information propagation", eqs. 1-9):

    q^l   = sigma_w^2 E[phi(sqrt(q^{l-1}) z)^2] + sigma_b^2,                         z ~ N(0, 1)
    c^l   = (sigma_w^2 E[phi(u_1) phi(u_2)] + sigma_b^2) / q^l,
            u_1 = sqrt(q) z_1,  u_2 = sqrt(q) (c^{l-1} z_1 + sqrt(1 - (c^{l-1})^2) z_2)   (q = q^{l-1})
    chi_1 = sigma_w^2 E[phi'(sqrt(q*) z)^2]            slope of the correlation map at c = 1
    chi_c = sigma_w^2 E[phi'(u_1) phi'(u_2)]            slope at the correlation fixed point c*
    xi_c  = -1 / log(chi_c)                             |c^l - c*| ~ exp(-l / xi_c)

The first layer starts from the inputs: q^1 = sigma_w^2 |x|^2 / d + sigma_b^2, and c^1 from their inner
product. chi_1 < 1 is the ordered phase (all inputs become alike, c* = 1), chi_1 > 1 the chaotic one
(c* < 1); on the critical line chi_1 = 1 the depth scale xi_c diverges. Backwards, the squared gradient with
respect to the pre-activations is multiplied by sigma_w^2 E[phi'(sqrt(q^l) z)^2] per layer (chi_1 at the
fixed point; Schoenholz et al. 2017, eq. 11), under the usual assumption that the backward weights are
independent of the forward ones.

For ReLU the expectations have closed forms (Cho & Saul 2009, "Kernel methods for deep learning", the
arc-cosine kernel of degree 1): E[relu(sqrt(q) z)^2] = q/2, E[relu'(.)^2] = 1/2 and, without bias,

    c^l = (sqrt(1 - c^2) + (pi - arccos c) c) / pi,

so He initialisation sigma_w^2 = 2 keeps q constant while c^l -> 1 for every pair of inputs.

Other activations are integrated numerically: Gauss-Hermite quadrature (`numpy.polynomial.hermite_e`) while the
Gaussian is narrow (q <= 1); for wider ones phi(sqrt(q) z) bends on the scale 1/sqrt(q), between the sparse
central Gauss-Hermite nodes, and the trapezoidal rule with step 0.25/sqrt(q) on |z| <= 12 is used instead,
which converges geometrically for analytic integrands (Trefethen & Weideman 2014, "The exponentially convergent
trapezoidal rule", SIAM Review 56). Two-dimensional expectations use the tensor product of the same rule.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from numbers import Integral

import numpy as np
from numpy.polynomial.hermite_e import hermegauss
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import brentq

ACTIVATIONS = ("tanh", "relu")
_HERMITE_MAX_VARIANCE = 1.0
_TRAPEZOID_HALF_WIDTH = 12.0

Array = NDArray[np.float64]


def _activation(name: str) -> tuple[Callable[[Array], Array], Callable[[Array], Array]]:
    if name == "tanh":
        return np.tanh, lambda u: 1.0 / np.cosh(np.clip(u, -350.0, 350.0)) ** 2
    raise ValueError(f"activation: expected one of {', '.join(map(repr, ACTIVATIONS))}, got {name!r}")


def _check_activation(name: str) -> None:
    if name not in ACTIVATIONS:
        raise ValueError(f"activation: expected one of {', '.join(map(repr, ACTIVATIONS))}, got {name!r}")


def _non_negative(name: str, value: ArrayLike) -> Array:
    array = np.asarray(value, dtype=float)
    if not np.all(np.isfinite(array)) or np.any(array < 0):
        raise ValueError(f"{name}: expected finite non-negative values, got {value!r}")
    return array


def _correlation(value: ArrayLike) -> Array:
    array = np.asarray(value, dtype=float)
    if not np.all(np.isfinite(array)) or np.any(np.abs(array) > 1.0 + 1e-12):
        raise ValueError(f"c: expected correlations in [-1, 1], got {value!r}")
    return np.clip(array, -1.0, 1.0)


@cache
def gauss_hermite(order: int = 101) -> tuple[Array, Array]:
    """Nodes z_k and weights w_k with sum_k w_k f(z_k) = E[f(z)], z ~ N(0, 1), exact for polynomials of degree
    < 2 * order (Gauss-Hermite quadrature for the weight exp(-z^2/2), `numpy.polynomial.hermite_e.hermegauss`,
    with the weights divided by sqrt(2 pi)).

    Example:
        >>> z, w = gauss_hermite(5)
        >>> round(float(w @ z**4), 12)  # E[z^4] = 3
        3.0
    """
    if isinstance(order, bool) or not isinstance(order, Integral) or order < 2:
        raise ValueError(f"order: expected an integer >= 2, got {order!r}")
    nodes, weights = hermegauss(order)
    weights = weights / np.sqrt(2.0 * np.pi)
    nodes.flags.writeable = weights.flags.writeable = False
    return nodes, weights


def _rule(variance: float, order: int) -> tuple[Array, Array]:
    """Quadrature nodes and weights for E[f(sqrt(variance) z)] (see the module docstring)."""
    if variance <= _HERMITE_MAX_VARIANCE:
        return gauss_hermite(order)
    step = 0.25 / np.sqrt(variance)
    count = int(np.ceil(_TRAPEZOID_HALF_WIDTH / step))
    nodes = step * np.arange(-count, count + 1)
    return nodes, step * np.exp(-0.5 * nodes**2) / np.sqrt(2.0 * np.pi)


def gaussian_expectation(f: Callable[[Array], Array], variance: ArrayLike, order: int = 101) -> Array:
    """E[f(sqrt(q) z)], z ~ N(0, 1), for each q in `variance`, by quadrature (rules in the module docstring).

    Example:
        >>> float(gaussian_expectation(np.square, 2.5).round(12))
        2.5
        >>> gaussian_expectation(lambda u: np.tanh(u) ** 2, [0.0, 100.0]).round(4).tolist()
        [0.0, 0.9205]
    """
    q = _non_negative("variance", variance)
    flat = q.ravel()
    out = np.empty_like(flat)
    for i, value in enumerate(flat):
        nodes, weights = _rule(float(value), order)
        out[i] = weights @ f(np.sqrt(value) * nodes)
    return out.reshape(q.shape)


def _cross_expectation(
    f: Callable[[Array], Array], g: Callable[[Array], Array], q: float, c: Array, order: int
) -> Array:
    """E[f(u_1) g(u_2)] with (u_1, u_2) centred Gaussian of variances q and correlation c (tensor rule)."""
    nodes, weights = _rule(q, order)
    z1, z2 = nodes[:, None], nodes[None, :]
    weight = weights[:, None] * weights[None, :]
    root = np.sqrt(q)
    fu = f(root * z1)
    out = np.empty_like(c)
    for i, ci in enumerate(c.ravel()):
        u2 = root * (ci * z1 + np.sqrt(max(1.0 - ci * ci, 0.0)) * z2)
        out.flat[i] = np.sum(weight * fu * g(u2))
    return out


def relu_correlation_map(c: ArrayLike) -> Array:
    """One layer of the ReLU correlation map without bias (any sigma_w^2), c' = (sqrt(1 - c^2) + (pi - arccos c) c)
    / pi: the normalised arc-cosine kernel of degree 1 (Cho & Saul 2009, eq. 6).

    It is also the cosine similarity of the post-activations relu(z) of two inputs whose pre-activations have
    correlation c. Fixed point c = 1, approached as 1 - c^l ~ 9 pi^2 / (2 l^2).

    Example:
        >>> relu_correlation_map([0.0, 1.0]).round(6).tolist()  # 1/pi at 0
        [0.31831, 1.0]
    """
    c_ = _correlation(c)
    return (np.sqrt(1.0 - c_**2) + (np.pi - np.arccos(c_)) * c_) / np.pi


def variance_map(
    q: ArrayLike, sigma_w2: float, sigma_b2: float = 0.0, activation: str = "tanh", order: int = 101
) -> Array:
    """One layer of the length map, q' = sigma_w^2 E[phi(sqrt(q) z)^2] + sigma_b^2 (Poole et al. 2016, eq. 3);
    for ReLU, q' = sigma_w^2 q / 2 + sigma_b^2.

    Example:
        >>> float(variance_map(1.0, sigma_w2=2.0, activation="relu"))  # He: q preserved
        1.0
        >>> round(float(variance_map(1.0, sigma_w2=1.0, activation="tanh")), 6)
        0.394294
    """
    _check_activation(activation)
    q_ = _non_negative("q", q)
    sw, sb = float(_non_negative("sigma_w2", sigma_w2)), float(_non_negative("sigma_b2", sigma_b2))
    if activation == "relu":
        return sw * q_ / 2.0 + sb
    phi, _ = _activation(activation)
    return sw * gaussian_expectation(lambda u: phi(u) ** 2, q_, order) + sb


def preactivation_variances(
    input_second_moment: float,
    sigma_w2: ArrayLike,
    sigma_b2: float = 0.0,
    activation: str = "tanh",
    order: int = 101,
) -> Array:
    """q^1, ..., q^L of a network of L = len(sigma_w2) layers: q^1 = sigma_w,1^2 |x|^2/d + sigma_b^2, then the
    length map with layer l's sigma_w,l^2 (so that layers may differ, e.g. the first layer under Xavier).

    Args:
        input_second_moment: |x|^2 / d, the mean square of the input's entries.
        sigma_w2: per-layer weight variance times fan-in, sigma_w,l^2 = n_{l-1} Var(W^l_ij), l = 1..L.

    Example:
        >>> preactivation_variances(1.0, [2.0, 2.0, 2.0], activation="relu").tolist()
        [2.0, 2.0, 2.0]
    """
    sw = _non_negative("sigma_w2", sigma_w2).ravel()
    q = [float(sw[0] * _non_negative("input_second_moment", input_second_moment) + sigma_b2)]
    for s in sw[1:]:
        q.append(float(variance_map(q[-1], float(s), sigma_b2, activation, order)))
    return np.array(q)


def gradient_factor(q: ArrayLike, sigma_w2: float, activation: str = "tanh", order: int = 101) -> Array:
    """Per-layer factor of the squared backpropagated gradient, sigma_w^2 E[phi'(sqrt(q) z)^2], where q is the
    variance of the pre-activations it passes through and sigma_w^2 that of the next layer's weights
    (Schoenholz et al. 2017, eq. 11; chi_1 at q = q*). For ReLU it is sigma_w^2 / 2.

    Example:
        >>> float(gradient_factor(3.0, sigma_w2=2.0, activation="relu"))
        1.0
    """
    _check_activation(activation)
    q_ = _non_negative("q", q)
    sw = float(_non_negative("sigma_w2", sigma_w2))
    if activation == "relu":
        return np.full_like(q_, sw / 2.0)
    _, dphi = _activation(activation)
    return sw * gaussian_expectation(lambda u: dphi(u) ** 2, q_, order)


def gradient_variances(q: ArrayLike, sigma_w2_next: ArrayLike, activation: str = "tanh", order: int = 101) -> Array:
    """Mean square of the gradient with respect to the pre-activations of layers 1..L relative to layer L,

        g^l / g^L = prod_{k=l}^{L-1} sigma_w,k+1^2 E[phi'(sqrt(q^k) z)^2],

    for equal widths (each factor is `gradient_factor`; Schoenholz et al. 2017, eq. 11).

    Args:
        q: forward pre-activation variances q^1..q^L (e.g. from `preactivation_variances`).
        sigma_w2_next: sigma_w^2 of layers 2..L (length L - 1), the weights each gradient flows back through.

    Example:
        >>> gradient_variances([1.0, 1.0, 1.0], [4.0, 4.0], activation="relu").tolist()  # factor 2 per layer
        [4.0, 2.0, 1.0]
    """
    q_ = _non_negative("q", q).ravel()
    sw = _non_negative("sigma_w2_next", sigma_w2_next).ravel()
    if sw.size != q_.size - 1:
        raise ValueError(f"sigma_w2_next: expected {q_.size - 1} values (layers 2..L), got {sw.size}")
    factors = np.array(
        [float(gradient_factor(qk, float(s), activation, order)) for qk, s in zip(q_[:-1], sw, strict=True)]
    )
    return np.append(np.cumprod(factors[::-1])[::-1], 1.0)


def fixed_point_variance(
    sigma_w2: float,
    sigma_b2: float,
    activation: str = "tanh",
    tol: float = 1e-12,
    max_iter: int = 10_000,
    order: int = 101,
) -> float:
    """The fixed point q* of the length map, reached by iterating it from q = 1 (Poole et al. 2016, fig. 1).

    For tanh it exists for every (sigma_w^2, sigma_b^2) and is 0 when sigma_b^2 = 0 and sigma_w^2 <= 1. ReLU has
    none unless sigma_w^2 < 2 (q* = sigma_b^2 / (1 - sigma_w^2/2)) or sigma_w^2 = 2 and sigma_b^2 = 0 (every q);
    otherwise ValueError.

    Example:
        >>> round(fixed_point_variance(1.5, 0.05), 4)
        0.418
    """
    _check_activation(activation)
    sw, sb = float(_non_negative("sigma_w2", sigma_w2)), float(_non_negative("sigma_b2", sigma_b2))
    if activation == "relu":
        if sw < 2.0:
            return sb / (1.0 - sw / 2.0)
        if sw == 2.0 and sb == 0.0:
            return 1.0
        raise ValueError(f"sigma_w2: the ReLU length map has no fixed point for sigma_w2 = {sw} >= 2 with bias")
    if sb == 0.0 and sw <= 1.0:
        return 0.0  # tanh(u)^2 < u^2: q decreases to 0, only like 1/l at sigma_w^2 = 1
    q = 1.0
    for _ in range(max_iter):
        new = float(variance_map(q, sw, sb, activation, order))
        if abs(new - q) <= tol * max(1.0, new):
            return new
        q = new
    raise RuntimeError(f"fixed_point_variance: no convergence in {max_iter} iterations (last q = {q:g})")


def correlation_map(
    c: ArrayLike,
    q: float,
    sigma_w2: float,
    sigma_b2: float = 0.0,
    activation: str = "tanh",
    order: int = 101,
) -> Array:
    """One layer of the correlation map for two inputs of pre-activation variance q (Poole et al. 2016, eq. 5):

        c' = (sigma_w^2 E[phi(u_1) phi(u_2)] + sigma_b^2) / (sigma_w^2 E[phi(u_1)^2] + sigma_b^2),

    so that c = 1 maps to 1 for every q (at q = q* the denominator is q*). For ReLU the bias-free map is
    `relu_correlation_map`.

    Example:
        >>> q = fixed_point_variance(1.5, 0.05)
        >>> correlation_map([1.0, 0.5], q, 1.5, 0.05).round(4).tolist()
        [1.0, 0.5497]
    """
    _check_activation(activation)
    c_ = _correlation(c)
    q_ = float(_non_negative("q", q))
    sw, sb = float(_non_negative("sigma_w2", sigma_w2)), float(_non_negative("sigma_b2", sigma_b2))
    if activation == "relu":
        cross = q_ / 2.0 * relu_correlation_map(c_)
        return (sw * cross + sb) / (sw * q_ / 2.0 + sb)
    phi, _ = _activation(activation)
    cross = _cross_expectation(phi, phi, q_, c_, order)
    denominator = sw * float(gaussian_expectation(lambda u: phi(u) ** 2, q_, order)) + sb
    return (sw * cross + sb) / denominator


def correlation_trajectory(
    c0: ArrayLike,
    depth: int,
    sigma_w2: float,
    sigma_b2: float = 0.0,
    activation: str = "tanh",
    q: float | None = None,
    order: int = 101,
) -> Array:
    """c^0 = c0, c^1, ..., c^depth by iterating `correlation_map` at the variance q (default q*), shape
    (depth + 1, *c0.shape).

    Example:
        >>> correlation_trajectory(0.0, 3, sigma_w2=2.0, activation="relu").round(4).tolist()
        [0.0, 0.3183, 0.4937, 0.6048]
    """
    if isinstance(depth, bool) or not isinstance(depth, Integral) or depth < 0:
        raise ValueError(f"depth: expected a non-negative integer, got {depth!r}")
    if q is None:
        q = fixed_point_variance(sigma_w2, sigma_b2, activation, order=order)
    path = [_correlation(c0)]
    for _ in range(depth):
        path.append(correlation_map(path[-1], q, sigma_w2, sigma_b2, activation, order))
    return np.stack(path)


def chi_1(sigma_w2: float, sigma_b2: float, activation: str = "tanh", order: int = 101) -> float:
    """chi_1 = sigma_w^2 E[phi'(sqrt(q*) z)^2]: the slope of the correlation map at c = 1 and the per-layer
    factor of the squared gradient at the fixed point (Poole et al. 2016, eq. 7; Schoenholz et al. 2017, eq. 5).

    Example:
        >>> round(chi_1(1.0, 0.0), 6)  # tanh at the critical point (q* = 0, phi'(0) = 1)
        1.0
    """
    q_star = fixed_point_variance(sigma_w2, sigma_b2, activation, order=order)
    return float(gradient_factor(q_star, sigma_w2, activation, order))


def fixed_point_correlation(
    sigma_w2: float,
    sigma_b2: float,
    activation: str = "tanh",
    tol: float = 1e-12,
    max_iter: int = 100_000,
    order: int = 101,
) -> float:
    """The stable fixed point c* of the correlation map: 1 in the ordered phase (chi_1 <= 1); in the chaotic
    phase the root of c' = c below 1, bracketed in [0, 1) when sigma_b^2 > 0, and 0 for an odd activation
    without bias (Schoenholz et al. 2017, sec. 3).

    Example:
        >>> fixed_point_correlation(1.5, 0.05)
        1.0
        >>> round(fixed_point_correlation(4.0, 0.05), 4)
        0.1651
    """
    _check_activation(activation)
    if chi_1(sigma_w2, sigma_b2, activation, order) <= 1.0:
        return 1.0
    if activation == "relu":
        raise ValueError("activation: the ReLU correlation map is ordered for every sigma_w2 < 2")
    q_star = fixed_point_variance(sigma_w2, sigma_b2, activation, order=order)
    if sigma_b2 == 0.0:
        return 0.0

    def excess(c: float) -> float:
        return float(correlation_map(c, q_star, sigma_w2, sigma_b2, activation, order)) - c

    # The map's slope at 1 exceeds 1, so c' < c just below 1; find such a point to bracket the root.
    high = 1.0 - 1e-3
    while excess(high) >= 0.0:
        high = 1.0 - (1.0 - high) / 10.0
        if 1.0 - high < 1e-12:
            raise RuntimeError("fixed_point_correlation: the correlation map stays above c below 1")
    return float(brentq(excess, 0.0, high, xtol=tol, maxiter=max_iter))


def chi_c(sigma_w2: float, sigma_b2: float, activation: str = "tanh", order: int = 101) -> float:
    """chi_c = sigma_w^2 E[phi'(u_1) phi'(u_2)] at q* and c*: the slope of the correlation map at its stable
    fixed point (Schoenholz et al. 2017, eq. 8); chi_1 in the ordered phase.

    Example:
        >>> round(chi_c(1.5, 0.05), 4) == round(chi_1(1.5, 0.05), 4)
        True
    """
    c_star = fixed_point_correlation(sigma_w2, sigma_b2, activation, order=order)
    if c_star == 1.0:
        return chi_1(sigma_w2, sigma_b2, activation, order)
    _, dphi = _activation(activation)
    q_star = fixed_point_variance(sigma_w2, sigma_b2, activation, order=order)
    return float(sigma_w2 * _cross_expectation(dphi, dphi, q_star, np.array([c_star]), order)[0])


def correlation_depth(sigma_w2: float, sigma_b2: float, activation: str = "tanh", order: int = 101) -> float:
    """The depth scale of correlations, xi_c = -1 / log(chi_c) (Schoenholz et al. 2017, eq. 9): |c^l - c*|
    ~ exp(-l / xi_c); infinite on the critical line. Signals propagate through about 6 xi_c layers, the
    trainable depth of their fig. 5.

    Example:
        >>> float(round(correlation_depth(1.5, 0.05), 3))
        15.791
    """
    slope = chi_c(sigma_w2, sigma_b2, activation, order)
    return float("inf") if slope >= 1.0 else -1.0 / np.log(slope)


def critical_sigma_w2(sigma_b2: float, activation: str = "tanh", order: int = 101) -> float:
    """The sigma_w^2 on the order-to-chaos line chi_1(sigma_w^2, sigma_b^2) = 1 (Poole et al. 2016, fig. 2;
    Schoenholz et al. 2017, fig. 1): 1 for tanh without bias, 2 for ReLU (He initialisation).

    Example:
        >>> round(critical_sigma_w2(0.05), 4)
        1.761
    """
    _check_activation(activation)
    sb = float(_non_negative("sigma_b2", sigma_b2))
    if activation == "relu":
        return 2.0
    if sb == 0.0:
        return 1.0
    return float(brentq(lambda s: chi_1(s, sb, activation, order) - 1.0, 1.0, 100.0, xtol=1e-12))
