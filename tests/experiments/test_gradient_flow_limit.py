"""gradient-flow-limit: the closed-form flow against scipy's expm, the top-mode factor, config validation, and the
experiment: the quick config passes every check, re-checks from its stored metrics, and fails when the measured
numbers are off."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure
from pydantic import ValidationError
from recheck import assert_rechecks
from scipy.linalg import expm

from tdlab.experiments.catalogue.gradient_flow_limit import (
    EXPERIMENT,
    GradientFlowLimitConfig,
    flow,
    step_sizes,
    time_grid,
    top_mode_factor,
)


def test_flow_is_the_matrix_exponential():
    rng = np.random.default_rng(0)
    M = rng.standard_normal((4, 4))
    H, w0, times = M @ M.T, rng.standard_normal(4), np.array([0.0, 0.3, 2.0])
    np.testing.assert_allclose(flow(H, w0, times), [expm(-t * H) @ w0 for t in times], rtol=1e-10, atol=1e-12)


def test_top_mode_factor_reads_sign_and_size():
    assert top_mode_factor(3.0 * (-1.1) ** np.arange(20)) == pytest.approx(-1.1, rel=1e-12)
    assert top_mode_factor(0.5 * 0.7 ** np.arange(20)) == pytest.approx(0.7, rel=1e-12)


def test_grids_and_config_validation():
    config = GradientFlowLimitConfig()
    assert time_grid(config)[-1] == pytest.approx(config.track_time)
    assert step_sizes(config)[0] / step_sizes(config)[-1] == 2 ** (config.halvings - 1)
    with pytest.raises(ValidationError, match="track_time"):
        GradientFlowLimitConfig(track_time=0.1, eta0=0.25)
    with pytest.raises(ValidationError, match="kappa"):
        GradientFlowLimitConfig(kappa=0.5)
    assert EXPERIMENT.make_config("full").kappa > config.kappa


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    return assert_rechecks(EXPERIMENT, EXPERIMENT.make_config(), tmp_path_factory.mktemp("gradient_flow_limit"))


def test_quick_run_passes_every_check(quick):
    failed = [f"{c.name}: {c.measured} vs {c.theory} ({c.detail})" for c in quick.checks if not c.passed]
    assert not failed, failed
    assert len(quick.checks) == 6
    assert set(quick.figures) == {"solver_steps", "euler_order"}
    assert all(isinstance(f, Figure) for f in quick.figures.values())


def test_checks_fail_when_the_measurements_are_off(quick):
    """A solver path 1e-3 off, steps capped at an explicit method's edge, GD's top mode growing 1e-3 faster per step,
    and a GD error growing like eta^2 fail their checks."""
    config, metrics = EXPERIMENT.make_config(), quick.metrics.copy()
    metrics.loc[metrics["name"] == "solver_state", "value"] *= 1 + 1e-3
    radau = (metrics["name"] == "solver_time") & (metrics["solver"] == "Radau")
    metrics.loc[radau, "value"] = 3.0 * metrics.loc[radau, "index"]  # steps of h L = 3
    modes = metrics["name"] == "gd_top_mode"
    metrics.loc[modes, "value"] *= (1 + 1e-3) ** metrics.loc[modes, "step"]
    verdicts = [c.passed for c in EXPERIMENT.checks(metrics, config)]
    assert verdicts[:4] == [False, False, False, False]

    second_order = quick.metrics.copy()
    H = second_order.query("name == 'hessian'").pivot(index="row", columns="column", values="value").to_numpy()
    w0 = second_order.query("name == 'start'").sort_values("coordinate")["value"].to_numpy()
    states = second_order["name"] == "gd_state"
    frame = second_order[states]
    truth = flow(H, w0, frame["time"].to_numpy())[np.arange(len(frame)), frame["coordinate"].to_numpy().astype(int)]
    scale = frame["eta"].to_numpy() / step_sizes(config)[0]  # the error made to shrink like eta^2
    second_order.loc[states, "value"] = truth + (frame["value"].to_numpy() - truth) * scale
    verdicts = [c.passed for c in EXPERIMENT.checks(second_order, config)]
    assert verdicts[4:] == [False, False]


def test_a_small_config_rechecks(tmp_path):
    config = EXPERIMENT.make_config(dim=3, kappa=10.0, horizon=2.0, edge_steps=5, halvings=3, track_time=0.5)
    result = assert_rechecks(EXPERIMENT, config, tmp_path)
    assert len(result.checks) == 6
