r"""Junk features as ridge: the minimum-norm least-squares fit on signal features augmented with many random ones.

Take signal features X (n x d), targets y, and p "junk" features Z (n x p) with iid N(0, sigma^2) entries,
independent of y. For p >= n the augmented design [X, Z] has full row rank (almost surely), so the minimum-norm
least-squares solution (b, c) of [X, Z] (b, c) = y (the limit of gradient descent from zero) interpolates and is
[X, Z]^T (X X^T + Z Z^T)^{-1} y: the signal coefficients are

.. math:: b = X^\top (X X^\top + Z Z^\top)^{-1} y, \qquad c = Z^\top (X X^\top + Z Z^\top)^{-1} y .

E[Z Z^T] = p sigma^2 I_n, and Z Z^T / (p sigma^2) -> I_n as p -> infinity, so b approaches

.. math:: b_\lambda = X^\top (X X^\top + \lambda I_n)^{-1} y = \arg\min_b \|X b - y\|^2 + \lambda \|b\|^2,
          \qquad \lambda = p \sigma^2,

ridge regression on X alone (Kobak, Lomond & Sanchez 2020, JMLR 21, Sec. 3; Bartlett, Long, Lugosi & Tsigler
2020, PNAS, where the many small directions of the covariance play the junk). Normalisation: lambda multiplies
||b||^2 against the *summed* squared error; for the averaged loss (1/n) ||X b - y||^2 + lambda_n ||b||^2 the
penalty is lambda_n = p sigma^2 / n (the convention of `tdlab.theory.random_matrix`).

How fast. Write Z Z^T = lambda (I + E), E = (G G^T - p I) / p with G = Z / sigma standard Gaussian, and
A = X X^T + lambda I. To first order in E, b - b_lambda = -lambda X^T A^{-1} E A^{-1} y = -M E v with
M = lambda X^T A^{-1} and v = A^{-1} y. For a fixed symmetric B, E[(G G^T - p I) B (G G^T - p I)] =
p (B + tr(B) I) (Isserlis' theorem: E[g g^T B g g^T] = 2B + tr(B) I for one column g), so

.. math:: E \|b - b_\lambda\|^2 = \frac{\|M v\|^2 + \|v\|^2 \|M\|_F^2}{p} + O(p^{-2}):

at a fixed lambda = p sigma^2 the relative distance ||b - b_lambda|| / ||b_lambda|| falls like 1/sqrt(p), with
the constant of `junk_fluctuation` (`junk_ridge_penalty` with sigma^2 alone, or a missing or extra factor n,
puts b next to a different ridge solution, at a distance that does not fall at all).

At finite p the junk acts like a slightly smaller penalty. The resolvent (X X^T + Z Z^T)^{-1} has the deterministic
equivalent (X X^T + kappa I)^{-1}, kappa = p sigma^2 / (1 + sigma^2 tr (X X^T + kappa I)^{-1}) (Silverstein & Bai
1995, J. Multivariate Anal. 54, Thm. 1.1, for B = A + Z Z^T; Couillet & Liao 2022, Random Matrix Methods for Machine
Learning, Sec. 2.2), so kappa = p sigma^2 (1 - (n - df) / p + O(p^{-2})) with df = tr X X^T (X X^T + lambda I)^{-1}:
between (p - n) sigma^2 (junk dominates, as E[(Z Z^T)^{-1}] = I / ((p - n - 1) sigma^2)) and p sigma^2
(`junk_ridge_penalty_finite`).

At test time a fresh example brings fresh junk z ~ N(0, sigma^2 I_p), whose prediction term z^T c adds
sigma^2 ||c||^2 to the risk: with Z Z^T ~ lambda I, sigma^2 ||c||^2 ~ sigma^2 lambda ||A^{-1} y||^2 =
||y - X b_lambda||^2 / p, ridge's residual sum of squares over p (`fresh_junk_risk`), which also vanishes as
p -> infinity at a fixed lambda.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import brentq

from tdlab.theory._checks import positive_number as _positive


def _count(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name}: expected an integer >= 1, got {value!r}")
    return int(value)


def _design(X: ArrayLike, y: ArrayLike | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    X = np.asarray(X, dtype=float)
    if X.ndim != 2 or X.size == 0 or not np.all(np.isfinite(X)):
        raise ValueError(f"X: expected a finite non-empty 2-D array, got shape {X.shape}")
    if y is None:
        return X, None
    y = np.asarray(y, dtype=float)
    if y.shape != (X.shape[0],):
        raise ValueError(f"y: expected shape ({X.shape[0]},) (one target per row of X), got {y.shape}")
    return X, y


def junk_ridge_penalty(p: int, sigma: float) -> float:
    r"""The ridge penalty that p junk features of standard deviation sigma act as: lambda = p sigma^2, for ridge
    on the summed squared error ||X b - y||^2 + lambda ||b||^2 (divide by n for the averaged loss).

    Example:
        >>> junk_ridge_penalty(400, 0.5)
        100.0
    """
    return _count("p", p) * _positive("sigma", sigma) ** 2


def junk_ridge_penalty_finite(X: ArrayLike, p: int, sigma: float) -> float:
    r"""The finite-p penalty kappa = p sigma^2 / (1 + sigma^2 tr (X X^T + kappa I)^{-1}), the deterministic
    equivalent of X X^T + Z Z^T (module docstring); the root of the increasing kappa + sigma^2 sum_i kappa /
    (e_i + kappa) - p sigma^2, e_i the eigenvalues of X X^T, found by Brent's method. It needs p larger than the
    number of zero eigenvalues of X X^T (n - rank X), else Z Z^T cannot fill the null space.

    Example (no signal features: kappa = (p - n) sigma^2):
        >>> round(junk_ridge_penalty_finite(np.zeros((10, 3)), 110, 0.5), 9)
        25.0
    """
    X, _ = _design(X)
    p, sigma2 = _count("p", p), _positive("sigma", sigma) ** 2
    eigenvalues = np.clip(np.linalg.eigvalsh(X @ X.T), 0.0, None)
    zero = int(np.sum(eigenvalues <= 1e-12 * max(eigenvalues.max(), 1.0)))
    if p <= zero:
        raise ValueError(f"p: expected more junk features than the {zero} null directions of X X^T, got {p}")
    total = p * sigma2

    def excess(kappa: float) -> float:
        return kappa + sigma2 * float(np.sum(kappa / (eigenvalues + kappa))) - total

    return float(brentq(excess, 1e-300, total, xtol=1e-14 * total, rtol=1e-15))


def junk_fluctuation(X: ArrayLike, y: ArrayLike, lam: float, p: int) -> float:
    r"""The predicted root-mean-square relative distance sqrt(E ||b - b_lambda||^2) / ||b_lambda|| between the
    signal coefficients of the minimum-norm fit with p junk features of variance lam / p and ridge at lam, to first
    order in 1/p: sqrt((||M v||^2 + ||v||^2 ||M||_F^2) / p) / ||X^T v||, M = lam X^T A^{-1}, v = A^{-1} y,
    A = X X^T + lam I (module docstring).

    Example (n = d = 1, x = 1: M = lam / (1 + lam), v = y / (1 + lam), so lam sqrt(2 / p) / (1 + lam)):
        >>> round(junk_fluctuation([[1.0]], [2.0], lam=1.0, p=8), 12)
        0.25
    """
    X, y = _design(X, y)
    lam, p = _positive("lam", lam), _count("p", p)
    A = X @ X.T + lam * np.eye(X.shape[0])
    v = np.linalg.solve(A, y)
    M = lam * np.linalg.solve(A, X).T  # lam X^T A^{-1} (A symmetric)
    second = (np.sum((M @ v) ** 2) + np.sum(v**2) * np.sum(M**2)) / p
    return float(np.sqrt(second) / np.linalg.norm(X.T @ v))


def fresh_junk_risk(residual_sum_of_squares: ArrayLike, p: int) -> np.ndarray:
    r"""The test risk that fresh junk features add to the minimum-norm fit's prediction, sigma^2 ||c||^2, to
    leading order: ||y - X b_lambda||^2 / p, ridge's residual sum of squares over p (module docstring).

    Example:
        >>> fresh_junk_risk([20.0, 4.0], 400).tolist()
        [0.05, 0.01]
    """
    rss = np.asarray(residual_sum_of_squares, dtype=float)
    if np.any(~np.isfinite(rss)) or np.any(rss < 0):
        raise ValueError(f"residual_sum_of_squares: expected finite values >= 0, got {residual_sum_of_squares!r}")
    return rss / _count("p", p)
