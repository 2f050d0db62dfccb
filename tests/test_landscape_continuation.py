"""tdlab.landscape.continuation: critical points followed along L + s P down to s = 0, against branches known in
closed form: a quadratic saddle (reached), a branch that runs to infinity and one that ends at a fold (both lost,
never reported as reached)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from tdlab import Objective
from tdlab.landscape import find_critical_point, follow_critical_point

F64 = torch.float64


class _Scalar(nn.Module):
    """A module whose output is f(theta) + s p(theta) of its own parameter vector (the input is ignored)."""

    def __init__(self, f, p, s, dim):
        super().__init__()
        self.f, self.p, self.s = f, p, s
        self.theta = nn.Parameter(torch.zeros(dim, dtype=F64))

    def forward(self, x):
        return self.f(self.theta) + self.s * self.p(self.theta)


def _family(f, p, dim):
    data = (torch.zeros(1, 1, dtype=F64), torch.zeros(1, dtype=F64))
    return lambda s: Objective(_Scalar(f, p, s, dim), lambda out, y: out, data)


def _start(family, s, theta):
    point = find_critical_point(family(s), torch.tensor(theta, dtype=F64), tol=1e-12)
    assert point.converged
    return point


def test_a_saddle_of_a_quadratic_is_followed_to_the_unpenalised_one():
    # L = 1/2 theta^T A theta - b^T theta, P = |theta|^2 / 2: the branch is (A + s I)^{-1} b, a saddle for s < 1
    A = torch.tensor([[3.0, 1.0, 0.0], [1.0, 2.0, 0.0], [0.0, 0.0, -1.0]], dtype=F64)
    b = torch.tensor([1.0, -1.0, 0.5], dtype=F64)
    family = _family(lambda t: 0.5 * t @ A @ t - b @ t, lambda t: 0.5 * t @ t, 3)
    start = _start(family, 0.5, [0.0, 0.0, 0.0])
    torch.testing.assert_close(start.theta, torch.linalg.solve(A + 0.5 * torch.eye(3, dtype=F64), b))
    path = follow_critical_point(family, start, 0.5, tol=1e-12)
    assert path.reached and path.point.converged and path.path[-1][0] == 0.0
    torch.testing.assert_close(path.point.theta, torch.linalg.solve(A, b), rtol=0, atol=1e-11)
    assert path.point.index == pytest.approx(1 / 3)  # eigenvalues of A: two positive, -1
    s = [step for step, _, converged in path.path if converged]
    assert s == sorted(s, reverse=True)  # s only decreases


def test_a_branch_that_runs_to_infinity_is_lost():
    # L = sqrt(1 + theta^2) - 2 theta has no critical point (its slope stays below -1); with s theta^2 / 2 the
    # branch runs off as s -> 0 (theta ~ 1 / s)
    family = _family(lambda t: (torch.sqrt(1 + t**2) - 2 * t).sum(), lambda t: 0.5 * t @ t, 1)
    start = _start(family, 0.1, [1.0])
    theta = float(start.theta)
    assert theta / math.sqrt(1 + theta**2) - 2 + 0.1 * theta == pytest.approx(0.0, abs=1e-12)
    path = follow_critical_point(family, start, 0.1, tol=1e-12)
    assert not path.reached and path.point.converged  # the last point is a critical point of some L_s, s > 0
    assert path.path[-1][0] == 0.0 and not path.path[-1][2]  # lost at the jump to s = 0, which finds nothing
    last = [step for step, _, converged in path.path if converged][-1]
    theta = float(path.point.theta)
    assert 0 < last < 1.01e-6 and theta > 0.5 / last  # followed down to the floor, far out along theta ~ 1 / s
    assert abs(theta / math.sqrt(1 + theta**2) - 2 + last * theta) <= 1e-12
    crawl = follow_critical_point(family, start, 0.1, max_steps=5, tol=1e-12)  # lost after 5 correctors
    assert not crawl.reached and len(crawl.path) == 5


def test_a_branch_that_ends_at_a_fold_is_lost_there():
    # L = theta^3 / 3 + c theta, P = -theta: grad L_s = theta^2 + c - s has the roots +-sqrt(s - c), which merge and
    # vanish at s = c (a fold)
    c = 0.25
    family = _family(lambda t: (t**3 / 3 + c * t).sum(), lambda t: -t.sum(), 1)
    start = _start(family, 1.0, [1.0])
    assert float(start.theta) == pytest.approx(math.sqrt(0.75))
    path = follow_critical_point(family, start, 1.0, tol=1e-12)
    assert not path.reached
    last = [step for step, _, converged in path.path if converged][-1]
    assert c < last < c + 0.01  # up to the fold
    theta = float(path.point.theta)
    assert theta > 0 and abs(theta**2 + c - last) <= 1e-12  # on the branch it started on, +sqrt(s - c)


def test_follow_critical_point_refuses_bad_input():
    family = _family(lambda t: 0.5 * t @ t, lambda t: 0.5 * t @ t, 2)
    start = _start(family, 1.0, [0.1, 0.2])
    with pytest.raises(ValueError, match="start: expected a positive s"):
        follow_critical_point(family, start, 0.0)
    with pytest.raises(ValueError, match="radius, factor, floor, min_step"):
        follow_critical_point(family, start, 1.0, min_step=1.5)
    unconverged = start._replace(converged=False)
    with pytest.raises(ValueError, match="point: expected a converged critical point"):
        follow_critical_point(family, unconverged, 1.0)
