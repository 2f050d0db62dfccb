"""Batched linear solvers in torch shared by the double-descent experiments."""

from __future__ import annotations

import torch
from torch import Tensor


def min_norm_least_squares(features: Tensor, targets: Tensor) -> Tensor:
    """The minimum-norm least-squares solution A = Phi^+ Y of full-rank designs Phi (..., n, p), targets
    Y (..., n, k), by a QR factorisation, so that the conditioning is that of Phi (not of Phi^T Phi): for p <= n,
    Phi = QR and A = R^-1 Q^T Y (least squares); for p > n, Phi^T = QR and A = Q R^-T Y (the interpolant of least
    norm).

    Example:
        >>> Phi, Y = torch.randn(5, 8, dtype=torch.float64), torch.randn(5, 2, dtype=torch.float64)
        >>> all(torch.allclose(min_norm_least_squares(Phi[:, :p], Y), torch.linalg.pinv(Phi[:, :p]) @ Y)
        ...     for p in (3, 5, 8))
        True
        >>> batch = torch.randn(4, 5, 8, dtype=torch.float64)  # a batch of designs
        >>> torch.allclose(min_norm_least_squares(batch, Y.expand(4, 5, 2)), torch.linalg.pinv(batch) @ Y)
        True
    """
    n, p = features.shape[-2:]
    if p <= n:
        Q, R = torch.linalg.qr(features)
        return torch.linalg.solve_triangular(R, Q.mT @ targets, upper=True)
    Q, R = torch.linalg.qr(features.mT)
    return Q @ torch.linalg.solve_triangular(R.mT, targets, upper=False)
