"""symmetry-breaking: the constant start's tied units and its width-1 twin at initialisation and after one GD step
by hand, the units' spread, config validation, re-checking from stored metrics (the quick run, whose checks must
all pass), and corrupted metrics that must flip the checks."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError
from recheck import assert_rechecks
from torch import nn

from tdlab.experiments.catalogue import symmetry_breaking as sb
from tdlab.models import init_variance

SMALL = {"in_features": 3, "examples": 16, "teacher_width": 2, "width": 4, "depth": 2}


def test_constant_start_ties_every_layer_and_equals_its_twin_before_and_after_a_step():
    config = sb.SymmetryBreakingConfig(**SMALL)
    wide = sb.constant_mlp(config)
    first = wide.hidden_layers()[0].linear.weight
    assert torch.all(first == (2 / (3 + 4)) ** 0.5) and torch.all(wide.readout.bias == 0)
    assert float(wide.readout.weight.detach()[0, 0]) == pytest.approx(init_variance("xavier", 4, 1) ** 0.5)
    twin, groups = sb.width_one_twin(config)
    X, y = sb.teacher_data(config)
    torch.testing.assert_close(wide(X), twin(X), rtol=1e-14, atol=1e-14)
    # one GD step on each (the twin with its per-layer steps) keeps them the same function
    loss = nn.MSELoss()
    for model, optimizer in ((wide, torch.optim.SGD(wide.parameters(), lr=config.lr)), (twin, torch.optim.SGD(groups))):
        optimizer.zero_grad()
        loss(model(X), y).backward()
        optimizer.step()
    torch.testing.assert_close(wide(X), twin(X), rtol=1e-13, atol=1e-13)
    assert not torch.allclose(twin.readout.weight, torch.tensor([[4 * init_variance("xavier", 4, 1) ** 0.5]]).double())


def test_unit_spread_of_two_layers_by_hand():
    W1 = torch.tensor([[[3.0, 0.0], [0.0, 0.0], [3.0, 0.0]]], dtype=torch.float64)  # units 0 and 2 equal, 1 apart
    b1 = torch.zeros(1, 3, dtype=torch.float64)
    W2 = torch.tensor([[[4.0, 0.0, 4.0]]], dtype=torch.float64)
    largest, smallest = sb.unit_spread([W1, W2], [b1, torch.zeros(1, 1, dtype=torch.float64)])
    # unit vectors (3, 0, 0, 4), (0, 0, 0, 0), (3, 0, 0, 4): norms 5, 0, 5
    assert largest.item() == pytest.approx(1.0) and smallest.item() == 0.0


def test_teacher_is_standardised_and_config_validated():
    _, y = sb.teacher_data(sb.SymmetryBreakingConfig(examples=200))
    assert float(y.std()) == pytest.approx(1.0)
    with pytest.raises(ValidationError, match="teacher_width"):
        sb.SymmetryBreakingConfig(in_features=2, teacher_width=3)
    with pytest.raises(ValidationError, match="width"):
        sb.SymmetryBreakingConfig(width=1)


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    config = sb.EXPERIMENT.make_config()
    return config, assert_rechecks(sb.EXPERIMENT, config, tmp_path_factory.mktemp("symmetry_breaking"))


def test_quick_run_passes_every_check(quick):
    _, result = quick
    failed = [f"{c.name}: {c.measured}" for c in result.checks if not c.passed]
    assert not failed, failed
    assert len(result.checks) == 5 and set(result.figures) == {"symmetry"}


def _changed(metrics, change, name, **where):
    out = metrics.copy()
    chosen = out["name"] == name
    for column, wanted in where.items():
        chosen &= out[column] == wanted
    out.loc[chosen, "value"] = change(out.loc[chosen, "value"])
    return out


def test_checks_fail_on_corrupted_metrics(quick):
    config, result = quick
    names = [c.name for c in result.checks]
    verdicts = lambda metrics: [{c.name: c.passed for c in sb.checks(metrics, config)}[n] for n in names]  # noqa: E731
    last = result.metrics["step"].max()
    broken_tie = _changed(result.metrics, lambda v: v + 1e-6, "largest_spread", network="constant")
    assert verdicts(broken_tie) == [False, True, True, True, True]
    merged = _changed(result.metrics, lambda v: v * 0, "smallest_spread", network="random", step=last)
    assert verdicts(merged) == [True, False, True, True, True]
    off_twin = _changed(result.metrics, lambda v: v * (1 + 1e-6), "loss", network="twin")
    assert verdicts(off_twin) == [True, True, False, True, True]
    worse_width_one = _changed(result.metrics, lambda v: v * 1.2, "loss", network="width-1")
    assert verdicts(worse_width_one) == [True, True, True, False, True]
    constant_final = float(
        result.metrics.query("name == 'loss' and network == 'constant' and step == @last").value.iloc[0]
    )
    no_help = _changed(result.metrics, lambda v: v * 0 + constant_final, "loss", network="random", step=last)
    assert verdicts(no_help) == [True, True, True, True, False]
