"""Where double descent peaks: the interpolation threshold of a model family.

Fit C outputs to n training examples with a model that is linear in its p trainable parameters per output, f(x) =
A^T phi(x) with phi(x) in R^p (random features, the readout of a fixed network), by minimum-norm least squares,
A = Phi^+ Y. With Phi (n x p) of full rank min(n, p):

- p < n: the least-squares fit leaves a residual (the projection of Y off the p-dimensional column space);
- p >= n: Phi has full row rank and the fit interpolates, Phi A = Y;
- at p = n the square Phi has its smallest singular value near 0 (for random Phi, s_min ~ 1/sqrt(n) times the
  typical one), so the interpolant A = Phi^{-1} Y, and with it the test error, blows up.

The test risk therefore rises to a peak at the interpolation threshold p* = n and falls again beyond it ("double
descent", Belkin, Hsu, Ma & Mandal 2019, PNAS, Fig. 2 for random Fourier features; Mei & Montanari 2022 for
random ReLU features; Hastie, Montanari, Rosset & Tibshirani 2022, Ann. Stat., Thm. 1, for isotropic features,
whose variance term sigma^2 gamma / (1 - gamma) for gamma = p/n < 1 and sigma^2 / (gamma - 1) for gamma > 1
diverges at gamma = 1). Label noise makes the peak sharper (Nakkiran et al. 2019, "Deep double descent").

For a network trained end to end, Belkin et al. (2019, Fig. 3: two-layer networks on MNIST with the squared loss)
found the peak where the number of parameters reaches n C, the number of scalar equations f(x_i) = y_i.
"""

from __future__ import annotations

import math


def interpolation_threshold(n_train: int) -> int:
    """The number of features p* = n at which minimum-norm least squares starts to interpolate (per output: the
    C outputs are C independent least-squares problems sharing Phi).

    Example:
        >>> interpolation_threshold(400)
        400
    """
    _positive_int("n_train", n_train)
    return n_train


def mlp_num_parameters(in_features: int, width: int, out_features: int, depth: int = 1, bias: bool = True) -> int:
    """Trainable parameters of an MLP with `depth` hidden layers of `width` units:
    d w + (depth - 1) w^2 + w C, plus depth w + C biases.

    Example:
        >>> mlp_num_parameters(40, 10, 10)
        520
    """
    for name, value in (("in_features", in_features), ("width", width), ("out_features", out_features)):
        _positive_int(name, value)
    _positive_int("depth", depth)
    weights = in_features * width + (depth - 1) * width * width + width * out_features
    return weights + (depth * width + out_features if bias else 0)


def mlp_interpolation_width(n_train: int, in_features: int, out_features: int, depth: int = 1) -> float:
    """The (real) width at which an MLP has n C parameters, the threshold of Belkin et al. (2019, Fig. 3):
    the positive root of (depth - 1) w^2 + (d + C + depth) w + C - n C = 0.

    Example:
        >>> mlp_interpolation_width(100, in_features=40, out_features=10)  # 51 w + 10 = 1000
        19.41176470588235
    """
    _positive_int("n_train", n_train)
    a, b, c = depth - 1, in_features + out_features + depth, out_features - n_train * out_features
    if a == 0:
        return -c / b
    return (-b + math.sqrt(b * b - 4 * a * c)) / (2 * a)


def _positive_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")
