"""edge-of-stability: the stability bound (theory.stability) and the catalogue experiment."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure
from pydantic import ValidationError
from recheck import assert_rechecks
from torch import nn

from tdlab import Objective
from tdlab.curvature import exact_hessian
from tdlab.data import half_squared_error, mnist1d
from tdlab.experiments.base import Context
from tdlab.experiments.catalogue.edge_of_stability import EXPERIMENT, EdgeOfStabilityConfig, checks, measure, summarise
from tdlab.experiments.registry import get
from tdlab.models import MLP
from tdlab.theory.stability import max_stable_sharpness, normalised_sharpness

CPU = Context(torch.device("cpu"))


def _heavy_ball_on_a_parabola(eta: float, beta: float, curvature: float, steps: int = 2000) -> float:
    """|x_T| after heavy ball (v <- beta v + lambda x, x <- x - eta v) on f(x) = lambda x^2 / 2 from x_0 = 1."""
    x, v = 1.0, 0.0
    for _ in range(steps):
        v = beta * v + curvature * x
        x = x - eta * v
    return abs(x)


@pytest.mark.parametrize(("eta", "beta"), [(0.1, 0.0), (0.03, 0.0), (0.1, 0.5), (0.02, 0.9)])
def test_max_stable_sharpness_separates_convergence_from_divergence(eta, beta):
    bound = float(max_stable_sharpness(eta, momentum=beta))
    assert _heavy_ball_on_a_parabola(eta, beta, 0.98 * bound) < 1e-3
    assert _heavy_ball_on_a_parabola(eta, beta, 1.02 * bound) > 1e3


def test_max_stable_sharpness_values_and_normalisation():
    np.testing.assert_allclose(max_stable_sharpness([0.01, 0.5]), [200.0, 4.0])
    assert float(max_stable_sharpness(0.1, momentum=0.9)) == pytest.approx(38.0)
    np.testing.assert_allclose(normalised_sharpness([10.0, 20.0, 25.0], 0.1), [0.5, 1.0, 1.25])
    assert float(normalised_sharpness(38.0, 0.1, momentum=0.9)) == pytest.approx(1.0)


def test_stability_bad_inputs():
    with pytest.raises(ValueError, match="eta"):
        max_stable_sharpness(0.0)
    with pytest.raises(ValueError, match="momentum"):
        max_stable_sharpness(0.1, momentum=1.0)


def _tiny(n_train=40, width=6, depth=1, activation="tanh", **overrides) -> EdgeOfStabilityConfig:
    base = dict(
        data=dict(name="mnist1d", n_train=n_train, n_test=10),
        model=dict(name="mlp", width=width, depth=depth, activation=activation, init="default"),
        etas=(0.5,),
        steps=12,
        sharpness_every=4,
        lanczos_tol=1e-8,
        dtype="float64",
        device="cpu",
    )
    return EdgeOfStabilityConfig(**{**base, **overrides})


def _tiny_problem(seed: int = 0) -> Objective:
    data = mnist1d(n_train=40, n_test=10, seed=seed).to(dtype=torch.float64)
    Y = nn.functional.one_hot(data.y_train, 10).to(torch.float64)
    model = MLP(40, 10, width=6, depth=1, activation="tanh", init="default", seed=seed).double()
    return Objective(model, half_squared_error, (data.X_train, Y))


@pytest.mark.parametrize("momentum", [0.0, 0.7])
def test_measure_follows_the_hand_written_update_and_the_exact_sharpness(momentum):
    config = _tiny(momentum=momentum)
    metrics = measure(config, CPU)
    obj = _tiny_problem()
    theta, velocity, losses, sharpness = obj.flat_parameters(), None, [], []
    for step in range(config.steps + 1):
        loss, g = obj.value_and_gradient(theta)
        losses.append(float(loss))
        if step % config.sharpness_every == 0:
            sharpness.append(float(torch.linalg.eigvalsh(exact_hessian(obj, theta))[-1]))
        velocity = g if velocity is None else momentum * velocity + g  # torch.optim.SGD's heavy ball
        theta = theta - 0.5 * velocity
    loss_rows = metrics.query("name == 'train/loss'")
    np.testing.assert_array_equal(loss_rows["step"], np.arange(config.steps + 1))
    np.testing.assert_allclose(loss_rows["value"], losses, rtol=1e-10)
    sharp = metrics.query("name == 'sharpness'")
    np.testing.assert_array_equal(sharp["step"], [0, 4, 8, 12])
    np.testing.assert_allclose(sharp["value"], sharpness, rtol=1e-6)
    assert set(metrics["eta"]) == {0.5}


def _frame(eta, steps, sharp_steps, sharp, loss):
    rows = [(eta, int(s), "sharpness", float(v)) for s, v in zip(sharp_steps, sharp, strict=True)]
    rows += [(eta, t, "train/loss", float(v)) for t, v in zip(steps, loss, strict=True)]
    return pd.DataFrame(rows, columns=["eta", "step", "name", "value"])


def test_summarise_reads_sharpening_edge_and_loss():
    # synthetic run: sharpness rises linearly to 2/eta = 10 at step 50, then alternates 0.95 / 1.1 of it
    config = _tiny(steps=100, sharpness_every=5, etas=(0.2,))
    steps = np.arange(0, 101, 5)
    sharp = np.where(steps < 50, 4 + 6 * steps / 50, np.where(steps % 10 == 0, 11.0, 9.5))
    loss = np.linspace(1.0, 0.5, 101) + 0.05 * (np.arange(101) % 2)
    frame = _frame(0.2, range(101), steps, sharp, loss)
    s = summarise(frame, 0.2, config)
    assert s["bound"] == pytest.approx(10.0)
    assert s["crossing_step"] == 50
    assert s["median_ratio"] == pytest.approx(1.1)  # 6 of the 11 second-half samples are 1.1
    assert s["spearman_rho"] == pytest.approx(1.0)
    assert s["spearman_p"] < 1e-6
    assert s["loss_ratio"] == pytest.approx(loss[-1] / loss[50])
    assert s["loss_increase_fraction"] == pytest.approx(0.5)
    assert s["loss_rise"] == pytest.approx(loss[99] / loss[98])  # the last odd step: the largest relative rise
    assert s["loss_rise_before"] > 1.0
    assert all(c.passed for c in checks(frame, config))
    # the same run with a monotone loss: the long-run decrease passes, the non-monotone check fails (ratio 1)
    monotone = _frame(0.2, range(101), steps, sharp, np.linspace(1.0, 0.5, 101))
    verdicts = {c.name: c for c in checks(monotone, config)}
    assert verdicts["final loss / loss at the first crossing, eta=0.2"].passed
    rise = next(c for name, c in verdicts.items() if name.startswith("loss non-monotone"))
    assert rise.measured == 1.0 and not rise.passed


def test_summarise_without_a_crossing_or_after_divergence():
    config = _tiny(steps=100, sharpness_every=10, etas=(0.2,))
    steps = np.arange(0, 101, 10)
    s = summarise(_frame(0.2, range(101), steps, np.full(11, 3.0), np.ones(101)), 0.2, config)
    assert s["crossing_step"] is None and math.isnan(s["spearman_p"]) and math.isnan(s["loss_ratio"])
    late = _frame(0.2, range(101), steps, np.r_[np.full(10, 3.0), 12.0], np.ones(101))  # reaches 10 at the end
    s = summarise(late, 0.2, config)
    assert s["crossing_step"] == 100 and math.isnan(s["loss_ratio"])  # no edge-of-stability phase to judge
    diverged = _frame(0.2, range(41), steps[:4], np.full(4, 3.0), np.r_[np.ones(40), np.inf])
    s = summarise(diverged, 0.2, config)
    assert s["diverged_at"] == 40 and math.isnan(s["median_ratio"])
    assert not any(c.passed for c in checks(diverged, config))


def test_divergence_is_recorded_not_raised():
    # a linear network in float32 at a step 100 times past the bound overflows within a few steps
    config = _tiny(etas=(50.0,), steps=30, activation="linear", dtype="float32")
    result = EXPERIMENT.run(config, CPU)
    loss = result.metrics.query("name == 'train/loss'")["value"]
    assert not np.isfinite(loss.iloc[-1]) and len(loss) < 31
    assert not any(c.passed for c in result.checks if c.name.startswith("median sharpness"))
    assert "diverged" in result.checks[0].detail


@pytest.mark.parametrize(
    ("field", "value"), [("etas", ()), ("etas", (0.1, -0.2)), ("etas", (0.1, 0.1)), ("momentum", 1.0)]
)
def test_config_rejects_bad_values(field, value):
    with pytest.raises(ValidationError, match=field):
        EdgeOfStabilityConfig(**{field: value})


@pytest.mark.slow
def test_quick_run_passes_its_checks():
    experiment = get("edge-of-stability")
    config = experiment.make_config(device="cpu")
    result = experiment.run(config, CPU)
    failed = [(c.name, c.measured, c.theory, c.detail) for c in result.checks if not c.passed]
    assert not failed, failed
    assert len(result.checks) == 4 * len(config.etas)
    assert set(result.figures) == {"edge_of_stability", "normalised_sharpness"}
    assert all(isinstance(f, Figure) for f in result.figures.values())
    sharp = result.metrics.query("name == 'sharpness'")
    assert set(sharp["eta"]) == set(config.etas)


def test_same_seed_same_numbers():
    config = _tiny(dtype="float32", lanczos_tol=1e-3)
    assert measure(config, CPU).equals(measure(config, CPU))


def test_checks_and_figures_come_from_the_stored_metrics(tmp_path):
    config = _tiny(
        n_train=50, width=8, steps=40, sharpness_every=2, etas=(0.4, 80.0), dtype="float32", lanczos_tol=1e-3
    )
    result = assert_rechecks(EXPERIMENT, config, tmp_path)
    assert len(result.checks) == 8 and set(result.figures) == {"edge_of_stability", "normalised_sharpness"}
    assert not np.isfinite(result.metrics.query("eta == 80 and name == 'train/loss'")["value"].iloc[-1])  # diverged
