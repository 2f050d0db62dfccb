"""optimizer-zoo: its theory (gradient flow and Euler's error, adaptive steps under a constant gradient), its
trajectory helpers, its config validation, and a quick run whose checks must all pass and re-check from its stored
metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from pydantic import ValidationError
from recheck import assert_rechecks
from scipy.integrate import solve_ivp

from tdlab.experiments.catalogue import optimizer_zoo as zoo
from tdlab.experiments.registry import get
from tdlab.optim import adagrad_step, adam_step, gd_step, get_test_function, rmsprop_step
from tdlab.theory.adaptive_steps import (
    adagrad_constant_gradient_step,
    adagrad_step_exponent_deviation,
    adam_constant_gradient_step,
    rmsprop_constant_gradient_step,
)
from tdlab.theory.gradient_flow import euler_error_coefficient, quadratic_euler_error, quadratic_flow, quadratic_gd

F64 = torch.float64


# ------------------------------------------------------------------------------------------ gradient flow
def test_quadratic_closed_forms_against_simulation():
    lam, x0, eta = np.array([0.5, 4.0]), np.array([1.0, -2.0]), 0.05
    w, path = torch.tensor(x0, dtype=F64), [x0]
    for _ in range(40):
        w = gd_step(w, torch.tensor(lam) * w, eta)
        path.append(w.numpy())
    np.testing.assert_allclose(quadratic_gd(lam, x0, eta, np.arange(41)), np.array(path), rtol=1e-13)
    t = np.linspace(0, 2, 7)
    ode = solve_ivp(lambda _, x: -lam * x, (0, 2), x0, t_eval=t, rtol=1e-12, atol=1e-14).y.T
    np.testing.assert_allclose(quadratic_flow(lam, x0, t), ode, rtol=1e-9, atol=1e-12)


def test_euler_error_coefficient_predicts_the_gd_gap():
    """(GD - flow) / eta -> e(t): on the quadratic against the closed form, and on the nonlinear f = x^4 / 4
    (flow x(t) = x0 / sqrt(1 + 2 x0^2 t)) with the O(eta) remainder shrinking as eta halves."""
    lam, x0 = np.array([1.0, 3.0]), np.array([1.0, 1.0])
    t = np.linspace(0, 2, 9)
    _, e = euler_error_coefficient(lambda x: lam * x, lambda x: np.diag(lam), x0, t)
    np.testing.assert_allclose(e, quadratic_euler_error(lam, x0, t), atol=1e-9)

    def remainder(eta: float) -> float:
        steps = round(1.0 / eta)
        times = eta * np.arange(steps + 1)
        x, e = euler_error_coefficient(lambda x: x**3, lambda x: np.diag(3 * x**2), [1.5], times)
        np.testing.assert_allclose(x[:, 0], 1.5 / np.sqrt(1 + 2 * 1.5**2 * times), rtol=1e-9)
        w = np.empty(steps + 1)
        w[0] = 1.5
        for k in range(steps):
            w[k + 1] = w[k] - eta * w[k] ** 3
        return float(np.max(np.abs((w - x[:, 0]) / eta - e[:, 0])))

    r1, r2 = remainder(0.01), remainder(0.005)
    assert r2 < 0.6 * r1  # O(eta): halves with eta (0.5 up to higher-order terms)
    assert r2 < 0.05


# ------------------------------------------------------------------------------------------ adaptive steps
@pytest.mark.parametrize("method", ["adagrad", "rmsprop", "adam"])
def test_constant_gradient_steps_against_the_rules(method):
    g, eta, T = 0.3, 0.1, 300
    w, state, steps = torch.zeros(1, dtype=F64), None, []
    for _ in range(T):
        if method == "adagrad":
            new, state = adagrad_step(w, torch.tensor([g], dtype=F64), state, eta, eps=1e-3)
        elif method == "rmsprop":
            new, state = rmsprop_step(w, torch.tensor([g], dtype=F64), state, eta, rho=0.9, eps=1e-3)
        else:
            new, state = adam_step(w, torch.tensor([g], dtype=F64), state, eta, eps=1e-3)
        steps.append(abs(float(new - w)))
        w = new
    t = np.arange(1, T + 1)
    theory = {
        "adagrad": adagrad_constant_gradient_step(t, eta, g, eps=1e-3),
        "rmsprop": rmsprop_constant_gradient_step(t, eta, g, rho=0.9, eps=1e-3),
        "adam": adam_constant_gradient_step(t, eta, g, eps=1e-3),
    }[method]
    np.testing.assert_allclose(steps, theory, rtol=1e-10)


def test_adagrad_exponent_bound_holds_and_is_tight():
    """With a large epsilon the fitted exponent moves off -1/2, but by no more than eps / (2 sqrt(t_min) |g|)."""
    t = np.arange(10, 1001)
    for eps in (0.01, 0.1):
        slope = np.polyfit(np.log(t), np.log(adagrad_constant_gradient_step(t, 1.0, 1.0, eps)), 1)[0]
        bound = adagrad_step_exponent_deviation(10, 1.0, eps)
        assert 0.2 * bound < abs(slope + 0.5) <= bound


# ------------------------------------------------------------------------------------------ helpers, config
def test_reference_trajectory_matches_torch_and_records_divergence():
    f = get_test_function("beale")
    w0 = torch.tensor(f.start, dtype=F64)
    _, comparable = zoo.reference_trajectory("nesterov", f.gradient, w0, 50, 0.05, beta=0.1)
    via_torch = zoo.torch_trajectory("nesterov", f.gradient, w0, 50, 0.05, beta=0.1)
    torch.testing.assert_close(comparable, via_torch, rtol=0, atol=1e-12)
    q = get_test_function("quadratic")
    iterates, _ = zoo.reference_trajectory("gd", q.gradient, torch.tensor(q.start, dtype=F64), 2000, 0.5)
    assert torch.isnan(iterates[-1]).all() and torch.isfinite(iterates[1]).all()  # diverged: NaN, no crash


def test_config_validation():
    experiment = get("optimizer-zoo")
    with pytest.raises(ValidationError, match="flow_functions"):
        experiment.make_config(flow_functions=("himmelblau",))
    with pytest.raises(ValidationError, match="rescale"):
        experiment.make_config(rescale=(1.0, -1.0))
    with pytest.raises(ValidationError, match="match_steps"):
        experiment.make_config(steps=50, match_steps=100)
    with pytest.raises(ValidationError, match="beta"):
        experiment.make_config(beta=1.5)


# ------------------------------------------------------------------------------------------ the experiment
def test_torch_settings_name_the_mapped_hyperparameters():
    config = get("optimizer-zoo").make_config(beta=0.25)
    assert zoo._torch_settings("momentum", config) == "SGD(lr=eta*0.25, momentum=0.75)"
    assert zoo._torch_settings("gd", config) == "SGD(lr=eta*1)"


def test_quick_run_passes_every_check_and_rechecks_from_the_store(tmp_path):
    result = assert_rechecks(zoo.EXPERIMENT, zoo.EXPERIMENT.make_config(), tmp_path)
    failed = [f"{c.name}: {c.measured} vs {c.theory}" for c in result.checks if not c.passed]
    assert not failed, failed
    names = {c.name.split(":")[0] for c in result.checks}
    assert {"gd", "momentum", "nesterov", "adagrad", "rmsprop", "adam"} <= names
    assert set(result.figures) == {"trajectories", "loss_curves", "adagrad_step", "rescaling", "gd_vs_flow"}
    assert all(isinstance(fig, Figure) and fig.axes for fig in result.figures.values())
    metrics = result.metrics
    assert {"name", "value", "function", "method", "step"} <= set(metrics.columns)
    gaps = metrics[metrics["name"] == "max_abs_diff_vs_torch"]
    assert len(gaps) == 6 * 5 and math.isfinite(gaps["value"].max())
