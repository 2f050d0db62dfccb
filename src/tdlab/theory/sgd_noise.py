"""SGD with a constant step keeps shaking around the minimum: stationary variances, exact mean-square errors.

Additive gradient noise. On f(w) = 1/2 w^T A w with stochastic gradients A w_t + xi_t, xi_t ~ (0, s^2 I)
i.i.d., the error along an eigen-direction (curvature lambda, h = eta lambda) is an AR(1) process
e_{t+1} = (1 - h) e_t - eta xi_t, whose stationary variance solves V = (1 - h)^2 V + eta^2 s^2:

    V_SGD = eta s^2 / (lambda (2 - h))                                  (h < 2).

With heavy-ball momentum the recursion e_{t+1} = (1 + beta - h) e_t - beta e_{t-1} - eta xi_t is an AR(2)
process; its variance (Box, Jenkins & Reinsel, Time Series Analysis, eq. 3.2.30, gamma_0 of an AR(2)) is

    V_HB = eta s^2 (1 + beta) / (lambda (1 - beta) (2 (1 + beta) - h)),

the solution of the 2x2 discrete Lyapunov equation Sigma = M Sigma M^T + diag(eta^2 s^2, 0). The mean of K
consecutive stationary SGD iterates has variance (V/K) [(1 + r)/(1 - r) - 2 r (1 - r^K)/(K (1 - r)^2)] with
r = 1 - h, which tends to s^2/(lambda^2 K) whatever eta: the Polyak-Juditsky (1992) rate of iterate averaging.

Per-example SGD on least squares f(w) = (1/2n) sum_i (x_i^T w - y_i)^2, one uniform example per step, has an
exact linear recursion for the first two moments of e_t = w_t - w_LS (the LMS analysis of Widrow & Hoff 1960;
see Defossez & Bach 2015, "Averaged least-mean-squares: bias-variance trade-offs and optimal sampling
distributions", AISTATS). With K_i = I - eta x_i x_i^T, residuals r_i = y_i - x_i^T w_LS, H = X^T X/n:

    m_{t+1} = (I - eta H) m_t,
    S_{t+1} = (1/n) sum_i [K_i S_t K_i - 2 eta^2 r_i (x_i^T m_t) x_i x_i^T + eta^2 r_i^2 x_i x_i^T],

using X^T r = 0. When the model interpolates (every r_i = 0) the noise vanishes at the optimum and a constant
step converges (Ma, Bassily & Belkin 2018, "The power of interpolation", ICML); otherwise E||e_t||^2 tends to
a positive plateau and only a decreasing step (Robbins & Monro 1951) drives it to zero.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from tdlab.theory._checks import positive as _positive


def sgd_stationary_variance(eta: float, eigenvalues: ArrayLike, noise_var: float) -> NDArray[np.float64]:
    """The stationary variance of constant-step SGD along each eigen-direction,
    eta s^2/(lambda (2 - eta lambda)).

    inf where eta lambda >= 2 (no stationary distribution).

    Example:
        >>> sgd_stationary_variance(0.5, [1.0, 2.0, 4.0], 1.0).tolist()
        [0.3333333333333333, 0.25, inf]
    """
    lam = _positive("eigenvalues", eigenvalues)
    h = float(_positive("eta", eta)) * lam
    s2 = float(_positive("noise_var", noise_var))
    with np.errstate(divide="ignore"):
        return np.where(h < 2.0, eta * s2 / (lam * (2.0 - h)), np.inf)


def heavy_ball_stationary_variance(
    eta: float, beta: float, eigenvalues: ArrayLike, noise_var: float
) -> NDArray[np.float64]:
    """The stationary variance of heavy ball with gradient noise along each eigen-direction,
    eta s^2 (1 + beta)/(lambda (1 - beta)(2 (1 + beta) - eta lambda)); inf where eta lambda >= 2 (1 + beta).

    Example:
        >>> heavy_ball_stationary_variance(0.5, 0.0, [1.0], 1.0).tolist()  # beta = 0 is SGD
        [0.3333333333333333]
        >>> heavy_ball_stationary_variance(0.1, 0.9, [1.0], 1.0).round(4).tolist()
        [0.5135]
    """
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"beta: expected a momentum in [0, 1), got {beta}")
    lam = _positive("eigenvalues", eigenvalues)
    h = float(_positive("eta", eta)) * lam
    s2 = float(_positive("noise_var", noise_var))
    edge = 2.0 * (1.0 + beta)
    with np.errstate(divide="ignore"):
        return np.where(h < edge, eta * s2 * (1.0 + beta) / (lam * (1.0 - beta) * (edge - h)), np.inf)


def averaged_iterate_variance(eta: float, eigenvalues: ArrayLike, noise_var: float, window: int) -> NDArray[np.float64]:
    """The variance of the mean of `window` = K consecutive stationary SGD iterates, per eigen-direction.

    (V/K) [(1 + r)/(1 - r) - 2 r (1 - r^K)/(K (1 - r)^2)], with V the stationary variance and
    r = 1 - eta lambda: the double sum (V/K^2) sum_{s,t} r^|s - t| of the AR(1) autocovariances. For
    K >> 1/(eta lambda) it tends to s^2/(lambda^2 K) (Polyak & Juditsky 1992, "Acceleration of stochastic
    approximation by averaging").

    Example:
        >>> averaged_iterate_variance(0.5, [2.0], 1.0, 4).tolist()  # r = 0: independent iterates, V/K
        [0.0625]
    """
    if window < 1:
        raise ValueError(f"window: expected a positive integer, got {window}")
    variance = sgd_stationary_variance(eta, eigenvalues, noise_var)
    r = 1.0 - eta * _positive("eigenvalues", eigenvalues)
    k = float(window)
    return variance / k * ((1.0 + r) / (1.0 - r) - 2.0 * r * (1.0 - r**window) / (k * (1.0 - r) ** 2))


Array = NDArray[np.float64]


def _least_squares(X: ArrayLike, y: ArrayLike) -> tuple[Array, Array, Array]:
    """(X, w_LS, residuals) after validating that X has full column rank."""
    X_ = np.asarray(X, dtype=float)
    y_ = np.asarray(y, dtype=float)
    if X_.ndim != 2 or y_.shape != (X_.shape[0],):
        raise ValueError(f"X, y: expected shapes (n, d) and (n,), got {X_.shape} and {y_.shape}")
    if np.linalg.matrix_rank(X_) < X_.shape[1]:
        raise ValueError(f"X: expected full column rank {X_.shape[1]}, got rank {np.linalg.matrix_rank(X_)}")
    w_ls = np.linalg.lstsq(X_, y_, rcond=None)[0]
    return X_, w_ls, y_ - X_ @ w_ls


def _second_moment_operators(X: NDArray[np.float64]) -> tuple[NDArray[np.float64], ...]:
    """H, G = H (x) I + I (x) H and M4 = (1/n) sum_i (x_i x_i^T) (x) (x_i x_i^T), on row-major vec(S)."""
    n, d = X.shape
    H = X.T @ X / n
    outer = np.einsum("ni,nj->nij", X, X).reshape(n, d * d)
    return H, np.kron(H, np.eye(d)) + np.kron(np.eye(d), H), outer.T @ outer / n


def least_squares_sgd_mse(X: ArrayLike, y: ArrayLike, w0: ArrayLike, etas: ArrayLike) -> NDArray[np.float64]:
    """E ||w_t - w_LS||^2 for t = 0..T of per-example SGD, w_{t+1} = w_t - eta_t x_i (x_i^T w_t - y_i) with
    i uniform.

    Exact (no approximation in eta): the moment recursion of the module docstring, started from the
    deterministic w0, with the step eta_t = etas[t].

    Example:
        >>> X = np.eye(2)
        >>> least_squares_sgd_mse(X, [0.0, 0.0], [1.0, 1.0], [1.0, 1.0]).tolist()  # a step zeroes one entry
        [2.0, 1.0, 0.5]
    """
    X_, w_ls, r = _least_squares(X, y)
    steps = np.asarray(etas, dtype=float).ravel()
    if np.any(steps < 0) or not np.all(np.isfinite(steps)):
        raise ValueError(f"etas: expected finite non-negative steps, got {etas!r}")
    n, d = X_.shape
    H, G, M4 = _second_moment_operators(X_)
    outer = np.einsum("ni,nj->nij", X_, X_).reshape(n, d * d)
    C = (r**2) @ outer / n
    P = (r[:, None] * outer).T @ X_ / n  # vec((1/n) sum_i r_i (x_i^T m) x_i x_i^T) = P m
    m = np.asarray(w0, dtype=float) - w_ls
    s = np.outer(m, m).ravel()
    diagonal = np.arange(d) * (d + 1)
    mse = [s[diagonal].sum()]
    for eta in steps:
        s = s - eta * (G @ s) + eta**2 * (M4 @ s - 2.0 * (P @ m) + C)
        m = m - eta * (H @ m)
        mse.append(s[diagonal].sum())
    return np.array(mse)


def least_squares_sgd_stationary_mse(X: ArrayLike, y: ArrayLike, eta: float) -> float:
    """The plateau lim E ||w_t - w_LS||^2 of constant-step per-example SGD on least squares.

    tr S with (eta G - eta^2 M4) vec(S) = eta^2 vec(C), C = (1/n) sum_i r_i^2 x_i x_i^T: the fixed point of
    the second-moment recursion. Zero when the data are interpolated (every r_i = 0). inf when the step is too
    large for the second moment to converge (`least_squares_sgd_contraction` >= 1).

    Example:
        >>> X = np.array([[1.0], [1.0]])
        >>> least_squares_sgd_stationary_mse(X, [1.0, -1.0], 0.5)  # e' = e/2 +- 1/2: V = V/4 + 1/4
        0.3333333333333333
    """
    eta_ = float(_positive("eta", eta))
    if least_squares_sgd_contraction(X, eta_) >= 1.0:
        return float("inf")
    X_, _, r = _least_squares(X, y)
    n, d = X_.shape
    _, G, M4 = _second_moment_operators(X_)
    outer = np.einsum("ni,nj->nij", X_, X_).reshape(n, d * d)
    C = (r**2) @ outer / n
    s = np.linalg.solve(eta_ * G - eta_**2 * M4, eta_**2 * C)
    return float(s[np.arange(d) * (d + 1)].sum())


def least_squares_sgd_contraction(X: ArrayLike, eta: float) -> float:
    """The per-step factor of E ||e_t||^2 under interpolation: the spectral radius of the second-moment
    operator S -> (1/n) sum_i K_i S K_i, K_i = I - eta x_i x_i^T (as a matrix, I - eta G + eta^2 M4).

    Example:
        >>> least_squares_sgd_contraction(np.eye(2), 1.0)  # each step zeroes a coordinate
        0.5
    """
    X_ = np.asarray(X, dtype=float)
    if X_.ndim != 2:
        raise ValueError(f"X: expected a matrix (n, d), got shape {X_.shape}")
    eta_ = float(_positive("eta", eta))
    _, G, M4 = _second_moment_operators(X_)
    operator = np.eye(G.shape[0]) - eta_ * G + eta_**2 * M4
    return float(np.abs(np.linalg.eigvals(operator)).max())
