"""double-descent-features: the interpolation threshold and parameter counts against real models, the nested
minimum-norm path against the pseudo-inverse, the MLP sweep, reproducibility, re-checking from stored metrics, and a
quick run whose checks must all pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from pydantic import ValidationError
from recheck import assert_rechecks

from tdlab.experiments.base import Context
from tdlab.experiments.catalogue import double_descent_features as ddf
from tdlab.models import MLP
from tdlab.theory.double_descent import interpolation_threshold, mlp_interpolation_width, mlp_num_parameters
from tdlab.theory.least_squares import min_norm_least_squares


@pytest.mark.parametrize(("d", "width", "out", "depth"), [(40, 10, 10, 1), (7, 13, 3, 2), (5, 4, 2, 3)])
def test_parameter_count_of_a_real_mlp(d, width, out, depth):
    model = MLP(d, out, width=width, depth=depth)
    assert mlp_num_parameters(d, width, out, depth) == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("depth", [1, 2])
def test_interpolation_width_has_n_times_c_parameters(depth):
    w = mlp_interpolation_width(300, in_features=40, out_features=10, depth=depth)
    params = 40 * w + (depth - 1) * w * w + 10 * w + depth * w + 10
    assert params == pytest.approx(300 * 10)


def test_threshold_is_where_min_norm_least_squares_starts_to_interpolate():
    n = 30
    rng = np.random.default_rng(0)
    features, Y = rng.standard_normal((n, 3 * n)), rng.standard_normal((n, 2))
    counts = np.arange(n - 3, n + 4)
    residual = [np.linalg.norm(features[:, :p] @ min_norm_least_squares(features[:, :p], Y) - Y) for p in counts]
    exact = [r < 1e-8 * np.linalg.norm(Y) for r in residual]
    assert counts[exact.index(True)] == interpolation_threshold(n)
    assert not any(exact[:3]) and all(exact[3:])


@pytest.mark.parametrize("p", [5, 20, 35, 80])
def test_nested_readout_against_the_pseudo_inverse(p):
    """The readout on the first p of 80 features, below, at (p = 20 = n) and above the threshold."""
    rng = np.random.default_rng(p)
    train, test, Y = rng.standard_normal((20, 80)), rng.standard_normal((9, 80)), rng.standard_normal((20, 3))
    A, expected = min_norm_least_squares(train[:, :p], Y), np.linalg.pinv(train[:, :p]) @ Y
    np.testing.assert_allclose(train[:, :p] @ A, train[:, :p] @ expected, rtol=0, atol=1e-8)
    np.testing.assert_allclose(test[:, :p] @ A, test[:, :p] @ expected, rtol=0, atol=1e-8)
    assert np.linalg.norm(A) == pytest.approx(np.linalg.norm(expected), rel=1e-8)


def test_feature_counts_contain_the_threshold_and_validation():
    config = ddf.DoubleDescentConfig(n_train=37, points=10)
    counts = ddf.feature_counts(config)
    assert 37 in counts and np.all(np.diff(counts) > 0)
    with pytest.raises(ValidationError, match="mlp_widths"):
        ddf.DoubleDescentConfig(mlp_widths=(8, 4))
    with pytest.raises(ValidationError, match="ratio_max"):
        ddf.DoubleDescentConfig(ratio_max=0.5)


def test_small_run_with_mlp_sweep_is_reproducible_and_rechecks(tmp_path):
    experiment = ddf.EXPERIMENT
    config = experiment.make_config(n_train=40, n_test=100, points=9, seeds=2, mlp_widths=(2, 8), mlp_steps=20)
    first = assert_rechecks(experiment, config, tmp_path)
    second = experiment.measure(config, Context(torch.device("cpu")))
    assert set(first.figures) == {"random_features", "mlp_width_sweep"}
    assert {"mlp_test_error", "mlp_train_error", "test_error"} <= set(first.metrics["name"])
    assert first.metrics.equals(second)


def test_mlp_sweep_trains_each_seed_as_its_own_network():
    """The stacked MLPs of one width end where each, trained alone by torch's Adam on its squared loss, ends."""
    config = ddf.DoubleDescentConfig(n_train=30, n_test=50, points=5, seeds=1, mlp_widths=(6,), mlp_steps=15)
    rows = ddf.measure(config, Context(torch.device("cpu"))).query("name == 'mlp_train_error'")
    data = ddf.with_label_noise(ddf.mnist1d(30, 50, seed=0), 0.2, seed=0).to("cpu", torch.float64)
    targets = torch.nn.functional.one_hot(data.y_train, 10).double()
    for s in range(config.mlp_seeds):
        model = MLP(40, 10, width=6, depth=1, seed=s).double()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        for _ in range(15):
            optimizer.zero_grad()
            torch.nn.functional.mse_loss(model(data.X_train), targets).backward()
            optimizer.step()
        error = (model(data.X_train).argmax(1) != data.y_train).double().mean().item()
        assert rows.query(f"seed == {s}")["value"].item() == pytest.approx(error, abs=1e-12)


def test_quick_run_passes_every_check():
    result = ddf.EXPERIMENT.run(ddf.EXPERIMENT.make_config(), Context(torch.device("cpu")))
    failed = [f"{c.name}: {c.measured} vs {c.theory}" for c in result.checks if not c.passed]
    assert not failed, failed
    assert len(result.checks) == 3
    assert isinstance(result.figures["random_features"], Figure)
    error = result.metrics.query("name == 'test_error'").groupby("ratio")["value"].mean()
    assert error.idxmax() == pytest.approx(1.0, rel=0.2)
