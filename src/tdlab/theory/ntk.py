"""The neural tangent kernel: its size at initialisation, and gradient descent on the linearised network.

A network f(theta; x) near its initialisation theta_0 is, to first order, the linear model

    f_lin(theta; x) = f(theta_0; x) + J(theta_0; x) (theta - theta_0),

whose features are the parameter gradients J(x) = d f(theta_0; x) / d theta; its kernel is the empirical neural
tangent kernel Theta(x, x') = J(x) J(x')^T (Jacot, Gabriel & Hongler 2018).

Gradient descent on the squared loss L = 1/(2n) sum_i (f(x_i) - y_i)^2 with step eta moves the linearised
training residual r_t = f_lin,t(X) - y as r_{t+1} = (I - eta Theta / n) r_t, so in the eigenbasis Theta v_i =
lambda_i v_i each component decays geometrically,

    v_i^T r_t = (1 - eta lambda_i / n)^t v_i^T r_0,

the largest eigen-directions first (Lee et al. 2019, eq. 8-9; Arora, Du, Hu, Li & Wang 2019, Thm. 4.1). In the NTK
parameterisation the trained network stays within O(width^{-1/2}) of its linearisation for all t (Lee et al.
2019, Thm. 2.1).

In the standard parameterisation the kernel itself grows with width: for one hidden ReLU layer, h = relu(W x),
f = A h + b, with He initialisation (W_jk ~ N(0, 2/d), A_cj ~ N(0, 2/m)) and zero biases, the trace over the C
outputs has expectation

    E tr Theta(x, x) = C (m ||x||^2 / d + ||x||^2 + 2),

from the readout (sum_j h_j^2 per output, E h_j^2 = ||x||^2 / d), the hidden weights (sum_j A_cj^2 1[z_j > 0]
||x||^2, expectation ||x||^2 per output) and the two biases (1 each). At a fixed learning rate, gradient descent
therefore moves the outputs by an amount that grows in proportion to the width m.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

LINEARISATION_EXPONENT = -0.5
"""The exponent of Lee et al. (2019, Thm. 2.1): sup_t ||f_t - f_lin,t|| = O(width^-1/2), NTK parameterisation."""


def relu_ntk_trace(width: ArrayLike, squared_norm: ArrayLike, in_features: int, out_features: int) -> NDArray:
    """E tr Theta(x, x) = C (m ||x||^2 / d + ||x||^2 + 2) of a one-hidden-layer ReLU network with He
    initialisation and zero biases, standard parameterisation (derivation in the module docstring).

    Example:
        >>> relu_ntk_trace([10, 100], squared_norm=4.0, in_features=4, out_features=1).tolist()
        [16.0, 106.0]
    """
    m, q = np.asarray(width, dtype=float), np.asarray(squared_norm, dtype=float)
    if np.any(m < 1) or np.any(q < 0) or in_features < 1 or out_features < 1:
        raise ValueError(
            "width, squared_norm, in_features, out_features: expected width >= 1, ||x||^2 >= 0 and "
            "positive feature counts"
        )
    return out_features * (m * q / in_features + q + 2.0)


def mode_residual(eigenvalues: ArrayLike, lr: float, n: int, steps: ArrayLike) -> NDArray[np.float64]:
    """The factor (1 - eta lambda_i / n)^t by which GD on the linearised model shrinks the residual along the i-th
    kernel eigenvector after t steps, shape (len(steps), len(eigenvalues)).

    Example:
        >>> mode_residual([2.0, 1.0], lr=0.5, n=1, steps=[0, 1, 2]).tolist()
        [[1.0, 1.0], [0.0, 0.5], [0.0, 0.25]]
    """
    lam, t = _eigenvalues(eigenvalues), np.asarray(steps, dtype=float)
    _check_lr_n(lr, n)
    return (1.0 - lr * lam / n)[None, :] ** t[:, None]


def mode_fitting_time(eigenvalues: ArrayLike, lr: float, n: int, factor: float = np.e) -> NDArray[np.float64]:
    """Steps until the residual along the i-th eigenvector has shrunk by `factor`: the smallest integer t with
    |1 - eta lambda_i / n|^t <= 1 / factor, i.e. ceil(log(factor) / -log|1 - eta lambda_i / n|) (infinite for
    lambda_i = 0). Larger eigenvalues are fitted sooner (for eta lambda_i / n <= 1).

    Example:
        >>> mode_fitting_time([1.0, 0.5, 0.0], lr=1.0, n=2, factor=4.0).tolist()
        [2.0, 5.0, inf]
    """
    lam = _eigenvalues(eigenvalues)
    _check_lr_n(lr, n)
    if factor <= 1:
        raise ValueError(f"factor: expected a number > 1, got {factor!r}")
    rate = np.abs(1.0 - lr * lam / n)
    with np.errstate(divide="ignore"):
        steps = np.log(factor) / -np.log(rate)
    return np.where(rate < 1, np.ceil(steps - 1e-12), np.inf)


def _eigenvalues(values: ArrayLike) -> NDArray[np.float64]:
    lam = np.asarray(values, dtype=float)
    if lam.ndim != 1 or np.any(lam < 0):
        raise ValueError(f"eigenvalues: expected a 1-D array of non-negative kernel eigenvalues, got {values!r}")
    return lam


def _check_lr_n(lr: float, n: int) -> None:
    if lr <= 0:
        raise ValueError(f"lr: expected a positive learning rate, got {lr!r}")
    if n < 1:
        raise ValueError(f"n: expected a positive number of training examples, got {n!r}")
