"""quadratic-step-size: the GD closed forms against hand values and brute-force iteration, config validation, and
the experiment: every check of the quick config passes, gives the same verdicts from its stored metrics, and fails
when the measured numbers are off. The measurement harness is tested in tests/test_optim_quadratics.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from pydantic import ValidationError
from recheck import assert_rechecks
from scipy.optimize import minimize_scalar

from tdlab.experiments.base import Context
from tdlab.experiments.catalogue.quadratic_step_size import EXPERIMENT, QuadraticStepSizeConfig
from tdlab.theory import quadratic as theory

SMALL = {"eta_points": 4, "kappas": (10.0,), "best_step_kappas": (2.0, 5.0), "steps": 60, "warmup": 20}
SMALL |= {"edge_steps": 40, "edge_rounds": 1, "edge_points": 3, "mode_steps": 10, "regime_steps": 4}


# -------------------------------------------------------------------------------------------------- theory
def test_mode_error_and_rate_by_hand():
    np.testing.assert_allclose(theory.gd_mode_error(1.5, 1.0, 3), [1.0, -0.5, 0.25, -0.125])
    # eta = 0.4 on {1, 4}: factors 0.6 and -0.6, so the rate is 0.6; eta = 0.6: 0.4 and -1.4
    np.testing.assert_allclose(theory.gd_rate([0.4, 0.6], [1.0, 2.5, 4.0]), [0.6, 1.4])


def test_best_step_minimises_the_rate():
    for mu, L in ((1.0, 3.0), (0.01, 1.0), (2.0, 50.0)):
        best = minimize_scalar(
            lambda eta, mu=mu, L=L: float(theory.gd_rate(eta, [mu, L])),
            bounds=(1e-6, 2 / L),
            method="bounded",
            options={"xatol": 1e-12},
        )
        assert best.x == pytest.approx(theory.gd_best_step(mu, L), rel=1e-6)
        assert best.fun == pytest.approx(float(theory.gd_best_rate(L / mu)), rel=1e-6)


def test_stability_threshold_is_where_the_rate_crosses_one():
    lam = [0.1, 0.7, 2.5]
    edge = theory.gd_stability_threshold(2.5)
    assert float(theory.gd_rate(edge * (1 - 1e-9), lam)) < 1.0 < float(theory.gd_rate(edge * (1 + 1e-9), lam))


def test_steps_to_tolerance_against_iteration():
    eta, lam, tol = 0.44, np.array([0.5, 1.0, 2.0, 3.0, 3.8, 1 / 0.44]), 1e-6
    counted = []
    for v in lam:
        e, t = 1.0, 0
        while abs(e) > tol:
            e, t = (1 - eta * v) * e, t + 1
        counted.append(t)
    np.testing.assert_array_equal(theory.gd_steps_to_tolerance(eta, lam, tol), counted)
    assert theory.gd_steps_to_tolerance(1.0, [2.5], tol)[0] == np.inf  # a diverging mode never converges


def test_regimes_and_bad_input():
    assert [theory.gd_regime(h, 1.0) for h in (0.3, 1.0, 1.7, 2.0, 2.3)] == [
        "monotone",
        "one-step",
        "oscillating",
        "period-two",
        "diverging",
    ]
    with pytest.raises(ValueError, match="eta: expected finite positive"):
        theory.gd_rate(-0.1, [1.0])
    with pytest.raises(ValueError, match="kappa: expected finite values >= 1"):
        theory.gd_best_rate(0.5)
    with pytest.raises(ValueError, match="mu: expected mu <= L"):
        theory.gd_best_step(2.0, 1.0)
    with pytest.raises(ValueError, match="tol: expected a value in"):
        theory.gd_steps_to_tolerance(0.1, [1.0], 2.0)


# ------------------------------------------------------------------------------------------------ config
def test_config_rejects_bad_values():
    with pytest.raises(ValidationError, match="warmup"):
        QuadraticStepSizeConfig(steps=100, warmup=100)
    with pytest.raises(ValidationError, match="kappas"):
        QuadraticStepSizeConfig(kappas=(10.0, 0.5))
    with pytest.raises(ValidationError, match="kappas: expected distinct"):
        QuadraticStepSizeConfig(kappas=(10.0, 10.0))
    with pytest.raises(ValidationError, match="mode_eta"):
        QuadraticStepSizeConfig(mode_eta=0.6)  # 0.6 * 3.8 > 2
    with pytest.raises(ValidationError, match="spacing"):
        QuadraticStepSizeConfig(spacing="cubic")
    with pytest.raises(ValueError, match="preset"):
        EXPERIMENT.make_config("huge")


def test_full_preset_is_a_valid_config():
    assert EXPERIMENT.make_config("full").steps > EXPERIMENT.make_config().steps


# -------------------------------------------------------------------------------------------------- run
@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """The quick config, measured once, re-checked from its stored metrics."""
    return assert_rechecks(EXPERIMENT, EXPERIMENT.make_config(), tmp_path_factory.mktemp("quadratic_step_size"))


def test_quick_run_passes_every_check_and_rechecks_from_stored_metrics(quick):
    failed = [f"{c.name}: {c.measured} vs {c.theory} ({c.detail})" for c in quick.checks if not c.passed]
    assert not failed, failed
    assert len(quick.checks) == 11
    assert set(quick.figures) == {"regimes", "mode_order", "rate_vs_eta", "best_step_rate"}
    assert all(isinstance(f, Figure) for f in quick.figures.values())
    assert {"name", "value", "eta", "kappa", "eigenvalue", "step"} <= set(quick.metrics.columns)
    assert np.isfinite(quick.metrics["value"]).all()


def test_checks_fail_when_the_measurements_are_off(quick):
    """Rates 2% too slow, edges at 2.1/L and a mode factor off by 1e-6: the rate, edge and mode checks fail."""
    config, metrics = EXPERIMENT.make_config(), quick.metrics.copy()
    scale = {"rate": 1.02, "best_step_rate": 1.02, "stability_edge": 1.05}
    metrics["value"] *= metrics["name"].map(scale).fillna(1.0)
    modes = metrics["name"] == "mode_error"
    metrics.loc[modes, "value"] *= (1 + 1e-6) ** metrics.loc[modes, "step"]
    verdicts = {c.name: c.passed for c in EXPERIMENT.checks(metrics, config)}
    assert not verdicts["rate vs max_i |1 - eta lambda_i| (eta <= 2/L), worst relative error"]
    assert not verdicts["rate at eta = 2/(L + mu) vs (kappa - 1)/(kappa + 1), worst relative error"]
    assert not any(passed for name, passed in verdicts.items() if name.startswith("edge of stability"))
    assert not verdicts["max over modes and t of |e_i(t)/e_i(0) - (1 - eta lambda_i)^t|"]


def test_small_config_rechecks_and_same_seed_same_numbers(tmp_path):
    first = assert_rechecks(EXPERIMENT, EXPERIMENT.make_config(**SMALL), tmp_path / "a").metrics
    second = EXPERIMENT.measure(EXPERIMENT.make_config(**SMALL), Context(torch.device("cpu")))
    other = EXPERIMENT.measure(EXPERIMENT.make_config(seed=1, **SMALL), Context(torch.device("cpu")))
    assert first.equals(second)
    assert not first.equals(other)
