"""Heavy ball and Nesterov momentum on a quadratic: each eigen-direction is a 2x2 linear system.

Along an eigen-direction with curvature lambda (h = eta lambda), the error e_t obeys a two-term recursion
whose companion matrix acts on (e_t, e_{t-1}):

    heavy ball (Polyak 1964)  e_{t+1} = (1 + beta - h) e_t - beta e_{t-1},
                              M = [[1 + beta - h, -beta], [1, 0]];
    Nesterov (1983)           y_{t+1} = (1 + beta)(1 - h) y_t - beta (1 - h) y_{t-1},
                              M = [[(1 + beta)(1 - h), -beta (1 - h)], [1, 0]]   (y: the look-ahead point).

The error contracts at the spectral radius of M (the largest root modulus); over all modes, at the largest
spectral radius. Tuning for eigenvalues in [mu, L] with kappa = L/mu:

    Polyak:   eta = 4/(sqrt(L) + sqrt(mu))^2, beta = ((sqrt(kappa) - 1)/(sqrt(kappa) + 1))^2
              -> rate (sqrt(kappa) - 1)/(sqrt(kappa) + 1);
    Nesterov: eta = 1/L, beta = (sqrt(kappa) - 1)/(sqrt(kappa) + 1) -> rate 1 - 1/sqrt(kappa).

Heavy ball is stable iff 0 < h < 2(1 + beta) (|beta| < 1), Nesterov iff 0 < h < 2(1 + beta)/(1 + 2 beta):
a root crosses z = -1 there (Jury's test). Sources: Polyak (1964), "Some methods of speeding up the
convergence of iteration methods", USSR Comp. Math. Math. Phys.; Polyak (1987), Introduction to
Optimization; Nesterov (2004), Introductory Lectures on Convex Optimization, sec. 2.2; Lessard, Recht &
Packard (2016), "Analysis and design of optimization algorithms via integral quadratic constraints", SIAM
J. Optim., sec. 2; Goh (2017), "Why Momentum Really Works", Distill.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from tdlab.theory._checks import positive as _positive


def _momentum(beta: float) -> float:
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"beta: expected a momentum in [0, 1), got {beta}")
    return float(beta)


def _largest_root_modulus(b: NDArray[np.float64], c: NDArray[np.float64]) -> NDArray[np.float64]:
    """max |z| over the roots of z^2 - b z + c (elementwise)."""
    root = np.emath.sqrt(b * b - 4.0 * c)
    return np.maximum(np.abs((b + root) / 2.0), np.abs((b - root) / 2.0))


def heavy_ball_matrix(eta: float, beta: float, eigenvalue: float) -> NDArray[np.float64]:
    """The companion matrix of heavy ball along one eigen-direction, acting on (e_t, e_{t-1}).

    M = [[1 + beta - eta lambda, -beta], [1, 0]].

    Example:
        >>> heavy_ball_matrix(0.5, 0.25, 1.0).tolist()
        [[0.75, -0.25], [1.0, 0.0]]
    """
    h = float(_positive("eta", eta) * _positive("eigenvalue", eigenvalue))
    b = _momentum(beta)
    return np.array([[1.0 + b - h, -b], [1.0, 0.0]])


def nesterov_matrix(eta: float, beta: float, eigenvalue: float) -> NDArray[np.float64]:
    """The companion matrix of Nesterov's method along one eigen-direction, acting on (y_t, y_{t-1}).

    M = [[(1 + beta)(1 - eta lambda), -beta (1 - eta lambda)], [1, 0]], for the look-ahead points
    y_t = x_t + beta (x_t - x_{t-1}) (the iterates of torch.optim.SGD with nesterov=True).

    Example:
        >>> nesterov_matrix(0.5, 0.5, 1.0).tolist()
        [[0.75, -0.25], [1.0, 0.0]]
    """
    h = float(_positive("eta", eta) * _positive("eigenvalue", eigenvalue))
    b = _momentum(beta)
    return np.array([[(1.0 + b) * (1.0 - h), -b * (1.0 - h)], [1.0, 0.0]])


def heavy_ball_rate(eta: float, beta: float, eigenvalues: ArrayLike) -> NDArray[np.float64]:
    """The spectral radius of the heavy-ball matrix of each eigenvalue: the largest |z| with
    z^2 - (1 + beta - eta lambda) z + beta = 0. Below 1 it is the mode's contraction rate, above its growth.

    Example:
        >>> heavy_ball_rate(1.0, 0.25, [0.5, 1.0, 5.0]).round(4).tolist()
        [0.5, 0.5, 3.6821]
    """
    h = _positive("eta", eta) * _positive("eigenvalues", eigenvalues)
    b = _momentum(beta)
    return _largest_root_modulus(1.0 + b - h, np.full_like(h, b))


def nesterov_rate(eta: float, beta: float, eigenvalues: ArrayLike) -> NDArray[np.float64]:
    """The spectral radius of Nesterov's matrix of each eigenvalue: the largest |z| with
    z^2 - (1 + beta)(1 - eta lambda) z + beta (1 - eta lambda) = 0.

    Example:
        >>> nesterov_rate(1.0, 0.5, [1.0, 0.75]).round(4).tolist()
        [0.0, 0.3536]
    """
    h = _positive("eta", eta) * _positive("eigenvalues", eigenvalues)
    b = _momentum(beta)
    return _largest_root_modulus((1.0 + b) * (1.0 - h), b * (1.0 - h))


def polyak_parameters(mu: float, L: float) -> tuple[float, float]:
    """Polyak's tuned heavy ball: eta = 4/(sqrt(L) + sqrt(mu))^2 and
    beta = ((sqrt(kappa) - 1)/(sqrt(kappa) + 1))^2.

    Example:
        >>> polyak_parameters(1.0, 9.0)
        (0.25, 0.25)
    """
    mu_, L_ = float(_positive("mu", mu)), float(_positive("L", L))
    if mu_ > L_:
        raise ValueError(f"mu: expected mu <= L, got mu={mu_} and L={L_}")
    eta = 4.0 / (np.sqrt(L_) + np.sqrt(mu_)) ** 2
    return float(eta), float(polyak_rate(L_ / mu_) ** 2)


def polyak_rate(kappa: ArrayLike) -> NDArray[np.float64]:
    """The rate of Polyak's tuned heavy ball, (sqrt(kappa) - 1)/(sqrt(kappa) + 1).

    Example:
        >>> float(polyak_rate(9.0))
        0.5
    """
    root_kappa = np.sqrt(_condition_number(kappa))
    return (root_kappa - 1.0) / (root_kappa + 1.0)


def nesterov_parameters(mu: float, L: float) -> tuple[float, float]:
    """Nesterov's constant-momentum tuning for mu-strongly convex, L-smooth f: eta = 1/L,
    beta = (sqrt(kappa) - 1)/(sqrt(kappa) + 1).

    Example:
        >>> nesterov_parameters(1.0, 9.0)
        (0.1111111111111111, 0.5)
    """
    mu_, L_ = float(_positive("mu", mu)), float(_positive("L", L))
    if mu_ > L_:
        raise ValueError(f"mu: expected mu <= L, got mu={mu_} and L={L_}")
    return 1.0 / L_, float(polyak_rate(L_ / mu_))


def nesterov_tuned_rate(kappa: ArrayLike) -> NDArray[np.float64]:
    """The rate of Nesterov's method with `nesterov_parameters` on a quadratic, 1 - 1/sqrt(kappa): the mode
    lambda = mu has the double root z = 1 - 1/sqrt(kappa), every other mode a complex pair of smaller modulus.

    Example:
        >>> float(nesterov_tuned_rate(4.0))
        0.5
    """
    return 1.0 - 1.0 / np.sqrt(_condition_number(kappa))


def heavy_ball_stability_threshold(beta: float) -> float:
    """The largest stable h = eta lambda of heavy ball, 2 (1 + beta): a root crosses z = -1 there.

    Example:
        >>> heavy_ball_stability_threshold(0.5)
        3.0
    """
    return 2.0 * (1.0 + _momentum(beta))


def nesterov_stability_threshold(beta: float) -> float:
    """The largest stable h = eta lambda of Nesterov's method, 2 (1 + beta)/(1 + 2 beta).

    Example:
        >>> nesterov_stability_threshold(0.5)
        1.5
    """
    b = _momentum(beta)
    return 2.0 * (1.0 + b) / (1.0 + 2.0 * b)


def terminal_velocity(eta: float, beta: float, gradient: ArrayLike) -> NDArray[np.float64]:
    """The step w_{t+1} - w_t that heavy ball settles to under a constant gradient g: -eta g/(1 - beta).

    The velocity v_{t+1} = beta v_t - eta g is an exponential average of past gradient steps, so it tends to
    -eta g (1 + beta + beta^2 + ...) = -eta g/(1 - beta): momentum multiplies the step by 1/(1 - beta).

    Example:
        >>> terminal_velocity(0.1, 0.9, [1.0, -2.0]).round(12).tolist()
        [-1.0, 2.0]
    """
    return -float(_positive("eta", eta)) * np.asarray(gradient, dtype=float) / (1.0 - _momentum(beta))


def _condition_number(kappa: ArrayLike) -> NDArray[np.float64]:
    array = np.asarray(kappa, dtype=float)
    if array.size == 0 or not np.all(np.isfinite(array)) or np.any(array < 1):
        raise ValueError(f"kappa: expected finite values >= 1, got {kappa!r}")
    return array
