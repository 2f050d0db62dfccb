"""Two-dimensional slices of the loss around a point, along filter-normalised random directions.

Li, Xu, Taylor, Studer & Goldstein (2018, "Visualizing the loss landscape of neural nets") plot

    f(alpha, beta) = L(theta + alpha d_1 + beta d_2)

for two random Gaussian directions d_1, d_2 rescaled filter by filter so that each filter of the direction has
the norm of the corresponding filter of the weights,

    d_{i,j} <- d_{i,j} / ||d_{i,j}|| * ||theta_{i,j}||        (filter j of layer i),

which removes the scale invariance of ReLU and normalised networks from the picture: a layer with large weights
is moved by a proportionally large step, so sharpness read off the plot is comparable between networks. A
filter is one output unit of a linear layer (a row of its weight matrix) or one output channel of a
convolution. One-dimensional parameters (biases, normalisation scales) are set to zero in the directions, as in
Li et al.'s plots (`one_dim="zero"`), or copied from the weights (`one_dim="copy"`). Directions along the top
Hessian eigenvectors (unit norm) show the two most curved directions instead; near a minimum the slice then
follows the second-order model L + alpha g.v_1 + beta g.v_2 + (lambda_1 alpha^2 + lambda_2 beta^2) / 2.

Two summaries of a sampled slice say whether it is a bowl: `rising_rays`, whether the loss rises monotonically
along each ray of the grid from its centre (the eight rays along the axes and diagonals), and `slice_curvatures`,
the eigenvalues of the slice's discrete 2 x 2 Hessian at every interior grid point, whose share of points with a
negative eigenvalue (`nonconvex_fraction`) is Li et al.'s measure of non-convexity read off the plotted slice
(they map |lambda_min / lambda_max| of the full Hessian; the 2-D restriction is what the plot shows). Both use
the grid's loss values only, at the grid's own (coarse) spacing: they describe the plotted landscape, not its
infinitesimal curvature.

Example:
    >>> import torch
    >>> reference = {"w": torch.ones(3, 4), "b": torch.ones(3)}
    >>> d = filter_normalize(random_direction(reference, torch.Generator().manual_seed(0)), reference)
    >>> filter_norms(d)["w"].round(decimals=5).tolist(), d["b"].tolist()  # the weights' row norms; bias zero
    ([2.0, 2.0, 2.0], [0.0, 0.0, 0.0])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from tdlab.curvature import hessian_eigs
from tdlab.oracles import Objective
from tdlab.oracles.flat import Params, flatten, unflatten

ONE_DIM = ("zero", "copy")


class PlaneSlice(NamedTuple):
    """Loss on a grid of the plane theta + alpha d_1 + beta d_2.

    Attributes:
        alphas: (m,) float64 coordinates along d_1, on the CPU.
        betas: (p,) float64 coordinates along d_2, on the CPU.
        loss: (m, p) float64 losses, loss[i, j] = L(theta + alphas[i] d_1 + betas[j] d_2), on the CPU.
    """

    alphas: Tensor
    betas: Tensor
    loss: Tensor


def random_direction(reference: Mapping[str, Tensor], generator: torch.Generator | None = None) -> Params:
    """A direction with i.i.d. N(0, 1) entries shaped like `reference` (a parameter dict), drawn on the
    generator's device (CPU by default, so a seed gives the same direction anywhere) and moved to each
    parameter's device and dtype.

    Example:
        >>> import torch
        >>> d = random_direction({"w": torch.zeros(2, 3)}, torch.Generator().manual_seed(0))
        >>> d["w"].shape
        torch.Size([2, 3])
    """
    device = generator.device if generator is not None else torch.device("cpu")
    return {
        name: torch.randn(t.shape, generator=generator, device=device, dtype=t.dtype).to(t.device)
        for name, t in reference.items()
    }


def filter_norms(params: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The norm ||theta_{i,j}|| of every filter j of every parameter i with at least two dimensions: the norm
    over all dimensions but the first (a row of a linear weight, an output channel of a convolution).

    Example:
        >>> import torch
        >>> filter_norms({"w": torch.tensor([[3.0, 4.0], [0.0, 1.0]]), "b": torch.ones(2)})
        {'w': tensor([5., 1.])}
    """
    return {name: t.flatten(1).norm(dim=1) for name, t in params.items() if t.ndim >= 2}


def filter_normalize(direction: Mapping[str, Tensor], reference: Mapping[str, Tensor], one_dim: str = "zero") -> Params:
    """Li et al. (2018)'s filter normalisation: each filter of `direction` rescaled to the norm of the same
    filter of `reference`, d_{i,j} ||theta_{i,j}|| / ||d_{i,j}|| (a zero filter of d stays zero).
    One-dimensional entries are set to zero (`one_dim="zero"`) or to the reference (`"copy"`).

    Example:
        >>> import torch
        >>> out = filter_normalize({"w": torch.tensor([[1.0, 0.0]])}, {"w": torch.tensor([[0.0, -2.0]])})
        >>> out["w"].tolist()
        [[2.0, 0.0]]
    """
    if one_dim not in ONE_DIM:
        raise ValueError(f"one_dim: expected one of 'zero', 'copy', got {one_dim!r}")
    if set(direction) != set(reference):
        raise ValueError(
            f"direction: expected the parameter names of reference {sorted(reference)}, got {sorted(direction)}"
        )
    out: Params = {}
    for name, theta in reference.items():
        d = direction[name]
        if d.shape != theta.shape:
            raise ValueError(f"direction[{name!r}]: expected shape {tuple(theta.shape)}, got {tuple(d.shape)}")
        if theta.ndim <= 1:
            out[name] = torch.zeros_like(theta) if one_dim == "zero" else theta.clone()
            continue
        d_norm = d.flatten(1).norm(dim=1)
        scale = torch.where(d_norm > 0, theta.flatten(1).norm(dim=1) / d_norm.clamp_min(1e-300), 0.0)
        out[name] = d * scale.reshape(-1, *([1] * (theta.ndim - 1)))
    return out


def filter_normalized_direction(
    obj: Objective,
    theta: Tensor | None = None,
    generator: torch.Generator | None = None,
    one_dim: str = "zero",
) -> Tensor:
    """A random Gaussian direction, filter-normalised to the parameters `theta` (default: the model's), as a
    flat vector on the objective's device.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from tdlab import Objective
        >>> obj = Objective(nn.Linear(3, 2), nn.MSELoss(), (torch.randn(8, 3), torch.randn(8, 2)))
        >>> d = filter_normalized_direction(obj, generator=torch.Generator().manual_seed(0))
        >>> d.shape, d[-2:].tolist()  # the bias entries come last and are zero
        (torch.Size([8]), [0.0, 0.0])
    """
    reference = obj.params if theta is None else unflatten(theta.to(obj.device, obj.dtype), obj.params)
    return flatten(filter_normalize(random_direction(reference, generator), reference, one_dim))


def hessian_directions(
    obj: Objective,
    theta: Tensor | None = None,
    k: int = 2,
    tol: float = 1e-8,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """The k largest Hessian eigenvalues at theta and their unit eigenvectors as slice directions, by Lanczos
    (`tdlab.curvature.hessian_eigs`). Returns (eigenvalues (k,), directions (n, k)).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from tdlab import Objective
        >>> X = torch.diag(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
        >>> obj = Objective(nn.Linear(3, 1, bias=False).double(), nn.MSELoss(), (X, torch.zeros(3, 1).double()))
        >>> values, vectors = hessian_directions(obj)  # H = (2/3) X^T X = diag(2/3, 8/3, 6)
        >>> [round(v, 6) for v in values.tolist()], vectors.shape
        ([6.0, 2.666667], torch.Size([3, 2]))
    """
    result = hessian_eigs(obj, k=k, which="LA", tol=tol, theta=theta, generator=generator)
    return result.eigenvalues, result.eigenvectors


def loss_plane(
    obj: Objective,
    theta: Tensor,
    d1: Tensor,
    d2: Tensor,
    alphas: Sequence[float] | Tensor,
    betas: Sequence[float] | Tensor,
) -> PlaneSlice:
    """The loss L(theta + alpha d1 + beta d2) on the grid alphas x betas (one full-data evaluation per point).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from tdlab import Objective
        >>> X = torch.eye(2, dtype=torch.float64)
        >>> obj = Objective(nn.Linear(2, 1, bias=False).double(), nn.MSELoss(), (X, torch.zeros(2, 1).double()))
        >>> e1, e2 = torch.eye(2, dtype=torch.float64)
        >>> plane = loss_plane(obj, torch.zeros(2).double(), e1, e2, [-1.0, 0.0, 1.0], [0.0, 2.0])
        >>> plane.loss.tolist()  # L = (a^2 + b^2) / 2
        [[0.5, 2.5], [0.0, 2.0], [0.5, 2.5]]
    """
    grids = []
    for name, values in (("alphas", alphas), ("betas", betas)):
        grid = torch.as_tensor(values, dtype=torch.float64).reshape(-1).cpu()
        if grid.numel() == 0 or not torch.isfinite(grid).all():
            raise ValueError(f"{name}: expected a non-empty sequence of finite numbers, got {values!r}")
        grids.append(grid)
    for name, vector in (("theta", theta), ("d1", d1), ("d2", d2)):
        if vector.shape != (obj.dim,):
            raise ValueError(f"{name}: expected a flat vector of shape ({obj.dim},), got {tuple(vector.shape)}")
    theta, d1, d2 = (v.to(obj.device, obj.dtype) for v in (theta, d1, d2))
    loss = torch.empty(grids[0].numel(), grids[1].numel(), dtype=torch.float64)
    for i, a in enumerate(grids[0].tolist()):
        for j, b in enumerate(grids[1].tolist()):
            loss[i, j] = float(obj.value(theta + a * d1 + b * d2))
    return PlaneSlice(grids[0], grids[1], loss)


def _grid(loss: Tensor | object) -> Tensor:
    if isinstance(loss, Tensor):
        grid = loss.detach().to("cpu", torch.float64)
    else:
        grid = torch.tensor(np.array(loss, dtype=np.float64))  # a copy: stored metrics are read-only arrays
    if grid.ndim != 2 or min(grid.shape) < 3 or not torch.isfinite(grid).all():
        raise ValueError(f"loss: expected a finite 2-D grid of at least 3 x 3 values, got shape {tuple(grid.shape)}")
    return grid


def slice_curvatures(loss: Tensor | object, step: float = 1.0) -> tuple[Tensor, Tensor]:
    """The eigenvalues (lambda_min, lambda_max) of the discrete Hessian of a sampled slice at every interior grid
    point: central second differences [L(i+1, j) - 2 L(i, j) + L(i-1, j)] / h^2 along each axis and the mixed
    difference [L(i+1, j+1) - L(i+1, j-1) - L(i-1, j+1) + L(i-1, j-1)] / 4h^2, for a square grid of spacing
    h = `step` (their signs, and ratios, do not depend on h). Returns two (m - 2, p - 2) float64 tensors.

    Example:
        >>> import torch
        >>> a = torch.arange(-2.0, 3.0)
        >>> low, high = slice_curvatures(a[:, None] ** 2 - a[None, :] ** 2 / 2)  # a saddle: curvatures 2 and -1
        >>> low.unique().tolist(), high.unique().tolist()
        ([-1.0], [2.0])
    """
    if not step > 0:
        raise ValueError(f"step: expected a positive number, got {step!r}")
    L = _grid(loss)
    centre = L[1:-1, 1:-1]
    xx = (L[2:, 1:-1] - 2 * centre + L[:-2, 1:-1]) / step**2
    yy = (L[1:-1, 2:] - 2 * centre + L[1:-1, :-2]) / step**2
    xy = (L[2:, 2:] - L[2:, :-2] - L[:-2, 2:] + L[:-2, :-2]) / (4 * step**2)
    mean, radius = (xx + yy) / 2, torch.hypot((xx - yy) / 2, xy)
    return mean - radius, mean + radius


def nonconvex_fraction(loss: Tensor | object) -> float:
    """The share of interior grid points of a sampled slice where its discrete Hessian (`slice_curvatures`) has a
    negative eigenvalue: 0 for a convex slice, about 1/2 for a rough one (Li et al. 2018's non-convexity, read
    off the plotted slice).

    Example:
        >>> import torch
        >>> a = torch.arange(-2.0, 3.0)
        >>> nonconvex_fraction(a[:, None] ** 2 + a[None, :] ** 2), nonconvex_fraction(a[:, None] ** 2 - a[None, :] ** 2)
        (0.0, 1.0)
    """
    low, _ = slice_curvatures(loss)
    return float((low < 0).double().mean())


RAYS = ((1, 0), (1, 1), (0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1))
"""The eight grid rays from the centre, as (row, column) steps: along the axes and the diagonals."""


def rising_rays(loss: Tensor | object) -> Tensor:
    """Whether the loss rises strictly at every grid step from the centre of a square, odd-sized sampled slice to
    its edge, along each of the eight rays `RAYS` (axes and diagonals): a bowl around the centre rises along all
    of them. Returns a (8,) bool tensor.

    Example:
        >>> import torch
        >>> a = torch.arange(-2.0, 3.0)
        >>> rising_rays(a[:, None] ** 2 + a[None, :] ** 2).all().item()
        True
        >>> rising_rays(a[:, None] ** 2 - 0.1 * a[None, :] ** 2).tolist()  # falls along the second axis
        [True, True, False, True, True, True, False, True]
    """
    L = _grid(loss)
    m = L.shape[0]
    if L.shape[1] != m or m % 2 == 0:
        raise ValueError(f"loss: expected a square grid with an odd number of points per axis, got {tuple(L.shape)}")
    c = (m - 1) // 2
    steps = torch.arange(c + 1)
    out = []
    for di, dj in RAYS:
        ray = L[c + di * steps, c + dj * steps]
        out.append(bool((ray[1:] > ray[:-1]).all()))
    return torch.tensor(out)
