"""relu-elbows: the Cauchy law of -b/w and the piecewise-linear interpolant against scipy and numpy, the elbow,
dead-unit and replica-training helpers against hand computation, and a quick run whose checks must all pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from pydantic import ValidationError
from recheck import assert_rechecks
from scipy import stats

from tdlab.experiments.base import Context
from tdlab.experiments.catalogue import relu_elbows as re_
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


SMALL = {
    "elbow_units": 2**14,
    "group_sizes": (16, 256),
    "width": 16,
    "n_train": 16,
    "steps": 40,
    "step_fractions": (0.5, 1e6),
    "kill_fractions": (0.5, 1e6),
    "shown_fraction": 0.5,
    "record_every": 10,
    "knots": (4, 8),
}


def _by_step(metrics, name, step):
    rows = metrics[(metrics["name"] == name) & (metrics["step"] == step)].sort_values("unit")
    return torch.tensor(rows["value"].to_numpy())


def test_training_is_gradient_descent_at_the_stated_step():
    """From the stored initial parameters, `steps` hand-written GD steps on the mean squared error at
    eta = fraction x 2/lambda_max give the stored final parameters; the loss and dead-unit counts at step 0 are those
    of the initial network; the huge step diverges."""
    config = re_.EXPERIMENT.make_config(**SMALL)
    metrics = re_.measure(config, Context(torch.device("cpu")))
    x, y = (t[:, 0] for t in re_._target(config))
    w, b, a = (_by_step(metrics, name, 0).requires_grad_(True) for name in re_.UNIT)
    bias = metrics.query("name == 'readout_bias' and step == 0")["value"].iloc[0]
    c = torch.tensor(bias, dtype=torch.float64, requires_grad=True)
    sharpness = metrics.query("name == 'sharpness'")["value"].iloc[0]
    losses = metrics.query("name == 'train_loss' and step_fraction == 0.5").set_index("step")["value"]
    dead = metrics.query("name == 'dead_units' and step_fraction == 0.5").set_index("step")["value"]
    assert dead[0] == re_.dead_units(w.detach(), b.detach(), x).sum()
    for step in range(config.steps):
        loss = ((torch.relu(x[:, None] * w + b) @ a + c - y) ** 2).mean()
        if step == 0:
            assert float(loss.detach()) == pytest.approx(losses[0], rel=1e-12)
        grads = torch.autograd.grad(loss, (w, b, a, c))
        w, b, a, c = (p.detach() - 0.5 * 2.0 / sharpness * g for p, g in zip((w, b, a, c), grads, strict=True))
        w, b, a, c = (p.requires_grad_(True) for p in (w, b, a, c))
    for got, want in zip((_by_step(metrics, name, config.steps) for name in re_.UNIT), (w, b, a), strict=True):
        torch.testing.assert_close(got, want.detach(), rtol=1e-10, atol=1e-12)
    diverged = metrics.query("name == 'diverged'").set_index("step_fraction")["value"]
    assert diverged.to_dict() == {0.5: 0.0, 1e6: 1.0}


def test_checks_and_figures_come_from_the_stored_metrics(tmp_path):
    result = assert_rechecks(re_.EXPERIMENT, re_.EXPERIMENT.make_config(**SMALL), tmp_path)
    assert len(result.checks) == 8
    assert set(result.figures) == {"cauchy_elbows", "training", "interpolants"}


def test_dead_units_at_initialisation_never_move():
    """Zero gradient on every input: the units dead at init keep their parameters exactly, at every step size that
    did not diverge (a property of the gradient, so a test here and not a catalogue check)."""
    config = re_.EXPERIMENT.make_config(**SMALL)
    metrics = re_.measure(config, Context(torch.device("cpu")))
    change = metrics.query("name == 'dead_at_init_change' and step_fraction == 0.5")["value"]
    assert metrics.query("name == 'dead_at_init'")["value"].iloc[0] > 0 and (change == 0.0).all()


def _kill_verdict(metrics, config, large_minus_small):
    """The large-step check on `metrics` whose dead counts at the large kill fraction are set to those at the small
    one plus `large_minus_small` (seed 0 first), nothing diverged."""
    m = metrics.copy()
    low, high = config.kill_fractions
    m.loc[m["name"].isin(["diverged", "kill_diverged"]), "value"] = 0.0
    dead = m[m["name"] == "dead_units"].sort_values("step")
    final = dead.groupby("step_fraction").tail(1)
    base = final.loc[final["step_fraction"] == low, "value"].iloc[0]
    m.loc[final.index[final["step_fraction"] == high], "value"] = base + large_minus_small[0]
    for k, extra in enumerate(large_minus_small[1:], start=1):
        kills = (m["name"] == "kill_dead") & (m["seed"] == k)
        small = m.loc[kills & (m["step_fraction"] == low), "value"].iloc[0]
        m.loc[kills & (m["step_fraction"] == high), "value"] = small + extra
    return next(c for c in re_.checks(m, config) if c.name.startswith("large steps kill units"))


def test_large_step_check_is_a_one_sided_wilcoxon_test_over_seeds():
    config = re_.EXPERIMENT.make_config(**SMALL)
    metrics = re_.measure(config, Context(torch.device("cpu")))
    assert len(metrics.query("name == 'kill_dead'")) == 2 * (config.kill_seeds - 1)
    passed = _kill_verdict(metrics, config, [5, 3, 2, 4, 1])
    assert passed.passed and passed.measured == pytest.approx(1 / 32)  # every seed: exact p = 2^-5
    assert not _kill_verdict(metrics, config, [0, 0, 0, 0, 0]).passed  # the step does not matter
    assert not _kill_verdict(metrics, config, [5, 3, -2, 4, 1]).passed  # one seed the other way: p = 3/32
    assert not _kill_verdict(metrics, config, [-5, -3, -2, -4, -1]).passed  # small steps kill more


def test_config_rejects_bad_values():
    with pytest.raises(ValidationError):
        re_.ReluElbowsConfig(group_sizes=(0, 16))
    with pytest.raises(ValidationError):
        re_.ReluElbowsConfig(elbow_units=10)
    with pytest.raises(ValidationError, match="groups"):
        re_.ReluElbowsConfig(elbow_units=2**12, group_sizes=(16, 1024))
    with pytest.raises(ValidationError, match="kill_fractions"):
        re_.ReluElbowsConfig(kill_fractions=(0.25, 5.0))
    with pytest.raises(ValidationError, match="kill_seeds"):
        re_.ReluElbowsConfig(kill_seeds=3)


# ------------------------------------------------------------------------------------------------ experiment
def test_quick_run_passes_every_check():
    experiment = re_.EXPERIMENT
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
