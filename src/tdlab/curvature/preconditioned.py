"""A symmetric operator seen through a positive diagonal preconditioner: P^{-1/2} (A + diag(s)) P^{-1/2}.

An adaptive method (Adagrad, RMSProp, Adam) steps along P^{-1} g with a diagonal P > 0, so near a minimum its
linear stability is governed by the eigenvalues of P^{-1} A, A the Hessian (Cohen et al. 2022, "Adaptive
gradient methods at the edge of stability", arXiv 2207.14484, sec. 2). P^{-1} A is not symmetric, but it is
similar to the symmetric matrix

    P^{-1/2} A P^{-1/2} = P^{1/2} (P^{-1} A) P^{-1/2},

so both have the same real eigenvalues, and an eigenvector u of the symmetric form gives the eigenvector
P^{-1/2} u of P^{-1} A. Lanczos (`tdlab.curvature.hessian_eigs`) runs on the symmetric form, one product with A
per product. An optional diagonal shift s adds diag(s) to A first (an L2 penalty wd/2 |theta|^2 adds wd to
every diagonal entry of the Hessian): P^{-1/2} (A + diag(s)) P^{-1/2} v = P^{-1/2} A (P^{-1/2} v) + (s / P) v.

Example:
    >>> import torch
    >>> from tdlab.curvature import MatrixOperator
    >>> A = MatrixOperator(torch.tensor([[2.0, 1.0], [1.0, 2.0]], dtype=torch.float64))
    >>> op = PreconditionedOperator(A, torch.tensor([1.0, 4.0], dtype=torch.float64))
    >>> op @ torch.tensor([1.0, 0.0], dtype=torch.float64)
    tensor([2.0000, 0.5000], dtype=torch.float64)
"""

from __future__ import annotations

import torch
from torch import Tensor

from tdlab.curvature.operators import LinearOperator


class PreconditionedOperator(LinearOperator):
    """P^{-1/2} (A + diag(s)) P^{-1/2} for a square operator A, a diagonal preconditioner P > 0 and a shift s.

    Its eigenvalues are those of P^{-1} (A + diag(s)) (a similarity transform by P^{1/2}); it is symmetric when A
    is. The products are counted here (`matvecs`) and in A alike, one product with A per product.

    Args:
        op: the operator A, n x n (e.g. a `HessianOperator`).
        diagonal: the diagonal of P, shape (n,), finite and > 0.
        shift: the diagonal s added to A, a number or shape (n,), finite; 0 by default.

    Example:
        >>> import torch
        >>> from tdlab.curvature import MatrixOperator, hessian_eigs
        >>> A = MatrixOperator(torch.diag(torch.tensor([4.0, 1.0], dtype=torch.float64)))
        >>> op = PreconditionedOperator(A, torch.tensor([2.0, 0.25], dtype=torch.float64))
        >>> [round(x, 8) for x in hessian_eigs(op, k=2).eigenvalues.tolist()]   # eig(P^-1 A) = 4/2, 1/0.25
        [4.0, 2.0]
    """

    def __init__(self, op: LinearOperator, diagonal: Tensor, shift: float | Tensor = 0.0):
        if not isinstance(op, LinearOperator):
            raise TypeError(f"op: expected a tdlab.curvature.LinearOperator, got {type(op).__name__}")
        n = op.shape[0]
        if op.shape[1] != n:
            raise ValueError(f"op: expected a square operator, got shape {op.shape}")
        super().__init__((n, n), op.dtype, op.device)
        if not isinstance(diagonal, Tensor) or diagonal.shape != (n,):
            raise ValueError(f"diagonal: expected a tensor of shape ({n},), got {getattr(diagonal, 'shape', diagonal)}")
        diagonal = diagonal.detach().to(self.device, self.dtype)
        if not bool(torch.isfinite(diagonal).all()) or not bool((diagonal > 0).all()):
            raise ValueError("diagonal: expected finite entries > 0 (a positive definite diagonal preconditioner)")
        shift = torch.as_tensor(shift).detach().to(self.device, self.dtype)
        if shift.ndim not in (0, 1) or (shift.ndim == 1 and shift.shape != (n,)):
            raise ValueError(f"shift: expected a number or a tensor of shape ({n},), got shape {tuple(shift.shape)}")
        if not bool(torch.isfinite(shift).all()):
            raise ValueError("shift: expected finite values")
        self.op = op
        self.diagonal = diagonal
        self.shift = shift
        self.scale = diagonal.rsqrt()  # P^{-1/2}

    def _matvec(self, v: Tensor) -> Tensor:
        return self.scale * self.op.matvec(self.scale * v) + (self.shift / self.diagonal) * v

    def _matmat(self, V: Tensor) -> Tensor:
        scale = self.scale[:, None]
        shift = (self.shift / self.diagonal).reshape(-1, 1)
        return scale * self.op.matmat(scale * V) + shift * V

    def eigenvector(self, u: Tensor) -> Tensor:
        """The eigenvector P^{-1/2} u of P^{-1} (A + diag(s)) from an eigenvector u of this operator (unit norm).

        Example:
            >>> import torch
            >>> from tdlab.curvature import MatrixOperator
            >>> op = PreconditionedOperator(MatrixOperator(torch.eye(2)), torch.tensor([1.0, 4.0]))
            >>> op.eigenvector(torch.tensor([0.0, 1.0]))
            tensor([0., 1.])
        """
        x = self.scale.reshape(-1, *([1] * (u.ndim - 1))) * u.to(self.device, self.dtype)
        return x / torch.linalg.vector_norm(x, dim=0)
