"""Curvature matrices as linear operators on flat parameter vectors.

Every curvature algorithm of this package (Lanczos, power iteration, Hutchinson, stochastic Lanczos
quadrature) only needs products A v with a symmetric n x n matrix A. Following curvlinops (Dangel et al.),
the matrix is wrapped in one small interface, so that each algorithm is written once and works for the Hessian
H = d^2 f / d theta^2, the generalised Gauss-Newton matrix G = J^T H_L J (Schraudolph 2002), or any explicit
matrix:

    op @ v          one product (v of shape (n,))
    op @ V          products with the columns of V (shape (n, c)), A V
    op.matvecs      how many products have been done so far (the cost measure of the algorithms)
    op.to_scipy()   a `scipy.sparse.linalg.LinearOperator`, to hand the matrix to SciPy's solvers

Example:
    >>> import torch
    >>> op = MatrixOperator(torch.diag(torch.tensor([3.0, 1.0])))
    >>> op @ torch.tensor([1.0, 1.0])
    tensor([3., 1.])
    >>> op.matvecs
    1
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeVar

import numpy as np
import scipy.sparse.linalg
import torch
from torch import Tensor
from torch.func import vmap

from tdlab.oracles import Objective, flatten, unflatten
from tdlab.oracles.objective import Blocks, parameter_blocks

_VMAP_CHUNK = 64  # columns per vectorised batch of products: bounds the memory of `op @ V`


class LinearOperator:
    """A linear map R^n -> R^m given by its products, with a counter of the products done.

    Subclasses set `shape`, `dtype`, `device` and implement `_matvec` (and may override `_matmat` with a
    faster batched product). `matvec` checks the vector, casts it to the operator's device and dtype, and
    counts.

    Example:
        >>> import torch
        >>> op = MatrixOperator(torch.eye(3))
        >>> (op @ torch.ones(3, 2)).shape, op.matvecs
        (torch.Size([3, 2]), 2)
    """

    shape: tuple[int, int]
    dtype: torch.dtype
    device: torch.device

    def __init__(self, shape: tuple[int, int], dtype: torch.dtype, device: torch.device):
        self.shape = (int(shape[0]), int(shape[1]))
        self.dtype = dtype
        self.device = torch.device(device)
        self.matvecs = 0

    def _matvec(self, v: Tensor) -> Tensor:
        raise NotImplementedError

    def _matmat(self, V: Tensor) -> Tensor:
        return torch.stack([self._matvec(V[:, j]) for j in range(V.shape[1])], dim=1)

    def matvec(self, v: Tensor) -> Tensor:
        """A v for a flat vector v of shape (n,)."""
        if v.ndim != 1 or v.shape[0] != self.shape[1]:
            raise ValueError(f"v: expected a vector of shape ({self.shape[1]},), got {tuple(v.shape)}")
        self.matvecs += 1
        return self._matvec(v.to(self.device, self.dtype))

    def matmat(self, V: Tensor) -> Tensor:
        """A V, column by column, for V of shape (n, c)."""
        if V.ndim != 2 or V.shape[0] != self.shape[1]:
            raise ValueError(f"V: expected a matrix of shape ({self.shape[1]}, c), got {tuple(V.shape)}")
        self.matvecs += V.shape[1]
        return self._matmat(V.to(self.device, self.dtype))

    def __matmul__(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor):
            raise TypeError(f"x: expected a torch.Tensor of shape (n,) or (n, c), got {type(x).__name__}")
        return self.matvec(x) if x.ndim == 1 else self.matmat(x)

    def to_scipy(self) -> scipy.sparse.linalg.LinearOperator:
        """This operator as a `scipy.sparse.linalg.LinearOperator` on NumPy arrays (products still counted).

        Example:
            >>> import torch, scipy.sparse.linalg
            >>> op = MatrixOperator(torch.diag(torch.arange(1.0, 6.0, dtype=torch.float64)))
            >>> round(float(scipy.sparse.linalg.eigsh(op.to_scipy(), k=1, which="LA")[0][0]), 10)
            5.0
        """

        def matvec(x: np.ndarray) -> np.ndarray:
            v = torch.as_tensor(np.ascontiguousarray(x).reshape(-1), device=self.device, dtype=self.dtype)
            return (self @ v).cpu().numpy().reshape(-1)

        def matmat(X: np.ndarray) -> np.ndarray:
            V = torch.as_tensor(np.ascontiguousarray(X), device=self.device, dtype=self.dtype)
            return (self @ V).cpu().numpy()

        np_dtype = torch.empty((), dtype=self.dtype).numpy().dtype
        return scipy.sparse.linalg.LinearOperator(self.shape, matvec=matvec, matmat=matmat, dtype=np_dtype)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(shape={self.shape}, dtype={self.dtype}, device={self.device})"


class MatrixOperator(LinearOperator):
    """An explicit matrix as an operator (for tests, theory and small problems).

    Example:
        >>> import torch
        >>> MatrixOperator(torch.ones(2, 2)) @ torch.tensor([1.0, 2.0])
        tensor([3., 3.])
    """

    def __init__(self, matrix: Tensor):
        if not isinstance(matrix, Tensor) or matrix.ndim != 2:
            raise ValueError(f"matrix: expected a 2-D torch.Tensor, got {getattr(matrix, 'shape', type(matrix))}")
        super().__init__(tuple(matrix.shape), matrix.dtype, matrix.device)
        self.matrix = matrix

    def _matvec(self, v: Tensor) -> Tensor:
        return self.matrix @ v

    def _matmat(self, V: Tensor) -> Tensor:
        return self.matrix @ V


class _ObjectiveOperator(LinearOperator):
    """Common part of the Hessian and GGN operators: an `Objective` frozen at a point theta."""

    def __init__(self, objective: Objective, theta: Tensor | Mapping[str, Tensor] | None = None):
        if not isinstance(objective, Objective):
            raise TypeError(f"objective: expected a tdlab.Objective, got {type(objective).__name__}")
        super().__init__((objective.dim, objective.dim), objective.dtype, objective.device)
        self.objective = objective
        if theta is None:
            theta = objective.flat_parameters()
        elif isinstance(theta, Mapping):
            missing = sorted(set(objective.params) - set(theta))
            if missing:
                raise ValueError(f"theta: missing parameters {missing}")
            theta = flatten({name: theta[name] for name in objective.params})
        if theta.shape != (objective.dim,):
            raise ValueError(f"theta: expected a flat vector of shape ({objective.dim},), got {tuple(theta.shape)}")
        self.theta = theta.detach().to(self.device, self.dtype)

    def _product(self, v: Tensor) -> Tensor:
        raise NotImplementedError

    def _matvec(self, v: Tensor) -> Tensor:
        return self._product(v)

    def _matmat(self, V: Tensor) -> Tensor:
        """Vectorised over the columns with `torch.func.vmap` (in chunks); column by column where the model
        does not support vmap (e.g. dropout in train mode) or the products need collectives (a distributed
        objective)."""
        if self.objective.distributed:
            return super()._matmat(V)
        try:
            return vmap(self._product, in_dims=1, out_dims=1, chunk_size=_VMAP_CHUNK)(V)
        except (RuntimeError, NotImplementedError):
            return super()._matmat(V)


class HessianOperator(_ObjectiveOperator):
    """The Hessian H(theta) of an objective's loss, by Hessian-vector products (Pearlmutter 1994).

    Args:
        objective: the `Objective` whose loss f is differentiated.
        theta: the point (flat vector or parameter dict); `None` takes the model's parameters now (copied, so
            later training steps do not change the operator).
        keep_graphs: hold each batch's gradient graph from the first product on, so that every later product is
            one backward pass (`Objective.hvp_function`; None: when the data is one batch in memory).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from tdlab import Objective
        >>> model = nn.Linear(3, 1).double()
        >>> obj = Objective(model, nn.MSELoss(), (torch.randn(8, 3).double(), torch.randn(8, 1).double()))
        >>> H = HessianOperator(obj)
        >>> (H @ torch.ones(obj.dim, dtype=torch.float64)).shape
        torch.Size([4])
    """

    def __init__(
        self,
        objective: Objective,
        theta: Tensor | Mapping[str, Tensor] | None = None,
        keep_graphs: bool | None = None,
    ):
        super().__init__(objective, theta)
        self.keep_graphs = keep_graphs
        self._hvp: Callable[[Tensor], Tensor] | None = None

    def _product(self, v: Tensor) -> Tensor:
        if self._hvp is None:
            self._hvp = self.objective.hvp_function(self.theta, self.keep_graphs)
        return self._hvp(v)


class GGNOperator(_ObjectiveOperator):
    """The generalised Gauss-Newton matrix G(theta) = J^T H_L J of an objective (Schraudolph 2002).

    J is the Jacobian of the model outputs in the parameters and H_L the Hessian of the loss in the outputs;
    G is positive semi-definite for convex losses. Same arguments as `HessianOperator`.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from tdlab import Objective
        >>> model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
        >>> X, y = torch.randn(8, 3, dtype=torch.float64), torch.randint(0, 2, (8,))
        >>> obj = Objective(model, nn.CrossEntropyLoss(), (X, y))
        >>> v = torch.randn(obj.dim, dtype=torch.float64)
        >>> bool(v @ (GGNOperator(obj) @ v) >= 0)
        True
    """

    def _product(self, v: Tensor) -> Tensor:
        return self.objective.ggn_vp(v, self.theta)


def as_operator(
    obj_or_op: Objective | LinearOperator, theta: Tensor | Mapping[str, Tensor] | None = None
) -> LinearOperator:
    """The Hessian operator of an `Objective` at `theta`; a `LinearOperator` is returned as it is.

    Example:
        >>> import torch
        >>> op = MatrixOperator(torch.eye(2))
        >>> as_operator(op) is op
        True
    """
    if isinstance(obj_or_op, LinearOperator):
        if theta is not None:
            raise ValueError("theta: only meaningful when an Objective is given, got a LinearOperator and a theta")
        if obj_or_op.shape[0] != obj_or_op.shape[1]:
            raise ValueError(f"obj: expected a square operator, got shape {obj_or_op.shape}")
        return obj_or_op
    if isinstance(obj_or_op, Objective):
        return HessianOperator(obj_or_op, theta)
    raise TypeError(f"obj: expected a tdlab.Objective or a LinearOperator, got {type(obj_or_op).__name__}")


R = TypeVar("R")


def per_block(
    obj: Objective | LinearOperator,
    blocks: Blocks,
    theta: Tensor | Mapping[str, Tensor] | None,
    measure: Callable[[LinearOperator], R],
) -> dict[str, R]:
    """`measure` applied to the Hessian of each block of parameters, by block name: the diagonal block H[S, S]
    of the Hessian at theta for the coordinates S of the block (`Objective.restricted`), the other parameters
    held at theta. `blocks` is "module" or a mapping from names to selections (`tdlab.oracles.parameter_blocks`).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from tdlab import Objective
        >>> net = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1))
        >>> obj = Objective(net, nn.MSELoss(), (torch.randn(8, 2), torch.randn(8, 1)))
        >>> {name: op.shape for name, op in per_block(obj, "module", None, lambda op: op).items()}
        {'0': (9, 9), '2': (4, 4)}
    """
    if not isinstance(obj, Objective):
        raise TypeError(f"blocks: need an Objective (its parameters), got a {type(obj).__name__}")
    selections = parameter_blocks(obj.model, blocks)
    if isinstance(theta, Tensor):
        theta = unflatten(theta.to(obj.device, obj.dtype), obj.params)
    return {name: measure(HessianOperator(obj.restricted(sel, theta), theta)) for name, sel in selections.items()}


def seeded(generator: torch.Generator | None) -> torch.Generator:
    """The given generator, or a fresh CPU generator with seed 0 (the reproducible default of this package).

    Example:
        >>> seeded(None).initial_seed()
        0
    """
    return torch.Generator().manual_seed(0) if generator is None else generator


def random_vectors(op: LinearOperator, count: int | None, kind: str, generator: torch.Generator) -> Tensor:
    """Random vectors in the operator's domain: Gaussian (`kind="gaussian"`) or Rademacher +-1 entries.

    Shape (n,) when `count` is None, else (n, count). Drawn on the generator's device (so a CPU generator
    gives the same vectors whatever the operator's device) and moved to the operator's device and dtype.

    Example:
        >>> import torch
        >>> v = random_vectors(MatrixOperator(torch.eye(4)), 2, "rademacher", seeded(None))
        >>> v.shape, bool((v.abs() == 1).all())
        (torch.Size([4, 2]), True)
    """
    shape = (op.shape[1],) if count is None else (op.shape[1], count)
    if kind == "gaussian":
        v = torch.randn(shape, generator=generator, device=generator.device, dtype=torch.float64)
    elif kind == "rademacher":
        v = torch.randint(0, 2, shape, generator=generator, device=generator.device).mul_(2).sub_(1)
    else:
        raise ValueError(f"kind: expected one of 'gaussian', 'rademacher', got {kind!r}")
    return v.to(op.device, op.dtype)
