r"""Risk of (ridge-)regularised least squares on isotropic Gaussian features, as p/n -> gamma: double descent.

Model (Hastie, Montanari, Rosset & Tibshirani 2019/2022, "Surprises in high-dimensional ridgeless least squares
interpolation", Ann. Statist. 50(2), Sec. 3): x ~ N(0, I_p), y = x^T beta + eps with ||beta||^2 = r^2 and
Var(eps) = sigma^2, n samples, p/n -> gamma. The excess test risk of an estimator w is E_x (x^T (w - beta))^2 =
||w - beta||^2. The minimum-norm least-squares interpolant has the limiting risk (their Thm. 1)

.. math::
    R(\gamma) = \sigma^2 \frac{\gamma}{1 - \gamma} \quad (\gamma < 1), \qquad
    R(\gamma) = r^2 \Bigl(1 - \frac1\gamma\Bigr) + \frac{\sigma^2}{\gamma - 1} \quad (\gamma > 1),

which blows up at the interpolation threshold gamma = 1. Ridge w_lambda = (X^T X / n + lambda I)^{-1} X^T y / n
has risk (Dobriban & Wager 2018, "High-dimensional asymptotics of prediction: ridge regression and
classification", Ann. Statist. 46(1), Thm. 2.1; Hastie et al. Thm. 5)

.. math:: R(\lambda) = r^2 \lambda^2 m'(-\lambda) + \sigma^2 \gamma \bigl(m(-\lambda) - \lambda m'(-\lambda)\bigr),

with m the Stieltjes transform of the Marchenko-Pastur law of X^T X / n. It is minimised at lambda* =
sigma^2 gamma / r^2, where it equals sigma^2 gamma m(-lambda*): this optimally tuned risk increases with gamma,
with no peak (optimal regularisation removes double descent; Nakkiran, Venkat, Kakade & Ma 2021).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from tdlab.theory._checks import nonnegative_number as _nonnegative
from tdlab.theory._checks import positive as _positive

Array = NDArray[np.float64]


def marchenko_pastur_stieltjes(gamma: ArrayLike, lam: ArrayLike) -> Array:
    r"""m(-lambda) = integral of 1/(s + lambda) under the Marchenko-Pastur law of X^T X / n (aspect ratio
    gamma = p/n, including the atom of mass 1 - 1/gamma at 0 when gamma > 1):

    .. math:: m(-\lambda) = \frac{-(1 - \gamma + \lambda) + \sqrt{(1 - \gamma + \lambda)^2 + 4\gamma\lambda}}
                                  {2\gamma\lambda},

    the root of gamma z m^2 - (1 - gamma - z) m + 1 = 0 at z = -lambda that is positive (Marchenko & Pastur
    1967; Bai & Silverstein 2010, Spectral Analysis of Large Dimensional Random Matrices, Sec. 3.3).

    Example:
        >>> round(float(marchenko_pastur_stieltjes(1.0, 2.0)), 12)  # (-2 + sqrt(12)) / 4
        0.366025403784
    """
    g, lam_ = _positive("gamma", gamma), _positive("lam", lam)
    a = 1.0 - g + lam_
    root = np.sqrt(a * a + 4.0 * g * lam_)
    # the same root in the form without cancellation: 2 / (a + root) when a >= 0, (root - a) / (2 gamma lambda) else
    safe = np.where(a >= 0, a, 1.0)
    return np.where(a >= 0, 2.0 / (safe + root), (root - a) / (2.0 * g * lam_))


def marchenko_pastur_stieltjes_derivative(gamma: ArrayLike, lam: ArrayLike) -> Array:
    r"""m'(-lambda) = integral of 1/(s + lambda)^2 under the Marchenko-Pastur law, by implicit differentiation of
    gamma z m^2 - (1 - gamma - z) m + 1 = 0 at z = -lambda:

    .. math:: m' = \frac{\gamma m^2 + m}{(1 - \gamma + \lambda) + 2 \gamma \lambda m} .

    Example:
        >>> round(float(marchenko_pastur_stieltjes_derivative(1e-9, 1.0)), 6)  # gamma -> 0: all mass at 1
        0.25
    """
    g, lam_ = _positive("gamma", gamma), _positive("lam", lam)
    m = marchenko_pastur_stieltjes(g, lam_)
    return (g * m * m + m) / ((1.0 - g + lam_) + 2.0 * g * lam_ * m)


def ridgeless_risk(gamma: ArrayLike, signal: float, noise_var: float) -> Array:
    r"""Limiting excess risk of minimum-norm least squares on isotropic features (Hastie et al. Thm. 1):
    sigma^2 gamma / (1 - gamma) for gamma < 1, r^2 (1 - 1/gamma) + sigma^2 / (gamma - 1) for gamma > 1
    (infinite at gamma = 1). `signal` is r^2 = ||beta||^2, `noise_var` is sigma^2.

    Example:
        >>> ridgeless_risk([0.5, 2.0], signal=1.0, noise_var=1.0).tolist()
        [1.0, 1.5]
    """
    g = _positive("gamma", gamma)
    r2, s2 = _nonnegative("signal", signal), _nonnegative("noise_var", noise_var)
    with np.errstate(divide="ignore"):
        under = s2 * g / np.where(g < 1, 1.0 - g, np.nan)
        over = r2 * (1.0 - 1.0 / g) + s2 / np.where(g > 1, g - 1.0, np.nan)
    return np.where(g < 1, under, np.where(g > 1, over, np.inf))


def ridgeless_risk_finite(n: int, p: ArrayLike, signal: float, noise_var: float) -> Array:
    r"""Exact expected excess risk of minimum-norm least squares with n samples of p isotropic Gaussian features,
    for a fixed beta with ||beta||^2 = r^2:

    .. math::
        \sigma^2 \frac{p}{n - p - 1} \quad (p \le n - 2), \qquad
        r^2 \Bigl(1 - \frac np\Bigr) + \sigma^2 \frac{n}{p - n - 1} \quad (p \ge n + 2),

    from the mean of the inverse Wishart matrix, E (X^T X)^{-1} = I / (n - p - 1), and the rotation invariance
    of X (the projection onto the row space keeps n/p of ||beta||^2 on average); Belkin, Hsu & Xu 2020, "Two
    models of double descent for weak features", SIAM J. Math. Data Sci., Thm. 1; Hastie et al. Sec. 3. It
    tends to `ridgeless_risk` at gamma = p/n and is infinite for |p - n| <= 1.

    Example:
        >>> ridgeless_risk_finite(10, [4, 20], signal=1.0, noise_var=1.0).tolist()
        [0.8, 1.6111111111111112]
    """
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"n: expected an integer >= 1, got {n!r}")
    p_ = np.asarray(p, dtype=float)
    if p_.size == 0 or np.any(p_ < 1) or np.any(p_ != np.round(p_)):
        raise ValueError(f"p: expected integers >= 1, got {p!r}")
    r2, s2 = _nonnegative("signal", signal), _nonnegative("noise_var", noise_var)
    with np.errstate(divide="ignore", invalid="ignore"):
        under = s2 * p_ / (n - p_ - 1.0)
        over = r2 * (1.0 - n / p_) + s2 * n / (p_ - n - 1.0)
    return np.where(p_ <= n - 2, under, np.where(p_ >= n + 2, over, np.inf))


def ridge_risk(gamma: ArrayLike, lam: ArrayLike, signal: float, noise_var: float) -> Array:
    r"""Limiting excess risk of ridge (X^T X / n + lambda I)^{-1} X^T y / n on isotropic features:
    r^2 lambda^2 m'(-lambda) + sigma^2 gamma (m(-lambda) - lambda m'(-lambda)) (Dobriban & Wager 2018, Thm. 2.1;
    the first term is the bias, the second the variance).

    Example:
        >>> round(float(ridge_risk(1e-9, 1.0, signal=1.0, noise_var=1.0)), 6)  # gamma -> 0: w = beta / 2
        0.25
    """
    g, lam_ = _positive("gamma", gamma), _positive("lam", lam)
    r2, s2 = _nonnegative("signal", signal), _nonnegative("noise_var", noise_var)
    m = marchenko_pastur_stieltjes(g, lam_)
    dm = marchenko_pastur_stieltjes_derivative(g, lam_)
    return r2 * lam_**2 * dm + s2 * g * (m - lam_ * dm)


def optimal_ridge_penalty(gamma: ArrayLike, signal: float, noise_var: float) -> Array:
    r"""The risk-minimising ridge penalty on isotropic features, lambda* = sigma^2 gamma / r^2 (Dobriban & Wager
    2018, Thm. 2.1; the Bayes-optimal penalty for the prior beta ~ N(0, r^2 / p I)).

    Example:
        >>> optimal_ridge_penalty([0.5, 2.0], signal=1.0, noise_var=0.25).tolist()
        [0.125, 0.5]
    """
    r2 = _nonnegative("signal", signal)
    if r2 == 0:
        raise ValueError("signal: expected r^2 > 0 (with no signal the best penalty is infinite)")
    return _nonnegative("noise_var", noise_var) * _positive("gamma", gamma) / r2


def optimal_ridge_risk(gamma: ArrayLike, signal: float, noise_var: float) -> Array:
    r"""The risk of optimally tuned ridge, sigma^2 gamma m(-lambda*) with lambda* = sigma^2 gamma / r^2: at
    lambda* the bias and variance terms of `ridge_risk` collapse to this (Dobriban & Wager 2018, Thm. 2.1). It
    increases monotonically from 0 to r^2 as gamma grows: no interpolation peak.

    Example:
        >>> r = optimal_ridge_risk([0.5, 1.0, 2.0], signal=1.0, noise_var=0.25)
        >>> bool(np.all(np.diff(r) > 0))
        True
    """
    lam = optimal_ridge_penalty(gamma, signal, noise_var)
    return (
        _nonnegative("noise_var", noise_var) * np.asarray(gamma, dtype=float) * marchenko_pastur_stieltjes(gamma, lam)
    )
