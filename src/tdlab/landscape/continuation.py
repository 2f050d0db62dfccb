"""Critical points of a loss followed along a family of objectives down to the loss itself (homotopy continuation).

A search for critical points of a network's loss L by minimising ||grad L||^2 (`find_critical_point`) stalls in
the flat regions of the loss, where the Hessian is singular and the gradient has a component in its null space
(gradient-flat points, Frye et al. 2021). Adding a term that lifts the flat directions, e.g. an L2 penalty
L_s = L + s/2 ||theta||^2, makes the searches converge, but to critical points of L_s, not of L: there the gradient
of L is -s theta, and the Hessian of L is that of L_s minus s I, so a point that is a minimum for L_s can be a
saddle of L or no critical point of it at all. Continuation turns a critical point theta_s of L_s into one of L by
following the branch theta(s) of solutions of grad L_s(theta) = 0 as s decreases to 0 (Allgower & Georg 1990,
Introduction to Numerical Continuation Methods, ch. 2), predictor-corrector:

- predictor: the tangent of the branch, d theta / ds = -H_s^{-1} d(grad L_s)/ds (differentiating
  grad L_s(theta(s)) = 0; the family is assumed affine in s, L_s = L + s P, so that d(grad L_s)/ds =
  (grad L_s - grad L_0)(theta) / s exactly), its move cut to at most `radius` (the tangent is huge along the
  near-flat directions of H_s, and infinite at a fold);
- corrector: Levenberg-Marquardt on grad L_s' = 0 from the predicted point (`find_critical_point`), a few
  iterations, with s' = s / q. An easy corrector (at most half its iterations) doubles log q for the next step
  (up to q = `factor`), a failed one halves it; when q falls below 1 + `min_step`, or after `max_steps`
  correctors, the branch is lost (it meets a fold, where two critical points merge and vanish, runs away, or
  crawls): the result says so.

Below `floor` the last step goes to s = 0, with more iterations (the limit may be a degenerate critical point of
L, towards which Newton converges only linearly); if it fails, the branch is lost too (there is no critical
point of L where the branch points, e.g. it runs away to infinity as s -> 0).

Example:
    >>> import torch
    >>> from torch import nn
    >>> from tdlab import Objective
    >>> A = torch.diag(torch.tensor([2.0, -1.0], dtype=torch.float64))
    >>> b = torch.tensor([1.0, 1.0], dtype=torch.float64)
    >>> class Quadratic(nn.Module):  # 1/2 theta^T (A + s I) theta - b^T theta, a saddle
    ...     def __init__(self, s):
    ...         super().__init__()
    ...         self.s, self.theta = s, nn.Parameter(torch.zeros(2, dtype=torch.float64))
    ...     def forward(self, x):
    ...         return 0.5 * self.theta @ (A + self.s * torch.eye(2, dtype=torch.float64)) @ self.theta - b @ self.theta
    >>> family = lambda s: Objective(Quadratic(s), lambda out, y: out.mean(), (torch.zeros(1, 1), torch.zeros(1)))
    >>> start = find_critical_point(family(0.5), torch.zeros(2, dtype=torch.float64))  # (A + 0.5 I)^-1 b
    >>> path = follow_critical_point(family, start, 0.5)
    >>> path.point.converged, [round(float(t), 6) for t in path.point.theta]
    (True, [0.5, -1.0])
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from tdlab.curvature import exact_hessian
from tdlab.landscape.critical import CriticalPoint, find_critical_point
from tdlab.oracles import Objective


class Continuation(NamedTuple):
    """Where a continuation ended.

    Attributes:
        point: the last critical point found: of the target objective (s = 0) when `reached`, else of the last s
            whose search converged (the start when none did).
        reached: whether the target was reached (`point.converged` at s = 0).
        path: (s, Levenberg-Marquardt iterations, converged) of every search, in order.
    """

    point: CriticalPoint
    reached: bool
    path: list[tuple[float, int, bool]]


def follow_critical_point(
    family: Callable[[float], Objective],
    point: CriticalPoint,
    start: float,
    radius: float = 0.1,
    factor: float = 10.0,
    floor: float = 1e-6,
    min_step: float = 1e-3,
    max_iter: int = 8,
    final_iter: int = 50,
    max_steps: int = 100,
    tol: float = 1e-10,
) -> Continuation:
    """Follow the critical point `point` of `family(start)` to one of `family(0.0)` (module docstring).

    Args:
        family: s -> the objective L + s P at s (e.g. P = ||theta||^2 / 2, weight decay); `family(0.0)` is L.
        point: a converged critical point of `family(start)` (`find_critical_point`).
        start: the s of `point` (positive).
        radius: the largest predicted move of a step, in the units of theta.
        factor: the longest step shrinks s by this factor.
        floor: a step that would end below floor goes to s = 0.
        min_step: give up when a step would shrink s by a factor below 1 + min_step.
        max_iter: Levenberg-Marquardt iterations of a corrector; `final_iter` for the one at s = 0.
        max_steps: give up after this many correctors (a branch that crawls, e.g. one running away).
        tol: a corrector has converged when ||grad L_s|| <= tol.
    """
    if not start > 0:
        raise ValueError(f"start: expected a positive s, got {start!r}")
    if not (radius > 0 and factor > 1 and floor > 0 and 0 < min_step < 1):
        raise ValueError(
            f"radius, factor, floor, min_step: expected radius > 0, factor > 1, floor > 0, 0 < min_step < 1, "
            f"got {radius!r}, {factor!r}, {floor!r}, {min_step!r}"
        )
    if not point.converged:
        raise ValueError("point: expected a converged critical point of family(start)")
    target_loss = family(0.0)
    s, path, ratio = start, [], factor
    while s > 0:
        tangent = _tangent(family(s), target_loss, point.theta, s)
        while True:
            if ratio < 1 + min_step or len(path) >= max_steps:
                return Continuation(point, False, path)
            target = s / ratio if s / ratio >= floor else 0.0
            move = (target - s) * tangent
            norm = float(move.norm())
            if not norm <= radius:  # also inf / nan at a fold: a bounded move along the tangent's direction
                move = move * (radius / norm) if math.isfinite(norm) else torch.zeros_like(move)
            candidate = find_critical_point(
                family(target),
                point.theta + move,
                max_iter=final_iter if target == 0.0 else max_iter,
                tol=tol,
                damping=1e-12,  # from a close prediction: Newton steps, also along the flat directions
            )
            path.append((target, candidate.iterations, candidate.converged))
            if candidate.converged:
                break
            if target == 0.0:  # the limit is not where the branch points (it runs away, or is too degenerate)
                return Continuation(point, False, path)
            ratio = math.sqrt(ratio)
        if candidate.iterations <= max_iter // 2:  # an easy step: try a longer one next
            ratio = min(ratio**2, factor)
        s, point = target, candidate
    return Continuation(point, True, path)


def _tangent(objective: Objective, target: Objective, theta: Tensor, s: float) -> Tensor:
    """d theta / ds of the branch grad L_s(theta(s)) = 0 at theta: -H_s^{-1} (grad L_s - grad L_0)(theta) / s,
    inf where H_s is singular (a fold)."""
    derivative = (objective.value_and_gradient(theta)[1] - target.value_and_gradient(theta)[1]) / s
    values, vectors = torch.linalg.eigh(exact_hessian(objective, theta))
    if not bool((values != 0).all()):
        return torch.full_like(theta, math.inf)
    return -vectors @ ((vectors.T @ derivative) / values)
