"""overparameterisation: the per-example tangent-kernel trace against autograd one output at a time, its expectation
at initialisation against the closed form, the sharpness at initialisation against the exact Hessian, config
validation, the seeds trained together (each at its own step) against one by one, the width checks flipping on
corrupted losses, re-checking from stored metrics, and a quick run."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from pydantic import ValidationError
from recheck import assert_rechecks

from tdlab.curvature import exact_hessian
from tdlab.data import mnist1d
from tdlab.experiments.base import Context
from tdlab.experiments.catalogue import overparameterisation as op
from tdlab.models import MLP
from tdlab.oracles import Objective
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
    with pytest.raises(ValidationError, match="step_fraction"):
        op.OverparameterisationConfig(step_fraction=1.0)
    with pytest.raises(ValidationError, match="curve_every"):  # the curve must reach the step the checks read
        op.OverparameterisationConfig(steps=300, curve_every=7)


SMALL = {
    "data": {"name": "mnist1d", "n_train": 60, "n_test": 100},
    "widths": (4, 8, 16),
    "seeds": 2,
    "steps": 12,
    "curve_every": 4,
}


@pytest.fixture(scope="module")
def small_run() -> tuple[op.OverparameterisationConfig, object]:
    config = op.EXPERIMENT.make_config(**SMALL, probe_examples=4)
    return config, op.measure(config, Context(torch.device("cpu")))


def test_sharpness_at_initialisation_is_the_exact_top_eigenvalue(small_run):
    """lambda_max recorded for each seed vs the largest eigenvalue of the dense float64 Hessian of the same MLP."""
    config, metrics = small_run
    data = mnist1d(60, 100, seed=0)
    for s in range(2):
        model = MLP(40, 10, width=8, depth=1, seed=s).double()
        train = (data.X_train.double(), data.y_train)
        exact = torch.linalg.eigvalsh(exact_hessian(Objective(model, torch.nn.CrossEntropyLoss(), train)))[-1].item()
        recorded = metrics.query(f"name == 'sharpness_init' and width == 8 and seed == {s}")["value"].item()
        assert recorded == pytest.approx(exact, rel=5 * config.lanczos_tol)
        step = metrics.query(f"name == 'lr' and width == 8 and seed == {s}")["value"].item()
        assert step == pytest.approx(2 * config.step_fraction / recorded, rel=1e-12)


def test_seeds_trained_together_follow_their_own_runs(small_run):
    """Each seed's recorded loss curve is the full-batch cross-entropy of that MLP trained alone by torch's SGD at
    its own step 2 * 0.5 / lambda_max, at steps 0, 4, 8 and 12 (every `curve_every` steps, the last included)."""
    _, metrics = small_run
    curves = metrics.query("name == 'train_loss' and width == 8")
    data = mnist1d(60, 100, seed=0)
    for s in range(2):
        model = MLP(40, 10, width=8, depth=1, seed=s)
        lr = metrics.query(f"name == 'lr' and width == 8 and seed == {s}")["value"].item()
        optimizer = torch.optim.SGD(model.parameters(), lr=lr)
        expected = []
        for step in range(13):
            loss = torch.nn.functional.cross_entropy(model(data.X_train), data.y_train)
            expected.append(loss.item())
            if step < 12:
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        measured = curves.query(f"seed == {s}").sort_values("step")
        assert measured["step"].tolist() == [0, 4, 8, 12]
        np.testing.assert_allclose(measured["value"].to_numpy(), expected[::4], rtol=1e-5)


def _with_final_losses(metrics, config, losses: np.ndarray):
    """The metrics with the final training losses replaced by `losses` (width x seed)."""
    metrics = metrics.copy()
    for i, width in enumerate(config.widths):
        for s in range(config.seeds):
            row = (metrics["name"] == "train_loss") & (metrics["step"] == config.steps)
            metrics.loc[row & (metrics["width"] == width) & (metrics["seed"] == s), "value"] = losses[i, s]
    return metrics


def test_width_checks_fail_on_corrupted_losses():
    """Falling losses pass checks 1 and 2; losses rising with width fail the trend test; a U-shape passes the trend
    test but fails the no-reversal test."""
    config = op.EXPERIMENT.make_config(**{**SMALL, "widths": (4, 8, 16, 32, 64), "seeds": 3}, probe_examples=4)
    metrics = op.measure(config, Context(torch.device("cpu")))
    jitter = np.array([1.0, 1.05, 0.95])
    falling = np.array([1.0, 0.5, 0.25, 0.12, 0.06])[:, None] * jitter
    u_shape = np.array([1.0, 0.5, 0.25, 0.12, 0.5])[:, None] * jitter

    def verdicts(losses: np.ndarray) -> list[bool]:
        return [c.passed for c in op.checks(_with_final_losses(metrics, config, losses), config)[:2]]

    assert verdicts(falling) == [True, True]
    assert verdicts(falling[::-1])[0] is False
    assert verdicts(u_shape) == [True, False]
    assert verdicts(np.full((5, 3), np.nan)) == [False, False]  # diverged runs


def test_checks_and_figures_come_from_the_stored_metrics(tmp_path):
    result = assert_rechecks(op.EXPERIMENT, op.EXPERIMENT.make_config(**SMALL, probe_examples=4), tmp_path)
    assert len(result.checks) == 4 and set(result.figures) == {"loss_curves", "width_sweep"}


def test_quick_run():
    """The test error and NTK checks pass. The width checks (1, 2) are reported as measured: in the quick run with
    the step controlled they fail (Spearman p 0.057, Welch p 0.046, a U-shape with its minimum at width 64), so
    only their p-values are asserted to be computed; their verdicts are tested on constructed losses above."""
    experiment = op.EXPERIMENT
    result = experiment.run(experiment.make_config(), Context(torch.device("cpu")))
    assert len(result.checks) == 4
    assert all(c.passed for c in result.checks[2:]), [(c.name, c.measured, c.theory) for c in result.checks[2:]]
    assert all(0 <= c.measured <= 1 for c in result.checks[:2])
    assert set(result.figures) == {"loss_curves", "width_sweep"}
    assert all(isinstance(f, Figure) for f in result.figures.values())
