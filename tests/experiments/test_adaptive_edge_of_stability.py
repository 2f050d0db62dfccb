"""adaptive-edge-of-stability: the training loop and its probes against ground truth, the summaries, the checks
(each one fails on the measurement a false claim would give), and the quick run."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure
from pydantic import ValidationError
from recheck import assert_rechecks
from torch import nn

from tdlab.curvature import exact_hessian
from tdlab.data import half_squared_error, mnist1d
from tdlab.experiments.base import Context
from tdlab.experiments.catalogue.adaptive_edge_of_stability import (
    EXPERIMENT,
    PRE,
    AdaptiveEdgeOfStabilityConfig,
    checks,
    measure,
    summarise,
)
from tdlab.experiments.registry import get
from tdlab.models import MLP
from tdlab.oracles import Objective

CPU = Context(torch.device("cpu"))


def _tiny(n_train=30, width=5, depth=1, activation="tanh", **overrides) -> AdaptiveEdgeOfStabilityConfig:
    base = dict(
        data=dict(name="mnist1d", n_train=n_train, n_test=10),
        model=dict(name="mlp", width=width, depth=depth, activation=activation, init="default"),
        etas=(0.01,),
        steps=10,
        sharpness_every=5,
        lanczos_tol=1e-10,
        lanczos_criterion="residual",
        dtype="float64",
        device="cpu",
    )
    return AdaptiveEdgeOfStabilityConfig(**{**base, **overrides})


def test_measure_is_plain_adam_and_measures_the_dense_preconditioned_sharpness():
    config = _tiny()
    data = mnist1d(n_train=30, n_test=10, seed=config.seed).to(dtype=torch.float64)
    Y = nn.functional.one_hot(data.y_train, 10).to(torch.float64)
    rows = measure(config, CPU)
    # the same Adam without probes, by hand: m, v, bias corrections, eps outside the square root
    model = MLP(40, 10, width=5, depth=1, activation="tanh", init="default", seed=0).double()
    obj = Objective(model, half_squared_error, (data.X_train, Y))
    theta, m, v = obj.flat_parameters(), 0.0, 0.0
    losses, expected = [], {}
    for t in range(config.steps + 1):
        loss, g = obj.value_and_gradient(theta)
        losses.append(float(loss))
        if t == config.steps:
            break
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        P = (1 - 0.9 ** (t + 1)) * (torch.sqrt(v / (1 - 0.999 ** (t + 1))) + 1e-8)
        theta = theta - 0.01 * m / P
        if (t + 1) % config.sharpness_every == 0:  # measured after step t + 1, at the new parameters
            H = exact_hessian(obj, theta).numpy()
            expected[t + 1] = (
                float(np.max(np.linalg.eigvals(np.diag(1 / P.numpy()) @ H).real)),
                float(np.linalg.eigvalsh(H)[-1]),
            )
    loss = rows.query("name == 'train/loss'")
    np.testing.assert_array_equal(loss["step"], np.arange(config.steps + 1))
    np.testing.assert_allclose(loss["value"], losses, rtol=1e-10)
    pre = rows.query(f"name == '{PRE}'").set_index("step")["value"]
    raw = rows.query("name == 'sharpness'").set_index("step")["value"]
    assert sorted(pre.index) == [5, 10] == sorted(raw.index)
    for step, (pre_expected, raw_expected) in expected.items():
        assert pre[step] == pytest.approx(pre_expected, rel=1e-8)
        assert raw[step] == pytest.approx(raw_expected, rel=1e-8)
    threshold = rows.query(f"name == '{PRE}/threshold'")["value"]
    np.testing.assert_allclose(threshold, 38 / 0.01)


def _frame(eta, steps, pre_ratio, raw_ratio, loss, every=10):
    """Stored metrics of one step size: lambda_1(P^-1 H) and lambda_1(H) given in units of 38/eta and 2/eta."""
    measured = np.arange(every, steps + 1, every)
    rows = [(eta, s, PRE, 38 / eta * r) for s, r in zip(measured, pre_ratio(measured), strict=True)]
    rows += [(eta, s, "sharpness", 2 / eta * r) for s, r in zip(measured, raw_ratio(measured), strict=True)]
    rows += [(eta, s, "train/loss", value) for s, value in enumerate(loss(np.arange(steps + 1)))]
    return pd.DataFrame(rows, columns=["eta", "step", "name", "value"])


def _edge(s):
    """Rises linearly from 0.2 to 1 at step 200, then alternates 0.95 / 1.05."""
    return np.where(s < 200, 0.2 + 0.8 * s / 200, np.where(s % 20 == 0, 1.05, 0.95))


def _falling(t):
    return 1.0 / (1.0 + t)


def test_summarise_reads_the_stored_metrics():
    config = AdaptiveEdgeOfStabilityConfig(steps=600, etas=(0.01,))
    frame = _frame(0.01, 600, _edge, _flat_raw, _falling)
    s = summarise(frame, 0.01, config)
    assert s["threshold"] == pytest.approx(3800.0)
    assert s["first_ratio"] == pytest.approx(0.24) and s["first_step"] == 10
    assert s["crossing_step"] == 200
    assert s["median_ratio"] == pytest.approx(1.0)  # 30 measurements after step 300, half of each
    assert s["loss_ratio"] == pytest.approx(201 / 601)
    assert s["raw_ratio"] == pytest.approx(0.02)
    assert all(c.passed for c in checks(frame, config))


MEDIAN, FIRST, LOSS, RAW = "median preconditioned", "first preconditioned", "final loss", "median sharpness"


def _flat_raw(s):
    return 0.02 + 0 * s


@pytest.mark.parametrize(
    ("claim", "frame", "failing"),
    [
        # Adam stable well below the threshold (a wrong threshold, or P misread): the band check fails, and with no
        # crossing there is no phase at the edge in which to judge the loss
        ("below", _frame(0.01, 600, lambda s: 0.05 + 0.5 * s / 600, _flat_raw, _falling), {MEDIAN, LOSS}),
        # the preconditioned sharpness equilibrates at 2/eta (2/38 of 38/eta), as if momentum played no part
        ("2/eta", _frame(0.01, 600, lambda s: np.minimum(s / 600, 2 / 38), _flat_raw, _falling), {MEDIAN, LOSS}),
        # it starts at the edge: nothing rose to it
        ("no rise", _frame(0.01, 600, lambda s: 0.98 + 0.04 * (s % 20 == 0), _flat_raw, _falling), {FIRST}),
        # the loss climbs after the crossing: no training at the edge
        ("loss rises", _frame(0.01, 600, _edge, _flat_raw, lambda t: 1.0 + 0.001 * t), {LOSS}),
        # the ordinary sharpness sits at GD's bound: Adam behaving like GD
        ("GD's edge", _frame(0.01, 600, _edge, lambda s: 1.0 + 0 * s, _falling), {RAW}),
    ],
)
def test_each_check_fails_on_a_false_claim(claim, frame, failing):
    config = AdaptiveEdgeOfStabilityConfig(steps=600, etas=(0.01,))
    result = checks(frame, config)
    assert len(result) == 4
    failed = {
        prefix for c in result if not c.passed for prefix in (MEDIAN, FIRST, LOSS, RAW) if c.name.startswith(prefix)
    }
    assert failed == failing, claim


def test_a_threshold_never_reached_or_a_divergence_fails_without_raising():
    config = AdaptiveEdgeOfStabilityConfig(steps=600, etas=(0.01,))
    never = _frame(0.01, 600, lambda s: 0.5 + 0 * s, _flat_raw, _falling)
    s = summarise(never, 0.01, config)
    assert s["crossing_step"] is None and math.isnan(s["loss_ratio"])
    diverged = _frame(0.01, 600, _edge, _flat_raw, lambda t: np.where(t < 600, 1.0, np.inf))
    assert summarise(diverged, 0.01, config)["diverged_at"] == 600
    verdicts = {c.name.split(",")[0]: c.passed for c in checks(diverged, config)}
    assert not verdicts["median preconditioned sharpness / threshold over the second half"]
    assert not verdicts["final loss / loss at the first crossing"]


def test_divergence_is_recorded_not_raised():
    # a linear network in float32 at a step 10^6: Adam moves every weight by ~eta per step, and the product of three
    # such layers overflows the squared error within a few steps
    result = EXPERIMENT.run(_tiny(etas=(1e6,), depth=2, activation="linear", dtype="float32", steps=30), CPU)
    loss = result.metrics.query("name == 'train/loss'")
    assert 0 < loss["step"][~np.isfinite(loss["value"])].min() < 30 and loss["step"].max() < 30
    assert not any(c.passed for c in result.checks if c.name.startswith("median preconditioned"))
    assert "diverged" in result.checks[0].detail


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("etas", ()),
        ("etas", (0.1, -0.2)),
        ("etas", (0.1, 0.1)),
        ("beta1", 1.0),
        ("eps", 0.0),
        ("lanczos_criterion", "x"),
    ],
)
def test_config_rejects_bad_values(field, value):
    with pytest.raises(ValidationError, match=field):
        AdaptiveEdgeOfStabilityConfig(**{field: value})


def test_same_seed_same_numbers():
    config = _tiny(dtype="float32", lanczos_tol=1e-3, lanczos_criterion="ritz")
    assert measure(config, CPU).equals(measure(config, CPU))


@pytest.mark.slow
def test_quick_run_passes_its_checks():
    experiment = get("adaptive-edge-of-stability")
    config = experiment.make_config(device="cpu")
    result = experiment.run(config, CPU)
    failed = [(c.name, c.measured, c.theory, c.detail) for c in result.checks if not c.passed]
    assert not failed, failed
    assert len(result.checks) == 4 * len(config.etas)
    assert set(result.figures) == {"adaptive_edge_of_stability", "normalised_preconditioned_sharpness"}
    assert all(isinstance(f, Figure) for f in result.figures.values())
    assert set(result.metrics.query(f"name == '{PRE}'")["eta"]) == set(config.etas)


def test_checks_and_figures_come_from_the_stored_metrics(tmp_path):
    config = _tiny(
        n_train=40, width=8, steps=30, sharpness_every=3, etas=(0.01, 0.05), dtype="float32", lanczos_tol=1e-3
    )
    result = assert_rechecks(EXPERIMENT, config, tmp_path)
    assert len(result.checks) == 8
    assert set(result.figures) == {"adaptive_edge_of_stability", "normalised_preconditioned_sharpness"}
