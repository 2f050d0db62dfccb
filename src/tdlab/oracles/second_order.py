"""Cheaper double backward passes for common layers (convolutions, BatchNorm, ReLU, GELU), for Hessian-vector products.

A Hessian-vector product by reverse over reverse (Pearlmutter 1994) is a backward pass through the graph of a
backward pass, so it runs the derivative of every backward formula. Autograd's derivatives of four common ones
are generic and cost more than they need to:

- BatchNorm with running statistics (eval mode) is a per-channel affine map, y = x s + (b - mu s) with
  s = w / sqrt(var + eps), but its fused kernel's double backward (`batchnorm_double_backward`) also serves batch
  statistics, with several elementwise passes more per layer than the affine map's.
- ReLU's backward, threshold_backward(g, y, 0), is linear in g and piecewise constant in y; autograd's derivative
  of it also returns a zero tensor for y, which the engine allocates, fills and adds.
- A convolution's backward gives the input gradient convT(g, W); autograd's derivative of it in W, the weight
  gradient corr(u, g), is computed as a convolution over the batch with transposed copies of both tensors, where
  `convolution_backward` does it directly.
- GELU's backward, gelu_backward(g, x) = g gelu'(x), has a derivative (`gelu_double_backward`) that evaluates
  gelu''(x) = phi(x) (2 - x^2) again in a dozen elementwise kernels at every product; written as the product
  g gelu'(x) with gelu'(x) and gelu''(x) computed once, while the graph is built, it costs three multiplications.

`LeanDoubleBackward`, a `TorchFunctionMode`, runs these layers through `torch.autograd.Function`s with the same
values and first derivatives (BatchNorm's to rounding) and a direct second derivative: the terms of the
product rule, one kernel each. Active while the graph of a gradient is built (`Objective.hvp_function`), it cuts
a Hessian-vector product on the ResNet with BatchNorm of `benchmarks/bench_anchors.py` from 121 elementwise
kernels on activations to 70, and its time by about 15% (CPU); on its causal transformer the GELUs cut the time
of a product through a kept graph by about 12% (CPU, one thread: 2.5x a plain `loss.backward()` to 2.1-2.2x).
Every other call runs unchanged, as do BatchNorm in train mode or in mixed precision, ReLU in place, GELU's tanh
approximation and convolutions with string padding.

Example:
    >>> net = torch.nn.Sequential(torch.nn.Conv1d(2, 3, 3), torch.nn.BatchNorm1d(3), torch.nn.ReLU()).eval()
    >>> x = torch.randn(4, 2, 8)
    >>> with LeanDoubleBackward():
    ...     y = net(x)
    >>> torch.allclose(y, net(x), atol=1e-6), y.grad_fn.name()
    (True, '_ReLUBackward')
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

_convolution_backward = torch.ops.aten.convolution_backward
_INV_SQRT_2PI = 0.3989422804014327  # 1 / sqrt(2 pi), the standard normal density at 0


def _per_channel(t: Tensor, x: Tensor) -> Tensor:
    """A per-channel vector (C,) as a view that broadcasts against x of shape (N, C, ...)."""
    return t.view((1, -1) + (1,) * (x.ndim - 2))


def _over_channels(t: Tensor) -> Tensor:
    """The sum of t (N, C, ...) over every dimension but the channels, shape (C,)."""
    return t.sum([0, *range(2, t.ndim)])


class _ChannelAffineBackward(torch.autograd.Function):
    """(gx, gs, gb) = the backward pass of y = x s + b (s, b per channel) at the cotangent g, and its derivative.

    gx = g s, gs = sum(g x), gb = sum(g) (sums over all but the channels) are bilinear; with cotangents
    (ux, us, ub) of them the derivative is d g = ux s + x us + ub, d x = g us, d s = sum(ux g)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(g: Tensor, x: Tensor, scale: Tensor, mask: list[bool]) -> tuple:
        gx = g * _per_channel(scale, x) if mask[0] else None
        gs = _over_channels(g * x) if mask[1] else None
        gb = _over_channels(g) if mask[2] else None
        return gx, gs, gb

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: tuple) -> None:
        g, x, scale, _ = inputs
        ctx.save_for_backward(g, x, scale)

    @staticmethod
    def backward(ctx: Any, ux: Tensor | None, us: Tensor | None, ub: Tensor | None) -> tuple:
        g, x, scale = ctx.saved_tensors
        dg = dx = ds = None
        if ctx.needs_input_grad[0]:
            if us is not None:
                dg = (
                    x * _per_channel(us, x)
                    if ub is None
                    else torch.addcmul(_per_channel(ub, x), x, _per_channel(us, x))
                )
            elif ub is not None:
                dg = _per_channel(ub, x).expand_as(g)
            if ux is not None:
                dg = ux * _per_channel(scale, x) if dg is None else torch.addcmul(dg, ux, _per_channel(scale, x))
        if ctx.needs_input_grad[1] and us is not None:
            dx = g * _per_channel(us, x)
        if ctx.needs_input_grad[2] and ux is not None:
            ds = _over_channels(ux * g)
        return dg, dx, ds, None


class _ChannelAffine(torch.autograd.Function):
    """y = x s + b with s, b per channel, by `torch.addcmul`, with the backward pass `_ChannelAffineBackward`."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor, scale: Tensor, shift: Tensor) -> Tensor:
        return torch.addcmul(_per_channel(shift, x), x, _per_channel(scale, x))

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: Tensor) -> None:
        x, scale, _ = inputs
        ctx.save_for_backward(x, scale)

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple:
        x, scale = ctx.saved_tensors
        return _ChannelAffineBackward.apply(g, x, scale, list(ctx.needs_input_grad))


class _ConvolutionBackward(torch.autograd.Function):
    """(gx, gW, gb) = the backward pass of y = conv(x, W) + b at the cotangent g, and its derivative.

    The three outputs are bilinear: gx = convT(g, W), gW = corr(x, g), gb = sum(g). With cotangents
    (ux, uW, ub) of them, the derivative is d g = conv(ux, W) + conv(x, uW) + ub, d x = convT(g, uW) and
    d W = corr(ux, g), each one call of `torch.convolution` or `convolution_backward`."""

    generate_vmap_rule = True

    @staticmethod
    def forward(g: Tensor, x: Tensor, weight: Tensor, config: tuple, mask: list[bool]) -> tuple:
        stride, padding, dilation, groups, bias_sizes = config
        zeros = [0] * len(stride)
        return _convolution_backward(g, x, weight, bias_sizes, stride, padding, dilation, False, zeros, groups, mask)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: tuple) -> None:
        g, x, weight, config, _ = inputs
        ctx.save_for_backward(g, x, weight)
        ctx.config = config

    @staticmethod
    def backward(ctx: Any, ux: Tensor | None, uw: Tensor | None, ub: Tensor | None) -> tuple:
        g, x, weight = ctx.saved_tensors
        stride, padding, dilation, groups, _ = ctx.config
        zeros = [0] * len(stride)
        dg = dx = dw = None
        if ctx.needs_input_grad[0]:
            terms = [
                torch.convolution(u, w, None, stride, padding, dilation, False, zeros, groups)
                for u, w in ((ux, weight), (x, uw))
                if u is not None and w is not None
            ]
            if ub is not None:
                terms.append(ub.view(1, -1, *([1] * len(stride))).expand_as(g))
            dg = sum(terms[1:], terms[0]) if terms else None
        if ctx.needs_input_grad[1] and uw is not None:
            mask = [True, False, False]
            dx = _convolution_backward(g, x, uw, None, stride, padding, dilation, False, zeros, groups, mask)[0]
        if ctx.needs_input_grad[2] and ux is not None:
            mask = [False, True, False]
            dw = _convolution_backward(g, ux, weight, None, stride, padding, dilation, False, zeros, groups, mask)[1]
        return dg, dx, dw, None, None


class _Convolution(torch.autograd.Function):
    """y = conv(x, W) + b by `torch.convolution` (the kernels of `conv1d`/`conv2d`/`conv3d`), with the backward
    pass `_ConvolutionBackward`."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor, weight: Tensor, bias: Tensor | None, config: tuple) -> Tensor:
        stride, padding, dilation, groups = config
        return torch.convolution(x, weight, bias, stride, padding, dilation, False, [0] * len(stride), groups)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: Tensor) -> None:
        x, weight, bias, config = inputs
        ctx.save_for_backward(x, weight)
        ctx.config = (*config, None if bias is None else list(bias.shape))

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple:
        x, weight = ctx.saved_tensors
        mask = [ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.needs_input_grad[2]]
        gx, gw, gb = _ConvolutionBackward.apply(g, x, weight, ctx.config, mask)
        return gx, gw, gb, None


class _ReLUBackward(torch.autograd.Function):
    """g -> threshold_backward(g, y, 0), the backward pass of y = relu(x); its derivative is the same mask on the
    cotangent, and nothing for y."""

    generate_vmap_rule = True

    @staticmethod
    def forward(g: Tensor, y: Tensor) -> Tensor:
        return torch.ops.aten.threshold_backward(g, y, 0)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: Tensor) -> None:
        ctx.save_for_backward(inputs[1])

    @staticmethod
    def backward(ctx: Any, u: Tensor) -> tuple:
        (y,) = ctx.saved_tensors
        return torch.ops.aten.threshold_backward(u, y, 0), None


class _ReLU(torch.autograd.Function):
    """y = relu(x) by `torch.relu`, with the backward pass `_ReLUBackward`."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor) -> Tensor:
        return torch.relu(x)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: Tensor) -> None:
        ctx.save_for_backward(output)

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> Tensor:
        (y,) = ctx.saved_tensors
        return _ReLUBackward.apply(g, y)


class _GELUDerivatives(torch.autograd.Function):
    """(gelu'(x), gelu''(x)) = (Phi(x) + x phi(x), phi(x) (2 - x^2)), Phi and phi the standard normal cdf and
    density; the derivative is d x = w1 gelu''(x) + w2 gelu'''(x), with gelu'''(x) = phi(x) (x^3 - 4 x)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor) -> tuple:
        pdf = torch.exp(-0.5 * x.square()) * _INV_SQRT_2PI
        return torch.special.ndtr(x) + x * pdf, pdf * (2 - x.square())

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: tuple) -> None:
        ctx.save_for_backward(inputs[0], output[1])
        ctx.set_materialize_grads(False)  # w2 is None but for third derivatives

    @staticmethod
    def backward(ctx: Any, w1: Tensor | None, w2: Tensor | None) -> Tensor | None:
        x, second = ctx.saved_tensors
        dx = None if w1 is None else w1 * second
        if w2 is not None:
            third = torch.exp(-0.5 * x.square()) * _INV_SQRT_2PI * (x.square() - 4) * x
            dx = w2 * third if dx is None else torch.addcmul(dx, w2, third)
        return dx


class _GELU(torch.autograd.Function):
    """y = gelu(x) (exact, erf form) by `torch.nn.functional.gelu`. Its backward pass, where it is differentiated
    (grad mode, as `create_graph` sets), is the product g gelu'(x), whose derivative is two multiplications and,
    through `_GELUDerivatives`, one more for x; elsewhere (a product through the graph) torch's `gelu_backward`."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor) -> Tensor:
        return nn.functional.gelu(x)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: Tensor) -> None:
        ctx.save_for_backward(inputs[0])

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        if not torch.is_grad_enabled():  # a backward pass that is not differentiated: torch's one kernel
            return torch.ops.aten.gelu_backward(g, x)
        return g * _GELUDerivatives.apply(x)[0]


_BATCH_NORM = inspect.signature(nn.functional.batch_norm)
_CONVOLUTIONS = {torch.conv1d: 1, torch.conv2d: 2, torch.conv3d: 3}
_CONVOLUTION = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
_RELUS = (torch.relu, nn.functional.relu, Tensor.relu)


def _batch_norm(args: tuple, kwargs: dict) -> Tensor | None:
    """Eval-mode BatchNorm as y = x s + (b - mu s) through `_ChannelAffine` (one rounding, as the fused kernel's
    x alpha + beta: the values agree to one unit in the last place); None where the call is another case."""
    call = _BATCH_NORM.bind(*args, **kwargs)
    call.apply_defaults()
    x, mean, var, weight, bias, training, eps = (
        call.arguments[k] for k in ("input", "running_mean", "running_var", "weight", "bias", "training", "eps")
    )
    if (
        training
        or mean is None
        or var is None
        or any(t is not None and t.dtype != x.dtype for t in (mean, var, weight, bias))
    ):
        return None
    scale = torch.rsqrt(var + eps)
    scale = scale if weight is None else scale * weight
    shift = -mean * scale if bias is None else bias - mean * scale
    return _ChannelAffine.apply(x, scale, shift)


def _convolution(dims: int, args: tuple, kwargs: dict) -> Tensor | None:
    """A batched convolution with numeric padding through `_Convolution`; None where the call is another case."""
    call = dict(zip(_CONVOLUTION, (None, None, None, 1, 0, 1, 1), strict=True))
    call.update(zip(_CONVOLUTION, args, strict=False))
    call.update(kwargs)
    x, padding = call["input"], call["padding"]
    if isinstance(padding, str) or x.ndim != dims + 2:
        return None
    config = tuple(
        list(a) if isinstance(a, tuple | list) else [a] * dims for a in (call["stride"], padding, call["dilation"])
    )
    return _Convolution.apply(x, call["weight"], call["bias"], (*config, call["groups"]))


class LeanDoubleBackward(TorchFunctionMode):
    """Within this mode, eval-mode BatchNorm, out-of-place ReLU, exact GELU and batched convolutions build graphs
    whose backward passes have cheaper derivatives (see the module docstring); values and first derivatives are
    unchanged (BatchNorm's, and GELU's where the backward pass is differentiated, to one rounding)."""

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        out = None
        if func is nn.functional.batch_norm:
            out = _batch_norm(args, kwargs)
        elif func in _CONVOLUTIONS:
            out = _convolution(_CONVOLUTIONS[func], args, kwargs)
        elif func in _RELUS and not kwargs.get("inplace", args[1] if len(args) > 1 else False):
            out = _ReLU.apply(args[0])
        elif func is nn.functional.gelu and kwargs.get("approximate", args[1] if len(args) > 1 else "none") == "none":
            out = _GELU.apply(args[0])
        return func(*args, **kwargs) if out is None else out
