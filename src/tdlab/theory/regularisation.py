r"""Explicit regularisers of linear models: dropout's moments and its ridge equivalent, the L1 optimality
conditions, and the correspondence between an L2 penalty and decoupled weight decay.

Dropout (Srivastava, Hinton, Krizhevsky, Sutskever & Salakhutdinov 2014, JMLR 15) multiplies each unit h by
m / (1 - p) with m ~ Bernoulli(1 - p) ("inverted" scaling), so E[h m / (1 - p)] = h: the expected activation
is the one the network sees at test time, when dropout is off. On linear regression the expected loss under
input dropout is a ridge loss with a data-dependent diagonal penalty (Srivastava et al. 2014, Sec. 9.1; Wager,
Wang & Liang 2013, "Dropout training as adaptive regularization").

Weight decay. Gradient descent on f(w) + lambda'/2 ||w||^2 steps w <- (1 - eta lambda') w - eta grad f(w); SGD with
decoupled weight decay steps w <- (1 - lambda) w - eta grad f(w). They coincide iff lambda' = lambda / eta
(Loshchilov & Hutter 2019, "Decoupled weight decay regularization", ICLR, Prop. 1). For adaptive methods the L2
gradient lambda' w is divided by the preconditioner sqrt(v) like the rest of the gradient while decoupled decay
is not, so Adam with an L2 penalty and AdamW follow different paths (their Prop. 2).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

Array = NDArray[np.float64]


def _rate(p: float) -> float:
    p = float(p)
    if not 0.0 <= p < 1.0:
        raise ValueError(f"p: expected a drop probability in [0, 1), got {p!r}")
    return p


def dropout_moments(h: ArrayLike, p: float, inverted: bool = True) -> tuple[Array, Array]:
    r"""Mean and variance of a unit with value h after dropout with drop probability p.

    Inverted dropout h m / (1 - p): mean h, variance h^2 p / (1 - p); plain dropout h m: mean (1 - p) h,
    variance h^2 p (1 - p) (a scaled Bernoulli(1 - p) variable; Srivastava et al. 2014).

    Example:
        >>> mean, var = dropout_moments([2.0], 0.5)
        >>> mean.tolist(), var.tolist()
        ([2.0], [4.0])
    """
    h = np.asarray(h, dtype=float)
    p = _rate(p)
    if inverted:
        return h.copy(), h**2 * p / (1.0 - p)
    return (1.0 - p) * h, h**2 * p * (1.0 - p)


def dropout_ridge_solution(X: ArrayLike, y: ArrayLike, p: float) -> Array:
    r"""The minimiser of the expected loss of linear regression with inverted dropout on the inputs,

    .. math::
        E_m \Bigl\| y - \Bigl(X \odot \frac{m}{1 - p}\Bigr) w \Bigr\|^2
        = \|y - X w\|^2 + \frac{p}{1 - p} \sum_j w_j^2 \sum_i x_{ij}^2 ,

    (a mask m_ij per example and feature), i.e. (X^T X + p/(1 - p) diag(X^T X))^{-1} X^T y: ridge with a
    penalty proportional to each feature's energy (Srivastava et al. 2014, Sec. 9.1).

    Example:
        >>> dropout_ridge_solution([[1.0], [1.0]], [1.0, 1.0], p=0.5).tolist()
        [0.5]
    """
    X = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float)
    if X.ndim != 2 or y.shape[:1] != X.shape[:1]:
        raise ValueError(f"X, y: expected X of shape (n, d) and y with n rows, got {X.shape} and {y.shape}")
    p = _rate(p)
    gram = X.T @ X
    return np.linalg.solve(gram + p / (1.0 - p) * np.diag(np.diag(gram)), X.T @ y)


def l2_equivalent_of_decoupled_decay(decay: float, lr: float) -> float:
    r"""The L2 coefficient lambda' = lambda / eta whose gradient step matches SGD with decoupled weight decay
    w <- (1 - lambda) w - eta g (Loshchilov & Hutter 2019, Prop. 1).

    In torch's parameterisation (`AdamW`, `tdlab.optim.SGDW`: w <- (1 - eta wd) w - ...) the per-step decay is
    lambda = eta * wd, so lambda' = wd.

    Example:
        >>> round(l2_equivalent_of_decoupled_decay(0.01, lr=0.1), 12)
        0.1
    """
    decay, lr = float(decay), float(lr)
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"decay: expected a per-step decay in [0, 1), got {decay!r}")
    if not lr > 0:
        raise ValueError(f"lr: expected a number > 0, got {lr!r}")
    return decay / lr


def lasso_optimality_violation(X: ArrayLike, y: ArrayLike, w: ArrayLike, lam: float) -> float:
    r"""How far w is from minimising 1/2 ||X w - y||^2 + lambda ||w||_1, measured on its optimality conditions.

    w is a minimiser iff the gradient g = X^T (X w - y) satisfies g_j = -lambda sign(w_j) where w_j != 0 and
    |g_j| <= lambda where w_j = 0 (the subgradient condition 0 in g + lambda d||w||_1; Tibshirani 1996;
    Hastie, Tibshirani & Wainwright 2015, Statistical Learning with Sparsity, Ch. 2). Returns the largest
    violation over coordinates, max(|g_j + lambda sign(w_j)|, (|g_j| - lambda)_+): 0 at the solution.

    Example:
        >>> lasso_optimality_violation([[1.0]], [3.0], [2.0], lam=1.0)
        0.0
    """
    X = np.asarray(X, dtype=float)
    w = np.asarray(w, dtype=float)
    lam = float(lam)
    if not lam >= 0:
        raise ValueError(f"lam: expected a number >= 0, got {lam!r}")
    g = X.T @ (X @ w - np.asarray(y, dtype=float))
    active = w != 0
    violation = np.where(active, np.abs(g + lam * np.sign(w)), np.maximum(np.abs(g) - lam, 0.0))
    return float(violation.max())
