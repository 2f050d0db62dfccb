"""overparameterisation: the per-example tangent-kernel trace against autograd one output at a time, its expectation
at initialisation against the closed form, config validation, the seeds trained together against one by one,
re-checking from stored metrics, and a quick run whose checks must all pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from pydantic import ValidationError
from recheck import assert_rechecks

from tdlab.data import mnist1d
from tdlab.experiments.base import Context
from tdlab.experiments.catalogue import overparameterisation as op
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


SMALL = {"data": {"name": "mnist1d", "n_train": 60, "n_test": 100}, "widths": (4, 8, 16), "seeds": 2, "steps": 12}


def test_seeds_trained_together_follow_their_own_runs():
    """Each seed's recorded loss curve is the full-batch cross-entropy of that MLP trained alone by torch's SGD
    with momentum, before every step and after the last."""
    config = op.EXPERIMENT.make_config(**SMALL, probe_examples=4)
    curves = op.measure(config, Context(torch.device("cpu"))).query("name == 'train_loss' and width == 8")
    data = mnist1d(60, 100, seed=0)
    for s in range(2):
        model = MLP(40, 10, width=8, depth=1, seed=s)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        expected = []
        for step in range(13):
            loss = torch.nn.functional.cross_entropy(model(data.X_train), data.y_train)
            expected.append(loss.item())
            if step < 12:
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        measured = curves.query(f"seed == {s}").sort_values("step")["value"].to_numpy()
        np.testing.assert_allclose(measured, expected, rtol=1e-5)


def test_checks_and_figures_come_from_the_stored_metrics(tmp_path):
    result = assert_rechecks(op.EXPERIMENT, op.EXPERIMENT.make_config(**SMALL, probe_examples=4), tmp_path)
    assert len(result.checks) == 3 and set(result.figures) == {"loss_curves", "width_sweep"}


def test_quick_run_passes_every_check():
    experiment = op.EXPERIMENT
    result = experiment.run(experiment.make_config(), Context(torch.device("cpu")))
    failed = [f"{c.name}: {c.measured} vs {c.theory}" for c in result.checks if not c.passed]
    assert not failed, failed
    assert len(result.checks) == 3
    assert set(result.figures) == {"loss_curves", "width_sweep"}
    assert all(isinstance(f, Figure) for f in result.figures.values())
    final = result.metrics.query("name == 'train_loss' and step == 300").groupby("width")["value"].mean()
    assert final.is_monotonic_decreasing
