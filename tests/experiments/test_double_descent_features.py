"""double-descent-features: the interpolation threshold and parameter counts against real models, the kernel-form
minimum-norm path against the pseudo-inverse, the MLP sweep, reproducibility, and a quick run whose checks must
all pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from pydantic import ValidationError

from tdlab.experiments.base import Context
from tdlab.experiments.catalogue import double_descent_features as ddf
from tdlab.experiments.registry import get
from tdlab.models import MLP
from tdlab.theory.double_descent import interpolation_threshold, mlp_interpolation_width, mlp_num_parameters


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
    g = torch.Generator().manual_seed(0)
    features = torch.randn(n, 3 * n, generator=g, dtype=torch.float64)
    Y = torch.randn(n, 2, generator=g, dtype=torch.float64)
    counts = np.arange(n - 3, n + 4)
    path = ddf.min_norm_path(features, features, Y, counts)
    residual = [(fitted["train"] - Y).norm().item() for fitted in path]
    exact = [r < 1e-8 * Y.norm().item() for r in residual]
    assert counts[exact.index(True)] == interpolation_threshold(n)
    assert not any(exact[:3]) and all(exact[3:])


@pytest.mark.parametrize("p", [5, 20, 35, 80])
def test_min_norm_path_against_the_pseudo_inverse(p):
    g = torch.Generator().manual_seed(p)
    train = torch.randn(20, 80, generator=g, dtype=torch.float64)
    test = torch.randn(9, 80, generator=g, dtype=torch.float64)
    Y = torch.randn(20, 3, generator=g, dtype=torch.float64)
    counts = np.array(sorted({3, p, 80}))
    fitted = ddf.min_norm_path(train, test, Y, counts)[list(counts).index(p)]
    A = torch.linalg.pinv(train[:, :p]) @ Y
    torch.testing.assert_close(fitted["train"], train[:, :p] @ A, rtol=0, atol=1e-8)
    torch.testing.assert_close(fitted["test"], test[:, :p] @ A, rtol=0, atol=1e-8)
    assert fitted["norm"].item() == pytest.approx(A.norm().item(), rel=1e-8)


def test_feature_counts_contain_the_threshold_and_validation():
    config = ddf.DoubleDescentConfig(n_train=37, points=10)
    counts = ddf.feature_counts(config)
    assert 37 in counts and np.all(np.diff(counts) > 0)
    with pytest.raises(ValidationError, match="mlp_widths"):
        ddf.DoubleDescentConfig(mlp_widths=(8, 4))
    with pytest.raises(ValidationError, match="ratio_max"):
        ddf.DoubleDescentConfig(ratio_max=0.5)


def test_small_run_with_mlp_sweep_is_reproducible():
    experiment = get("double-descent-features")
    config = experiment.make_config(n_train=40, n_test=100, points=9, seeds=2, mlp_widths=(2, 8), mlp_steps=20)
    first = experiment.run(config, Context(torch.device("cpu")))
    second = experiment.run(config, Context(torch.device("cpu")))
    assert set(first.figures) == {"random_features", "mlp_width_sweep"}
    assert {"mlp_test_error", "mlp_train_error", "test_error"} <= set(first.metrics["name"])
    assert first.metrics.equals(second.metrics)


def test_quick_run_passes_every_check():
    experiment = get("double-descent-features")
    result = experiment.run(experiment.make_config(), Context(torch.device("cpu")))
    failed = [f"{c.name}: {c.measured} vs {c.theory}" for c in result.checks if not c.passed]
    assert not failed, failed
    assert len(result.checks) == 3
    assert isinstance(result.figures["random_features"], Figure)
    error = result.metrics.query("name == 'test_error'").groupby("ratio")["value"].mean()
    assert error.idxmax() == pytest.approx(1.0, rel=0.2)
