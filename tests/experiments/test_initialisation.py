"""initialisation: the mean-field variance and gradient maps against quadrature and hand values, the measurement
of forward and backward second moments against a hand-written forward pass, and a quick run whose checks must
all pass."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from pydantic import ValidationError
from recheck import assert_rechecks
from scipy import integrate

from tdlab.experiments.base import Context
from tdlab.experiments.catalogue import initialisation as ini
from tdlab.models import MLP
from tdlab.theory import mean_field


def _expect(f, q):
    """E[f(sqrt(q) z)] by adaptive quadrature, the reference for the module's rules."""
    density = lambda z: math.exp(-z * z / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    return integrate.quad(lambda z: f(math.sqrt(q) * z) * density(z), -14, 14, points=[0.0], limit=500, epsabs=1e-14)[0]


# -------------------------------------------------------------------------------------------------- theory
def test_gauss_hermite_integrates_gaussian_moments():
    z, w = mean_field.gauss_hermite(10)
    for k, double_factorial in ((0, 1), (2, 1), (4, 3), (6, 15), (8, 105)):
        assert float(w @ z**k) == pytest.approx(double_factorial, rel=1e-12)


@pytest.mark.parametrize("q", [1e-3, 0.3, 1.0, 2.5, 40.0, 600.0])
def test_gaussian_expectation_against_adaptive_quadrature(q):
    # small q: Gauss-Hermite; large q (tanh bends between its nodes): the trapezoidal rule
    for f in (lambda u: np.tanh(u) ** 2, lambda u: 1 / np.cosh(np.clip(u, -80, 80)) ** 4):
        reference = _expect(lambda u, f=f: float(f(np.array(u))), q)
        assert float(mean_field.gaussian_expectation(f, q)) == pytest.approx(reference, rel=1e-8, abs=1e-14)


def test_relu_maps_are_the_closed_forms():
    relu_moment = _expect(lambda u: max(u, 0.0) ** 2, 3.0)
    assert float(mean_field.variance_map(3.0, 1.7, 0.2, "relu")) == pytest.approx(1.7 * relu_moment + 0.2)
    np.testing.assert_allclose(mean_field.gradient_factor([0.5, 7.0], 3.0, "relu"), [1.5, 1.5])


def test_tanh_variance_and_gradient_maps_against_quadrature():
    q = 0.8
    assert float(mean_field.variance_map(q, 2.0, 0.1)) == pytest.approx(
        2.0 * _expect(lambda u: math.tanh(u) ** 2, q) + 0.1, rel=1e-10
    )
    sech4 = _expect(lambda u: 1 / math.cosh(u) ** 4, 30.0)
    assert float(mean_field.gradient_factor(30.0, 1.5)) == pytest.approx(1.5 * sech4, rel=1e-8)


def test_variance_and_gradient_trajectories_by_hand():
    # ReLU with sigma_w^2 = 4: the pre-activation variance doubles per layer, so does the backward factor
    np.testing.assert_allclose(mean_field.preactivation_variances(0.5, [4.0, 4.0, 4.0], 0.0, "relu"), [2, 4, 8])
    np.testing.assert_allclose(mean_field.gradient_variances([2, 4, 8], [4.0, 4.0], "relu"), [4, 2, 1])
    q = mean_field.preactivation_variances(1.0, [1.0, 1.0, 1.0])
    expected = [
        1.0 * mean_field.gradient_factor(q[0], 1.0)[()] * mean_field.gradient_factor(q[1], 1.0)[()],
        float(mean_field.gradient_factor(q[1], 1.0)),
        1.0,
    ]
    np.testing.assert_allclose(mean_field.gradient_variances(q, [1.0, 1.0]), expected)
    with pytest.raises(ValueError, match="sigma_w2_next"):
        mean_field.gradient_variances([1.0, 1.0], [1.0, 1.0])


def test_theory_rejects_bad_input():
    with pytest.raises(ValueError, match="activation"):
        mean_field.variance_map(1.0, 1.0, 0.0, "sigmoid")
    with pytest.raises(ValueError, match="q"):
        mean_field.variance_map(-1.0, 1.0)
    with pytest.raises(ValueError, match="order"):
        mean_field.gauss_hermite(1)


# ---------------------------------------------------------------------------------------------- measurement
def test_layer_sigma_w2_is_fan_in_times_the_weight_variance():
    for scheme in ("normal", "xavier", "he"):
        model = MLP(300, 1, width=400, depth=2, init=scheme, bias=False, seed=0)
        measured = [float(layer.linear.weight.detach().var() * layer.linear.in_features) for layer in model.hidden]
        np.testing.assert_allclose(measured, ini.layer_sigma_w2(scheme, 300, 400, 2), rtol=0.02)


def test_second_moments_match_a_hand_written_pass():
    model = MLP(4, 3, width=6, depth=3, activation="tanh", init="he", bias=True, bias_init_std=0.3, seed=1).double()
    X = torch.randn(5, 4, dtype=torch.float64)
    g = torch.randn(5, 3, dtype=torch.float64)
    forward, backward = ini.second_moments(model, X, g)
    h, zs = X, []
    for layer in model.hidden:
        z = layer.linear(h)
        z.retain_grad()
        zs.append(z)
        h = torch.tanh(z)
    (model.readout(h) * g).sum().backward()
    np.testing.assert_allclose(forward, [float(z.detach().square().mean()) for z in zs], rtol=1e-12)
    np.testing.assert_allclose(backward, [float(z.grad.square().mean()) for z in zs], rtol=1e-12)


def test_config_rejects_bad_values():
    with pytest.raises(ValidationError):
        ini.InitialisationConfig(schemes=("orthogonal",))
    with pytest.raises(ValidationError):
        ini.InitialisationConfig(depth=1)


# ------------------------------------------------------------------------------------------------ experiment
def test_quick_run_passes_every_check():
    experiment = ini.EXPERIMENT
    result = experiment.run(experiment.make_config(), Context(torch.device("cpu")))
    failed = [f"{c.name}: {c.measured} vs {c.theory} ({c.detail})" for c in result.checks if not c.passed]
    assert not failed, failed
    assert len(result.checks) == 2
    assert set(result.figures) == {"variance_maps", "relu_checks"}
    assert all(isinstance(f, Figure) for f in result.figures.values())
    # every measured curve follows its variance map within 25% (the 12-layer quick setting, width 512)
    rows = result.metrics.pivot_table(index=["activation", "init", "layer"], columns="name", values="value")
    ratio = rows["forward_second_moment"] / rows["forward_second_moment_theory"]
    assert np.all(np.abs(np.log(ratio)) < math.log(1.25))


def test_checks_and_figures_come_from_the_stored_metrics(tmp_path):
    config = ini.EXPERIMENT.make_config(width=64, depth=4, seeds=3, num_inputs=4, activations=("relu",))
    result = assert_rechecks(ini.EXPERIMENT, config, tmp_path)
    assert [c.name.split(":")[0] for c in result.checks] == ["He, ReLU", "N(0, 1), ReLU"]


def test_growth_check_fails_when_the_growth_is_off():
    """The N(0, 1) check compares with width/2: a measured factor 15% off fails it, the He check is unaffected."""
    config = ini.EXPERIMENT.make_config(width=64, depth=4, seeds=3, num_inputs=4, activations=("relu",))
    metrics = ini.measure(config, Context(torch.device("cpu")))
    metrics.loc[metrics["name"] == "growth_factor_relative", "value"] *= 1.15
    he, growth = ini.checks(metrics, config)
    assert he.passed and not growth.passed
