"""taylor-step: the Taylor model of a gradient step (theory.taylor), and the catalogue experiment: its checks from
stored metrics, a diverging run, the quick run."""

import math

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from pydantic import ValidationError
from recheck import assert_rechecks
from scipy.optimize import minimize_scalar
from torch import nn

from tdlab import Objective
from tdlab.experiments.base import Context
from tdlab.experiments.catalogue.taylor_step import EXPERIMENT, TaylorStepConfig, _analyse
from tdlab.theory.taylor import (
    best_decrease,
    best_step,
    cubic_best_step_ratio,
    first_order_change,
    second_order_change,
    taylor_error_exponent,
)


def _quadratic(seed: int = 0, d: int = 6):
    """f(w) = 1/2 w.Aw - b.w with A symmetric positive definite; its gradient and Hessian in closed form."""
    rng = np.random.default_rng(seed)
    M = rng.standard_normal((d, d))
    A = M @ M.T + 0.5 * np.eye(d)
    b, w = rng.standard_normal(d), rng.standard_normal(d)
    f = lambda v: 0.5 * v @ A @ v - b @ v  # noqa: E731
    return f, A, w, A @ w - b


def test_second_order_model_is_exact_on_a_quadratic():
    f, A, w, g = _quadratic()
    eps = np.array([0.0, 0.01, 0.1, 0.5, 2.0])
    actual = np.array([f(w - e * g) - f(w) for e in eps])
    np.testing.assert_allclose(second_order_change(eps, g @ g, g @ A @ g), actual, rtol=1e-12, atol=1e-12)
    # the first-order model misses exactly the curvature term eps^2/2 g.Ag
    np.testing.assert_allclose(actual - first_order_change(eps, g @ g), 0.5 * eps**2 * (g @ A @ g), atol=1e-12)


def test_best_step_is_the_exact_line_search_on_a_quadratic():
    f, A, w, g = _quadratic(seed=1)
    gg, gAg = g @ g, g @ A @ g
    line = minimize_scalar(lambda e: f(w - e * g), bounds=(0.0, 10.0), method="bounded", options={"xatol": 1e-12})
    assert best_step(gg, gAg) == pytest.approx(line.x, rel=1e-8)
    assert best_decrease(gg, gAg) == pytest.approx(f(w - line.x * g) - f(w), rel=1e-10)


def test_best_step_without_positive_curvature_is_unbounded():
    assert best_step(2.0, 0.0) == math.inf
    assert best_step(2.0, -3.0) == math.inf
    assert best_decrease(2.0, -3.0) == -math.inf


def test_taylor_error_exponent_and_bad_inputs():
    assert [taylor_error_exponent(k) for k in (0, 1, 2)] == [1, 2, 3]
    with pytest.raises(ValueError, match="order"):
        taylor_error_exponent(-1)
    with pytest.raises(ValueError, match="gg"):
        best_step(-1.0, 1.0)
    with pytest.raises(ValueError, match="eps"):
        second_order_change([0.1, np.nan], 1.0, 1.0)


@pytest.mark.parametrize("c", [-0.8, -0.2, 0.0, 0.3, 2.0])
def test_cubic_best_step_ratio_locates_the_minimum_of_a_cubic(c):
    # phi(eps) = -a eps + b eps^2/2 + c eps^3/6: r is read off phi at eps*, u(r) must be phi's local minimiser
    a, b = 1.5, 2.0
    phi = lambda e: -a * e + 0.5 * b * e**2 + c * e**3 / 6  # noqa: E731
    eps_star = best_step(a, b)
    r = (phi(eps_star) - best_decrease(a, b)) / abs(best_decrease(a, b))
    found = minimize_scalar(phi, bounds=(0.0, 3 * eps_star), method="bounded", options={"xatol": 1e-12})
    assert float(cubic_best_step_ratio(r)) * eps_star == pytest.approx(found.x, rel=1e-7)


def test_cubic_best_step_ratio_limits():
    r = np.array([1e-4, -1e-4])
    np.testing.assert_allclose(cubic_best_step_ratio(r), 1 - 1.5 * r, rtol=1e-7)  # first order in r
    assert np.isnan(cubic_best_step_ratio(-0.2))  # r < -1/6: the cubic has no local minimum


def test_analyse_on_an_exactly_quadratic_loss():
    # a linear model with squared error: Delta f is exactly quadratic, the best step is eps*, no cubic remainder
    torch.manual_seed(0)
    X, y = torch.randn(64, 5, dtype=torch.float64), torch.randn(64, 3, dtype=torch.float64)
    model = nn.Linear(5, 3).double()
    obj = Objective(model, lambda out, t: 0.5 * (out - t).pow(2).sum(1).mean(), (X, y))
    a = _analyse(obj, obj.flat_parameters(), TaylorStepConfig())
    assert a["best_step_ratio"] == pytest.approx(1.0, abs=1e-6)
    assert abs(a["model_error"]) < 1e-10
    assert a["first_order_slope"] == pytest.approx(2.0, abs=1e-3)
    assert math.isnan(a["error_slope"])  # the second-order error is rounding only: nothing above the noise floor


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("checkpoints", (100, 0)),
        ("checkpoints", (-1, 5)),
        ("eps_range", (1e-2, 1e-3)),
        ("activation", {"name": "mlp", "activation": "relu"}),
    ],
)
def test_config_rejects_bad_values(field, value):
    with pytest.raises(ValidationError, match=field):
        TaylorStepConfig(**{"model" if field == "activation" else field: value})


def test_checks_and_figures_come_from_the_stored_metrics(tmp_path):
    config = EXPERIMENT.make_config(
        data={"name": "mnist1d", "n_train": 60, "n_test": 10},
        model={"name": "mlp", "width": 8, "depth": 1, "activation": "tanh", "init": "default"},
        checkpoints=(0, 5),
        grid_points=20,
    )
    result = assert_rechecks(EXPERIMENT, config, tmp_path)
    assert [c.name for c in result.checks][:2] == [f"second-order error exponent at step {t}" for t in (0, 5)]


def test_a_diverging_run_fails_its_check():
    config = EXPERIMENT.make_config(
        data={"name": "mnist1d", "n_train": 60, "n_test": 10},
        model={"name": "mlp", "width": 8, "depth": 1, "activation": "tanh", "init": "default"},
        train_lr=1e100,
        checkpoints=(0, 20),
        grid_points=20,
    )
    result = EXPERIMENT.run(config, Context(torch.device("cpu")))
    assert result.checks[-1].name == "GD run reaches every checkpoint" and not result.checks[-1].passed


@pytest.mark.slow
def test_quick_run_passes_its_checks():
    experiment = EXPERIMENT
    result = experiment.run(experiment.make_config(), Context(torch.device("cpu")))
    failed = [(c.name, c.measured, c.theory, c.detail) for c in result.checks if not c.passed]
    assert not failed, failed
    names = [c.name for c in result.checks]
    assert sum(n.startswith("second-order error exponent") for n in names) == 2
    assert sum(n.startswith("best step / eps*") for n in names) == 2
    assert set(result.figures) == {"taylor_step", "best_step"}
    assert all(isinstance(f, Figure) for f in result.figures.values())
    slopes = result.metrics.query("name == 'first_order_slope'")["value"]
    assert np.allclose(slopes, 2.0, atol=0.05)
