"""The largest-magnitude eigenvalue of a symmetric curvature matrix by power iteration.

    w_t = A v_t,    rho_t = v_t^T w_t  (Rayleigh quotient, ||v_t|| = 1),    v_{t+1} = w_t / ||w_t||.

v_t converges to the eigenvector of the eigenvalue of largest magnitude lambda_1 at the rate
|lambda_2 / lambda_1| per product, and rho_t to lambda_1 at the squared rate (Golub & Van Loan, Matrix
Computations, 4th ed., 8.2.1). It is the baseline that Lanczos (same products, a Krylov space instead of
its last vector) beats.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from tdlab.curvature.lanczos import EigResult, _start_vector
from tdlab.curvature.operators import LinearOperator, as_operator, seeded
from tdlab.oracles import Objective


def power_iteration(
    obj: Objective | LinearOperator,
    tol: float = 1e-6,
    max_iter: int = 1000,
    v0: Tensor | None = None,
    theta: Tensor | Mapping[str, Tensor] | None = None,
    generator: torch.Generator | None = None,
) -> EigResult:
    """Largest-magnitude eigenpair of the Hessian (or any symmetric operator) by power iteration.

    Stops when the Rayleigh quotient changes by less than `tol` relative, |rho_t - rho_{t-1}| <= tol |rho_t|,
    or after `max_iter` products.

    Args:
        obj: an `Objective` (its Hessian at `theta`) or any symmetric `LinearOperator`.
        tol: relative change of the Rayleigh quotient that ends the iteration, > 0.
        max_iter: most products, >= 1.
        v0: start vector (warm start); random Gaussian by default.
        theta: the point at which to take the Hessian of an `Objective` (default: current parameters).
        generator: random source of the start vector; a fixed seed by default (reproducible).

    Returns:
        `EigResult` with k = 1: the Rayleigh quotient of the last iterate, the iterate, the products used,
        whether the tolerance was met, and the residual ||A v - rho v||.

    Example:
        >>> import torch
        >>> from tdlab.curvature import MatrixOperator
        >>> A = MatrixOperator(torch.diag(torch.tensor([-4.0, 1.0, 2.0], dtype=torch.float64)))
        >>> res = power_iteration(A, tol=1e-10)
        >>> round(res.eigenvalues.item(), 6), res.converged
        (-4.0, True)
    """
    op = as_operator(obj, theta)
    if not tol > 0:
        raise ValueError(f"tol: expected a positive number, got {tol!r}")
    if not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"max_iter: expected a positive integer, got {max_iter!r}")
    v = _start_vector(op, v0, seeded(generator))
    v = v / torch.linalg.vector_norm(v)
    matvecs_before = op.matvecs
    w = op @ v
    rho = torch.dot(v, w)
    converged = False
    for _ in range(max_iter - 1):
        norm = torch.linalg.vector_norm(w)
        if norm == 0:  # A v = 0: rho = 0 is an exact eigenvalue
            converged = True
            break
        v = w / norm
        w = op @ v
        previous, rho = rho, torch.dot(v, w)
        if abs(rho - previous) <= tol * abs(rho):
            converged = True
            break
    return EigResult(
        eigenvalues=rho.reshape(1),
        eigenvectors=v.reshape(-1, 1),
        num_matvecs=op.matvecs - matvecs_before,
        converged=converged,
        residuals=torch.linalg.vector_norm(w - rho * v).reshape(1),
    )
