"""tdlab.models.ntk: the NTK-parameterised MLP against its formula written out by hand, its draws, its errors."""

from __future__ import annotations

import math

import pytest
import torch

from tdlab.models.ntk import NTKMLP, MeanFieldMLP


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_forward_is_the_ntk_formula(activation):
    model = NTKMLP(5, 2, width=7, depth=2, activation=activation, seed=0, dtype=torch.float64)
    phi = torch.tanh if activation == "tanh" else torch.relu
    x = torch.randn(4, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    W1, W2, V = model.hidden[0].weight, model.hidden[1].weight, model.readout.weight
    h = phi(phi(x @ W1.T / math.sqrt(5)) @ W2.T / math.sqrt(7))
    torch.testing.assert_close(model(x), h @ V.T / math.sqrt(7), rtol=0, atol=1e-14)


def test_weights_are_standard_normal_draws_in_layer_order():
    model = NTKMLP(3, 1, width=4, depth=2, seed=5, dtype=torch.float64)
    g = torch.Generator().manual_seed(5)
    expected = [torch.randn(shape, generator=g, dtype=torch.float64) for shape in ((4, 3), (4, 4), (1, 4))]
    names = [name for name, _ in model.named_parameters()]
    assert names == ["hidden.0.weight", "hidden.1.weight", "readout.weight"]
    assert all(torch.equal(p, e) for p, e in zip(model.parameters(), expected, strict=True))
    big = NTKMLP(100, 1, width=400, depth=1, seed=0)
    assert abs(big.hidden[0].weight.std().item() - 1.0) < 0.01  # N(0, 1), not N(0, 1/fan-in)


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="depth"):
        NTKMLP(3, 1, depth=0)
    with pytest.raises(ValueError, match="activation"):
        NTKMLP(3, 1, activation="swish")


def test_mean_field_forward_divides_the_readout_by_the_width():
    model = MeanFieldMLP(5, 3, width=7, activation="relu", seed=2, dtype=torch.float64)
    ntk = NTKMLP(5, 3, width=7, depth=1, activation="relu", seed=2, dtype=torch.float64)
    x = torch.randn(4, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    W, V = model.hidden[0].weight, model.readout.weight
    torch.testing.assert_close(model(x), torch.relu(x @ W.T / math.sqrt(5)) @ V.T / 7, rtol=0, atol=1e-14)
    torch.testing.assert_close(model(x) * math.sqrt(7), ntk(x), rtol=1e-14, atol=1e-14)  # same draws


def test_mean_field_units_move_order_one_at_step_eta_m():
    """One gradient step at eta m on a fixed batch moves the first layer by a width-independent relative amount
    (the mean-field scaling), where the NTK parameterisation at step eta moves it by ~1/sqrt(m): from m = 64 to
    4096 the ratio of relative movements stays within 25% for mean-field and falls ~8x for NTK."""
    x = torch.randn(32, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    y = torch.randn(32, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(1))

    def relative_move(model: torch.nn.Module, lr: float) -> float:
        loss = (model(x) - y).square().mean()
        (grad,) = torch.autograd.grad(loss, [model.hidden[0].weight])
        return (lr * grad.norm() / model.hidden[0].weight.norm()).item()

    mf = [relative_move(MeanFieldMLP(5, width=m, seed=0, dtype=torch.float64), 0.5 * m) for m in (64, 4096)]
    ntk = [relative_move(NTKMLP(5, width=m, depth=1, seed=0, dtype=torch.float64), 0.5) for m in (64, 4096)]
    assert 0.75 < mf[1] / mf[0] < 1.25
    assert ntk[0] / ntk[1] == pytest.approx(8.0, rel=0.25)
