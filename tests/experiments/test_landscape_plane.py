"""landscape-plane: the second-order plane model against a quadratic loss, config validation, and a quick run
whose checks must all pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from pydantic import ValidationError
from recheck import assert_rechecks
from torch import nn

from tdlab import Objective
from tdlab.experiments.base import Context
from tdlab.experiments.catalogue import landscape_plane as lp
from tdlab.landscape import hessian_directions, loss_plane
from tdlab.theory import landscape as theory


def test_quadratic_plane_is_exact_on_least_squares():
    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(30, 4, generator=g, dtype=torch.float64), torch.randn(30, 1, generator=g, dtype=torch.float64)
    obj = Objective(nn.Linear(4, 1, bias=False).double(), nn.MSELoss(), (X, y))
    theta = torch.randn(4, generator=g, dtype=torch.float64)
    values, vectors = hessian_directions(obj, theta, k=2, tol=1e-12)
    grad = obj.gradient(theta)
    axis = torch.tensor([-0.7, 0.0, 0.4], dtype=torch.float64)
    plane = loss_plane(obj, theta, vectors[:, 0], vectors[:, 1], axis, axis)
    A, B = np.meshgrid(axis.numpy(), axis.numpy(), indexing="ij")
    slopes = (float(grad @ vectors[:, 0]), float(grad @ vectors[:, 1]))
    model = theory.quadratic_plane(A, B, float(obj.value(theta)), slopes, tuple(values.tolist()))
    np.testing.assert_allclose(plane.loss.numpy(), model, rtol=1e-10)


def test_config_rejects_bad_values():
    with pytest.raises(ValidationError, match="odd"):
        lp.EXPERIMENT.make_config(grid_points=12)
    with pytest.raises(ValidationError, match="residuals"):
        lp.EXPERIMENT.make_config(residuals=("none", "none"))
    with pytest.raises(ValidationError, match="depth"):
        lp.EXPERIMENT.make_config(model={"name": "mlp", "depth": 1, "activation": "gelu"})
    with pytest.raises(ValidationError, match="activation"):
        lp.EXPERIMENT.make_config(model={"name": "mlp", "depth": 2, "activation": "relu"})


def test_small_run_rechecks_and_its_slices_pass_through_the_trained_net(tmp_path):
    config = lp.EXPERIMENT.make_config(
        data={"name": "mnist1d", "n_train": 60, "n_test": 10},
        model={"name": "mlp", "width": 6, "depth": 2, "activation": "gelu"},
        steps=20,
        batch_size=20,
        grid_points=5,
        eigen_grid=3,
    )
    result = assert_rechecks(lp.EXPERIMENT, config, tmp_path)
    for residual, r in lp._results(result.metrics).items():
        for grid in ("plane_loss", "eigen_loss"):
            alphas, betas, loss = r[grid]
            assert loss.shape == (len(alphas), len(betas)) and alphas[len(alphas) // 2] == 0.0
            assert loss[len(alphas) // 2, len(betas) // 2] == pytest.approx(r["loss"], rel=1e-12), residual
        assert r["lambda_1"] >= r["lambda_2"]
    assert len(result.checks) == 5 * len(config.residuals)


@pytest.mark.slow
def test_quick_run_passes_its_checks():
    experiment = lp.EXPERIMENT
    config = experiment.make_config()
    result = experiment.run(config, Context(torch.device("cpu")))
    failed = [(c.name, c.measured, c.theory, c.detail) for c in result.checks if not c.passed]
    assert not failed, failed
    assert len(result.checks) == 5 * len(config.residuals)
    assert set(result.figures) == {"contours", "surfaces", "eigen_plane"}
    assert all(isinstance(f, Figure) for f in result.figures.values())
    grid = result.metrics.query("name == 'plane_loss' and residual == 'plain'")
    assert len(grid) == config.grid_points**2
