"""Dense Hessian and Gauss-Newton matrices of small models: the ground truth that the iterative routines of
this package are tested against.

The matrix is assembled from its products with the columns of the identity, A = A [e_1 ... e_n], vectorised
over the columns with `torch.func.vmap` (column by column where the model does not allow it). Cost: n products
and n^2 entries of memory, hence a limit on n.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from tdlab.curvature.operators import GGNOperator, HessianOperator, LinearOperator
from tdlab.oracles import Objective


def _dense(op: LinearOperator, max_params: int) -> Tensor:
    n = op.shape[0]
    if n > max_params:
        raise ValueError(
            f"obj: has {n} parameters, above max_params={max_params} (the dense matrix needs n products and "
            "n^2 memory); pass a larger max_params or use the iterative routines"
        )
    return op @ torch.eye(n, device=op.device, dtype=op.dtype)


def exact_hessian(obj: Objective, theta: Tensor | Mapping[str, Tensor] | None = None, max_params: int = 5000) -> Tensor:
    """The n x n Hessian d^2 f / d theta^2 of the objective at theta, by n Hessian-vector products.

    Args:
        obj: the `Objective`.
        theta: the point (flat vector or parameter dict); default the model's current parameters.
        max_params: refuse models with more parameters than this.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from tdlab import Objective
        >>> X, y = torch.randn(20, 3, dtype=torch.float64), torch.randn(20, 1, dtype=torch.float64)
        >>> obj = Objective(nn.Linear(3, 1, bias=False).double(), nn.MSELoss(), (X, y))
        >>> torch.allclose(exact_hessian(obj), 2 * X.T @ X / 20)  # least squares: H = (2/N) X^T X
        True
    """
    return _dense(HessianOperator(obj, theta), max_params)


def exact_ggn(obj: Objective, theta: Tensor | Mapping[str, Tensor] | None = None, max_params: int = 5000) -> Tensor:
    """The n x n generalised Gauss-Newton matrix G = J^T H_L J of the objective at theta, by n GGN-vector
    products (Schraudolph 2002). Same arguments as `exact_hessian`.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from tdlab import Objective
        >>> model = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 1)).double()
        >>> X, y = torch.randn(20, 3, dtype=torch.float64), torch.randn(20, 1, dtype=torch.float64)
        >>> bool(torch.linalg.eigvalsh(exact_ggn(Objective(model, nn.MSELoss(), (X, y)))).min() > -1e-12)
        True
    """
    return _dense(GGNOperator(obj, theta), max_params)
