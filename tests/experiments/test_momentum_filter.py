"""momentum-filter: the frequency response against a brute-force sum, config validation, and the experiment: the quick
config passes every check, re-checks from its stored metrics, and fails when the measured numbers are off."""

from __future__ import annotations

import math

import numpy as np
import pytest
from matplotlib.figure import Figure
from pydantic import ValidationError
from recheck import assert_rechecks

from tdlab.experiments.catalogue.momentum_filter import (
    EXPERIMENT,
    MomentumFilterConfig,
    frequency_grid,
    noise_interval,
    noise_steps,
    response,
)


def test_response_is_the_geometric_sum_of_the_buffer():
    beta, omega = 0.8, np.array([0.0, 0.3, 2.0, math.pi])
    brute = sum(beta**j * np.exp(-1j * omega * j) for j in range(400))
    np.testing.assert_allclose(response(beta, omega), brute, rtol=1e-12)
    assert abs(response(beta, 0.0)) == pytest.approx(1 / (1 - beta))
    assert abs(response(beta, math.pi)) == pytest.approx(1 / (1 + beta))


def test_noise_interval_covers_the_stationary_variance_at_its_level():
    rng = np.random.default_rng(0)
    beta, chains, level = 0.7, 200, 0.1
    low, high = noise_interval(beta, chains, level)
    samples = rng.normal(0, 1 / math.sqrt(1 - beta**2), (4000, chains))
    coverage = np.mean(((samples**2).mean(1) >= low) & ((samples**2).mean(1) <= high))
    assert coverage == pytest.approx(1 - level, abs=0.015)
    assert 0.99 ** (2 * noise_steps((0.5, 0.99))) <= 1e-6


def test_config_rejects_bad_values():
    with pytest.raises(ValidationError, match="burn_in"):
        MomentumFilterConfig(betas=(0.999,), burn_in=100)
    with pytest.raises(ValidationError, match="betas: expected distinct"):
        MomentumFilterConfig(betas=(0.5, 0.5))
    with pytest.raises(ValidationError, match="betas"):
        MomentumFilterConfig(betas=(1.0,))
    assert frequency_grid(MomentumFilterConfig())[[0, -1]].tolist() == [0.0, math.pi]
    assert EXPERIMENT.make_config("full").chains > EXPERIMENT.make_config().chains


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    return assert_rechecks(EXPERIMENT, EXPERIMENT.make_config(), tmp_path_factory.mktemp("momentum_filter"))


def test_quick_run_passes_every_check(quick):
    failed = [f"{c.name}: {c.measured} vs {c.theory} ({c.detail})" for c in quick.checks if not c.passed]
    assert not failed, failed
    assert len(quick.checks) == 4 + len(EXPERIMENT.make_config().betas)
    assert set(quick.figures) == {"frequency_response", "noise"}
    assert all(isinstance(f, Figure) for f in quick.figures.values())


def test_checks_fail_when_the_measurements_are_off(quick):
    """A gain 1% off, a phase shifted by 1e-3 rad, a flat response and the variance of a constant gradient fail."""
    config, metrics = EXPERIMENT.make_config(), quick.metrics.copy()
    metrics.loc[metrics["name"] == "gain", "value"] *= 1.01
    metrics.loc[metrics["name"] == "phase", "value"] += 1e-3
    noise = metrics["name"] == "noise_variance"
    metrics.loc[noise, "value"] = 1 / (1 - metrics.loc[noise, "beta"]) ** 2
    verdicts = [c.passed for c in EXPERIMENT.checks(metrics, config)]
    assert verdicts[:3] == [False, False, False]
    assert not any(verdicts[4:])

    flat = quick.metrics.copy()
    flat.loc[(flat["name"] == "gain") & (flat["form"] == "torch"), "value"] = 1.0
    names = {c.name: c.passed for c in EXPERIMENT.checks(flat, config)}
    assert not names["low-pass: the gain falls strictly from omega = 0 to omega = pi, for every beta"]


def test_a_small_config_rechecks(tmp_path):
    config = EXPERIMENT.make_config(betas=(0.5,), frequencies=4, burn_in=40, window=16, chains=50)
    result = assert_rechecks(EXPERIMENT, config, tmp_path)
    assert all(c.passed for c in result.checks[:4])
