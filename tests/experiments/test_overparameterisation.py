"""overparameterisation: the per-example tangent-kernel trace against autograd one output at a time, its expectation
at initialisation against the closed form, config validation, and a quick run whose checks must all pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from pydantic import ValidationError

from tdlab.experiments.base import Context
from tdlab.experiments.catalogue import overparameterisation as op
from tdlab.experiments.registry import get
from tdlab.models import MLP
from tdlab.theory.ntk import relu_ntk_trace


def test_ntk_trace_against_autograd_per_output():
    model = MLP(4, 3, width=6, depth=2, seed=0).double()
    X = torch.randn(5, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    expected = torch.zeros(5, dtype=torch.float64)
    for i in range(5):
        for c in range(3):
            grads = torch.autograd.grad(model(X[i : i + 1])[0, c], list(model.parameters()))
            expected[i] += sum(g.square().sum() for g in grads)
    torch.testing.assert_close(op.ntk_trace(model, X), expected)


def test_expected_trace_at_he_initialisation():
    """Mean over 400 initialisations of tr Theta(x, x) vs C (m |x|^2/d + |x|^2 + 2), within 4 standard errors."""
    d, m, C = 6, 16, 3
    x = torch.randn(1, d, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    samples = np.array([op.ntk_trace(MLP(d, C, width=m, depth=1, seed=s).double(), x).item() for s in range(400)])
    expected = float(relu_ntk_trace(m, x.square().sum().item(), d, C))
    assert abs(samples.mean() - expected) < 4 * samples.std() / np.sqrt(samples.size)
    with pytest.raises(ValueError, match="width"):
        relu_ntk_trace(0, 1.0, d, C)


def test_config_validation():
    with pytest.raises(ValidationError, match="widths"):
        op.OverparameterisationConfig(widths=(8, 16))
    with pytest.raises(ValidationError, match="widths"):
        op.OverparameterisationConfig(widths=(8, 32, 16))
    with pytest.raises(ValidationError, match="seeds"):
        op.OverparameterisationConfig(seeds=1)


def test_quick_run_passes_every_check():
    experiment = get("overparameterisation")
    result = experiment.run(experiment.make_config(), Context(torch.device("cpu")))
    failed = [f"{c.name}: {c.measured} vs {c.theory}" for c in result.checks if not c.passed]
    assert not failed, failed
    assert len(result.checks) == 3
    assert set(result.figures) == {"loss_curves", "width_sweep"}
    assert all(isinstance(f, Figure) for f in result.figures.values())
    final = result.metrics.query("name == 'train_loss' and step == 300").groupby("width")["value"].mean()
    assert final.is_monotonic_decreasing
