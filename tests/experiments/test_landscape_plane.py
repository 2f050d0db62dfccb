"""landscape-plane: the label-smoothing floor against torch, the numerics of the slices (through the trained net,
filter norms, second-order model along the Hessian eigenvectors) on a trained smooth net, config validation,
checks that fail on corrupted metrics, and a quick run whose checks must all pass."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure
from pydantic import ValidationError
from recheck import assert_rechecks
from torch import nn

from tdlab import Objective
from tdlab.experiments.base import Context
from tdlab.experiments.catalogue import landscape_plane as lp
from tdlab.experiments.tidy import rows
from tdlab.landscape import filter_normalized_direction, filter_norms, hessian_directions, loss_plane
from tdlab.models import MLP
from tdlab.oracles.flat import unflatten
from tdlab.theory import landscape as theory
from tdlab.train.trainer import fit


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


def test_smoothed_entropy_is_the_smallest_label_smoothed_cross_entropy():
    classes, eps = 10, 0.1
    loss = nn.CrossEntropyLoss(label_smoothing=eps)
    labels = torch.arange(classes, dtype=torch.long)
    q = torch.full((classes, classes), eps / classes, dtype=torch.float64) + (1 - eps) * torch.eye(classes)
    floor = lp.smoothed_entropy(classes, eps)
    assert float(loss(q.log(), labels)) == pytest.approx(floor, rel=1e-12)  # predicting q reaches H(q)
    g = torch.Generator().manual_seed(0)
    for _ in range(20):  # and nothing goes below it
        assert float(loss(q.log() + 0.3 * torch.randn(q.shape, generator=g, dtype=torch.float64), labels)) > floor


def _trained_gelu(steps=200):
    g = torch.Generator().manual_seed(0)
    X = torch.randn(48, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (48,), generator=g)
    model = MLP(5, 3, width=8, depth=3, activation="gelu", residual="scaled", seed=0).double()
    obj = Objective(model, nn.CrossEntropyLoss(), (X, y))
    fit(model, obj.loss_fn, (X, y), torch.optim.Adam(model.parameters(), 0.01), steps)
    return obj, obj.flat_parameters()


def test_a_slice_passes_through_the_net_and_its_directions_have_the_weights_filter_norms():
    # the checks "slice centre = trained loss" and "filter norms = weight norms" the experiment used to make
    obj, theta = _trained_gelu()
    d1, d2 = (filter_normalized_direction(obj, theta, torch.Generator().manual_seed(i)) for i in (1, 2))
    axis = torch.linspace(-1, 1, 5, dtype=torch.float64)
    plane = loss_plane(obj, theta, d1, d2, axis, axis)
    assert float(plane.loss[2, 2]) == pytest.approx(float(obj.value(theta)), rel=1e-12)
    weights = filter_norms(unflatten(theta, obj.params))
    for d in (d1, d2):
        params = unflatten(d, obj.params)
        for name, norms in filter_norms(params).items():
            torch.testing.assert_close(norms, weights[name], rtol=1e-10, atol=0)
        assert all(float(t.abs().max()) == 0.0 for name, t in params.items() if name not in weights)  # biases


def test_the_eigenvector_slice_follows_the_second_order_model():
    # second differences of the slice along the two top Hessian eigenvectors at h = r / 5 (the model's rise
    # lambda_1 r^2 / 2 at r is 0.2 x the loss) are lambda_1, lambda_2 and v_1^T H v_2 = 0, within 5%
    obj, theta = _trained_gelu()
    loss = float(obj.value(theta))
    values, vectors = hessian_directions(obj, theta, k=2, tol=1e-8)
    lam1, lam2 = values.tolist()
    h = math.sqrt(2 * 0.2 * loss / lam1) / 5
    L = loss_plane(obj, theta, vectors[:, 0], vectors[:, 1], [-h, 0.0, h], [-h, 0.0, h]).loss
    assert float(L[2, 1] - 2 * L[1, 1] + L[0, 1]) / h**2 == pytest.approx(lam1, rel=0.05)
    assert float(L[1, 2] - 2 * L[1, 1] + L[1, 0]) / h**2 == pytest.approx(lam2, rel=0.05)
    mixed = float(L[2, 2] - L[2, 0] - L[0, 2] + L[0, 0]) / (4 * h**2)
    assert abs(mixed) <= 0.05 * math.sqrt(lam1 * lam2)


def test_config_rejects_bad_values():
    with pytest.raises(ValidationError, match="odd"):
        lp.EXPERIMENT.make_config(grid_points=12)
    with pytest.raises(ValidationError, match="residuals"):
        lp.EXPERIMENT.make_config(residuals=("none", "none"))
    with pytest.raises(ValidationError, match="baseline"):
        lp.EXPERIMENT.make_config(residuals=("plain", "scaled"))
    with pytest.raises(ValidationError, match="depth"):
        lp.EXPERIMENT.make_config(model={"name": "mlp", "depth": 1, "activation": "gelu"})
    with pytest.raises(ValidationError, match="seeds"):
        lp.EXPERIMENT.make_config(seeds=4)
    assert lp.EXPERIMENT.make_config("full").model.kwargs()["depth"] == 20


def _synthetic(rough: float = 0.0, gradient: float = 1e-4, excess: float = 1e-5, seeds: int = 5) -> pd.DataFrame:
    """Metrics as `measure` writes them: a convex bowl for the net with skips, a bowl with ripples of amplitude
    `rough` (non-convex in places) without."""
    a = np.linspace(-1, 1, 9)
    A, B = np.meshgrid(a, a, indexing="ij")
    floor = lp.smoothed_entropy(10, 0.1)
    frames = [rows("classes", 10), rows("n_train", 64)]
    for seed in range(seeds):
        for residual, ripple in (("none", rough), ("scaled", 0.0)):
            grid = floor + A**2 + 2 * B**2 + ripple * np.cos(9 * A + seed) * np.cos(7 * B)
            frames += [
                f.assign(residual=residual, seed=seed)
                for f in (
                    rows("loss", floor + excess),
                    rows("gradient_norm", gradient),
                    rows("plane_loss", grid, alpha=a[:, None], beta=a),
                )
            ]
    return pd.concat(frames, ignore_index=True)


def _verdicts(metrics: pd.DataFrame, config) -> dict[str, bool]:
    return {c.name: c.passed for c in lp.checks(metrics, config)}


def test_the_checks_fail_on_corrupted_metrics():
    config = lp.EXPERIMENT.make_config(grid_points=9)
    good = _verdicts(_synthetic(rough=0.2), config)
    assert len(good) == 6 and all(good.values()), good
    # both bowls smooth: no evidence that skips help (all differences 0, p = 1)
    smooth = _verdicts(_synthetic(rough=0.0), config)
    assert [name for name, ok in smooth.items() if not ok] == [
        "no skips more non-convex than scaled skip connections: one-sided Wilcoxon signed-rank p-value (alpha = 0.05)"
    ]
    # a net still descending, and one left above the global minimum
    assert not _verdicts(_synthetic(rough=0.2, gradient=0.3), config)[
        "scaled skip connections: trained to a minimum (largest gradient norm over seeds)"
    ]
    assert not _verdicts(_synthetic(rough=0.2, excess=0.05), config)[
        "scaled skip connections: at the global minimum (largest L - H(q) over seeds)"
    ]
    # a dip on one ray of one skip slice (the grid point next to the edge along +alpha is lowered)
    dipped = _synthetic(rough=0.2)
    at = (
        (dipped["name"] == "plane_loss")
        & (dipped["residual"] == "scaled")
        & (dipped["seed"] == 3)
        & (dipped["alpha"] == 0.75)
        & (dipped["beta"] == 0.0)
    )
    dipped.loc[at, "value"] = 0.0
    bowl = "scaled skip connections: a bowl (rays from the centre along which the loss does not rise, all seeds)"
    checks = {c.name: c for c in lp.checks(dipped, config)}
    assert not checks[bowl].passed and checks[bowl].measured == 1.0


def test_small_run_rechecks(tmp_path):
    config = lp.EXPERIMENT.make_config(
        data={"name": "mnist1d", "n_train": 40, "n_test": 10},
        model={"name": "mlp", "width": 6, "depth": 3, "activation": "gelu"},
        max_steps=3,
        lbfgs_iterations=5,
        grid_points=5,
    )
    result = assert_rechecks(lp.EXPERIMENT, config, tmp_path)
    grids = lp._grids(result.metrics, "scaled")
    assert sorted(grids) == list(range(5)) and all(g.shape == (5, 5) for g in grids.values())
    loss = result.metrics.query("name == 'loss' and residual == 'scaled' and seed == 0")["value"].item()
    assert grids[0][2, 2] == pytest.approx(loss, rel=1e-12)  # the slice's centre is the trained net
    assert len(result.checks) == 6


@pytest.mark.slow
def test_quick_run_passes_its_checks():
    experiment = lp.EXPERIMENT
    config = experiment.make_config()
    result = experiment.run(config, Context(torch.device("cpu")))
    failed = [(c.name, c.measured, c.theory, c.detail) for c in result.checks if not c.passed]
    assert not failed, failed
    assert len(result.checks) == 6
    assert set(result.figures) == {"contours", "surfaces", "nonconvexity"}
    assert all(isinstance(f, Figure) for f in result.figures.values())
    grid = result.metrics.query("name == 'plane_loss' and residual == 'scaled'")
    assert len(grid) == config.seeds * config.grid_points**2
