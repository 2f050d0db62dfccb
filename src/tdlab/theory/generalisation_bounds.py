"""A PAC-Bayes bound on the error of a Gaussian-perturbed network, and when it is vacuous.

PAC-Bayes (McAllester 1999; in the form of Maurer 2004, Thm. 5, as used by Dziugaite & Roy 2017): for a prior P
over parameters fixed before seeing the m training examples, with probability at least 1 - delta over the sample,
simultaneously for every posterior Q,

    err(Q) <= err_hat(Q) + sqrt((KL(Q || P) + ln(2 sqrt(m) / delta)) / (2 m)),

where err(Q) and err_hat(Q) are the expected test and training 0-1 errors of a network drawn from Q. With Q =
N(w, sigma^2 I) around the trained weights and P = N(w_0, sigma^2 I) around the initialisation,

    KL(Q || P) = ||w - w_0||^2 / (2 sigma^2),

so the bound is small when the weights moved little from their initialisation relative to the largest noise level
sigma the training error tolerates: a flatness measure ("pacbayes.flatness" of Jiang, Neyshabur, Mobahi, Krishnan
& Bengio 2019, "Fantastic generalization measures and where to find them"). Choosing sigma from a grid of J
values after seeing the data costs a union bound, delta -> delta / J. An error bound is vacuous when it is at least
1, the error of always being wrong.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray


def gaussian_kl(squared_distance: ArrayLike, sigma: ArrayLike) -> NDArray[np.float64]:
    """KL(N(w, sigma^2 I) || N(w_0, sigma^2 I)) = ||w - w_0||^2 / (2 sigma^2) (equal isotropic covariances).

    Example:
        >>> gaussian_kl(8.0, [1.0, 2.0]).tolist()
        [4.0, 1.0]
    """
    d, s = np.asarray(squared_distance, dtype=float), np.asarray(sigma, dtype=float)
    if np.any(d < 0) or np.any(s <= 0):
        raise ValueError("squared_distance, sigma: expected ||w - w0||^2 >= 0 and sigma > 0")
    return d / (2 * s**2)


def pac_bayes_bound(empirical_error: ArrayLike, kl: ArrayLike, m: int, delta: float = 0.05) -> NDArray[np.float64]:
    """err_hat(Q) + sqrt((KL(Q || P) + ln(2 sqrt(m) / delta)) / (2 m)) (Maurer 2004, Thm. 5; McAllester 1999): an
    upper bound on the expected test error of the posterior Q, valid with probability 1 - delta.

    Example:
        >>> round(float(pac_bayes_bound(0.1, kl=0.0, m=1, delta=2 / np.e**2)), 12)  # 0.1 + sqrt(ln(e^2) / 2)
        1.1
    """
    e, k = np.asarray(empirical_error, dtype=float), np.asarray(kl, dtype=float)
    if np.any((e < 0) | (e > 1)):
        raise ValueError(f"empirical_error: expected errors in [0, 1], got {empirical_error!r}")
    if np.any(k < 0):
        raise ValueError(f"kl: expected non-negative divergences, got {kl!r}")
    if isinstance(m, bool) or not isinstance(m, int | np.integer) or m < 1:
        raise ValueError(f"m: expected a positive number of training examples, got {m!r}")
    if not 0 < delta < 1:
        raise ValueError(f"delta: expected a confidence parameter in (0, 1), got {delta!r}")
    return e + np.sqrt((k + np.log(2 * np.sqrt(m) / delta)) / (2 * m))
