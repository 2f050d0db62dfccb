"""relu-collapse: the ReLU correlation map against quadrature, the finite-width variances against hand values and
simulation, the measurement helpers against direct computation, and a quick run whose checks must all pass."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure
from pydantic import ValidationError
from recheck import assert_rechecks
from scipy import integrate

from tdlab.data import circle_inputs
from tdlab.experiments.base import Context
from tdlab.experiments.catalogue import relu_collapse as rc
from tdlab.experiments.registry import get
from tdlab.theory import finite_width, mean_field


# -------------------------------------------------------------------------------------------------- theory
@pytest.mark.parametrize("c", [-0.9, -0.3, 0.0, 0.4, 0.95])
def test_relu_correlation_map_is_the_normalised_gaussian_integral(c):
    # E[relu(u) relu(v)] / E[relu(u)^2] for unit Gaussians of correlation c, by 2-D quadrature
    def integrand(z2, z1):
        u, v = z1, c * z1 + math.sqrt(1 - c * c) * z2
        return max(u, 0.0) * max(v, 0.0) * math.exp(-(z1 * z1 + z2 * z2) / 2) / (2 * math.pi)

    cross = integrate.dblquad(integrand, -10, 10, -10, 10, epsabs=1e-11)[0]
    assert float(mean_field.relu_correlation_map(c)) == pytest.approx(cross / 0.5, abs=1e-7)


def test_relu_map_fixed_points_and_limits():
    np.testing.assert_allclose(mean_field.relu_correlation_map([-1.0, 0.0, 1.0]), [0.0, 1 / math.pi, 1.0])
    # c^l -> 1 like 1 - 9 pi^2 / (2 l^2) (the leading order of the iterated arc-cosine map)
    path = mean_field.correlation_trajectory(0.0, 4000, sigma_w2=2.0, activation="relu")
    assert (1 - path[-1]) * 4000**2 == pytest.approx(9 * math.pi**2 / 2, rel=0.05)


def test_relu_norm_ratio_variance_by_hand():
    # one layer of width n: (2/n) sum relu(xi)^2 has variance (4/n) Var relu(xi)^2 = (4/n)(3/2 - 1/4) = 5/n
    assert finite_width.relu_norm_ratio_variance(1, 7) == pytest.approx(5 / 7)
    assert finite_width.relu_norm_ratio_variance(3, [5, 10, 20]) == pytest.approx(2 * 1.5 * 1.25 - 1)
    assert finite_width.relu_preactivation_ratio_variance(1, 8) == pytest.approx(2 / 8)  # chi^2_8 / 8
    assert finite_width.relu_log_norm_variance(50, 1000) == pytest.approx(0.25)


def test_relu_norm_ratio_moments_against_simulation():
    rng = np.random.default_rng(0)
    n, depth, samples = 16, 6, 200_000
    factors = (2.0 / n) * (np.maximum(rng.standard_normal((samples, depth, n)), 0) ** 2).sum(axis=-1)
    ratio = factors.prod(axis=1)
    variance = finite_width.relu_norm_ratio_variance(depth, n)
    assert ratio.mean() == pytest.approx(1.0, abs=4 * math.sqrt(variance / samples))
    assert ratio.var() == pytest.approx(variance, rel=0.05)
    # the log-norm variance approaches 5 depth / width at large width (Hanin & Rolnick 2018)
    n, depth, samples = 256, 4, 10_000
    factors = (2.0 / n) * (np.maximum(rng.standard_normal((samples, depth, n)), 0) ** 2).sum(axis=-1)
    logs = np.log(factors).sum(axis=1)
    assert logs.var() == pytest.approx(finite_width.relu_log_norm_variance(depth, n), rel=0.05)


def test_finite_width_rejects_bad_input():
    with pytest.raises(ValueError, match="depth"):
        finite_width.relu_norm_ratio_variance(-1, 10)
    with pytest.raises(ValueError, match="width"):
        finite_width.relu_norm_ratio_variance(2, [10])
    with pytest.raises(ValueError, match="layer"):
        finite_width.relu_preactivation_ratio_variance(0, 10)


# ---------------------------------------------------------------------------------------------- measurement
def test_cosine_matrix_of_the_circle_inputs_is_the_cosine_of_their_angles():
    X, theta = circle_inputs(12, 7, torch.Generator().manual_seed(3))
    np.testing.assert_allclose(rc.cosine_matrix(X.double()).numpy(), np.cos(theta[:, None] - theta[None, :]), atol=1e-6)


def test_pooled_relative_variance_and_its_equal_norm_theory():
    h = torch.tensor([[3.0, 0.0], [1.0, 2.0], [0.0, 4.0]], dtype=torch.float64)
    by_hand = float(h.var(dim=0, correction=0).sum() / h.square().mean(dim=0).sum())
    assert rc.pooled_relative_variance(h) == pytest.approx(by_hand)
    # equal norms: 1 - mean_ij cos_ij = (N - 1)/N (1 - mean_{i != j} cos)
    unit = torch.nn.functional.normalize(torch.randn(5, 9, dtype=torch.float64), dim=1)
    cos = rc.cosine_matrix(unit).numpy()
    off = cos[~np.eye(5, dtype=bool)].mean()
    assert rc.pooled_relative_variance(unit) == pytest.approx(float(rc.spread_theory(np.array(off), 5)))


def test_config_rejects_bad_values():
    with pytest.raises(ValidationError):
        rc.ReluCollapseConfig(width=0)
    with pytest.raises(ValidationError):
        rc.ReluCollapseConfig(seeds=1)


# ------------------------------------------------------------------------------------------------ experiment
def test_quick_run_passes_every_check():
    experiment = get("relu-collapse")
    result = experiment.run(experiment.make_config(), Context(torch.device("cpu")))
    failed = [f"{c.name}: {c.measured} vs {c.theory} ({c.detail})" for c in result.checks if not c.passed]
    assert not failed, failed
    assert len(result.checks) == 2
    assert set(result.figures) == {"collapse", "variance_map"}
    assert all(isinstance(f, Figure) for f in result.figures.values())
    cosine = result.metrics.query("name == 'cosine'").groupby("layer")["value"].mean()
    assert cosine.iloc[-1] > 0.95 > cosine.iloc[0]  # the collapse itself


def test_same_seed_same_numbers():
    config = rc.EXPERIMENT.make_config(width=32, depth=6, seeds=2, num_inputs=6)
    assert rc.measure(config, Context(torch.device("cpu"))).equals(rc.measure(config, Context(torch.device("cpu"))))


def test_measure_reads_the_representations_of_the_seeded_networks():
    # the second seed's network is the MLP drawn from the generator after the circle and the first network
    config = rc.EXPERIMENT.make_config(width=16, depth=3, seeds=2, num_inputs=5, in_features=4, shown_layers=(2,))
    metrics = rc.measure(config, Context(torch.device("cpu")))
    generator = torch.Generator().manual_seed(config.seed)
    X, _ = circle_inputs(5, 4, generator)
    nets = [rc.MLP(4, 10, 16, 3, "relu", bias=False, init="he", seed=generator) for _ in range(2)]
    h = X
    for layer in nets[1].hidden:
        h = torch.relu(h @ layer.linear.weight.T)
        if layer is nets[1].hidden[1]:
            break
    h = h.detach()
    row = metrics.query("seed == 1 and layer == 2")
    unit = torch.nn.functional.normalize(h.double(), dim=1)
    off_diagonal = (unit @ unit.T)[~torch.eye(5, dtype=torch.bool)].mean()
    assert row.query("name == 'cosine'")["value"].item() == pytest.approx(float(off_diagonal), rel=1e-5)
    ratio = (h.double().square().mean(dim=1) / X.double().square().mean(dim=1)).numpy()
    np.testing.assert_allclose(row.query("name == 'second_moment_ratio_input'")["value"], ratio, rtol=1e-5)
    np.testing.assert_allclose(row.query("name == 'cosine_kernel'")["value"], (unit @ unit.T)[0].numpy(), atol=1e-6)
    output = metrics.query("name == 'output'")
    assert set(output["seed"]) == {0} and set(output["layer"]) == {2} and len(output) == 5


def test_checks_fail_on_a_false_claim():
    # measured cosines 0.05 above the map at one layer, and a variance map off by 10 band widths
    config = rc.EXPERIMENT.make_config(width=1024, depth=4, seeds=10, num_inputs=6)
    t = rc.theory(config)
    rows = [
        {"name": name, "value": value, "layer": l + 1, "seed": s}
        for s in range(10)
        for l in range(4)
        for name, value in (("cosine", t["cosine"][l] + 0.05 * (l == 2)), ("second_moment_ratio", 1.0))
    ]
    verdicts = [c.passed for c in rc.checks(pd.DataFrame(rows), config)]
    assert verdicts == [False, True]
    rows = [{**r, "value": 1 + 10 * t["band"][r["layer"] - 1]} if r["name"] != "cosine" else r for r in rows]
    assert [c.passed for c in rc.checks(pd.DataFrame(rows), config)] == [False, False]


def test_checks_and_figures_come_from_the_stored_metrics(tmp_path):
    config = rc.EXPERIMENT.make_config(width=32, depth=6, seeds=3, num_inputs=8, shown_layers=(1, 3, 6))
    result = assert_rechecks(rc.EXPERIMENT, config, tmp_path)
    assert len(result.checks) == 2 and set(result.figures) == {"collapse", "variance_map"}
