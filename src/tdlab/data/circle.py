"""Inputs on a great circle of the input space, the probe set of the signal-propagation experiments.

N points x_k = sqrt(d) (cos theta_k u + sin theta_k v), theta_k = 2 pi k / N, with u, v orthonormal in R^d: every
input has |x|^2 / d = 1 and the cosine between x_i and x_j is cos(theta_i - theta_j), so the pairs cover the
whole range [-1, 1] of input correlations that the correlation map of a random network acts on (Poole et al.
2016, "Exponential expressivity in deep neural networks through transient chaos", fig. 1, used the same circle).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor


def circle_angles(num_inputs: int) -> NDArray[np.float64]:
    """The angles theta_k = 2 pi k / N, k = 0 .. N-1, of the circle inputs.

    Example:
        >>> (circle_angles(4) / np.pi).tolist()
        [0.0, 0.5, 1.0, 1.5]
    """
    if isinstance(num_inputs, bool) or not isinstance(num_inputs, int) or num_inputs < 1:
        raise ValueError(f"num_inputs: expected a positive integer, got {num_inputs!r}")
    return 2.0 * math.pi * np.arange(num_inputs, dtype=np.float64) / num_inputs


def circle_cosines(num_inputs: int) -> NDArray[np.float64]:
    """The N x N cosines cos(theta_i - theta_j) between the circle inputs (whatever u, v and d).

    Example:
        >>> (circle_cosines(4).round(12) + 0.0).tolist()[0]
        [1.0, 0.0, -1.0, 0.0]
    """
    theta = circle_angles(num_inputs)
    return np.cos(theta[:, None] - theta[None, :])


def circle_inputs(num_inputs: int, in_features: int, generator: torch.Generator) -> tuple[Tensor, NDArray]:
    """N inputs x_k = sqrt(d) (cos theta_k u + sin theta_k v) (module docstring), u, v the orthonormal columns of
    the QR factor of a d x 2 Gaussian matrix drawn from `generator`; returns (X as float32, theta).

    Example:
        >>> X, theta = circle_inputs(8, 5, torch.Generator().manual_seed(0))
        >>> X.shape, round(float(X.square().mean(dim=1).max()), 5)
        (torch.Size([8, 5]), 1.0)
    """
    if isinstance(in_features, bool) or not isinstance(in_features, int) or in_features < 2:
        raise ValueError(f"in_features: expected an integer >= 2 (a circle needs two directions), got {in_features!r}")
    basis, _ = torch.linalg.qr(torch.randn(in_features, 2, generator=generator, dtype=torch.float64))
    theta = torch.from_numpy(circle_angles(num_inputs))
    X = math.sqrt(in_features) * (torch.cos(theta)[:, None] * basis[:, 0] + torch.sin(theta)[:, None] * basis[:, 1])
    return X.float(), theta.numpy()
