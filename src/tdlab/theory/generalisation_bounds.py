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

A norm-based bound for comparison: for C class scores f_y and a margin rho fixed in advance, with probability at
least 1 - delta (Mohri, Rostamizadeh & Talwalkar 2018, "Foundations of Machine Learning", Thm. 9.2),

    err <= R_rho + (4 C / rho) R_S({x -> f_y(x)}) + 3 sqrt(ln(2 / delta) / (2 m)),

R_rho the training rho-margin loss and R_S the empirical Rademacher complexity of the class scores, which for ReLU
networks of depth d whose weight matrices have Frobenius norms at most M_l is at most (sqrt(2 ln(2) d) + 1)
prod_l M_l sqrt(sum_i ||x_i||^2) / m (Golowich, Rakhlin & Shamir 2018, "Size-independent sample complexity of
neural networks", Thm. 1).
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


def frobenius_rademacher(norm_product: ArrayLike, squared_input_norms: ArrayLike, depth: int) -> NDArray[np.float64]:
    """(sqrt(2 ln(2) d) + 1) prod_l M_l sqrt(sum_i ||x_i||^2) / m (Golowich, Rakhlin & Shamir 2018, Thm. 1): an upper
    bound on the empirical Rademacher complexity, on the sample x_1..x_m, of the real-valued depth-d networks
    x -> W_d s(W_{d-1} ... s(W_1 x)) with ||W_l||_F <= M_l and s 1-Lipschitz and positively homogeneous (ReLU).
    `norm_product` is prod_l M_l, `squared_input_norms` the m values ||x_i||^2.

    Example:
        >>> round(float(frobenius_rademacher(2.0, [1.0, 3.0], depth=2)), 6)  # 2.6651 * 2 * sqrt(4) / 2
        5.330218
    """
    product, squares = np.asarray(norm_product, dtype=float), np.asarray(squared_input_norms, dtype=float)
    if np.any(product < 0) or squares.ndim != 1 or squares.size < 1 or np.any(squares < 0):
        raise ValueError("norm_product, squared_input_norms: expected a product >= 0 and m >= 1 values ||x_i||^2 >= 0")
    if isinstance(depth, bool) or not isinstance(depth, int | np.integer) or depth < 1:
        raise ValueError(f"depth: expected a positive number of layers, got {depth!r}")
    return (np.sqrt(2 * np.log(2) * depth) + 1) * product * np.sqrt(squares.sum()) / squares.size


def margin_bound(
    margin_loss: ArrayLike, rho: ArrayLike, complexity: ArrayLike, num_classes: int, m: int, delta: float = 0.05
) -> NDArray[np.float64]:
    """R_rho + (4 C / rho) R_S + 3 sqrt(ln(2 / delta) / (2 m)) (Mohri, Rostamizadeh & Talwalkar 2018, Thm. 9.2, with
    the empirical Rademacher complexity as in their Thm. 3.3): an upper bound on the test error of the argmax of
    C class scores f_y, valid with probability 1 - delta for a margin rho fixed in advance, where R_rho is the
    training rho-margin loss (the mean of min(1, max(0, 1 - (f_y(x) - max_{j != y} f_j(x)) / rho))) and R_S the
    empirical Rademacher complexity of the class scores {x -> f_y(x)}.

    Example:
        >>> round(float(margin_bound(0.1, rho=2.0, complexity=0.01, num_classes=5, m=200, delta=2 / np.e)), 6)
        0.35

    (0.1 + 4 * 5 * 0.01 / 2 + 3 * sqrt(1 / 400).)
    """
    loss, r, c = (np.asarray(a, dtype=float) for a in (margin_loss, rho, complexity))
    if np.any((loss < 0) | (loss > 1)):
        raise ValueError(f"margin_loss: expected losses in [0, 1], got {margin_loss!r}")
    if np.any(r <= 0) or np.any(c < 0):
        raise ValueError("rho, complexity: expected margins rho > 0 and complexities >= 0")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int | np.integer) or num_classes < 2:
        raise ValueError(f"num_classes: expected at least 2 classes, got {num_classes!r}")
    if isinstance(m, bool) or not isinstance(m, int | np.integer) or m < 1:
        raise ValueError(f"m: expected a positive number of training examples, got {m!r}")
    if not 0 < delta < 1:
        raise ValueError(f"delta: expected a confidence parameter in (0, 1), got {delta!r}")
    return loss + 4 * num_classes * c / r + 3 * np.sqrt(np.log(2 / delta) / (2 * m))
