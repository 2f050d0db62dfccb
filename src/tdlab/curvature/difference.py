"""Hessian-vector products by differences of gradients: curvature without second derivatives.

With g = grad f and the unit vector u = v / ||v||,

    central:  H v ~ ||v|| (g(theta + h u) - g(theta - h u)) / (2h),  error (h^2 / 6) ||v|| d^4 f[u, u, u, .]
    forward:  H v ~ ||v|| (g(theta + h u) - g(theta)) / h,           error (h / 2) ||v|| d^3 f[u, u, .]

plus a rounding error of about eps |g| / h, eps the unit roundoff of the parameters' dtype (Nocedal & Wright,
Numerical Optimization, 2nd ed., section 8.1). A product is two gradient passes (central) or one, plus one
pass for g(theta) the first time (forward); nothing is differentiated twice. So the products run through the
model's own kernels, including those without a double backward (fused attention on CUDA, custom autograd
functions) and those whose double backward is silently wrong (PyTorch drops, without an error, the terms through a
backward marked `once_differentiable`), and need the memory of one training step instead of a kept
double-backward graph. The price is an error that the exact `HessianOperator` does not have: on the 78k-parameter
tanh MLP and the 2-layer transformer of `benchmarks/bench_anchors.py`, in float32, central differences with the
default h give the product with the top eigenvector to 2e-5 (MLP) and 7e-5 (transformer) of lambda_1, and the top
eigenvalue to 1e-5; forward differences to 2e-4 and 4e-4.

The loss must be smooth: where a piecewise-linear function (ReLU, max pooling, hard tanh) changes piece between
theta and theta + h u, the gradient jumps and the difference picks the jump up, whatever h. On the ResNet of
`benchmarks/bench_anchors.py` the top eigenvalue is then 12-14% off, on a width-8 ResNet in train mode 8x. The
first operator on a model and loss warns when its first gradient pass calls such a function (the search runs once
per model and loss, so a probe that builds an operator at each measurement pays for it once); use the exact
`HessianOperator` there.
"""

from __future__ import annotations

import contextlib
import warnings
import weakref
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from tdlab.curvature.operators import LinearOperator, _ObjectiveOperator
from tdlab.oracles import Objective

DIFFERENCE_SCHEMES = ("central", "forward")
# the losses searched for kinks, by model (a probe builds a new objective and operator at every measurement)
_SEARCHED: weakref.WeakKeyDictionary[nn.Module, weakref.WeakSet] = weakref.WeakKeyDictionary()
_PIECEWISE_LINEAR = {"relu", "relu6", "leaky_relu", "prelu", "rrelu", "hardtanh", "hardswish", "hardsigmoid"}


class _KinkFinder(TorchFunctionMode):
    """Records the piecewise-linear functions (activations and max pooling) that a computation calls."""

    def __init__(self) -> None:
        super().__init__()
        self.found: set[str] = set()

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        name = getattr(func, "__name__", "").strip("_")
        if name in _PIECEWISE_LINEAR or "max_pool" in name:
            self.found.add(name)
        return func(*args, **(kwargs or {}))


def default_difference_step(scheme: str, dtype: torch.dtype) -> float:
    """h = eps^(1/3) / 5 for central and eps^(1/2) / 3 for forward differences, eps = `torch.finfo(dtype).eps`.

    The powers balance truncation against rounding (Nocedal & Wright, section 8.1); the constants put both errors
    of the benchmark models near their smallest: in float32 h = 9.8e-4 (central) and 1.2e-4 (forward)."""
    eps = torch.finfo(dtype).eps
    return eps ** (1 / 3) / 5 if scheme == "central" else eps**0.5 / 3


class DifferenceHessianOperator(_ObjectiveOperator):
    """The Hessian H(theta) of an objective's loss, by finite differences of its gradient (see the module).

    Args:
        objective: the `Objective` whose loss f is differentiated once per gradient pass.
        theta: the point (flat vector or parameter dict); `None` takes the model's parameters now (copied).
        scheme: "central" (second-order accurate, two passes per product) or "forward" (first order, one pass).
        step: the difference step h along the unit vector u (default `default_difference_step`).
        seed: every gradient pass draws its random numbers (dropout masks) from this seed, so that the passes
            of one product and of all products see the same masks; the global RNG is left as it was.

    Raises ValueError for half-precision parameters: with eps = 1e-3 (float16) or 8e-3 (bfloat16) the
    difference has no accurate digit left.

    Example:
        >>> from torch import nn
        >>> from tdlab import Objective
        >>> from tdlab.curvature import HessianOperator
        >>> net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1)).double()
        >>> obj = Objective(net, nn.MSELoss(), (torch.randn(16, 3).double(), torch.randn(16, 1).double()))
        >>> v = torch.randn(obj.dim, dtype=torch.float64)
        >>> exact, approx = HessianOperator(obj) @ v, DifferenceHessianOperator(obj) @ v
        >>> bool((approx - exact).norm() < 1e-8 * exact.norm())
        True
    """

    def __init__(
        self,
        objective: Objective,
        theta: Tensor | Mapping[str, Tensor] | None = None,
        scheme: str = "central",
        step: float | None = None,
        seed: int = 0,
    ):
        super().__init__(objective, theta)
        if scheme not in DIFFERENCE_SCHEMES:
            allowed = ", ".join(map(repr, DIFFERENCE_SCHEMES))
            raise ValueError(f"scheme: expected one of {allowed}, got {scheme!r}")
        if self.dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype: finite differences need float32 or float64 parameters, got {self.dtype}")
        if step is not None and not (isinstance(step, int | float) and 0 < step < float("inf")):
            raise ValueError(f"step: expected a positive finite number or None, got {step!r}")
        self.scheme = scheme
        self.step = default_difference_step(scheme, self.dtype) if step is None else float(step)
        self.seed = seed
        self._gradient_here: Tensor | None = None

    def _gradient(self, theta: Tensor) -> Tensor:
        """g(theta), its random draws from `seed` (the generators of the CPU and the model's device only:
        `torch.manual_seed` would also seed every CUDA device, at about 0.7 ms a call)."""
        cuda = self.device.type == "cuda"
        with torch.random.fork_rng(devices=[self.device] if cuda else []):
            torch.default_generator.manual_seed(self.seed)
            if cuda:
                index = torch.cuda.current_device() if self.device.index is None else self.device.index
                torch.cuda.default_generators[index].manual_seed(self.seed)
            model, loss_fn = self.objective.model, self.objective.loss_fn
            if loss_fn in _SEARCHED.get(model, ()):
                return self.objective.gradient(theta)
            with _KinkFinder() as finder:
                gradient = self.objective.gradient(theta)
            with contextlib.suppress(TypeError):  # a loss that cannot be weakly referenced is searched every time
                _SEARCHED.setdefault(model, weakref.WeakSet()).add(loss_fn)
            if finder.found:
                warnings.warn(
                    f"DifferenceHessianOperator: the loss calls {', '.join(sorted(finder.found))}, piecewise linear:"
                    " its gradient jumps where a unit changes piece, and differences of gradients count the jumps"
                    " (the top eigenvalue of small ResNets came out 12% to 8x off); use the exact HessianOperator",
                    stacklevel=4,
                )
            return gradient

    def _product(self, v: Tensor) -> Tensor:
        norm = v.norm()
        if norm == 0:
            return torch.zeros_like(v)
        shift = v * (self.step / norm)
        ahead = self._gradient(self.theta + shift)
        if self.scheme == "central":
            return (ahead - self._gradient(self.theta - shift)) * (norm / (2 * self.step))
        if self._gradient_here is None:
            self._gradient_here = self._gradient(self.theta)
        return (ahead - self._gradient_here) * (norm / self.step)

    def _matmat(self, V: Tensor) -> Tensor:
        """Column by column: each product is whole gradient passes, with nothing to share between columns."""
        return LinearOperator._matmat(self, V)
