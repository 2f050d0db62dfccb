"""linear-depth: a deep linear MLP is the affine map of its weight product, the least-squares fit against the normal
equations, config validation, re-checking from stored metrics (the quick run, whose checks must all pass), and
corrupted metrics that must flip the checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from recheck import assert_rechecks

from tdlab.experiments.catalogue import linear_depth as ld
from tdlab.models import MLP


def test_a_deep_linear_mlp_is_the_affine_map_of_its_weights():
    """f(x) = W_3 (W_2 (W_1 x + b_1) + b_2) + b_3 = (W_3 W_2 W_1) x + (W_3 W_2 b_1 + W_3 b_2 + b_3)."""
    model = MLP(3, 1, width=5, depth=2, activation="linear", init="xavier", bias_init_std=0.3, seed=0).double()
    (W1, b1), (W2, b2), (W3, b3) = [
        (layer.weight.detach(), layer.bias.detach())
        for layer in [h.linear for h in model.hidden_layers()] + [model.readout]
    ]
    A, c = W3 @ W2 @ W1, W3 @ W2 @ b1 + W3 @ b2 + b3
    expected = np.append(A[0].numpy(), c.numpy())
    np.testing.assert_allclose(ld.end_to_end(model, 3, torch.zeros(1, dtype=torch.float64)), expected, atol=1e-14)
    X = torch.randn(7, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(model(X), X @ A.T + c)


def test_affine_fit_solves_the_normal_equations():
    X, y = ld.target_data(ld.LinearDepthConfig(examples=50))
    coefficients, mse = ld.affine_fit(X, y)
    design = np.hstack([X.numpy(), np.ones((50, 1))])
    np.testing.assert_allclose(design.T @ design @ coefficients, design.T @ y.numpy()[:, 0], atol=1e-10)
    assert mse == pytest.approx(float(np.mean((design @ coefficients - y.numpy()[:, 0]) ** 2)))
    assert 0.5 < mse < 1.0  # the target is far from affine (variance 1)


def test_config_validation():
    with pytest.raises(ValidationError, match="depths"):
        ld.LinearDepthConfig(depths=(1, 1))
    with pytest.raises(ValidationError, match="depths"):
        ld.LinearDepthConfig(depths=(0, 2))
    assert ld.LinearDepthConfig(depths=(4, 1)).depths == (1, 4)


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    config = ld.EXPERIMENT.make_config()
    return config, assert_rechecks(ld.EXPERIMENT, config, tmp_path_factory.mktemp("linear_depth"))


def test_quick_run_passes_every_check(quick):
    _, result = quick
    failed = [f"{c.name}: {c.measured}" for c in result.checks if not c.passed]
    assert not failed, failed
    assert len(result.checks) == 8 and set(result.figures) == {"depth"}


def test_checks_fail_on_corrupted_metrics(quick):
    config, result = quick
    names = [c.name for c in result.checks]
    verdicts = lambda metrics: [{c.name: c.passed for c in ld.checks(metrics, config)}[n] for n in names]  # noqa: E731
    for factor in (1 - 1e-5, 1 + 1e-5):  # depth 4 fits better than least squares / did not converge
        changed = result.metrics.copy()
        chosen = (changed["name"] == "linear_mse") & (changed["depth"] == 4)
        changed.loc[chosen, "value"] *= factor
        assert verdicts(changed) == [True, True, True, True, False, True, True, True]
    moved = result.metrics.copy()
    moved.loc[moved["name"] == "linear_map_distance", "value"] = 0.01
    assert verdicts(moved) == [True, False, True, False, True, False, True, True]
    affine_relu = result.metrics.copy()
    affine_relu.loc[affine_relu["name"] == "relu_mse", "value"] = ld.value(result.metrics, "affine_mse")
    assert verdicts(affine_relu) == [True] * 6 + [False, False]
