"""deep-linear-modes: the flow against its integral form, the decoupled start and the exact per-mode GD recursion,
config validation, re-checking from stored metrics (the quick run, whose checks must all pass), and corrupted
metrics that must flip the checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from recheck import assert_rechecks
from scipy.integrate import quad

from tdlab.experiments.base import Context
from tdlab.experiments.catalogue import deep_linear_modes as dl
from tdlab.experiments.tidy import series


@pytest.mark.parametrize("depth", [2, 3, 4])
def test_flow_against_its_integral_form(depth):
    """t(a) = int_a0^a dx / (N x^(2 - 2/N) (s - x) eta): the flow reaches the level a at that time."""
    s, a0, eta = 2.0, 1e-3, 0.01
    for level in (0.1, 0.5, 0.9):
        t, _ = quad(lambda x: 1 / (depth * x ** (2 - 2 / depth) * (s - x) * eta), a0, level * s, limit=200)
        a = dl.mode_strength_flow(s, a0, eta, depth, np.array([0.0, t]))[-1]
        assert a == pytest.approx(level * s, rel=1e-6)


def test_depth_two_half_time_closed_form():
    s, a0, eta = 3.0, 1e-4, 0.02
    t_half = math.log(s / a0 - 1) / (2 * s * eta)
    assert dl.sigmoid_strength(s, a0, eta, np.array([t_half]))[0] == pytest.approx(s / 2, rel=1e-12)
    grid = np.linspace(0, 3 * t_half, 3001)
    crossing = dl.crossing_times(grid, dl.sigmoid_strength(s, a0, eta, grid), np.array([s / 2]))[0]
    assert crossing == pytest.approx(t_half, abs=1e-2)


def test_gd_on_the_network_follows_the_per_mode_recursion():
    """From the decoupled, balanced start every mode evolves alone, by the scalar GD map of its layer factor
    b <- b + eta b^(N - 1) (s - b^N), a = b^N: the measured strengths equal it to rounding, at every step."""
    config = dl.EXPERIMENT.make_config(depths=(2, 3), initial_strengths=(1e-2, 1e-2), steps=60, random_init=False)
    metrics = dl.measure(config, Context(torch.device("cpu")))
    for depth in config.depths:
        for i, s in enumerate(config.singular_values):
            steps, strength = series(metrics, "strength", depth=depth, init="decoupled", mode=i)
            b, expected = 1e-2 ** (1 / depth), []
            for _ in steps:
                expected.append(b**depth)
                b = b + config.eta * b ** (depth - 1) * (s - b**depth)
            np.testing.assert_allclose(strength, expected, rtol=1e-9)
        _, loss = series(metrics, "loss", depth=depth, init="decoupled")
        strengths = [series(metrics, "strength", depth=depth, init="decoupled", mode=i)[1] for i in range(3)]
        exact = 0.5 * sum((s - a) ** 2 for s, a in zip(config.singular_values, strengths, strict=True))
        np.testing.assert_allclose(loss, exact, rtol=1e-9)  # whitened inputs: loss = |W - W*|_F^2 / 2


def test_config_validation():
    with pytest.raises(ValidationError, match="singular_values"):
        dl.DeepLinearModesConfig(singular_values=(2.0, 2.0))
    with pytest.raises(ValidationError, match="singular_values"):
        dl.DeepLinearModesConfig(width=2)
    with pytest.raises(ValidationError, match="initial_strengths"):
        dl.DeepLinearModesConfig(initial_strengths=(1e-3,))
    with pytest.raises(ValidationError, match="depths"):
        dl.DeepLinearModesConfig(depths=(1, 2), initial_strengths=(1e-3, 1e-3))
    assert dl.DeepLinearModesConfig(singular_values=(1.0, 3.0, 2.0)).singular_values == (3.0, 2.0, 1.0)


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    config = dl.EXPERIMENT.make_config()
    return config, assert_rechecks(dl.EXPERIMENT, config, tmp_path_factory.mktemp("deep_linear_modes"))


def test_quick_run_passes_every_check(quick):
    _, result = quick
    failed = [f"{c.name}: {c.measured}" for c in result.checks if not c.passed]
    assert not failed, failed
    assert len(result.checks) == 7 and set(result.figures) == {"modes"}


def test_checks_fail_on_corrupted_metrics(quick):
    config, result = quick
    names = [c.name for c in result.checks]
    verdicts = lambda metrics: [{c.name: c.passed for c in dl.checks(metrics, config)}[n] for n in names]  # noqa: E731
    # every mode learned on the fastest mode's schedule (a/s the same curve): trajectories, spreads and plateaus fail
    together = result.metrics.copy()
    strength = together["name"] == "strength"
    fastest = together[strength & (together["mode"] == 0)].set_index(["depth", "init", "step"])["value"] / 4.0
    keys = together.loc[strength, ["depth", "init", "step"]].itertuples(index=False, name=None)
    s = np.asarray(config.singular_values)[together.loc[strength, "mode"].astype(int)]
    together.loc[strength, "value"] = s * fastest.loc[list(keys)].to_numpy()
    assert verdicts(together) == [False] * 7
    # time running 10% slow (steps relabelled): the trajectory checks fail, the scale-free spread checks do not
    slow = result.metrics.copy()
    slow["step"] = slow["step"] * 1.1
    assert verdicts(slow) == [False, True, True, False, True, True, True]
    # a loss without plateaus (the final value everywhere): the plateau checks fail
    flat = result.metrics.copy()
    for depth in config.depths:
        chosen = (flat["name"] == "loss") & (flat["depth"] == depth) & (flat["init"] == "decoupled")
        flat.loc[chosen, "value"] = np.exp(np.linspace(np.log(10.5), np.log(1e-6), chosen.sum()))
    assert verdicts(flat) == [True, True, False, True, True, False, True]
