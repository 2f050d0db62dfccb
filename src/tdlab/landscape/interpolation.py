"""One-dimensional slices of the loss: the straight path between two parameter vectors.

Goodfellow, Vinyals & Saxe (2015, "Qualitatively characterizing neural network optimization problems") follow
the loss along

    theta(alpha) = (1 - alpha) theta_a + alpha theta_b,

from an initialisation theta_a to the trained theta_b (alpha in [0, 1], and beyond to see the valley's walls),
and find that it usually decreases monotonically. Along the same path between two trained networks, the loss
barrier (Frankle et al. 2020, "Linear mode connectivity and the lottery ticket hypothesis"; Entezari et al.
2022) is the largest excess of the loss over the chord between the end points,

    B = max_{alpha in [0, 1]} L(theta(alpha)) - [(1 - alpha) L(theta_a) + alpha L(theta_b)],

zero when the two minima are linearly connected. The path's second derivative is the curvature of the loss in
the direction d = theta_b - theta_a,

    d^2/dalpha^2 L(theta(alpha)) = d^T H(theta(alpha)) d,

which one Hessian-vector product gives, and a central second difference measures.

Example:
    >>> import torch
    >>> a, b = torch.zeros(2), torch.ones(2)
    >>> interpolate(a, b, 0.25).tolist()
    [0.25, 0.25]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from tdlab.data import accuracy
from tdlab.oracles import Objective, unflatten


class PathProfile(NamedTuple):
    """Loss (and accuracy) along a straight path.

    Attributes:
        alphas: (m,) float64 path coordinates, on the CPU.
        loss: (m,) float64 losses L(theta(alpha)), on the CPU.
        accuracy: (m,) float64 accuracies, or None when not asked for.
    """

    alphas: Tensor
    loss: Tensor
    accuracy: Tensor | None


def _check_pair(theta_a: Tensor, theta_b: Tensor) -> None:
    for name, theta in (("theta_a", theta_a), ("theta_b", theta_b)):
        if not isinstance(theta, Tensor) or theta.ndim != 1:
            raise ValueError(
                f"{name}: expected a flat parameter vector (1-D tensor), got {getattr(theta, 'shape', theta)}"
            )
    if theta_a.shape != theta_b.shape:
        raise ValueError(f"theta_b: expected the shape of theta_a {tuple(theta_a.shape)}, got {tuple(theta_b.shape)}")


def _as_alphas(alphas: Sequence[float] | Tensor) -> Tensor:
    values = torch.as_tensor(alphas, dtype=torch.float64).reshape(-1).cpu()
    if values.numel() == 0 or not torch.isfinite(values).all():
        raise ValueError(f"alphas: expected a non-empty sequence of finite numbers, got {alphas!r}")
    return values


def interpolate(theta_a: Tensor, theta_b: Tensor, alpha: float) -> Tensor:
    """The point (1 - alpha) theta_a + alpha theta_b of the straight path (alpha outside [0, 1] extrapolates).

    Example:
        >>> import torch
        >>> interpolate(torch.tensor([0.0, 2.0]), torch.tensor([1.0, 0.0]), 1.5).tolist()
        [1.5, -1.0]
    """
    _check_pair(theta_a, theta_b)
    return theta_a + float(alpha) * (theta_b - theta_a)


def path_profile(
    obj: Objective,
    theta_a: Tensor,
    theta_b: Tensor,
    alphas: Sequence[float] | Tensor,
    with_accuracy: bool = False,
) -> PathProfile:
    """The loss L(theta(alpha)) of `obj` at each alpha, and its classification accuracy when asked.

    Accuracy is the fraction of the objective's examples whose arg-max output is their label
    (`tdlab.data.accuracy`); it needs integer class targets.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from tdlab import Objective
        >>> X, y = torch.randn(16, 3), torch.randint(0, 2, (16,))
        >>> obj = Objective(nn.Linear(3, 2), nn.CrossEntropyLoss(), (X, y))
        >>> theta = obj.flat_parameters()
        >>> profile = path_profile(obj, 0 * theta, theta, [0.0, 0.5, 1.0], with_accuracy=True)
        >>> round(profile.loss[0].item(), 4)  # zero weights: uniform prediction, loss log 2
        0.6931
    """
    _check_pair(theta_a, theta_b)
    values = _as_alphas(alphas)
    if with_accuracy and next(iter(obj.data))[1].is_floating_point():
        raise ValueError("with_accuracy: needs integer class targets, the objective has floating targets")
    theta_a = theta_a.to(obj.device, obj.dtype)
    direction = theta_b.to(obj.device, obj.dtype) - theta_a
    losses, accuracies = [], []
    for alpha in values.tolist():
        theta = theta_a + alpha * direction
        if with_accuracy:
            loss, right = _loss_and_accuracy(obj, theta)
            losses.append(loss)
            accuracies.append(right)
        else:
            losses.append(float(obj.value(theta)))
    accuracy_tensor = torch.tensor(accuracies, dtype=torch.float64) if with_accuracy else None
    return PathProfile(values, torch.tensor(losses, dtype=torch.float64), accuracy_tensor)


def _loss_and_accuracy(obj: Objective, theta: Tensor) -> tuple[float, float]:
    """The loss and the accuracy at `theta` from one forward pass per batch, each batch weighted by its size
    (`obj.value` and `obj.average(accuracy)` give the same numbers with a pass each)."""
    params = unflatten(theta, obj.params)
    total, count = torch.zeros(2, dtype=torch.float64), 0
    with torch.no_grad():
        for inputs, targets in obj.batches():
            outputs = obj.outputs(params, inputs)
            n = targets.shape[0]
            total += n * torch.tensor(
                [float(obj.loss_fn(outputs, targets)), accuracy(outputs, targets)], dtype=torch.float64
            )
            count += n
    loss, right = (total / count).tolist()
    return loss, right


def _chord_excess(alphas: Tensor, losses: Tensor) -> Tensor:
    alphas, losses = _as_alphas(alphas), torch.as_tensor(losses, dtype=torch.float64).reshape(-1).cpu()
    if losses.shape != alphas.shape:
        raise ValueError(f"losses: expected one loss per alpha ({alphas.numel()}), got {losses.numel()}")
    at = {round(a, 12): i for i, a in enumerate(alphas.tolist())}
    if 0.0 not in at or 1.0 not in at:
        raise ValueError("alphas: expected the end points 0 and 1 among the path coordinates")
    inside = (alphas >= 0) & (alphas <= 1)
    chord = (1 - alphas) * losses[at[0.0]] + alphas * losses[at[1.0]]
    return (losses - chord)[inside]


def barrier_height(alphas: Sequence[float] | Tensor, losses: Sequence[float] | Tensor) -> float:
    """The loss barrier max_{alpha in [0,1]} L(alpha) - [(1 - alpha) L(0) + alpha L(1)] of a sampled path
    (Frankle et al. 2020; Entezari et al. 2022); 0 when the loss never rises above the chord. `alphas` must
    contain 0 and 1; points outside [0, 1] are ignored. A non-finite loss inside [0, 1] gives inf.

    Example:
        >>> barrier_height([0.0, 0.5, 1.0], [1.0, 3.0, 1.0])
        2.0
        >>> barrier_height([0.0, 0.5, 1.0], [2.0, 1.0, 0.0])
        0.0
    """
    excess = _chord_excess(torch.as_tensor(alphas), torch.as_tensor(losses))
    if not torch.isfinite(excess).all():
        return float("inf")
    return max(float(excess.max()), 0.0)


def largest_bump(losses: Sequence[float] | Tensor) -> float:
    """The largest rise of the loss along the path in the order given, max_{i < j} (L_j - L_i); 0 when the
    sequence never increases (the monotone decrease of Goodfellow et al. 2015). inf if a loss is non-finite.

    Example:
        >>> largest_bump([3.0, 1.0, 2.5, 0.5])
        1.5
        >>> largest_bump([3.0, 2.0, 1.0])
        0.0
    """
    if isinstance(losses, Tensor):
        values = losses.detach().to("cpu", torch.float64).reshape(-1)
    else:  # a copy: arrays of stored metrics are read-only, which torch warns about
        values = torch.tensor(np.array(losses, dtype=np.float64)).reshape(-1)
    if values.numel() == 0:
        raise ValueError("losses: expected a non-empty sequence")
    if not torch.isfinite(values).all():
        return float("inf")
    running_min = torch.cummin(values, dim=0).values
    return max(float((values - running_min).max()), 0.0)


def is_monotone_decreasing(losses: Sequence[float] | Tensor, tolerance: float = 0.0) -> bool:
    """Whether the loss never rises by more than `tolerance` along the path: largest_bump <= tolerance.

    Example:
        >>> is_monotone_decreasing([3.0, 2.0, 2.0, 1.0]), is_monotone_decreasing([1.0, 1.1], tolerance=0.05)
        (True, False)
    """
    if not tolerance >= 0:
        raise ValueError(f"tolerance: expected a non-negative number, got {tolerance!r}")
    return largest_bump(losses) <= tolerance


def directional_curvature(obj: Objective, theta: Tensor, direction: Tensor) -> float:
    """d^T H(theta) d, the second derivative of the loss along the line theta + t d at t = 0, from one
    Hessian-vector product (Pearlmutter 1994).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from tdlab import Objective
        >>> X = torch.eye(2, dtype=torch.float64)
        >>> obj = Objective(nn.Linear(2, 1, bias=False).double(), nn.MSELoss(), (X, torch.zeros(2, 1).double()))
        >>> directional_curvature(obj, torch.zeros(2).double(), torch.tensor([1.0, 1.0]).double())  # H = I
        2.0
    """
    direction = direction.to(obj.device, obj.dtype)
    return float(direction @ obj.hvp(direction, theta.to(obj.device, obj.dtype)))


def second_difference(obj: Objective, theta: Tensor, direction: Tensor, step: float) -> float:
    """The central second difference [L(theta + h d) - 2 L(theta) + L(theta - h d)] / h^2 of the loss along d,
    h = `step`: d^T H d + h^2/12 L''''(theta) + O(h^4) for a smooth loss (Taylor), up to rounding of order
    eps_machine * L / h^2 (use float64).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from tdlab import Objective
        >>> X = torch.eye(2, dtype=torch.float64)
        >>> obj = Objective(nn.Linear(2, 1, bias=False).double(), nn.MSELoss(), (X, torch.zeros(2, 1).double()))
        >>> round(second_difference(obj, torch.zeros(2).double(), torch.ones(2).double(), 0.1), 10)
        2.0
    """
    if not step > 0:
        raise ValueError(f"step: expected a positive number, got {step!r}")
    theta = theta.to(obj.device, obj.dtype)
    direction = direction.to(obj.device, obj.dtype)
    plus, centre, minus = (float(obj.value(theta + s * step * direction)) for s in (1.0, 0.0, -1.0))
    return (plus - 2.0 * centre + minus) / step**2
