"""Hessian-vector products by differences of gradients (`DifferenceHessianOperator`), checked against exact
products and dense Hessians of small nets: the order of each scheme's error, the default step's accuracy, the
dropout masks shared by every pass, and products through an operation that has no double backward."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.autograd.function import once_differentiable

from tdlab import Objective
from tdlab.curvature import DifferenceHessianOperator, HessianOperator, exact_hessian
from tdlab.probes import HessianTrace, ProbeContext, Sharpness


def _net(dtype: torch.dtype = torch.float64, dropout: float = 0.0) -> nn.Module:
    torch.manual_seed(0)
    layers = [nn.Linear(4, 16), nn.Tanh(), nn.Dropout(dropout), nn.Linear(16, 3)]
    return nn.Sequential(*layers).to(dtype)


def _objective(model: nn.Module, n: int = 64, loss_fn: nn.Module | None = None) -> Objective:
    dtype = next(model.parameters()).dtype
    generator = torch.Generator().manual_seed(1)
    X = torch.randn(n, 4, generator=generator, dtype=dtype)
    y = torch.randint(0, 3, (n,), generator=generator)
    return Objective(model, nn.CrossEntropyLoss() if loss_fn is None else loss_fn, (X, y))


def _relative_error(obj: Objective, v: torch.Tensor, **kwargs) -> float:
    exact = HessianOperator(obj) @ v
    return float((DifferenceHessianOperator(obj, **kwargs) @ v - exact).norm() / exact.norm())


@pytest.mark.parametrize(("scheme", "order"), [("central", 2), ("forward", 1)])
def test_the_error_falls_with_the_order_of_the_scheme(scheme, order):
    """In float64 at h ~ 1e-2 the truncation error dominates: halving h divides it by 2^order (4 for central,
    2 for forward differences); a forward scheme called central, or a wrong factor, fails the ratio."""
    obj = _objective(_net())
    v = torch.randn(obj.dim, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    coarse = _relative_error(obj, v, scheme=scheme, step=4e-2)
    fine = _relative_error(obj, v, scheme=scheme, step=2e-2)
    assert 1e-9 < fine < coarse
    assert coarse / fine == pytest.approx(2.0**order, rel=0.1)


@pytest.mark.parametrize(
    ("dtype", "scheme", "bound"),
    [
        (torch.float64, "central", 1e-8),
        (torch.float64, "forward", 1e-6),
        (torch.float32, "central", 1e-3),
    ],
)
def test_the_default_step_is_accurate(dtype, scheme, bound):
    obj = _objective(_net(dtype))
    v = torch.randn(obj.dim, generator=torch.Generator().manual_seed(3), dtype=dtype)
    assert _relative_error(obj, 5.0 * v, scheme=scheme) < bound  # any length of v: the step is along v / ||v||


def test_every_pass_draws_the_same_dropout_masks_and_the_global_rng_is_untouched():
    """In train mode the product is that of the Hessian of the loss with one fixed set of masks: the masks drawn
    from `seed`, as the exact product's graph draws them from the global RNG seeded alike."""
    model = _net(dropout=0.3).train()
    obj = _objective(model)
    v = torch.randn(obj.dim, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    op = DifferenceHessianOperator(obj, seed=7)
    state = torch.get_rng_state()
    first, second = op @ v, op @ v
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(first, second)
    torch.manual_seed(7)
    exact = HessianOperator(obj) @ v
    assert float((first - exact).norm() / exact.norm()) < 1e-8
    other = DifferenceHessianOperator(obj, seed=8) @ v  # other masks: another matrix
    assert float((other - exact).norm() / exact.norm()) > 1e-3


class _TanhBackward(torch.autograd.Function):
    """The derivative of tanh, g (1 - y^2), with no derivative of its own: a kernel without a double backward."""

    @staticmethod
    def forward(ctx, grad_output, y):
        return grad_output * (1 - y * y)

    @staticmethod
    def backward(ctx, grad):
        raise RuntimeError("derivative of the tanh backward kernel is not implemented")


class _TanhWithoutDoubleBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        y = torch.tanh(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad_output):
        (y,) = ctx.saved_tensors
        return _TanhBackward.apply(grad_output, y)


class _FusedTanh(nn.Module):
    def forward(self, x):
        return _TanhWithoutDoubleBackward.apply(x)


def test_products_through_an_operation_without_double_backward():
    """The exact product fails where the backward is not differentiable; differences of gradients do not, and
    they agree with the exact Hessian of the same network built from differentiable parts."""
    plain = _net()
    fused = _net()
    fused[1] = _FusedTanh()
    v = torch.randn(_objective(plain).dim, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    with pytest.raises(RuntimeError, match="not implemented"):
        HessianOperator(_objective(fused)) @ v
    exact = HessianOperator(_objective(plain)) @ v
    approx = DifferenceHessianOperator(_objective(fused)) @ v
    assert float((approx - exact).norm() / exact.norm()) < 1e-8


class _OnceDifferentiableTanh(_TanhWithoutDoubleBackward):
    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        (y,) = ctx.saved_tensors
        return grad_output * (1 - y * y)


class _OnceDifferentiable(nn.Module):
    def forward(self, x):
        return _OnceDifferentiableTanh.apply(x)


def test_products_through_a_once_differentiable_function_where_double_backward_is_silently_wrong():
    """PyTorch raises no error when a double backward passes a backward marked `once_differentiable`: the terms
    through its saved output are dropped, and the exact product is far off. Differences of gradients are right."""
    plain, marked = _net(), _net()
    marked[1] = _OnceDifferentiable()
    v = torch.randn(_objective(plain).dim, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    truth = HessianOperator(_objective(plain)) @ v
    dropped = HessianOperator(_objective(marked)) @ v
    approx = DifferenceHessianOperator(_objective(marked)) @ v
    assert float((dropped - truth).norm() / truth.norm()) > 0.1
    assert float((approx - truth).norm() / truth.norm()) < 1e-8


def test_a_piecewise_linear_loss_is_warned_about_once_and_a_smooth_one_is_not(recwarn):
    torch.manual_seed(0)
    relu = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3)).double()
    pooled = nn.Sequential(nn.Unflatten(1, (1, 4)), nn.MaxPool1d(2), nn.Flatten(), nn.Linear(2, 3)).double()
    for model in (relu, pooled):
        obj = _objective(model)
        op = DifferenceHessianOperator(obj)
        with pytest.warns(UserWarning, match="piecewise linear"):
            op @ torch.ones(obj.dim, dtype=torch.float64)
        recwarn.clear()
        op @ torch.ones(obj.dim, dtype=torch.float64)
        again = _objective(model, loss_fn=obj.loss_fn)  # a new objective of the same model and loss: not searched
        DifferenceHessianOperator(again) @ torch.ones(obj.dim, dtype=torch.float64)
        assert not recwarn.list
    obj = _objective(_net())
    DifferenceHessianOperator(obj) @ torch.ones(obj.dim, dtype=torch.float64)
    assert not recwarn.list


def test_bad_arguments_are_refused_with_the_allowed_values():
    obj = _objective(_net())
    with pytest.raises(ValueError, match="scheme: expected one of 'central', 'forward'"):
        DifferenceHessianOperator(obj, scheme="backward")
    with pytest.raises(ValueError, match="step"):
        DifferenceHessianOperator(obj, step=0.0)
    with pytest.raises(ValueError, match="dtype: finite differences need float32 or float64"):
        DifferenceHessianOperator(_objective(_net(torch.bfloat16)))
    for probe in (Sharpness, HessianTrace):
        with pytest.raises(ValueError, match="hvp: expected one of 'exact', 'central', 'forward'"):
            probe(hvp="numerical")


def test_sharpness_by_differences_equals_the_top_eigenvalue_of_the_exact_hessian():
    model = _net()
    obj = _objective(model)
    top = torch.linalg.eigvalsh(exact_hessian(obj))[-1].item()
    ctx = ProbeContext(0, model, nn.CrossEntropyLoss(), train=obj.data.tensors)
    central = Sharpness(tol=1e-9, criterion="residual", hvp="central")
    forward = Sharpness(tol=1e-9, criterion="residual", hvp="forward")
    assert central.measure(ctx)["sharpness"] == pytest.approx(top, rel=1e-8)
    assert forward.measure(ctx)["sharpness"] == pytest.approx(top, rel=1e-6)
    assert central.measure(ctx)["sharpness/matvecs"] < 10  # warm-started like the exact probe


def test_hessian_trace_by_differences_equals_the_exact_estimate_with_the_same_probes():
    """The same Rademacher probes (seeded by step) through either product: the estimates of the trace, its standard
    error and the block traces agree, and the estimate is within 4 standard errors of the dense Hessian's trace."""
    model = _net()
    obj = _objective(model)
    ctx = ProbeContext(3, model, nn.CrossEntropyLoss(), train=obj.data.tensors)
    exact = HessianTrace(samples=20, blocks="module").measure(ctx)
    central = HessianTrace(samples=20, blocks="module", hvp="central").measure(ctx)
    assert central.keys() == exact.keys() == {"hessian/trace", "hessian/trace_se", "hessian/trace/0", "hessian/trace/3"}
    for key, value in exact.items():
        assert central[key] == pytest.approx(value, rel=1e-6), key
    dense = torch.linalg.eigvalsh(exact_hessian(obj)).sum().item()
    assert abs(central["hessian/trace"] - dense) < 4 * central["hessian/trace_se"]
