"""Spectral density of a curvature matrix by stochastic Lanczos quadrature (SLQ).

The spectral density of a symmetric n x n matrix A is phi(t) = (1/n) sum_i delta(t - lambda_i). For a unit
vector q, the spectral measure mu_q = sum_i (q^T u_i)^2 delta(t - lambda_i) is approximated by the Gauss
quadrature rule that m Lanczos steps from q give: nodes theta_j (eigenvalues of T_m) and weights
tau_j = s_{1,j}^2 (squared first components of T_m's eigenvectors), exact for polynomials of degree <= 2m - 1
(Golub & Meurant, "Matrices, Moments and Quadrature", 1994). With q = z / sqrt(n) for a Rademacher probe z,
E[mu_q] = phi, so averaging the rules of several probes estimates phi, and

    moment(k) = mean over probes of sum_j tau_j theta_j^k  ~  tr(A^k) / n.

A smooth density is obtained by replacing each node with a Gaussian of width sigma:
phi_sigma(t) = mean over probes of sum_j tau_j N(t; theta_j, sigma^2).
(Ubaru, Chen & Saad 2017, "Fast estimation of tr(f(A)) via stochastic Lanczos quadrature"; Ghorbani, Krishnan
& Xiao 2019, "An investigation into neural net optimization via Hessian eigenvalue density".)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from tdlab.curvature.lanczos import _lanczos, _tridiagonal_eigh
from tdlab.curvature.operators import LinearOperator, as_operator, per_block, random_vectors, seeded
from tdlab.oracles import Objective
from tdlab.oracles.objective import Blocks

_GRID_POINTS = 1000
_SIGMA_FRACTION = 0.02  # default sigma as a fraction of the range of the nodes


@dataclass(frozen=True)
class SpectralDensity:
    """An SLQ estimate of a spectral density.

    Attributes:
        nodes: (probes, steps) Ritz values of each probe's Lanczos run (the quadrature nodes).
        weights: (probes, steps) quadrature weights, squared first components of the Ritz vectors; each row
            sums to 1.
        grid: points t at which the smoothed density is evaluated.
        density: phi_sigma(t) on the grid, renormalised to integrate to 1 there (trapezoid rule).
        sigma: width of the Gaussian smoothing.
        num_matvecs: operator products used.
    """

    nodes: np.ndarray
    weights: np.ndarray
    grid: np.ndarray
    density: np.ndarray
    sigma: float
    num_matvecs: int

    def moment(self, k: int) -> float:
        """Estimate of tr(A^k) / n: mean over probes of sum_j w_j theta_j^k (exact per probe for k <= 2m - 1).

        Example:
            >>> import torch
            >>> from tdlab.curvature import MatrixOperator
            >>> A = MatrixOperator(torch.diag(torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)))
            >>> round(hessian_density(A, num_probes=4, lanczos_steps=4).moment(1), 12)  # tr(A) / n
            2.5
        """
        if not isinstance(k, int) or k < 0:
            raise ValueError(f"k: expected a non-negative integer, got {k!r}")
        return float(np.mean(np.sum(self.weights * self.nodes**k, axis=1)))


def _smooth(nodes: np.ndarray, weights: np.ndarray, grid: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian-smoothed quadrature rules averaged over probes, renormalised to unit integral on the grid."""
    z = (grid[None, :] - nodes.reshape(-1, 1)) / sigma
    kernels = np.exp(-0.5 * z**2) / (sigma * np.sqrt(2 * np.pi))
    density = weights.reshape(-1) @ kernels / nodes.shape[0]
    mass = np.trapezoid(density, grid)
    if not mass > 0:
        raise ValueError(
            f"grid: carries no mass of the density, whose nodes lie in [{nodes.min():.4g}, {nodes.max():.4g}]"
        )
    return density / mass


def hessian_density(
    obj: Objective | LinearOperator,
    num_probes: int = 10,
    lanczos_steps: int = 80,
    grid: np.ndarray | None = None,
    sigma: float | None = None,
    theta: Tensor | Mapping[str, Tensor] | None = None,
    generator: torch.Generator | None = None,
    blocks: Blocks | None = None,
) -> SpectralDensity | dict[str, SpectralDensity]:
    """Spectral density of the Hessian (or any symmetric operator) by stochastic Lanczos quadrature.

    Args:
        obj: an `Objective` (its Hessian at `theta`) or any symmetric `LinearOperator`.
        num_probes: number of Rademacher probes, >= 1 (cost: num_probes * lanczos_steps products).
        lanczos_steps: Lanczos steps per probe, >= 1 (clipped to n).
        grid: increasing 1-D array of points for the smoothed density; default 1000 points from 3 sigma below
            the smallest node to 3 sigma above the largest.
        sigma: Gaussian smoothing width, > 0; default 2% of the range of the nodes.
        theta: the point at which to take the Hessian of an `Objective` (default: current parameters).
        generator: random source of the probes; a fixed seed by default (reproducible).
        blocks: None for the whole Hessian; "module" or a mapping from names to parameter selections for the
            density of each diagonal block H[S, S], by block name (`per_block`); needs an `Objective`.

    Example:
        >>> import torch
        >>> from tdlab.curvature import MatrixOperator
        >>> A = MatrixOperator(torch.diag(torch.linspace(-1, 1, 200, dtype=torch.float64)))
        >>> d = hessian_density(A, num_probes=5, lanczos_steps=30)
        >>> d.nodes.shape, round(float(np.trapezoid(d.density, d.grid)), 12)
        ((5, 30), 1.0)
    """
    if blocks is not None:
        return per_block(
            obj, blocks, theta, lambda op: hessian_density(op, num_probes, lanczos_steps, grid, sigma, None, generator)
        )
    op = as_operator(obj, theta)
    if not isinstance(num_probes, int) or num_probes < 1:
        raise ValueError(f"num_probes: expected a positive integer, got {num_probes!r}")
    if not isinstance(lanczos_steps, int) or lanczos_steps < 1:
        raise ValueError(f"lanczos_steps: expected a positive integer, got {lanczos_steps!r}")
    if sigma is not None and not sigma > 0:
        raise ValueError(f"sigma: expected a positive number or None, got {sigma!r}")
    if grid is not None:
        grid = np.asarray(grid, dtype=np.float64)
        if grid.ndim != 1 or grid.size < 2 or not np.all(np.diff(grid) > 0):
            raise ValueError("grid: expected an increasing 1-D array of at least 2 points")
    steps = min(lanczos_steps, op.shape[0])
    generator = seeded(generator)
    before = op.matvecs
    nodes, weights = [], []
    for _ in range(num_probes):
        run = _lanczos(op, random_vectors(op, None, "rademacher", generator), steps, generator)
        if not run.finite:
            raise ValueError("obj: a Hessian-vector product is not finite (has the model diverged?)")
        values, vectors = _tridiagonal_eigh(run.alpha, run.beta)
        nodes.append(values.numpy())
        weights.append(vectors[0].numpy() ** 2)
    nodes_array, weights_array = np.stack(nodes), np.stack(weights)
    if sigma is None:
        spread = nodes_array.max() - nodes_array.min()
        sigma = _SIGMA_FRACTION * (spread if spread > 0 else max(abs(nodes_array.max()), 1.0))
    if grid is None:
        grid = np.linspace(nodes_array.min() - 3 * sigma, nodes_array.max() + 3 * sigma, _GRID_POINTS)
    return SpectralDensity(
        nodes=nodes_array,
        weights=weights_array,
        grid=grid,
        density=_smooth(nodes_array, weights_array, grid, float(sigma)),
        sigma=float(sigma),
        num_matvecs=op.matvecs - before,
    )
