"""Critical points of a small network's loss, of any index, and their classification.

Gradient descent is repelled by saddle points; to study them one finds them directly, as zeros of the gradient,
by minimising the squared gradient norm

    phi(theta) = 1/2 ||grad L(theta)||^2,        grad phi = H grad L,

whose global minima (phi = 0) are all the critical points of L, minima and saddles alike (Pennington & Bahri
2017, "Geometry of neural network loss surfaces via random matrix theory"; Dauphin et al. 2014 use Newton's
method, which is also attracted by saddles). Here phi is minimised by Levenberg-Marquardt on the residual
r = grad L with Jacobian H (symmetric): with H = V diag(lambda) V^T,

    s = -(H^2 + mu I)^{-1} H g = -sum_i lambda_i / (lambda_i^2 + mu) (v_i . g) v_i,

the Newton step -H^{-1} g as mu -> 0 (quadratic convergence to a non-degenerate critical point) and a short
gradient step on phi for large mu; mu shrinks after a step that lowers phi and grows otherwise (Nocedal & Wright
2006, Numerical Optimization, sec. 10.3). A run can also stop at a local minimum of phi with grad L != 0 (where
H g = 0), which is not a critical point: `converged` says which.

The index of a critical point is the fraction of negative Hessian eigenvalues (Dauphin et al. 2014; Bray &
Dean 2007 find for random Gaussian fields, and Dauphin et al. for networks, that it grows with the loss: low
critical points are minima, high ones saddles with many descent directions).

Dense Hessians: for small networks (up to `max_params` parameters).

Example:
    >>> hessian_index(torch.tensor([-2.0, -1.0, 0.0, 3.0]))
    0.5
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from tdlab.curvature import exact_hessian
from tdlab.oracles import Objective


class CriticalPoint(NamedTuple):
    """Where a search for a critical point ended.

    Attributes:
        theta: the point (flat vector, the objective's device and dtype).
        loss: L(theta).
        gradient_norm: ||grad L(theta)||.
        index: fraction of negative Hessian eigenvalues at theta (`hessian_index`).
        eigenvalues: (n,) Hessian eigenvalues at theta, ascending, float64 on the CPU.
        iterations: Levenberg-Marquardt iterations (Hessian evaluations) used.
        converged: whether ||grad L|| <= tol was reached (a critical point); False at a local minimum of the
            gradient norm that is not one, or after max_iter.
    """

    theta: Tensor
    loss: float
    gradient_norm: float
    index: float
    eigenvalues: Tensor
    iterations: int
    converged: bool


def hessian_index(eigenvalues: Tensor, tol: float | None = None) -> float:
    """The fraction of eigenvalues below -tol; `tol` defaults to 1e-8 max |lambda| (zero eigenvalues of a
    symmetry, computed as tiny negative numbers, are not counted).

    Example:
        >>> hessian_index(torch.tensor([-1e-12, 1.0, 2.0, -0.5]))
        0.25
    """
    values = torch.as_tensor(eigenvalues, dtype=torch.float64).reshape(-1)
    if values.numel() == 0 or not torch.isfinite(values).all():
        raise ValueError("eigenvalues: expected a non-empty vector of finite numbers")
    if tol is None:
        tol = 1e-8 * float(values.abs().max())
    elif not tol >= 0:
        raise ValueError(f"tol: expected a non-negative number or None, got {tol!r}")
    return float((values < -tol).double().mean())


def find_critical_point(
    obj: Objective,
    theta0: Tensor,
    max_iter: int = 200,
    tol: float = 1e-10,
    damping: float = 1e-3,
    max_params: int = 2000,
) -> CriticalPoint:
    """A critical point of the objective near theta0, by Levenberg-Marquardt on grad L = 0 (module docstring).

    Args:
        obj: the `Objective` (use float64: the final Newton steps need it).
        theta0: the start (flat vector).
        max_iter: most iterations (each one dense Hessian, n Hessian-vector products).
        tol: the search stops when ||grad L|| <= tol.
        damping: the initial mu, in units of the largest squared Hessian eigenvalue at theta0.
        max_params: refuse larger models (the dense Hessian costs n products and n^2 memory).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from tdlab import Objective
        >>> from tdlab.models import MLP
        >>> model = MLP(2, 1, width=3, depth=1, activation="tanh", seed=0).double()
        >>> g = torch.Generator().manual_seed(0)
        >>> X, y = torch.randn(20, 2, generator=g).double(), torch.randn(20, 1, generator=g).double()
        >>> obj = Objective(model, nn.MSELoss(), (X, y))
        >>> point = find_critical_point(obj, obj.flat_parameters())
        >>> point.converged, point.gradient_norm < 1e-10
        (True, True)
    """
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"max_iter: expected a positive integer, got {max_iter!r}")
    if not tol > 0:
        raise ValueError(f"tol: expected a positive number, got {tol!r}")
    if not damping > 0:
        raise ValueError(f"damping: expected a positive number, got {damping!r}")
    if theta0.shape != (obj.dim,):
        raise ValueError(f"theta0: expected a flat vector of shape ({obj.dim},), got {tuple(theta0.shape)}")
    theta = theta0.detach().to(obj.device, obj.dtype).clone()
    loss, g = obj.value_and_gradient(theta)
    phi = 0.5 * float(g @ g)
    mu = math.nan
    iterations = 0
    stuck = False  # no damped step lowers phi: a local minimum of phi
    while iterations < max_iter and math.sqrt(2 * phi) > tol and not stuck:
        iterations += 1
        values, vectors = torch.linalg.eigh(exact_hessian(obj, theta, max_params=max_params))
        scale = float(values.abs().max()) ** 2 + torch.finfo(obj.dtype).tiny
        if math.isnan(mu):
            mu = damping * scale
        coefficients = vectors.T @ g
        while True:
            candidate = theta - vectors @ (values / (values**2 + mu) * coefficients)
            new_loss, new_g = obj.value_and_gradient(candidate)
            new_phi = 0.5 * float(new_g @ new_g)
            if new_phi < phi:  # False for nan / inf
                theta, loss, g, phi, mu = candidate, new_loss, new_g, new_phi, mu / 3
                break
            mu *= 4
            if mu > 1e20 * scale:
                stuck = True
                break
    eigenvalues = torch.linalg.eigvalsh(exact_hessian(obj, theta, max_params=max_params)).to("cpu", torch.float64)
    gradient_norm = math.sqrt(2 * phi)
    return CriticalPoint(
        theta=theta,
        loss=float(loss),
        gradient_norm=gradient_norm,
        index=hessian_index(eigenvalues),
        eigenvalues=eigenvalues,
        iterations=iterations,
        converged=gradient_norm <= tol,
    )
