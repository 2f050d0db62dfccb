"""Two-dimensional test functions of the optimisation lectures, with closed-form gradients and Hessians.

Each function takes points of shape (..., 2) (one point or a whole grid, for contour plots) and returns values
of shape (...), gradients of shape (..., 2) and Hessians of shape (..., 2, 2), in the dtype and on the device of
its input. The closed forms make a step cost a handful of tensor operations, so thousands of optimiser steps on
a plane take well under a second; `tests/test_optim.py` checks them against automatic differentiation.

| function | formula | minimisers | f* |
| --- | --- | --- | --- |
| `ElongatedQuadratic(kappa)` | (x^2 + kappa y^2) / 2 | (0, 0) | 0 |
| `Rosenbrock(a, b)` | (a - x)^2 + b (y - x^2)^2 (Rosenbrock 1960) | (a, a^2) | 0 |
| `Beale()` | sum_{i=1}^3 (c_i - x + x y^i)^2, c = (1.5, 2.25, 2.625) (Beale 1958) | (3, 1/2) | 0 |
| `Saddle()` | x^2 - y^2 | none: (0, 0) is a saddle | unbounded |

Example:
    >>> import torch
    >>> f = Rosenbrock()
    >>> f.value(torch.tensor([1.0, 1.0])).item(), f.gradient(torch.tensor([1.0, 1.0])).abs().max().item()
    (0.0, 0.0)
    >>> sorted(TEST_FUNCTIONS)
    ['beale', 'quadratic', 'rosenbrock', 'saddle']
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor


def _xy(w: Tensor) -> tuple[Tensor, Tensor]:
    if w.shape[-1:] != (2,):
        raise ValueError(f"w: expected a tensor of shape (..., 2), got shape {tuple(w.shape)}")
    return w[..., 0], w[..., 1]


def _matrix(a: Tensor, b: Tensor, c: Tensor) -> Tensor:
    """The symmetric 2 x 2 matrices [[a, b], [b, c]], batched."""
    return torch.stack([torch.stack([a, b], -1), torch.stack([b, c], -1)], -2)


class TestFunction(ABC):
    """A function of the plane with its gradient, Hessian, critical points and a plotting window.

    Attributes:
        name: short identifier (the key in `TEST_FUNCTIONS`).
        minimizers: the global minimisers (empty when the function is unbounded below).
        saddles: the saddle points worth marking on a plot.
        start: the customary starting point of the lectures' figures.
        xlim, ylim: the plotting window.
    """

    __test__ = False  # not a pytest test class
    name: str = ""
    minimizers: tuple[tuple[float, float], ...] = ()
    saddles: tuple[tuple[float, float], ...] = ()
    start: tuple[float, float] = (0.0, 0.0)
    xlim: tuple[float, float] = (-1.0, 1.0)
    ylim: tuple[float, float] = (-1.0, 1.0)

    @abstractmethod
    def value(self, w: Tensor) -> Tensor:
        """f(w) for w of shape (..., 2)."""

    @abstractmethod
    def gradient(self, w: Tensor) -> Tensor:
        """grad f(w), shape (..., 2)."""

    @abstractmethod
    def hessian(self, w: Tensor) -> Tensor:
        """Hessian of f at w, shape (..., 2, 2)."""

    def hvp(self, w: Tensor, v: Tensor) -> Tensor:
        """Hessian-vector product H(w) v."""
        return (self.hessian(w) @ v.unsqueeze(-1)).squeeze(-1)

    @property
    def minimum(self) -> float | None:
        """The minimum value f*, or None when f is unbounded below."""
        if not self.minimizers:
            return None
        return float(self.value(torch.tensor(self.minimizers[0], dtype=torch.float64)))

    def grid(self, n: int = 200, dtype: torch.dtype = torch.float64) -> tuple[Tensor, Tensor, Tensor]:
        """(X, Y, f(X, Y)) on an n x n grid over the plotting window, for contour plots."""
        xs = torch.linspace(*self.xlim, n, dtype=dtype)
        ys = torch.linspace(*self.ylim, n, dtype=dtype)
        X, Y = torch.meshgrid(xs, ys, indexing="xy")
        return X, Y, self.value(torch.stack([X, Y], -1))

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class ElongatedQuadratic(TestFunction):
    """f(x, y) = (x^2 + kappa y^2) / 2: condition number kappa, minimiser (0, 0).

    Example:
        >>> ElongatedQuadratic(kappa=10.0).hessian(torch.zeros(2)).diag().tolist()
        [1.0, 10.0]
    """

    name = "quadratic"
    minimizers = ((0.0, 0.0),)
    start = (-4.0, 1.0)
    xlim = (-4.5, 4.5)
    ylim = (-1.5, 1.5)

    def __init__(self, kappa: float = 10.0):
        if not kappa >= 1:
            raise ValueError(f"kappa: expected a condition number >= 1, got {kappa}")
        self.kappa = kappa

    def value(self, w: Tensor) -> Tensor:
        x, y = _xy(w)
        return 0.5 * (x**2 + self.kappa * y**2)

    def gradient(self, w: Tensor) -> Tensor:
        x, y = _xy(w)
        return torch.stack([x, self.kappa * y], -1)

    def hessian(self, w: Tensor) -> Tensor:
        x, _ = _xy(w)
        one = torch.ones_like(x)
        return _matrix(one, 0 * one, self.kappa * one)

    def __repr__(self) -> str:
        return f"ElongatedQuadratic(kappa={self.kappa:g})"


class Rosenbrock(TestFunction):
    """f(x, y) = (a - x)^2 + b (y - x^2)^2 (Rosenbrock 1960): a curved valley, minimiser (a, a^2).

    Example:
        >>> Rosenbrock().value(torch.tensor([-1.2, 1.0])).item()
        24.2...
    """

    name = "rosenbrock"
    start = (-1.2, 1.0)
    xlim = (-2.0, 2.0)
    ylim = (-1.0, 3.0)

    def __init__(self, a: float = 1.0, b: float = 100.0):
        if not b > 0:
            raise ValueError(f"b: expected a positive valley steepness, got {b}")
        self.a, self.b = a, b
        self.minimizers = ((a, a * a),)

    def value(self, w: Tensor) -> Tensor:
        x, y = _xy(w)
        return (self.a - x) ** 2 + self.b * (y - x**2) ** 2

    def gradient(self, w: Tensor) -> Tensor:
        x, y = _xy(w)
        r = y - x**2
        return torch.stack([-2 * (self.a - x) - 4 * self.b * x * r, 2 * self.b * r], -1)

    def hessian(self, w: Tensor) -> Tensor:
        x, y = _xy(w)
        fxx = 2 - 4 * self.b * y + 12 * self.b * x**2
        return _matrix(fxx, -4 * self.b * x, 2 * self.b * torch.ones_like(x))

    def __repr__(self) -> str:
        return f"Rosenbrock(a={self.a:g}, b={self.b:g})"


class Beale(TestFunction):
    """f(x, y) = sum_{i=1}^3 (c_i - x + x y^i)^2 with c = (1.5, 2.25, 2.625) (Beale 1958); minimiser (3, 1/2).

    Flat plateaus and sharp ridges: a test of adaptive step sizes.

    Example:
        >>> Beale().value(torch.tensor([3.0, 0.5])).item()
        0.0
    """

    name = "beale"
    minimizers = ((3.0, 0.5),)
    saddles = ((0.0, 1.0),)
    start = (1.0, 1.5)
    xlim = (-1.5, 4.5)
    ylim = (-2.5, 2.5)
    c = (1.5, 2.25, 2.625)

    def _residuals(self, w: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """r_i = c_i - x + x y^i for i = 1, 2, 3 (last axis) and its derivatives r_x, r_y, r_xy, r_yy (r_xx = 0)."""
        x, y = _xy(w)
        x, y = x.unsqueeze(-1), y.unsqueeze(-1)
        i = torch.arange(1, 4, dtype=w.dtype, device=w.device)
        y_pow = y ** torch.arange(0, 4, dtype=w.dtype, device=w.device)  # 1, y, y^2, y^3
        c = torch.tensor(self.c, dtype=w.dtype, device=w.device)
        r = c - x + x * y_pow[..., 1:]
        return (
            r,
            y_pow[..., 1:] - 1,
            i * x * y_pow[..., :3],
            i * y_pow[..., :3],
            i * (i - 1) * x * _y_pow_minus_2(y_pow),
        )

    def value(self, w: Tensor) -> Tensor:
        return (self._residuals(w)[0] ** 2).sum(-1)

    def gradient(self, w: Tensor) -> Tensor:
        r, rx, ry, _, _ = self._residuals(w)
        return 2 * torch.stack([(r * rx).sum(-1), (r * ry).sum(-1)], -1)

    def hessian(self, w: Tensor) -> Tensor:
        r, rx, ry, rxy, ryy = self._residuals(w)
        return 2 * _matrix((rx * rx).sum(-1), (rx * ry + r * rxy).sum(-1), (ry * ry + r * ryy).sum(-1))


def _y_pow_minus_2(y_pow: Tensor) -> Tensor:
    """(0, 1, y) for i = 1, 2, 3: the y^(i-2) of d2r_i/dy2 = i (i - 1) x y^(i-2), with the i = 1 term zero."""
    return torch.cat([torch.zeros_like(y_pow[..., :1]), y_pow[..., :2]], -1)


class Saddle(TestFunction):
    """f(x, y) = x^2 - y^2: a strict saddle at (0, 0), unbounded below along y.

    Gradient descent started near the x-axis first approaches the saddle and then escapes along y at the rate
    (1 + 2 eta) per step.

    Example:
        >>> Saddle().hessian(torch.zeros(2)).diag().tolist()
        [2.0, -2.0]
    """

    name = "saddle"
    saddles = ((0.0, 0.0),)
    start = (-2.0, 0.01)
    xlim = (-2.5, 2.5)
    ylim = (-2.5, 2.5)

    def value(self, w: Tensor) -> Tensor:
        x, y = _xy(w)
        return x**2 - y**2

    def gradient(self, w: Tensor) -> Tensor:
        x, y = _xy(w)
        return torch.stack([2 * x, -2 * y], -1)

    def hessian(self, w: Tensor) -> Tensor:
        x, _ = _xy(w)
        two = 2 * torch.ones_like(x)
        return _matrix(two, 0 * two, -two)


TEST_FUNCTIONS: dict[str, type[TestFunction]] = {
    cls.name: cls for cls in (ElongatedQuadratic, Rosenbrock, Beale, Saddle)
}


def get_test_function(name: str, **parameters: float) -> TestFunction:
    """The test function called `name`, built with `parameters` (e.g. `kappa=20` for the quadratic).

    Example:
        >>> get_test_function("quadratic", kappa=20.0)
        ElongatedQuadratic(kappa=20)
    """
    if name not in TEST_FUNCTIONS:
        raise ValueError(f"name: expected one of {', '.join(map(repr, TEST_FUNCTIONS))}, got {name!r}")
    return TEST_FUNCTIONS[name](**parameters)
