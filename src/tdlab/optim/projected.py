r"""Projected gradient descent onto convex sets: Euclidean balls, L1 balls, boxes.

To minimise f over a closed convex set C, take a gradient step and project back (Goldstein 1964; Levitin &
Polyak 1966):

.. math::
    w_{t+1} = \Pi_C\bigl(w_t - \eta \nabla f(w_t)\bigr), \qquad \Pi_C(u) = \arg\min_{z \in C} \|z - u\|_2 .

Every iterate lies in C by construction; with eta <= 1/L the method converges to the constrained minimiser at
the same rates as gradient descent (Bubeck 2015, "Convex optimization: algorithms and complexity", Thm. 3.7).
The projections here have closed forms or a sort:

| set | projection |
| --- | --- |
| {||w - c||_2 <= r} | c + (u - c) min(1, r / ||u - c||) |
| {||w||_1 <= r} | soft thresholding at the theta that lands on the sphere (Duchi et al. 2008, Fig. 1) |
| {lower <= w <= upper} | clamp |

Example:
    >>> import torch
    >>> project_l2_ball(torch.tensor([6.0, 8.0]), radius=5.0).tolist()
    [3.0, 4.0]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

from tdlab.optim._base import PerTensorOptimizer
from tdlab.optim._validation import check_nonnegative, check_positive

Projection = Callable[[Tensor], Tensor]


def project_l2_ball(u: Tensor, radius: float, center: Tensor | None = None) -> Tensor:
    r"""Euclidean projection onto the ball :math:`\{w : \|w - c\|_2 \le r\}` (all entries of `u` as one vector).

    .. math:: \Pi(u) = c + (u - c) \min\bigl(1, r / \|u - c\|_2\bigr)

    Example:
        >>> project_l2_ball(torch.tensor([0.5, 0.25]), radius=1.0).tolist()  # inside: unchanged
        [0.5, 0.25]
    """
    check_nonnegative("radius", radius)
    offset = u if center is None else u - center
    norm = torch.linalg.vector_norm(offset)
    scale = torch.clamp(radius / torch.clamp(norm, min=torch.finfo(u.dtype).tiny), max=1.0)
    projected = offset * scale
    return projected if center is None else center + projected


def project_l1_ball(u: Tensor, radius: float) -> Tensor:
    r"""Euclidean projection onto the L1 ball :math:`\{w : \|w\|_1 \le r\}` (Duchi, Shalev-Shwartz, Singer &
    Chandra 2008, "Efficient projections onto the l1-ball", Fig. 1).

    Outside the ball the projection is soft thresholding, sign(u) max(|u| - theta, 0), with theta the threshold
    that lands on the sphere: sort |u| decreasingly as mu_1 >= mu_2 >= ..., let
    rho = max{j : mu_j - (sum_{i<=j} mu_i - r) / j > 0}, then theta = (sum_{i<=rho} mu_i - r) / rho.

    Example:
        >>> project_l1_ball(torch.tensor([2.0, 1.0]), radius=1.0).tolist()
        [1.0, 0.0]
    """
    check_nonnegative("radius", radius)
    a = u.reshape(-1).abs()
    if a.sum() <= radius:
        return u.clone()
    mu = torch.sort(a, descending=True).values
    cumulative = torch.cumsum(mu, 0)
    j = torch.arange(1, a.numel() + 1, device=u.device, dtype=u.dtype)
    rho = int(torch.nonzero(mu - (cumulative - radius) / j > 0).max())
    theta = (cumulative[rho] - radius) / (rho + 1)
    return torch.sign(u) * torch.clamp(u.abs() - theta, min=0.0)


def project_box(u: Tensor, lower: float | Tensor, upper: float | Tensor) -> Tensor:
    """Euclidean projection onto the box {lower <= w <= upper} (coordinate-wise clamp).

    Example:
        >>> project_box(torch.tensor([-2.0, 0.5, 3.0]), -1.0, 1.0).tolist()
        [-1.0, 0.5, 1.0]
    """
    if torch.any(torch.as_tensor(lower) > torch.as_tensor(upper)):
        raise ValueError("lower: expected lower <= upper in every coordinate")
    return torch.clamp(u, min=lower, max=upper)


def projected_gradient_step(w: Tensor, g: Tensor, lr: float, projection: Projection) -> Tensor:
    r"""One step of projected gradient descent: :math:`w_{t+1} = \Pi_C(w_t - \eta\, g_t)`.

    Example:
        >>> from functools import partial
        >>> step = projected_gradient_step(torch.zeros(2), torch.tensor([-4.0, 0.0]), 1.0,
        ...                                partial(project_l2_ball, radius=2.0))
        >>> step.tolist()
        [2.0, 0.0]
    """
    check_positive("lr", lr)
    return projection(w - lr * g)


PROJECTIONS = ("l2_ball", "l1_ball", "box")
"""The projections `ProjectedGD` takes by name (a config's plain values): l2_ball and l1_ball of `radius` around
0, box [`lower`, `upper`]."""


def project(u: Tensor, projection: str | Projection, radius: float, lower: float, upper: float) -> Tensor:
    """`u` projected by a function, or by a named projection (`PROJECTIONS`) with its `radius` or bounds.

    Example:
        >>> project(torch.tensor([2.0, -3.0]), "box", radius=1.0, lower=-1.0, upper=1.0).tolist()
        [1.0, -1.0]
    """
    if callable(projection):
        return projection(u)
    if projection == "box":
        return project_box(u, lower, upper)
    return (project_l2_ball if projection == "l2_ball" else project_l1_ball)(u, radius)


class ProjectedGD(PerTensorOptimizer):
    r"""Projected gradient descent onto a convex set, usable in any training loop.

    .. math::
        &\textbf{input}: \eta \text{ (lr)}, \text{ projection } \Pi_C, \text{ parameters } w \in C \\
        &\textbf{for } t = 1, 2, \dots: \quad w \leftarrow \Pi_C(w - \eta \nabla f(w))

    Goldstein (1964), "Convex programming in Hilbert space"; Levitin & Polyak (1966). The projection acts on
    each parameter tensor separately (e.g. a norm ball per weight matrix). Name it with plain values, as a YAML
    config does (`projection: l2_ball, radius: 1.0`; `projection: l1_ball, radius: ...`; `projection: box,
    lower: -1, upper: 1`), or pass any function tensor -> tensor (e.g. `functools.partial(project_l2_ball,
    radius=r, center=c)`).

    Example:
        >>> w = torch.nn.Parameter(torch.tensor([0.0, 0.0]))
        >>> opt = ProjectedGD([w], lr=1.0, projection="l2_ball", radius=1.0)
        >>> (-(w * torch.tensor([3.0, 4.0])).sum()).backward()
        >>> opt.step()
        >>> [round(x, 6) for x in w.detach().tolist()]
        [0.6, 0.8]
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float,
        projection: str | Projection,
        radius: float = 1.0,
        lower: float = -math.inf,
        upper: float = math.inf,
    ):
        defaults = {"lr": lr, "projection": projection, "radius": radius, "lower": lower, "upper": upper}
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group, validating its `lr` and projection (the defaults' when the group does not set them)."""
        settings = {key: param_group.get(key, value) for key, value in self.defaults.items()}
        check_positive("lr", settings["lr"])
        projection = settings["projection"]
        if not callable(projection) and projection not in PROJECTIONS:
            raise ValueError(
                f"projection: expected one of {', '.join(PROJECTIONS)} or a function tensor -> tensor, "
                f"got {projection!r}"
            )
        check_nonnegative("radius", settings["radius"])
        for bound in ("lower", "upper"):
            if not isinstance(settings[bound], int | float) or math.isnan(settings[bound]):
                raise ValueError(f"{bound}: expected a number, got {settings[bound]!r}")
        if settings["lower"] > settings["upper"]:
            raise ValueError(f"lower: expected lower <= upper = {settings['upper']}, got {settings['lower']}")
        super().add_param_group(param_group)

    def update(self, p: Tensor, grad: Tensor, group: dict[str, Any]) -> Tensor:
        def projection(u: Tensor) -> Tensor:
            return project(u, group["projection"], group["radius"], group["lower"], group["upper"])

        return projected_gradient_step(p, grad, group["lr"], projection)
