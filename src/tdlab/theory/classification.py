r"""Two Gaussian classes with a shared covariance: the Bayes classifier, its error, and the exact 0-1 risk of any
linear classifier.

Model: y = +1 or -1 with probability 1/2 each, x | y ~ N(mu_y, Sigma) (linear discriminant analysis; Fisher 1936).
The log-odds log p(y = +1 | x) / p(y = -1 | x) = w*^T x + b* is linear, with

.. math:: w^* = \Sigma^{-1} (\mu_+ - \mu_-), \qquad b^* = -\tfrac12 (\mu_+ + \mu_-)^\top \Sigma^{-1} (\mu_+ - \mu_-),

so the Bayes classifier sign(w*^T x + b*) is linear and its error is Phi(-Delta/2), Delta^2 = (mu_+ - mu_-)^T
Sigma^{-1} (mu_+ - mu_-) the squared Mahalanobis distance between the means (Anderson 2003, An Introduction to
Multivariate Statistical Analysis, Sec. 6.4; Hastie, Tibshirani & Friedman 2009, Sec. 4.3). Any linear classifier
sign(w^T x + b) has, because w^T x + b | y is Gaussian with mean w^T mu_y + b and variance w^T Sigma w, the exact
0-1 risk

.. math:: R(w, b) = \tfrac12 \Phi\Bigl(-\frac{w^\top \mu_+ + b}{\sqrt{w^\top \Sigma w}}\Bigr)
    + \tfrac12 \Phi\Bigl(\frac{w^\top \mu_- + b}{\sqrt{w^\top \Sigma w}}\Bigr),

the test error on infinitely many fresh examples, without a test set's sampling noise.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.stats import norm

Array = NDArray[np.float64]


def _problem(mean_pos: ArrayLike, mean_neg: ArrayLike, covariance: ArrayLike) -> tuple[Array, Array, Array]:
    """The means and the covariance as float arrays, or a ValueError naming the argument."""
    mp, mn, cov = (np.asarray(a, dtype=float) for a in (mean_pos, mean_neg, covariance))
    d = mp.shape[0] if mp.ndim == 1 else -1
    if mp.ndim != 1 or mn.shape != mp.shape or not np.all(np.isfinite(mp)) or not np.all(np.isfinite(mn)):
        raise ValueError(f"mean_pos, mean_neg: expected two finite vectors of one length, got {mp.shape}, {mn.shape}")
    if cov.shape != (d, d) or not np.allclose(cov, cov.T) or np.linalg.eigvalsh(cov)[0] <= 0:
        raise ValueError(f"covariance: expected a symmetric positive definite ({d}, {d}) matrix, got shape {cov.shape}")
    return mp, mn, cov


def mahalanobis_distance(mean_pos: ArrayLike, mean_neg: ArrayLike, covariance: ArrayLike) -> float:
    """Delta = sqrt((mu_+ - mu_-)^T Sigma^-1 (mu_+ - mu_-)).

    Example:
        >>> mahalanobis_distance([1.0, 0.0], [-1.0, 0.0], [[4.0, 0.0], [0.0, 1.0]])
        1.0
    """
    mp, mn, cov = _problem(mean_pos, mean_neg, covariance)
    gap = mp - mn
    return float(np.sqrt(gap @ np.linalg.solve(cov, gap)))


def bayes_classifier(mean_pos: ArrayLike, mean_neg: ArrayLike, covariance: ArrayLike) -> tuple[Array, float]:
    """(w*, b*) of the Bayes classifier sign(w*^T x + b*) for equal class priors (module docstring).

    Example:
        >>> w, b = bayes_classifier([2.0, 1.0], [0.0, 1.0], [[2.0, 0.0], [0.0, 1.0]])
        >>> w.tolist(), b
        ([1.0, 0.0], -1.0)
    """
    mp, mn, cov = _problem(mean_pos, mean_neg, covariance)
    w = np.linalg.solve(cov, mp - mn)
    return w, float(-0.5 * (mp + mn) @ w)


def bayes_error(mean_pos: ArrayLike, mean_neg: ArrayLike, covariance: ArrayLike) -> float:
    """The Bayes 0-1 risk Phi(-Delta/2) for equal class priors.

    Example:
        >>> round(bayes_error([1.0], [-1.0], [[1.0]]), 6)  # Phi(-1)
        0.158655
    """
    return float(norm.cdf(-0.5 * mahalanobis_distance(mean_pos, mean_neg, covariance)))


def linear_classifier_error(
    w: ArrayLike, b: ArrayLike, mean_pos: ArrayLike, mean_neg: ArrayLike, covariance: ArrayLike
) -> Array:
    """The exact 0-1 risk of sign(w^T x + b) (module docstring), for each row of `w` (shape (..., d)) with the
    matching entry of `b` (shape (...)). A zero w predicts the sign of b for every x: risk 1/2.

    Example:
        >>> linear_classifier_error([[1.0], [-1.0]], [0.0, 0.0], [1.0], [-1.0], [[1.0]]).round(6).tolist()
        [0.158655, 0.841345]
    """
    mp, mn, cov = _problem(mean_pos, mean_neg, covariance)
    w_, b_ = np.asarray(w, dtype=float), np.asarray(b, dtype=float)
    if w_.shape[-1:] != mp.shape or b_.shape != w_.shape[:-1]:
        raise ValueError(f"w, b: expected shapes (..., {mp.shape[0]}) and (...), got {w_.shape} and {b_.shape}")
    scale = np.sqrt(np.einsum("...i,ij,...j->...", w_, cov, w_))
    safe = np.where(scale > 0, scale, 1.0)
    risk = 0.5 * norm.cdf(-(w_ @ mp + b_) / safe) + 0.5 * norm.cdf((w_ @ mn + b_) / safe)
    return np.where(scale > 0, risk, 0.5)
