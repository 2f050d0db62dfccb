"""order-to-chaos: the tanh correlation map, q*, chi_1, c*, chi_c and xi_c against quadrature, finite differences
and iteration; the measurement helpers against hand computation; and a quick run whose checks must all pass."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from pydantic import ValidationError
from recheck import assert_rechecks
from scipy import integrate
from torch import nn

from tdlab.experiments.base import Context
from tdlab.experiments.catalogue import order_to_chaos as otc
from tdlab.probes.loss import loss_and_accuracy
from tdlab.theory import mean_field
from tdlab.train.builders import build_data
from tdlab.train.trainer import fit


def _cross(q, c):
    """E[tanh(u1) tanh(u2)] for centred Gaussians of variance q and correlation c, by 2-D adaptive quadrature."""

    def integrand(z2, z1):
        u2 = math.sqrt(q) * (c * z1 + math.sqrt(1 - c * c) * z2)
        return math.tanh(math.sqrt(q) * z1) * math.tanh(u2) * math.exp(-(z1 * z1 + z2 * z2) / 2) / (2 * math.pi)

    return integrate.dblquad(integrand, -10, 10, -10, 10, epsabs=1e-12)[0]


# -------------------------------------------------------------------------------------------------- theory
@pytest.mark.parametrize(("q", "c"), [(0.4, 0.5), (2.2, -0.3), (2.2, 0.9)])
def test_correlation_map_against_2d_quadrature(q, c):
    sw, sb = 2.0, 0.05
    second = integrate.quad(lambda z: math.tanh(math.sqrt(q) * z) ** 2 * math.exp(-z * z / 2), -14, 14)[0]
    expected = (sw * _cross(q, c) + sb) / (sw * second / math.sqrt(2 * math.pi) + sb)
    assert float(mean_field.correlation_map(c, q, sw, sb)) == pytest.approx(expected, abs=1e-8)


def test_fixed_point_variance_is_a_fixed_point():
    for sw, sb in ((0.8, 0.05), (1.5, 0.05), (4.0, 0.3)):
        q = mean_field.fixed_point_variance(sw, sb)
        assert float(mean_field.variance_map(q, sw, sb)) == pytest.approx(q, rel=1e-10)
    assert mean_field.fixed_point_variance(0.9, 0.0) == 0.0
    assert mean_field.fixed_point_variance(1.0, 0.5, "relu") == pytest.approx(1.0)  # sigma_b^2 / (1 - 1/2)


def test_chi_1_is_the_slope_of_the_correlation_map_at_one():
    for sw in (1.2, 3.0):
        q = mean_field.fixed_point_variance(sw, 0.05)
        eps = 1e-5
        slope = (1.0 - float(mean_field.correlation_map(1 - eps, q, sw, 0.05))) / eps
        assert slope == pytest.approx(mean_field.chi_1(sw, 0.05), rel=1e-3)


def test_chaotic_fixed_point_and_its_slope():
    sw, sb = 4.0, 0.05
    q, c = mean_field.fixed_point_variance(sw, sb), mean_field.fixed_point_correlation(sw, sb)
    assert float(mean_field.correlation_map(c, q, sw, sb)) == pytest.approx(c, abs=1e-10)
    # iterating the map from elsewhere converges to c*
    assert float(mean_field.correlation_trajectory(0.9, 300, sw, sb)[-1]) == pytest.approx(c, abs=1e-8)
    eps = 1e-4
    slope = (mean_field.correlation_map(c + eps, q, sw, sb) - mean_field.correlation_map(c - eps, q, sw, sb)) / (
        2 * eps
    )
    assert float(slope) == pytest.approx(mean_field.chi_c(sw, sb), rel=1e-6)
    assert mean_field.correlation_depth(sw, sb) == pytest.approx(-1 / math.log(mean_field.chi_c(sw, sb)))
    assert mean_field.fixed_point_correlation(4.0, 0.0) == 0.0  # odd activation, no bias


def test_critical_line_and_the_divergence_of_xi():
    assert mean_field.critical_sigma_w2(0.0) == 1.0 and mean_field.critical_sigma_w2(0.0, "relu") == 2.0
    critical = mean_field.critical_sigma_w2(0.05)
    assert critical == pytest.approx(1.76, abs=0.01)  # Poole et al. (2016), fig. 2; Schoenholz et al. (2017)
    assert mean_field.chi_1(critical, 0.05) == pytest.approx(1.0, abs=1e-9)
    below, above = (mean_field.correlation_depth(critical * f, 0.05) for f in (0.98, 1.02))
    assert below > 50 and above > 50
    assert mean_field.correlation_depth(1.0, 0.05) < below


def test_relu_correlation_map_through_the_generic_entry_point():
    c = np.array([-0.5, 0.2, 0.8])
    np.testing.assert_allclose(mean_field.correlation_map(c, 1.0, 2.0, 0.0, "relu"), mean_field.relu_correlation_map(c))


# ---------------------------------------------------------------------------------------------- measurement
def test_tanh_network_has_the_stated_variances():
    net = otc.tanh_network(500, 1, 600, 2, 3.0, 0.25, torch.Generator().manual_seed(0))
    for layer in net.hidden:
        fan_in = layer.linear.in_features
        assert float(layer.linear.weight.detach().var() * fan_in) == pytest.approx(3.0, rel=0.02)
        assert float(layer.linear.bias.detach().var()) == pytest.approx(0.25, rel=0.15)


def test_pair_inputs_start_at_the_requested_correlation():
    # the first layer's pre-activation correlation is c^1 in expectation: check it on a very wide layer
    q, sw, sb, c1 = 0.7, 2.0, 0.1, 0.4
    u = torch.nn.functional.normalize(torch.randn(1, 30, dtype=torch.float64), dim=1)
    v = torch.randn(1, 30, dtype=torch.float64)
    v = torch.nn.functional.normalize(v - (v * u).sum() * u, dim=1)
    xa, xb = otc.pair_inputs(c1, q, sw, sb, (u, v))
    d = 30
    assert float(xa.square().sum() / d) * sw + sb == pytest.approx(q)
    assert (float((xa * xb).sum() / d) * sw + sb) / q == pytest.approx(c1)
    with pytest.raises(ValueError, match="first_correlation"):
        otc.pair_inputs(-0.9, q, sw, 0.5, (u, v))


def test_pair_correlations_read_the_pre_activations():
    net = otc.tanh_network(3, 1, 8, 3, 1.5, 0.05, torch.Generator().manual_seed(0))
    a, b = torch.randn(4, 3), torch.randn(4, 3)
    c = otc.pair_correlations(net, a, b)
    za, zb = net.hidden[0].linear(a), net.hidden[0].linear(b)
    torch.testing.assert_close(c[0], torch.nn.functional.cosine_similarity(za, zb, dim=1).detach())
    assert c.shape == (3, 4)


def test_fitted_depth_scale_recovers_an_exponential():
    layers = np.arange(1, 16)
    assert otc.fitted_depth_scale(0.3 * np.exp(-layers / 7.5), np.full(15, 0.01)) == pytest.approx(7.5)
    with pytest.raises(ValueError, match="deviation"):
        otc.fitted_depth_scale(np.array([0.1, -0.1, 0.0]), np.ones(3))


def test_config_rejects_bad_values():
    with pytest.raises(ValidationError, match="heatmap"):
        otc.OrderToChaosConfig(heatmap_depths=(10,))
    with pytest.raises(ValidationError):
        otc.OrderToChaosConfig(sigma_w2_range=(2.0, 1.0))
    with pytest.raises(ValidationError):
        otc.OrderToChaosConfig(delta=0.7)
    with pytest.raises(ValidationError):
        otc.OrderToChaosConfig(heatmap_optimizer={"name": "sgd", "lr": -1.0})


# ------------------------------------------------------------------------------------------------ experiment
def test_quick_run_passes_every_check():
    experiment = otc.EXPERIMENT
    result = experiment.run(experiment.make_config(), Context(torch.device("cpu")))
    failed = [f"{c.name}: {c.measured} vs {c.theory} ({c.detail})" for c in result.checks if not c.passed]
    assert not failed, failed
    assert len(result.checks) == 3
    assert set(result.figures) == {"phase_diagram", "correlation_decay"}
    assert all(isinstance(f, Figure) for f in result.figures.values())


TOY = {
    "sigma_w2_points": (1.2, 3.0),
    "seeds": 3,
    "depth": 6,
    "pairs": 4,
    "curve_points": 5,
    "heatmap_depths": (2, 4),
    "heatmap_sigma_w2": (1.0, 3.0),
    "heatmap_width": 8,
    "heatmap_steps": 3,
    "heatmap_batch": 8,
    "heatmap_data": {"name": "mnist1d", "n_train": 40, "n_test": 10},
}


def test_heat_map_runs_at_toy_scale_and_rechecks_from_stored_metrics(tmp_path):
    result = assert_rechecks(otc.EXPERIMENT, otc.EXPERIMENT.make_config(**TOY), tmp_path)
    heat = result.metrics.query("name == 'train_accuracy'")["value"]
    assert len(heat) == 4 and heat.between(0, 1).all()
    assert "trainability" in result.figures
    assert len(result.checks) == 2


def test_trained_shallow_network_beats_chance():
    """The heat map's networks really train: a shallow ordered-phase net fits 40 MNIST-1D examples far above the
    10% of chance after 300 full-batch-size steps."""
    config = otc.OrderToChaosConfig(
        heatmap_depths=(2,),
        heatmap_sigma_w2=(1.5,),
        heatmap_width=64,
        heatmap_steps=300,
        heatmap_batch=40,
        heatmap_data={"name": "mnist1d", "n_train": 40, "n_test": 10},
        heatmap_optimizer={"name": "sgd", "lr": 0.1},
    )
    (row,) = otc.trainability(config, Context(torch.device("cpu")), torch.Generator().manual_seed(0))
    assert row["value"] >= 0.5


def test_stacked_heat_map_matches_networks_trained_one_by_one():
    """The networks of one depth train as one stacked ensemble; each ends where its own sequential run of `fit` (same
    initial weights from the generator, same batches) ends."""
    config = otc.OrderToChaosConfig(
        heatmap_depths=(2, 3),
        heatmap_sigma_w2=(1.0, 3.0),
        heatmap_width=16,
        heatmap_steps=50,
        heatmap_batch=16,
        heatmap_data={"name": "mnist1d", "n_train": 60, "n_test": 10},
        heatmap_optimizer={"name": "sgd", "lr": 0.1},
    )
    rows = otc.trainability(config, Context(torch.device("cpu")), torch.Generator().manual_seed(0))
    data = build_data(config.heatmap_data)
    generator, expected = torch.Generator().manual_seed(0), []
    for depth in config.heatmap_depths:
        for sw2 in config.heatmap_sigma_w2:
            net = otc.tanh_network(40, 10, config.heatmap_width, depth, sw2, config.sigma_b2, generator)
            optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
            fit(net, nn.CrossEntropyLoss(), data.train, optimizer, 50, batch_size=16, batch_order="replacement")
            expected.append(loss_and_accuracy(net, nn.CrossEntropyLoss(), data.train)[1])
    assert [(r["depth"], r["sigma_w2"]) for r in rows] == [(2, 1.0), (2, 3.0), (3, 1.0), (3, 3.0)]
    assert [r["value"] for r in rows] == pytest.approx(expected, abs=1e-9)
    assert len(set(expected)) > 1  # the networks differ
