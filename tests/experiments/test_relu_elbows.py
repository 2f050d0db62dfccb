"""relu-elbows: the Cauchy law of -b/w and the piecewise-linear interpolant against scipy and numpy, the elbow,
dead-unit and replica-training helpers against hand computation, and a quick run whose checks must all pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from pydantic import ValidationError
from scipy import stats

from tdlab.experiments.base import Context
from tdlab.experiments.catalogue import relu_elbows as re_
from tdlab.experiments.registry import get
from tdlab.models import MLP
from tdlab.theory import cauchy
from tdlab.theory.piecewise_linear import evaluate_interpolant, interpolation_error_bound, relu_interpolant


# -------------------------------------------------------------------------------------------------- theory
def test_cauchy_formulas_against_scipy():
    c = np.linspace(-20, 20, 41)
    np.testing.assert_allclose(cauchy.cauchy_density(c, 2.0), stats.cauchy.pdf(c, scale=2.0))
    np.testing.assert_allclose(cauchy.cauchy_cdf(c, 0.5), stats.cauchy.cdf(c, scale=0.5))
    np.testing.assert_allclose(
        cauchy.cauchy_interval_probability([3.0, 10.0]), stats.cauchy.cdf([3.0, 10.0]) - stats.cauchy.cdf([-3.0, -10.0])
    )
    assert cauchy.median_abs_mean(1.5) == pytest.approx(stats.cauchy.ppf(0.75, scale=1.5))
    with pytest.raises(ValueError, match="scale"):
        cauchy.cauchy_density(0.0, scale=0.0)


def test_ratio_of_gaussians_is_cauchy_with_scale_sb_over_sw():
    rng = np.random.default_rng(0)
    w, b = 2.0 * rng.standard_normal(100_000), 0.5 * rng.standard_normal(100_000)
    gamma = cauchy.elbow_scale(2.0, 0.5)
    assert stats.kstest(-b / w, "cauchy", args=(0.0, gamma)).pvalue > 1e-3
    # and the mean of n of them does not concentrate: the median of |mean| stays gamma
    means = (-b / w).reshape(100, 1000).mean(axis=1)
    assert np.median(np.abs(means)) == pytest.approx(gamma, rel=0.5)


def test_relu_interpolant_equals_numpy_interp():
    rng = np.random.default_rng(1)
    knots = np.sort(rng.uniform(-3, 3, 9))
    values = rng.standard_normal(9)
    x = rng.uniform(knots[0], knots[-1], 500)
    np.testing.assert_allclose(
        evaluate_interpolant(relu_interpolant(knots, values), x), np.interp(x, knots, values), atol=1e-12
    )


def test_interpolation_error_bound_holds_and_is_nearly_tight():
    knots = np.linspace(0.0, np.pi, 9)
    net = relu_interpolant(knots, np.sin(knots))
    x = np.linspace(0.0, np.pi, 20001)
    error = np.abs(evaluate_interpolant(net, x) - np.sin(x)).max()
    bound = interpolation_error_bound(knots, 1.0)
    assert error <= bound and error > 0.9 * bound  # sin'' = -sin peaks at pi/2, a knot midpoint here
    with pytest.raises(ValueError, match="knots"):
        relu_interpolant([0.0, 0.0, 1.0], [1.0, 2.0, 3.0])


# ---------------------------------------------------------------------------------------------- measurement
def test_elbows_and_dead_units_by_hand():
    model = MLP(1, 1, width=2, depth=1, init="zeros")
    with torch.no_grad():
        model.hidden[0].linear.weight.copy_(torch.tensor([[2.0], [-1.0]]))
        model.hidden[0].linear.bias.copy_(torch.tensor([1.0, 3.0]))
    assert re_.elbows(model).tolist() == [-0.5, 3.0]
    x = torch.linspace(-2.0, 2.0, 9)
    # unit 1 (w < 0) is active left of 3, so alive on [-2, 2]; unit 0 is active right of -0.5
    assert re_.dead_units(torch.tensor([2.0, -1.0]), torch.tensor([1.0, 3.0]), x).tolist() == [False, False]
    assert re_.dead_units(torch.tensor([1.0, -1.0]), torch.tensor([-2.5, -2.5]), x).tolist() == [True, True]
    with pytest.raises(ValueError, match="model"):
        re_.elbows(MLP(2, 1, width=3, depth=1))


def test_train_replicas_is_gradient_descent_per_step_size():
    g = torch.Generator().manual_seed(0)
    params = tuple(torch.randn(s, generator=g, dtype=torch.float64) for s in ((5,), (5,), (5,), ()))
    x = torch.linspace(-1, 1, 7, dtype=torch.float64)
    y = x.abs()
    lrs = torch.tensor([0.01, 0.05], dtype=torch.float64)
    final, losses, _, diverged = re_.train_replicas(params, x, y, lrs, steps=4, record_every=2)
    for r, lr in enumerate(lrs.tolist()):
        w, b, a, c = (p.clone().requires_grad_(True) for p in params)
        for _ in range(4):
            loss = ((torch.relu(x[:, None] * w + b) @ a + c - y) ** 2).mean()
            grads = torch.autograd.grad(loss, (w, b, a, c))
            w, b, a, c = (p.detach() - lr * gr for p, gr in zip((w, b, a, c), grads, strict=True))
            w, b, a, c = (p.requires_grad_(True) for p in (w, b, a, c))
        for got, want in zip(final, (w, b, a, c), strict=True):
            torch.testing.assert_close(got[r], want.detach())
    assert losses.shape == (2, 3) and not diverged.any()
    # the offset alone grows by |1 - 2 eta| per step: past float64 within 30 steps at eta = 1e6
    _, _, _, blown = re_.train_replicas(params, x, y, torch.tensor([1e6], dtype=torch.float64), 30, 10)
    assert blown.tolist() == [True]


def test_config_rejects_bad_values():
    with pytest.raises(ValidationError):
        re_.ReluElbowsConfig(group_sizes=(0, 16))
    with pytest.raises(ValidationError):
        re_.ReluElbowsConfig(elbow_units=10)
    with pytest.raises(ValidationError, match="groups"):
        re_.ReluElbowsConfig(elbow_units=2**12, group_sizes=(16, 1024))


# ------------------------------------------------------------------------------------------------ experiment
def test_quick_run_passes_every_check():
    experiment = get("relu-elbows")
    result = experiment.run(experiment.make_config(), Context(torch.device("cpu")))
    failed = [f"{c.name}: {c.measured} vs {c.theory} ({c.detail})" for c in result.checks if not c.passed]
    assert not failed, failed
    assert len(result.checks) == 8
    assert set(result.figures) == {"cauchy_elbows", "training", "interpolants"}
    assert all(isinstance(f, Figure) for f in result.figures.values())
    # large steps kill units: the dead fraction after training grows from the smallest to the largest step
    dead = result.metrics.query("name == 'dead_units'")
    final = dead[dead["step"] == dead["step"].max()].sort_values("step_fraction")["value"].to_numpy()
    assert final[-1] > final[0]
