"""saddle-points: the linearised escape (time, coordinate, loss change) against GD iterated on a quadratic
saddle, config validation, and a quick run whose checks must all pass."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure
from pydantic import ValidationError
from recheck import assert_rechecks

from tdlab.experiments.base import Context
from tdlab.experiments.catalogue import saddle_points as sp
from tdlab.theory import saddles as theory


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


def _points(losses, indices):
    """Metrics of converged searches at the given (loss, data-loss index), one trajectory, steps 0, 1, ..."""
    records = [
        {"trajectory": 0, "step": k, "name": n, "value": v}
        for k, (loss, index) in enumerate(zip(losses, indices, strict=True))
        for n, v in (("loss", loss), ("index", index), ("converged", 1.0), ("gradient_norm", 1e-12))
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


def test_data_loss_index_counts_the_penalised_eigenvalues_below_weight_decay(tmp_path):
    """The stored index is that of H - wd I: never below the penalised one, and a shallow saddle of the data loss
    (curvature in (-wd, 0)) that the penalty makes a minimum counts as a saddle."""
    config = sp.EXPERIMENT.make_config(trajectories=1, snapshots=(0, 30), max_iter=30, escapes=0)
    found = sp._searches(sp.measure(config, Context(torch.device("cpu"))))
    assert (found["index"] >= found["penalised_index"]).all()
    shallow = found[(found["lambda_min"] > 0) & (found["lambda_min"] < config.weight_decay)]
    assert (shallow["index"] > 0).all()
