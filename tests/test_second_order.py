"""The lean double backward passes against finite differences (gradgradcheck) and the stock kernels."""

import pytest
import torch
from torch import nn
from torch.autograd import gradcheck, gradgradcheck

from tdlab.oracles.second_order import LeanDoubleBackward

CONVOLUTIONS = [
    (nn.functional.conv1d, (3, 4, 9), (6, 2, 3), {"stride": 2, "padding": 1, "groups": 2}),
    (nn.functional.conv2d, (2, 3, 7, 6), (4, 3, 3, 2), {"padding": (1, 0), "dilation": 2}),
    (nn.functional.conv2d, (2, 2, 5, 5), (2, 2, 3, 3), {"stride": (2, 1)}),
    (nn.functional.conv3d, (2, 2, 4, 4, 3), (3, 2, 2, 2, 2), {"padding": 1}),
]


def lean(fn):
    def wrapped(*args):
        with LeanDoubleBackward():
            return fn(*args)

    return wrapped


@pytest.mark.parametrize(("conv", "x_shape", "w_shape", "options"), CONVOLUTIONS)
@pytest.mark.parametrize("bias", [True, False])
def test_convolution_second_derivatives_match_finite_differences(conv, x_shape, w_shape, options, bias):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(x_shape, dtype=torch.float64, generator=gen, requires_grad=True)
    w = torch.randn(w_shape, dtype=torch.float64, generator=gen, requires_grad=True)
    inputs = (x, w) + (
        (torch.randn(w_shape[0], dtype=torch.float64, generator=gen, requires_grad=True),) if bias else ()
    )
    fn = lean(lambda *a: conv(*a[:2], a[2] if bias else None, **options))
    assert fn(*inputs).grad_fn.name() == "_ConvolutionBackward"
    torch.testing.assert_close(fn(*inputs), conv(*inputs[:2], inputs[2] if bias else None, **options))
    assert gradcheck(fn, inputs)
    assert gradgradcheck(fn, inputs)


@pytest.mark.parametrize("trained", ["weight and bias", "bias", "neither"])
@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 5), (2, 3, 4, 4)])
def test_eval_batchnorm_second_derivatives_match_finite_differences(trained, shape):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(shape, dtype=torch.float64, generator=gen, requires_grad=True)
    mean, var = torch.randn(3, dtype=torch.float64, generator=gen), torch.rand(3, dtype=torch.float64, generator=gen)
    weight = torch.randn(3, dtype=torch.float64, generator=gen, requires_grad=trained == "weight and bias")
    bias = torch.randn(3, dtype=torch.float64, generator=gen, requires_grad=True)
    inputs = (x, bias) if trained != "neither" else (x,)

    def batch_norm(x, bias=None):
        w = weight if trained != "neither" else None
        return nn.functional.batch_norm(x, mean, var, w, bias, training=False, eps=1e-3)

    torch.testing.assert_close(lean(batch_norm)(*inputs), batch_norm(*inputs))
    assert lean(batch_norm)(*inputs).grad_fn.name() == "_ChannelAffineBackward"
    assert gradgradcheck(lean(batch_norm), inputs)
    if trained == "weight and bias":
        assert gradgradcheck(lean(lambda x, w, b: nn.functional.batch_norm(x, mean, var, w, b)), (x, weight, bias))


def test_relu_second_derivative_and_what_stays_unchanged():
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(5, 4, dtype=torch.float64, generator=gen, requires_grad=True)
    for relu in (torch.relu, nn.functional.relu, torch.Tensor.relu, nn.ReLU()):
        assert lean(relu)(x).grad_fn.name() == "_ReLUBackward"
        torch.testing.assert_close(lean(relu)(x), torch.relu(x), rtol=0, atol=0)
        assert gradgradcheck(lean(lambda t, f=relu: f(t) ** 2), (x,))
    with LeanDoubleBackward():  # in place, train-mode BatchNorm, string padding: the stock kernels
        assert nn.functional.relu(x.clone(), inplace=True).grad_fn.name() == "ReluBackward0"
        bn = nn.functional.batch_norm(x, None, None, training=True)
        assert bn.grad_fn.name() == "NativeBatchNormBackward0"
        conv = nn.functional.conv1d(x[None], torch.ones(2, 5, 3, dtype=torch.float64), padding="same")
        assert conv.grad_fn.name() == "ConvolutionBackward0"


def test_gelu_values_gradient_and_hessian_vector_products_equal_torchs():
    gen = torch.Generator().manual_seed(3)
    net = nn.Sequential(nn.Linear(4, 6), nn.GELU(), nn.Linear(6, 2)).double()
    x = torch.randn(5, 4, dtype=torch.float64, generator=gen)
    params = list(net.parameters())
    vs = [torch.randn(p.shape, dtype=torch.float64, generator=gen) for p in params]

    def derivatives(mode):
        with mode:
            loss = net(x).square().sum()
            grads = torch.autograd.grad(loss, params, create_graph=True)
        hvp = torch.autograd.grad(grads, params, vs, create_graph=True)  # differentiated again: third derivatives
        third = torch.autograd.grad(sum((h * v).sum() for h, v in zip(hvp, vs, strict=True)), params)
        return loss, grads, hvp, third

    with LeanDoubleBackward():
        assert net[1](net[0](x)).grad_fn.name() == "_GELUBackward"
        assert nn.functional.gelu(net[0](x), approximate="tanh").grad_fn.name() == "GeluBackward0"  # stock
    for ours, theirs in zip(derivatives(LeanDoubleBackward()), derivatives(torch.enable_grad()), strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-13, atol=1e-13)
    assert gradgradcheck(lean(nn.functional.gelu), (torch.randn(3, 4, dtype=torch.float64, requires_grad=True),))
