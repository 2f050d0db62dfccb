"""saddle-points: the linearised escape (time, coordinate, loss change) against GD iterated on a quadratic
saddle, config validation, and a quick run whose checks must all pass."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from pydantic import ValidationError

from tdlab.experiments.base import Context
from tdlab.experiments.registry import get
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
    experiment = get("saddle-points")
    with pytest.raises(ValidationError, match="delta"):
        experiment.make_config(delta=1.0, radius=0.1)
    with pytest.raises(ValidationError, match="eta_fraction"):
        experiment.make_config(eta_fraction=1.5)
    with pytest.raises(ValidationError, match="snapshots"):
        experiment.make_config(snapshots=(10, 0))


@pytest.mark.slow
def test_quick_run_passes_its_checks():
    experiment = get("saddle-points")
    config = experiment.make_config()
    result = experiment.run(config, Context(torch.device("cpu")))
    failed = [(c.name, c.measured, c.theory, c.detail) for c in result.checks if not c.passed]
    assert not failed, failed
    escapes = [c for c in result.checks if c.name.startswith("escape time")]
    assert len(escapes) == config.escapes
    assert set(result.figures) == {"index_vs_loss", "escape"}
    assert all(isinstance(f, Figure) for f in result.figures.values())
