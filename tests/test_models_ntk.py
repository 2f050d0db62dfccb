"""tdlab.models.ntk: the NTK-parameterised MLP against its formula written out by hand, its draws, its errors."""

from __future__ import annotations

import math

import pytest
import torch

from tdlab.models.ntk import NTKMLP


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
