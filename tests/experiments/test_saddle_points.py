"""saddle-points: the linearised escape (time, coordinate, loss change) against GD iterated on a quadratic
saddle, config validation, the searches against the one critical point of the data loss known in closed form
(the all-dead network), the Spearman check's level under shuffled indices, and a quick run whose checks must all
pass."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure
from pydantic import ValidationError
from recheck import assert_rechecks

from tdlab.curvature import exact_hessian
from tdlab.data import half_squared_error
from tdlab.experiments.base import Context
from tdlab.experiments.catalogue import saddle_points as sp
from tdlab.experiments.fields import seeded
from tdlab.oracles import Objective
from tdlab.theory import saddles as theory
from tdlab.train.builders import build_data, build_network


def _gd_on_quadratic(eigenvalues, start, eta, steps, stop=math.inf):
    """Iterates of GD on L = 1/2 sum_i lambda_i c_i^2 and their losses (until some |c_i| >= stop)."""
    lam, c = np.asarray(eigenvalues), np.asarray(start, dtype=float)
    coordinates, losses = [c.copy()], [0.5 * np.sum(lam * c**2)]
    for _ in range(steps):
        if np.abs(c).max() >= stop:
            break
        c = c - eta * lam * c
        coordinates.append(c.copy())
        losses.append(0.5 * np.sum(lam * c**2))
    return np.array(coordinates), np.array(losses)


def test_linearised_dynamics_and_loss_change_match_gd_on_a_quadratic_saddle():
    lam, start, eta = [2.0, 0.5, -0.3], [1e-3, -2e-3, 1e-6], 0.4
    coordinates, losses = _gd_on_quadratic(lam, start, eta, 60)
    t = np.arange(61)
    np.testing.assert_allclose(coordinates[:, 2], theory.linearised_coordinate(t, 1e-6, eta, -0.3), rtol=1e-12)
    np.testing.assert_allclose(losses, theory.quadratic_loss_change(t, start, eta, lam), rtol=1e-10, atol=1e-300)


def test_escape_time_is_the_first_step_past_the_radius():
    for eta, lam, delta, r in ((0.5, -1.0, 1e-8, 1e-2), (0.1, -0.05, 1e-6, 1.0), (1.0, -0.3, 3e-5, 0.2)):
        coordinates, _ = _gd_on_quadratic([1.0, lam], [delta, delta], eta, 100000, stop=r)
        measured = int(np.argmax(np.abs(coordinates[:, 1]) >= r))
        predicted = theory.escape_time(r, delta, eta, lam)
        assert measured == math.ceil(predicted)
    with pytest.raises(ValueError, match="eigenvalue: expected a negative curvature"):
        theory.escape_time(1.0, 0.1, 0.1, 0.5)
    with pytest.raises(ValueError, match="delta, radius"):
        theory.escape_time(0.1, 1.0, 0.1, -0.5)


def test_config_rejects_bad_values():
    with pytest.raises(ValidationError, match="delta"):
        sp.EXPERIMENT.make_config(delta=1.0, radius=0.1)
    with pytest.raises(ValidationError, match="eta_fraction"):
        sp.EXPERIMENT.make_config(eta_fraction=1.5)
    with pytest.raises(ValidationError, match="snapshots"):
        sp.EXPERIMENT.make_config(snapshots=(10, 0))


def test_small_run_rechecks_and_its_escape_follows_the_linearisation(tmp_path):
    config = sp.EXPERIMENT.make_config(trajectories=1, snapshots=(0, 30), max_iter=30, escapes=1, radius=1e-3)
    result = assert_rechecks(sp.EXPERIMENT, config, tmp_path)
    escapes = sp._escapes(result.metrics, config)
    assert len(escapes) == 1  # the search from the initialisation of seed 0 ends at a saddle
    for e in escapes:  # the escape coordinate grows as delta_min (1 + eta |lambda_min|)^t until it leaves
        t = np.arange(len(e["coordinate"]))
        linear = theory.linearised_coordinate(t, e["delta_min"], e["eta"], e["lambda_min"])
        np.testing.assert_allclose(e["coordinate"][: len(t) // 2], linear[: len(t) // 2], rtol=1e-2)
        assert e["coordinate"][-1] >= config.radius > e["coordinate"][-2]
        assert e["measured"] == len(t) - 1
    found = sp._searches(result.metrics)
    assert list(found["step"]) == [0, 30] and (found["gradient_norm"][found["converged"] > 0] <= config.tol).all()


@pytest.mark.slow
def test_quick_run_passes_its_checks():
    experiment = sp.EXPERIMENT
    config = experiment.make_config()
    result = experiment.run(config, Context(torch.device("cpu")))
    failed = [(c.name, c.measured, c.theory, c.detail) for c in result.checks if not c.passed]
    assert not failed, failed
    escapes = [c for c in result.checks if c.name.startswith("escape time")]
    assert len(escapes) == config.escapes
    assert set(result.figures) == {"index_vs_loss", "escape"}
    assert all(isinstance(f, Figure) for f in result.figures.values())
    # the same critical points with their indices shuffled among them: the check passes in about alpha of the
    # shuffles (it tests rank association, which a shuffle destroys), never in most of them
    metrics, rng = result.metrics, np.random.default_rng(0)
    searched = (metrics["name"] == "index") & metrics["trajectory"].notna()
    passed = 0
    for _ in range(200):
        shuffled = metrics.copy()
        shuffled.loc[searched, "value"] = rng.permutation(metrics.loc[searched, "value"].to_numpy())
        passed += sp.checks(shuffled, config)[0].passed
    assert passed <= 0.1 * 200, passed


def _points(losses, indices):
    """Metrics of converged searches at the given (loss, data-loss index), one trajectory, steps 0, 1, ..."""
    records = [
        {"trajectory": 0, "step": k, "name": n, "value": v}
        for k, (loss, index) in enumerate(zip(losses, indices, strict=True))
        for n, v in (
            ("loss", loss),
            ("index", index),
            ("converged", 1.0),
            ("gradient_norm", 1e-12),
            ("eigenvalue_tolerance", 1e-8),
        )
    ]
    return pd.DataFrame(records, columns=["trajectory", "saddle", "step", "index", "name", "value"])


def test_index_check_is_a_one_sided_test_at_alpha_0_05_on_the_data_loss_index():
    config = sp.EXPERIMENT.make_config(escapes=0)
    losses, indices = [0.5, 0.3, 0.2, 0.1, 0.08, 0.05, 0.04], [0.4, 0.3, 0.25, 0.2, 0.1, 0.05, 0.0]
    (grows,) = sp.checks(_points(losses, indices), config)
    assert grows.passed and grows.measured < sp.ALPHA
    (reversed_,) = sp.checks(_points(losses, indices[::-1]), config)  # index falls with loss: rho = -1
    assert not reversed_.passed and reversed_.measured > 0.99
    (weak,) = sp.checks(_points(losses[:4], [0.2, 0.3, 0.1, 0.0]), config)  # rho = 0.8 over 4 points: p = 0.17
    assert not weak.passed
    (flat,) = sp.checks(_points(losses, [0.0] * 7), config)  # all minima: nothing to correlate
    assert not flat.passed


def test_the_check_passes_in_about_alpha_of_all_orderings_of_the_indices():
    """Under H0 (indices in random order against the losses) the one-sided test at alpha = 0.05 may pass only
    about 5% of the time: over all 5040 orderings of 7 distinct indices it passes in 5.5% (the t approximation
    of Spearman's null distribution); a check that passed on rho > 0 alone would pass in half of them."""
    losses, indices = [0.5, 0.3, 0.2, 0.1, 0.08, 0.05, 0.04], [0.4, 0.3, 0.25, 0.2, 0.1, 0.05, 0.0]
    orderings = list(itertools.permutations(indices))
    p_values = [sp._spearman(pd.DataFrame({"loss": losses, "index": order}))[1] for order in orderings]
    assert 0.04 < np.mean(np.array(p_values) <= sp.ALPHA) < 0.06
    config = sp.EXPERIMENT.make_config(escapes=0)  # the check's verdict is that p-value against alpha
    for order in orderings[:: len(orderings) // 20]:
        (check,) = sp.checks(_points(losses, list(order)), config)
        assert check.measured == sp._spearman(pd.DataFrame({"loss": losses, "index": order}))[1]
        assert check.passed == (check.measured <= sp.ALPHA)


def test_a_search_ends_at_the_all_dead_critical_point_of_the_data_loss_with_its_closed_form_index():
    """From a start near theta = 0 the penalised search finds the all-dead network (hidden and readout weights 0,
    output bias = mean y (1 + wd)^-1), which is critical for L + wd/2 |theta|^2 but not for the data loss L
    (|grad L| = wd |theta|); followed to wd = 0 it is L's critical point (W, b, a) = 0, c = mean y, with loss
    1/2 var y and, per hidden unit j, the Hessian block [[0, m^T], [m, 0]] between a_j and (W_j, b_j), where
    m = E[(mean y - y) (x, 1)]: eigenvalues +-|m| and zeros, so index = width / n exactly and lambda_min = -|m|."""
    config = sp.EXPERIMENT.make_config(escapes=0)
    data = build_data(seeded(config.data, config.seed), torch.device("cpu"), torch.float64)
    model = build_network(config.model, data)
    loss = Objective(model, half_squared_error, data.train)
    start = 1e-3 * torch.randn(loss.dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    point, found = sp._search(loss, start, config, {})
    x, y = data.train
    value, gradient = loss.value_and_gradient(point.theta)
    assert found["converged"] and float(gradient.norm()) <= config.tol  # critical for L itself
    penalised = sp.find_critical_point(
        sp._WeightDecayed(model, half_squared_error, data.train, config.weight_decay), start, tol=config.tol
    )  # the search's first stage: critical for the penalised loss, where grad L = -wd theta, not for L
    assert found["penalised_converged"] and found["penalised_loss"] == pytest.approx(penalised.loss, rel=1e-9)
    data_gradient = float(loss.value_and_gradient(penalised.theta)[1].norm())
    assert data_gradient == pytest.approx(config.weight_decay * float(penalised.theta.norm()), rel=1e-6)
    assert data_gradient > 1e5 * config.tol
    assert float(value) == found["loss"] == pytest.approx(0.5 * float(y.var(unbiased=False)), rel=1e-12)
    width, n = config.model.width, loss.dim
    assert found["index"] == point.index == width / n
    m = float(((y.mean() - y) * x).mean(0).norm())
    assert found["lambda_min"] == pytest.approx(-m, rel=1e-8)
    eigenvalues = torch.linalg.eigvalsh(exact_hessian(loss, point.theta))  # recomputed, counted by hand
    assert int((eigenvalues < -found["eigenvalue_tolerance"]).sum()) == width
    assert found["zero_eigenvalues"] == pytest.approx((n - 2 * width - 1) / n)  # all but +-|m| and the bias's 1
