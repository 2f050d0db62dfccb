"""The private ensemble helper of the generalisation experiments: K stacked networks trained at once follow exactly
the K runs trained one by one with torch.optim, and a zero-padded network trains exactly as the narrow one."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from tdlab.ensemble import StackedModels
from tdlab.experiments.catalogue._ensemble import accuracies, cross_entropy, fit, pad_to, squared_error
from tdlab.models import MLP


def _data(n: int = 24, d: int = 5, classes: int = 3, members: int = 3):
    g = torch.Generator().manual_seed(0)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    labels = torch.randint(classes, (members, n), generator=g)
    return X, labels


def test_losses_and_accuracies_match_torch():
    outputs = torch.randn(2, 6, 4, generator=torch.Generator().manual_seed(1))
    labels = torch.randint(4, (2, 6), generator=torch.Generator().manual_seed(2))
    for k in range(2):
        assert cross_entropy(outputs, labels)[k].item() == pytest.approx(
            nn.functional.cross_entropy(outputs[k], labels[k]).item(), rel=1e-6
        )
        onehot = nn.functional.one_hot(labels[k], 4).float()
        assert squared_error(outputs, labels)[k].item() == pytest.approx(
            nn.functional.mse_loss(outputs[k], onehot).item(), rel=1e-6
        )
        expected = (outputs[k].argmax(1) == labels[k]).float().mean().item()
        assert accuracies(outputs, labels)[k].item() == pytest.approx(expected)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_stacked_training_equals_separate_runs(optimizer):
    X, labels = _data()
    models = [MLP(5, 3, width=7, depth=2, seed=s).double() for s in range(3)]
    separate = [copy.deepcopy(m) for m in models]
    ensemble = StackedModels.of(models)

    def make(params):
        if optimizer == "sgd":
            return torch.optim.SGD(params, lr=0.1, momentum=0.9)
        return torch.optim.Adam(params, lr=0.01)

    steps = fit(ensemble, X, labels, 25, make(ensemble.params.values()))
    assert steps == 25
    for k, model in enumerate(separate):
        opt = make(model.parameters())
        for _ in range(25):
            opt.zero_grad()
            nn.functional.cross_entropy(model(X), labels[k]).backward()
            opt.step()
        for name, p in model.named_parameters():
            torch.testing.assert_close(ensemble.params[name][k], p, rtol=0, atol=1e-10)
        torch.testing.assert_close(ensemble.member(k)["readout.weight"], model.readout.weight.detach())


def test_zero_padded_network_trains_as_the_narrow_one():
    X, labels = _data(members=1)
    narrow = MLP(5, 3, width=4, depth=2, seed=3).double()
    padded = pad_to(narrow, MLP(5, 3, width=11, depth=2, seed=4).double())
    torch.testing.assert_close(padded(X), narrow(X))
    ensemble = StackedModels.of([padded])
    fit(ensemble, X, labels, 30, torch.optim.Adam(ensemble.params.values(), lr=0.02))
    opt = torch.optim.Adam(narrow.parameters(), lr=0.02)
    for _ in range(30):
        opt.zero_grad()
        nn.functional.cross_entropy(narrow(X), labels[0]).backward()
        opt.step()
    for name, p in narrow.named_parameters():
        trained = ensemble.params[name][0]
        block = tuple(slice(0, s) for s in p.shape)
        torch.testing.assert_close(trained[block], p, rtol=0, atol=1e-10)
        rest = trained.clone()
        rest[block] = 0
        assert rest.abs().max().item() == 0.0  # the padding never moves


def test_on_step_stops_training_and_bad_inputs_raise():
    X, labels = _data(members=2)
    ensemble = StackedModels.of([MLP(5, 3, width=8, depth=1, seed=s).double() for s in range(2)])
    seen = []
    steps = fit(
        ensemble,
        X,
        labels,
        100,
        torch.optim.SGD(ensemble.params.values(), lr=0.1),
        on_step=lambda t, out, loss: seen.append(t) or t == 3,
    )
    assert steps == 3 and seen == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="models"):
        StackedModels.of([])
    with pytest.raises(ValueError, match="template"):
        pad_to(MLP(5, 3, width=8, depth=1), MLP(5, 3, width=4, depth=1))
