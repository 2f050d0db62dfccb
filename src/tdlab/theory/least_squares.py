r"""Least squares through the singular value decomposition: spectral filters, GD iterates, ridge in five forms.

Write the design as X = U diag(s) V^T (thin SVD, s_i > 0) and take the loss f(w) = 1/2 ||X w - y||^2. Every
estimator below is a *spectral filter*: it keeps the component of the least-squares solution along the right
singular vector v_i with a weight phi_i in [0, 1],

.. math:: \hat w = \sum_i \phi_i \frac{u_i^\top y}{s_i} v_i = V \operatorname{diag}(\phi / s) U^\top y .

- Minimum-norm least squares (the pseudo-inverse, Penrose 1955): phi_i = 1.
- Gradient descent w_{t+1} = w_t - eta X^T (X w_t - y) from w_0 = 0 (Landweber 1951): the error along v_i
  shrinks by (1 - eta s_i^2) per step, so phi_i(t) = 1 - (1 - eta s_i^2)^t; it never leaves the row space of X,
  hence its limit (0 < eta < 2 / s_max^2) is the minimum-norm solution.
- Ridge (Tikhonov 1963; Hoerl & Kennard 1970): phi_i = s_i^2 / (s_i^2 + lambda).

For eta t s^2 = x the filters are 1 - e^{-x} (early stopping) and x / (1 + x) (ridge with lambda = 1/(eta t)):
both rise from 0 to 1 around s^2 ~ 1/(eta t), which is why early stopping regularises like ridge (Engl, Hanke
& Neubauer 1996, Regularization of Inverse Problems, Ch. 6; Yao, Rosasco & Caponnetto 2007; Ali, Kolter &
Tibshirani 2019, "A continuous-time view of early stopping for least squares").

Conventions: the functions take X and y as given. For the averaged loss 1/(2n) ||X w - y||^2 pass
X / sqrt(n) and y / sqrt(n) (then ridge's lambda is the lambda of (X^T X / n + lambda I)^{-1} X^T y / n, and
the noise variance of the scaled targets is sigma^2 / n).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.linalg import lu_factor, lu_solve

from tdlab.theory._checks import nonnegative_number as _nonnegative
from tdlab.theory._checks import positive_number as _positive

Array = NDArray[np.float64]


def _matrix(name: str, value: ArrayLike) -> Array:
    array = np.asarray(value, dtype=float)
    if array.ndim != 2 or array.size == 0 or not np.all(np.isfinite(array)):
        raise ValueError(f"{name}: expected a finite non-empty 2-D array, got shape {array.shape}")
    return array


def _targets(X: Array, y: ArrayLike) -> Array:
    array = np.asarray(y, dtype=float)
    if array.ndim not in (1, 2) or array.shape[0] != X.shape[0]:
        raise ValueError(f"y: expected {X.shape[0]} rows (one per row of X), got shape {array.shape}")
    return array


def thin_svd(X: ArrayLike, rtol: float = 1e-12) -> tuple[Array, Array, Array]:
    """(U, s, V) with X = U diag(s) V^T, keeping only the singular values above rtol * s_max (the rank).

    Example:
        >>> U, s, V = thin_svd([[3.0, 0.0], [0.0, 0.0]])
        >>> s.tolist(), V[:, 0].tolist()
        ([3.0], [1.0, 0.0])
    """
    X = _matrix("X", X)
    U, s, Vt = np.linalg.svd(X, full_matrices=False)
    keep = s > rtol * s.max() if s.max() > 0 else np.zeros_like(s, dtype=bool)
    return U[:, keep], s[keep], Vt[keep].T


def gd_filter(s2: ArrayLike, eta: float, t: ArrayLike) -> Array:
    r"""The early-stopping filter 1 - (1 - eta s^2)^t of gradient descent from zero after t steps.

    Broadcasts `s2` (squared singular values) against `t`. Source: Landweber (1951); Engl, Hanke & Neubauer
    (1996), Sec. 6.1.

    Example:
        >>> gd_filter([1.0, 0.25], eta=0.5, t=2).tolist()
        [0.75, 0.234375]
    """
    eta = _positive("eta", eta)
    return 1.0 - (1.0 - eta * np.asarray(s2, dtype=float)) ** np.asarray(t, dtype=float)


def ridge_filter(s2: ArrayLike, lam: ArrayLike) -> Array:
    r"""The ridge (Tikhonov) filter s^2 / (s^2 + lambda), broadcast over `s2` and `lam`.

    Source: Tikhonov (1963); Hansen (1998), Rank-Deficient and Discrete Ill-Posed Problems, Sec. 4.2.

    Example:
        >>> ridge_filter([1.0, 3.0], 1.0).tolist()
        [0.5, 0.75]
    """
    lam = np.asarray(lam, dtype=float)
    if np.any(lam < 0):
        raise ValueError(f"lam: expected values >= 0, got {lam!r}")
    s2 = np.asarray(s2, dtype=float)
    return s2 / (s2 + lam)


def spectral_filter_solution(X: ArrayLike, y: ArrayLike, phi: ArrayLike, rtol: float = 1e-12) -> Array:
    r"""The filtered least-squares solution V diag(phi / s) U^T y, with `phi` one weight per kept singular value
    of X (in decreasing order of s; see `thin_svd`).

    Example:
        >>> spectral_filter_solution([[2.0, 0.0], [0.0, 1.0]], [2.0, 1.0], [1.0, 0.5]).tolist()
        [1.0, 0.5]
    """
    X = _matrix("X", X)
    y = _targets(X, y)
    U, s, V = thin_svd(X, rtol)
    phi = np.asarray(phi, dtype=float)
    if phi.shape != s.shape:
        raise ValueError(f"phi: expected one weight per singular value ({s.shape[0]}), got shape {phi.shape}")
    coefficients = U.T @ y
    scale = (phi / s).reshape((-1,) + (1,) * (coefficients.ndim - 1))
    return V @ (scale * coefficients)


def min_norm_solution(X: ArrayLike, y: ArrayLike, rtol: float = 1e-12) -> Array:
    r"""The minimum-norm least-squares solution X^+ y = V diag(1/s) U^T y (Penrose 1955).

    Underdetermined and consistent: the interpolant of smallest Euclidean norm; overdetermined and full rank:
    the ordinary least-squares solution (X^T X)^{-1} X^T y.

    Example:
        >>> min_norm_solution([[1.0, 1.0]], [2.0]).round(12).tolist()
        [1.0, 1.0]
    """
    X = _matrix("X", X)
    return spectral_filter_solution(X, y, np.ones(thin_svd(X, rtol)[1].shape), rtol)


def min_norm_least_squares(features: ArrayLike, targets: ArrayLike) -> Array:
    r"""The minimum-norm least-squares solution A = Phi^+ Y of full-rank designs Phi (..., n, p) for targets
    Y (..., n, k), batched over the leading dimensions, by a QR factorisation, so that the conditioning is that of
    Phi (not of Phi^T Phi, as in the normal equations): accurate even at p = n, where Phi is square and nearly
    singular. For p <= n, Phi = QR and A = R^{-1} Q^T Y (least squares); for p > n, Phi^T = QR and
    A = Q R^{-T} Y (the interpolant of least norm, whose rows lie in the row space of Phi). Golub & Van Loan
    (2013), Matrix Computations, Sec. 5.3.3 and 5.6.2. (`min_norm_solution` is the same solution through the SVD,
    which also takes rank-deficient designs.)

    Example:
        >>> rng = np.random.default_rng(0)
        >>> Phi, Y = rng.standard_normal((5, 8)), rng.standard_normal((5, 2))
        >>> all(np.allclose(min_norm_least_squares(Phi[:, :p], Y), np.linalg.pinv(Phi[:, :p]) @ Y) for p in (3, 5, 8))
        True
        >>> batch = rng.standard_normal((4, 5, 8))  # a batch of designs
        >>> np.allclose(min_norm_least_squares(batch, Y), np.linalg.pinv(batch) @ Y)
        True
    """
    features = np.asarray(features, dtype=float)
    targets = np.asarray(targets, dtype=float)
    if features.ndim < 2 or targets.ndim < 2 or targets.shape[-2] != features.shape[-2]:
        raise ValueError(
            f"features, targets: expected shapes (..., n, p) and (..., n, k), got {features.shape} and {targets.shape}"
        )
    n, p = features.shape[-2:]
    if p <= n:
        Q, R = np.linalg.qr(features)
        return np.linalg.solve(R, Q.swapaxes(-1, -2) @ targets)
    Q, R = np.linalg.qr(features.swapaxes(-1, -2))
    return Q @ np.linalg.solve(R.swapaxes(-1, -2), targets)


def gd_iterates(
    X: ArrayLike, y: ArrayLike, eta: float, steps: int, w0: ArrayLike | None = None, rtol: float = 1e-12
) -> Array:
    r"""The gradient-descent iterates on 1/2 ||X w - y||^2 predicted by the SVD, for t = 0..steps.

    .. math:: w_t = w_0 + V \operatorname{diag}\Bigl(\frac{1 - (1 - \eta s_i^2)^t}{s_i}\Bigr) U^\top (y - X w_0)

    (the error along v_i contracts by 1 - eta s_i^2 per step; the component of w_0 outside the row space never
    moves). Shape (steps + 1, d) for a vector y, (steps + 1, d, k) for k columns of targets.

    Example:
        >>> gd_iterates([[2.0]], [2.0], eta=0.125, steps=2)[:, 0].tolist()  # (1 - (1 - 0.5)^t) * 1
        [0.0, 0.5, 0.75]
    """
    X = _matrix("X", X)
    y = _targets(X, y)
    eta = _positive("eta", eta)
    if isinstance(steps, bool) or not isinstance(steps, int | np.integer) or steps < 0:
        raise ValueError(f"steps: expected an integer >= 0, got {steps!r}")
    start = np.zeros((X.shape[1],) + y.shape[1:]) if w0 is None else np.asarray(w0, dtype=float)
    if start.shape != (X.shape[1],) + y.shape[1:]:
        raise ValueError(f"w0: expected shape {(X.shape[1],) + y.shape[1:]}, got {start.shape}")
    U, s, V = thin_svd(X, rtol)
    coefficients = U.T @ (y - X @ start)  # (r,) or (r, k)
    t = np.arange(steps + 1, dtype=float)
    phi = gd_filter(s**2, eta, t[:, None])  # (steps + 1, r)
    if coefficients.ndim == 1:
        return start + (phi / s * coefficients) @ V.T
    return start + np.einsum("tr,dr,rk->tdk", phi / s, V, coefficients)


def filter_bayes_risk(
    s: ArrayLike,
    V: ArrayLike,
    phi: ArrayLike,
    prior_var: float,
    noise_var: float,
    covariance: ArrayLike | None = None,
) -> float:
    r"""The Bayes risk E ||w_hat - beta||_Sigma^2 of the filter estimator w_hat = V diag(phi/s) U^T y when
    y = X beta + eps, beta ~ N(0, prior_var I_d), eps ~ N(0, noise_var I_n), for a fixed design X with thin SVD
    U diag(s) V^T (`thin_svd`; V is d x r):

    .. math::
        R = \tau^2 \operatorname{tr}\bigl[(V\Phi V^\top - I)^\top \Sigma (V\Phi V^\top - I)\bigr]
            + \sigma^2 \operatorname{tr}\bigl[\Sigma V \operatorname{diag}(\phi^2 / s^2) V^\top\bigr]

    (bias from the shrunk and the unseen directions, variance from the noise amplified by 1/s; the
    bias-variance decomposition used by Ali, Kolter & Tibshirani 2019). With Sigma = I (the default) it is
    tau^2 [sum_i (1 - phi_i)^2 + d - r] + sigma^2 sum_i phi_i^2 / s_i^2; Sigma = E[x x^T] makes it the
    excess prediction risk on a fresh x.

    Example:
        >>> _, s, V = thin_svd([[2.0, 0.0], [0.0, 1.0]])
        >>> filter_bayes_risk(s, V, [1.0, 1.0], prior_var=1.0, noise_var=1.0)
        1.25
    """
    s = np.asarray(s, dtype=float)
    V = _matrix("V", V)
    tau2 = _nonnegative("prior_var", prior_var)
    sigma2 = _nonnegative("noise_var", noise_var)
    phi = np.asarray(phi, dtype=float)
    if s.ndim != 1 or V.shape[1] != s.shape[0] or phi.shape != s.shape:
        raise ValueError(
            f"s, V, phi: expected r singular values, a (d, r) V and r weights, got {s.shape}, {V.shape}, {phi.shape}"
        )
    d = V.shape[0]
    Sigma = np.eye(d) if covariance is None else _matrix("covariance", covariance)
    if Sigma.shape != (d, d):
        raise ValueError(f"covariance: expected shape {(d, d)}, got {Sigma.shape}")
    shrink = (V * phi) @ V.T - np.eye(d)
    bias = tau2 * np.trace(shrink.T @ Sigma @ shrink)
    variance = sigma2 * np.trace(Sigma @ (V * (phi**2 / s**2)) @ V.T)
    return float(bias + variance)


def ridge_primal(X: ArrayLike, y: ArrayLike, lam: float) -> Array:
    r"""Ridge in primal form, (X^T X + lambda I_d)^{-1} X^T y (Hoerl & Kennard 1970): a d x d solve.

    Forming X^T X + lambda I rounds it by ~eps s_max^2, which the solve amplifies by 1 / lambda along the null
    space of X when d > n (a relative error ~1e-10 at s_max^2 / lambda ~ 1e6); one step of iterative refinement
    (Wilkinson 1963), its residual X^T (y - X w) - lambda w computed from X itself, removes it.

    Example:
        >>> ridge_primal([[1.0], [1.0]], [1.0, 1.0], lam=2.0).tolist()
        [0.5]
    """
    X = _matrix("X", X)
    y = _targets(X, y)
    lam = _positive("lam", lam)
    gram = lu_factor(X.T @ X + lam * np.eye(X.shape[1]))
    w = lu_solve(gram, X.T @ y)
    return w + lu_solve(gram, X.T @ (y - X @ w) - lam * w)


def ridge_dual(X: ArrayLike, y: ArrayLike, lam: float) -> Array:
    r"""Ridge in dual (kernel) form, X^T (X X^T + lambda I_n)^{-1} y: an n x n solve, the same solution by the
    push-through identity (X^T X + lambda I)^{-1} X^T = X^T (X X^T + lambda I)^{-1} (Saunders, Gammerman &
    Vovk 1998, kernel ridge regression).

    Example:
        >>> ridge_dual([[1.0], [1.0]], [1.0, 1.0], lam=2.0).tolist()
        [0.5]
    """
    X = _matrix("X", X)
    y = _targets(X, y)
    lam = _positive("lam", lam)
    return X.T @ np.linalg.solve(X @ X.T + lam * np.eye(X.shape[0]), y)


def ridge_augmented(X: ArrayLike, y: ArrayLike, lam: float) -> Array:
    r"""Ridge as ordinary least squares on augmented data: rows sqrt(lambda) I_d appended to X and zeros to y,

    .. math:: \min_w \|Xw - y\|^2 + \|\sqrt\lambda\, w - 0\|^2 = \min_w \|Xw - y\|^2 + \lambda \|w\|^2

    (Marquardt 1970; Hastie, Tibshirani & Friedman, Elements of Statistical Learning, Ex. 3.12), solved by a
    QR-based least-squares solver.

    Example:
        >>> ridge_augmented([[1.0], [1.0]], [1.0, 1.0], lam=2.0).round(12).tolist()
        [0.5]
    """
    X = _matrix("X", X)
    y = _targets(X, y)
    lam = _positive("lam", lam)
    d = X.shape[1]
    A = np.vstack([X, np.sqrt(lam) * np.eye(d)])
    b = np.concatenate([y, np.zeros((d,) + y.shape[1:])])
    Q, R = np.linalg.qr(A)
    return np.linalg.solve(R, Q.T @ b)


def ridge_fake_features(X: ArrayLike, y: ArrayLike, lam: float) -> Array:
    r"""Ridge as minimum-norm interpolation with sqrt(lambda) I_n appended as extra feature columns.

    The minimum-norm solution (w, z) of [X, sqrt(lambda) I_n] (w, z) = y is
    [X, sqrt(lambda) I]^T (X X^T + lambda I)^{-1} y, whose first d entries are the ridge solution: each
    example gets a private "fake feature" z_i that absorbs its residual: minimising ||w||^2 + ||z||^2 subject
    to X w + sqrt(lambda) z = y is minimising ||w||^2 + ||y - X w||^2 / lambda. (Extra features acting as
    a ridge penalty: Kobak, Lomond & Sanchez 2020, JMLR 21.) Computed with the pseudo-inverse.

    Example:
        >>> ridge_fake_features([[1.0], [1.0]], [1.0, 1.0], lam=2.0).round(12).tolist()
        [0.5]
    """
    X = _matrix("X", X)
    y = _targets(X, y)
    lam = _positive("lam", lam)
    augmented = np.hstack([X, np.sqrt(lam) * np.eye(X.shape[0])])
    return min_norm_solution(augmented, y, rtol=1e-15)[: X.shape[1]]


def ridge_svd(X: ArrayLike, y: ArrayLike, lam: float) -> Array:
    r"""Ridge through the SVD: V diag(s / (s^2 + lambda)) U^T y, i.e. the filter s^2/(s^2 + lambda) applied to
    the minimum-norm solution (Hansen 1998, Sec. 4.2).

    Example:
        >>> ridge_svd([[1.0], [1.0]], [1.0, 1.0], lam=2.0).round(12).tolist()
        [0.5]
    """
    X = _matrix("X", X)
    lam = _positive("lam", lam)
    s = thin_svd(X, rtol=1e-15)[1]
    return spectral_filter_solution(X, y, ridge_filter(s**2, lam), rtol=1e-15)


def ridge_posterior_mean(X: ArrayLike, y: ArrayLike, noise_var: float, prior_var: float) -> Array:
    r"""The posterior mean of beta under the prior beta ~ N(0, tau^2 I) and likelihood y ~ N(X beta,
    sigma^2 I), by conditioning the joint Gaussian of (beta, y):

    .. math:: E[\beta \mid y] = \operatorname{Cov}(\beta, y) \operatorname{Cov}(y)^{-1} y
              = \tau^2 X^\top (\tau^2 X X^\top + \sigma^2 I)^{-1} y ,

    which is ridge with lambda = sigma^2 / tau^2 (and, the posterior being Gaussian, also the MAP estimate;
    Bishop 2006, Pattern Recognition and Machine Learning, Sec. 3.3 and eq. 2.116). Solved by a Cholesky
    factorisation of Cov(y).

    Example:
        >>> ridge_posterior_mean([[1.0], [1.0]], [1.0, 1.0], noise_var=2.0, prior_var=1.0).round(12).tolist()
        [0.5]
    """
    X = _matrix("X", X)
    y = _targets(X, y)
    sigma2 = _positive("noise_var", noise_var)
    tau2 = _positive("prior_var", prior_var)
    cov_beta_y = tau2 * X.T
    cov_y = tau2 * X @ X.T + sigma2 * np.eye(X.shape[0])
    L = np.linalg.cholesky(cov_y)
    return cov_beta_y @ np.linalg.solve(L.T, np.linalg.solve(L, y))


def residual_mean_square(n: int, p: int, noise_var: float) -> float:
    r"""E[||y - X w_LS||^2 / n] = sigma^2 (n - p) / n for least squares with p <= n full-rank features whose
    span contains the regression function (the residual is the noise projected onto the n - p dimensional
    orthogonal complement; Seber & Lee 2003, Linear Regression Analysis, Thm. 3.3). For p >= n the fit
    interpolates and the training error is 0.

    Example:
        >>> residual_mean_square(10, 4, 1.0)
        0.6
    """
    for name, value in (("n", n), ("p", p)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"{name}: expected an integer >= 1, got {value!r}")
    return _nonnegative("noise_var", noise_var) * max(n - p, 0) / n
