"""newton-saddles: the double well against autograd, Newton's map and its basin, the order estimate, and the
experiment: the quick config passes every check, re-checks from its stored metrics, and fails when the measured
numbers are off."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from pydantic import ValidationError
from recheck import assert_rechecks

from tdlab.experiments.catalogue.newton_saddles import (
    BASIN,
    EXPERIMENT,
    DoubleWell,
    NewtonSaddlesConfig,
    _pure_newton,
    local_order,
)


def test_double_well_derivatives_against_autograd():
    f = DoubleWell()
    w = torch.tensor([0.3, -0.7], dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(f.value(w), w, create_graph=True)
    H = torch.stack([torch.autograd.grad(g[i], w, retain_graph=True)[0] for i in range(2)])
    torch.testing.assert_close(f.gradient(w.detach()), g.detach())
    torch.testing.assert_close(f.hessian(w.detach()), H.detach())
    assert float(f.value(torch.tensor([0.0, math.sqrt(2)], dtype=torch.float64))) == pytest.approx(-1.0)


def test_pure_newton_is_the_closed_form_map_and_its_basin_edge():
    f = DoubleWell()
    y = torch.tensor([0.1, 0.5, 0.7, 2.0], dtype=torch.float64)
    w = torch.stack([torch.full_like(y, 0.4), y], -1)
    step = _pure_newton(f, w, 1)[1]
    torch.testing.assert_close(step[:, 1], 2 * y**3 / (3 * y**2 - 2))
    assert step[:, 0].abs().max() == 0.0  # x reaches 0 in one step
    edge = torch.tensor([[0.0, BASIN * (1 - 1e-6)], [0.0, BASIN * (1 + 1e-6)]], dtype=torch.float64)
    last = _pure_newton(f, edge, 100)[-1]
    assert abs(float(last[0, 1])) < 1e-12  # just inside the basin: to the saddle
    assert abs(abs(float(last[1, 1])) - math.sqrt(2)) < 1e-12  # just outside: to a minimum


def test_local_order_of_known_sequences():
    assert local_order(np.array([0.5, 0.5**3, 0.5**9, 0.5**27])) == pytest.approx(3.0)
    assert local_order(0.5 ** (2.0 ** np.arange(10))) == pytest.approx(2.0)
    assert math.isnan(local_order(np.array([0.5, 0.4, 0.3])))


def test_config_rejects_bad_values():
    with pytest.raises(ValidationError, match="radius"):
        NewtonSaddlesConfig(radius=0.5)  # inside the basin: nothing to compare
    with pytest.raises(ValidationError, match="eta"):
        NewtonSaddlesConfig(eta=0.6)
    assert EXPERIMENT.make_config("full").starts > EXPERIMENT.make_config().starts


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    return assert_rechecks(EXPERIMENT, EXPERIMENT.make_config(), tmp_path_factory.mktemp("newton_saddles"))


def test_quick_run_passes_every_check(quick):
    failed = [f"{c.name}: {c.measured} vs {c.theory} ({c.detail})" for c in quick.checks if not c.passed]
    assert not failed, failed
    assert len(quick.checks) == 7
    assert set(quick.figures) == {"basins"}
    assert all(isinstance(f, Figure) for f in quick.figures.values())


def test_checks_fail_when_the_measurements_are_off(quick):
    """Newton that escapes like GD, a linear rate at the saddle, and GD stuck at the saddle fail their checks."""
    config = EXPERIMENT.make_config()
    metrics = quick.metrics.copy()
    for column in ("final_x", "final_y"):
        newton = (metrics["name"] == column) & (metrics["method"] == "newton")
        gd = (metrics["name"] == column) & (metrics["method"] == "gd")
        metrics.loc[newton, "value"] = metrics.loc[gd, "value"].to_numpy()  # a saddle-avoiding "Newton"
    metrics.loc[metrics["name"] == "newton_order", "value"] = 1.0
    verdicts = [c.passed for c in EXPERIMENT.checks(metrics, config)]
    assert verdicts[:3] == [False, False, False]

    stuck = quick.metrics.copy()
    stuck.loc[(stuck["method"] == "gd") & stuck["name"].isin(["final_x", "final_y"]), "value"] = 0.0
    verdicts = [c.passed for c in EXPERIMENT.checks(stuck, config)]
    assert verdicts[3:5] == [False, False] and verdicts[5:] == [True, True]


def test_a_small_config_rechecks(tmp_path):
    config = EXPERIMENT.make_config(starts=20, cg_starts=3, newton_steps=40, gd_steps=300)
    assert len(assert_rechecks(EXPERIMENT, config, tmp_path).checks) == 7
