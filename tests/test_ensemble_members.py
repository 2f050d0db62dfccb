"""Stacked networks trained by `tdlab.train.fit` (`tdlab.ensemble.members`): K members trained at once follow
exactly the K runs trained one by one with torch.optim, the per-member probe and accuracies match torch's losses, a
callback stops training when every member fits, and a zero-padded network trains exactly as the narrow one."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from tdlab.ensemble import StackedModels
from tdlab.ensemble.members import MemberLosses, Members, accuracies, by_member, pad_to, summed
from tdlab.models import MLP
from tdlab.probes import ProbeSet
from tdlab.train.trainer import fit

CROSS_ENTROPY = nn.CrossEntropyLoss()


def _data(n: int = 24, d: int = 5, classes: int = 3, members: int = 3):
    """Shared inputs (n, d) and each member's labels, one column each (n, members)."""
    g = torch.Generator().manual_seed(0)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    labels = torch.randint(classes, (n, members), generator=g)
    return X, labels


def _alone(model: nn.Module, X: torch.Tensor, y: torch.Tensor, optimizer: torch.optim.Optimizer, steps: int) -> None:
    for _ in range(steps):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(X), y).backward()
        optimizer.step()


def test_summed_losses_and_accuracies_match_torch():
    g = torch.Generator().manual_seed(1)
    outputs, labels = torch.randn(2, 6, 4, generator=g), torch.randint(4, (6, 2), generator=g)
    expected = sum(nn.functional.cross_entropy(outputs[k], labels[:, k]) for k in range(2))
    assert summed(CROSS_ENTROPY)(outputs, labels).item() == pytest.approx(expected.item(), rel=1e-6)
    onehot = nn.functional.one_hot(labels, 4).float()
    mse = sum(nn.functional.mse_loss(outputs[k], onehot[:, k]) for k in range(2))
    assert summed(nn.MSELoss())(outputs, onehot).item() == pytest.approx(mse.item(), rel=1e-6)
    for k in range(2):
        expected_accuracy = (outputs[k].argmax(1) == labels[:, k]).float().mean().item()
        assert accuracies(outputs, labels.T)[k].item() == pytest.approx(expected_accuracy)
        assert accuracies(outputs, labels[:, 0])[k].item() == pytest.approx(
            (outputs[k].argmax(1) == labels[:, 0]).float().mean().item()
        )


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("vmap", [False, True])
def test_stacked_training_equals_separate_runs(optimizer, vmap):
    X, labels = _data()
    models = [MLP(5, 3, width=7, depth=2, seed=s).double() for s in range(3)]
    separate = [copy.deepcopy(m) for m in models]
    members = Members(StackedModels.of(models, vmap=vmap))

    def make(params):
        if optimizer == "sgd":
            return torch.optim.SGD(params, lr=0.1, momentum=0.9)
        return torch.optim.Adam(params, lr=0.01)

    result = fit(members, summed(CROSS_ENTROPY), (X, labels), make(members.parameters()), 25)
    assert result.steps == 25
    for k, model in enumerate(separate):
        _alone(model, X, labels[:, k], make(model.parameters()), 25)
        for name, p in model.named_parameters():
            torch.testing.assert_close(members.models.params[name][k], p, rtol=0, atol=1e-10)


def test_member_probe_records_each_members_loss_and_a_callback_stops_when_all_fit():
    X, labels = _data(members=2)
    members = Members(StackedModels.of([MLP(5, 3, width=16, depth=1, seed=s).double() for s in range(2)]))
    probe = MemberLosses(CROSS_ENTROPY)
    probes = ProbeSet([probe], members, summed(CROSS_ENTROPY), train=(X, labels))
    optimizer = torch.optim.Adam(members.parameters(), lr=0.05)

    def every_one_fits(step: int, batch_loss: float) -> bool:
        return bool((probe.losses <= 0.1).all())

    result = fit(members, summed(CROSS_ENTROPY), (X, labels), optimizer, 500, probes=probes, callbacks=[every_one_fits])
    assert result.stopped and result.steps < 500
    rows = by_member(result.metrics)
    assert set(rows["name"]) == {"train/loss", "train/accuracy"} and set(rows["member"]) == {0, 1}
    last = rows.query(f"step == {result.steps} and name == 'train/loss'").sort_values("member")["value"]
    with torch.no_grad():
        outputs = members(X)
    for k in range(2):
        assert last.iloc[k] == pytest.approx(nn.functional.cross_entropy(outputs[k], labels[:, k]).item(), rel=1e-12)
    assert last.max() <= 0.1
    before = rows.query(f"step == {result.steps - 1} and name == 'train/loss'")["value"]
    assert before.max() > 0.1  # it stopped at the first step where every member fits
    assert rows["step"].min() == 0  # the probe also measured the initial networks


def test_zero_padded_network_trains_as_the_narrow_one():
    X, labels = _data(members=1)
    narrow = MLP(5, 3, width=4, depth=2, seed=3).double()
    padded = pad_to(narrow, MLP(5, 3, width=11, depth=2, seed=4).double())
    torch.testing.assert_close(padded(X), narrow(X))
    members = Members(StackedModels.of([padded]))
    fit(members, summed(CROSS_ENTROPY), (X, labels), torch.optim.Adam(members.parameters(), lr=0.02), 30)
    _alone(narrow, X, labels[:, 0], torch.optim.Adam(narrow.parameters(), lr=0.02), 30)
    for name, p in narrow.named_parameters():
        trained = members.models.params[name][0]
        block = tuple(slice(0, s) for s in p.shape)
        torch.testing.assert_close(trained[block], p, rtol=0, atol=1e-10)
        rest = trained.detach().clone()
        rest[block] = 0
        assert rest.abs().max().item() == 0.0  # the padding never moves


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="models"):
        StackedModels.of([])
    with pytest.raises(ValueError, match="template"):
        pad_to(MLP(5, 3, width=8, depth=1), MLP(5, 3, width=4, depth=1))
