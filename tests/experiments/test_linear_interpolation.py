"""linear-interpolation: the second-order path model and the bias of the central difference against hand values and
polynomials, the path curvature of a smooth net by second differences against d^T H d, the exact slope of a ReLU
net against a difference quotient, the experiment's one-pass loss, slope, curvature and accuracy against the
Objective's oracles, config validation, checks that fail on corrupted metrics, and a quick run whose checks must all
pass."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from pydantic import ValidationError
from recheck import assert_rechecks
from torch import nn

from tdlab import Objective
from tdlab.data import accuracy
from tdlab.experiments.base import Context
from tdlab.experiments.catalogue import linear_interpolation as li
from tdlab.landscape import directional_curvature, path_profile, second_difference
from tdlab.models import MLP
from tdlab.theory import landscape as theory
from tdlab.train.trainer import fit


def test_quadratic_path_by_hand():
    # L(1) = 2, slope g.d = -1, curvature 4: L(a) = 2 - (a - 1) + 2 (a - 1)^2
    np.testing.assert_allclose(theory.quadratic_path([0.0, 1.0, 1.5], 2.0, -1.0, 4.0), [5.0, 2.0, 2.0])
    np.testing.assert_allclose(theory.quadratic_path(0.0, 1.0, 0.0, 2.0, centre=0.5), 1.25)
    with pytest.raises(ValueError, match="alpha: expected finite values"):
        theory.quadratic_path([np.nan], 0.0, 0.0, 0.0)


def test_central_difference_bias_is_exact_for_a_quartic():
    # f(t) = t^4 + 3 t^2: f''(0) = 6, f'''' = 24; [f(h) - 2 f(0) + f(-h)] / h^2 = 6 + 2 h^2 = f'' + h^2 f''''/12
    for h in (0.5, 0.1, 0.01):
        difference = ((h**4 + 3 * h**2) * 2) / h**2
        assert difference - 6.0 == pytest.approx(float(theory.central_difference_bias(h, 24.0)), rel=1e-9)


def _trained(activation: str):
    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(200, 6, generator=g, dtype=torch.float64), torch.randint(0, 3, (200,), generator=g)
    model = MLP(6, 3, width=16, depth=2, activation=activation, seed=0).double()
    obj = Objective(model, nn.CrossEntropyLoss(), (X, y))
    theta_init = obj.flat_parameters()
    fit(model, obj.loss_fn, (X, y), torch.optim.SGD(model.parameters(), lr=0.5), 200, batch_size=50)
    return obj, theta_init, obj.flat_parameters()


def test_the_path_curvature_of_a_smooth_net_is_d_h_d():
    # the check the experiment used to make: the central second difference at alpha = 1 (h = 1e-3, float64) is
    # d^T H d from one Hessian-vector product, within 5%
    obj, theta_init, theta = _trained("tanh")
    d = theta - theta_init
    assert second_difference(obj, theta, d, 1e-3) == pytest.approx(directional_curvature(obj, theta, d), rel=0.05)


def test_the_slope_of_a_relu_path_is_the_difference_quotient():
    # autograd's grad L . d on a ReLU net is the path's derivative: a central difference quotient at a small step
    # (first differences converge across kinks, at O(h)) agrees with it
    obj, theta_init, theta = _trained("relu")
    d = theta - theta_init
    for alpha in (0.1, 0.5, 0.9):
        point = theta_init + alpha * d
        slope = float(obj.gradient(point) @ d)
        h = 1e-6
        quotient = (float(obj.value(point + h * d)) - float(obj.value(point - h * d))) / (2 * h)
        assert quotient == pytest.approx(slope, rel=1e-4)


def test_path_derivatives_are_the_objectives_value_slope_and_curvature():
    # the experiment's one pass per point (alpha the autograd leaf, reverse over reverse) against the Objective's
    # own oracles at the same point: L = f(theta), L' = grad f . d, L'' = d^T H d (one HVP), on a ReLU net; in one
    # batch and in four unequal ones (64, 64, 64, 8: a wrong weighting of the batches shows)
    obj, theta_init, theta = _trained("relu")
    d = theta - theta_init
    chunked = Objective(obj.model, obj.loss_fn, obj.data.tensors, batch_size=64)
    for alpha in (0.0, 0.37, 1.0, 1.3):
        point = theta_init + alpha * d
        value, gradient = obj.value_and_gradient(point)
        expected = (float(value), float(gradient @ d), float(d @ obj.hvp(d, point)))
        assert expected[1] != 0 and expected[2] > 0
        for objective in (obj, chunked):
            assert li.path_derivatives(objective, theta_init, d, alpha) == pytest.approx(expected, rel=1e-10)


def test_path_profile_loss_and_accuracy_are_the_objectives():
    # one forward pass per batch for both, against obj.value and obj.average(accuracy) (two passes)
    obj, theta_init, theta = _trained("relu")
    chunked = Objective(obj.model, obj.loss_fn, obj.data.tensors, batch_size=64)
    for point in (theta_init, theta, 0.5 * (theta_init + theta)):
        expected = (float(obj.value(point)), obj.average(accuracy, point))
        assert 0 < expected[1] < 1
        for objective in (obj, chunked):
            profile = path_profile(objective, point, point, [0.0, 1.0], with_accuracy=True)
            assert (profile.loss[0].item(), profile.accuracy[0].item()) == pytest.approx(expected, rel=1e-12)


def test_config_rejects_bad_values():
    experiment = li.EXPERIMENT
    with pytest.raises(ValidationError, match="num_alphas"):
        experiment.make_config(num_alphas=40)
    with pytest.raises(ValidationError, match="optimizers"):
        experiment.make_config(optimizers=({"name": "sgd", "lr": 0.1}, {"name": "sgd", "lr": 0.2}))
    assert experiment.make_config().model.kwargs()["activation"] == "relu"
    assert experiment.make_config("full").data.kwargs()["n_train"] == 2000


def _small():
    return li.EXPERIMENT.make_config(
        data={"name": "mnist1d", "n_train": 100, "n_test": 10},
        model={"name": "mlp", "width": 8, "depth": 1, "activation": "relu"},
        optimizers=({"name": "sgd", "lr": 0.5}, {"name": "adam", "lr": 0.01}),
        seeds=2,
        steps=20,
        batch_size=100,
        num_alphas=9,
        fine_points=11,
    )


def test_small_run_rechecks_and_its_paths_meet_at_the_ends(tmp_path):
    # full-batch GD: the first batch loss is the loss at the initialisation (alpha = 0) of the path
    config = _small()
    result = assert_rechecks(li.EXPERIMENT, config, tmp_path)
    m = result.metrics
    for method in ("sgd", "adam"):
        for seed in (0, 1):
            rows = m[(m["optimizer"] == method) & (m["seed"] == seed)]
            first = rows.query("name == 'train/batch_loss' and step == 1")["value"].item()
            coarse = rows.query("name == 'loss'").set_index("alpha")["value"]
            fine = rows.query("name == 'path_loss'").set_index("alpha")["value"]
            assert coarse[0.0] == pytest.approx(first, rel=1e-12) and fine[0.0] == pytest.approx(first, rel=1e-12)
            assert coarse[1.0] == pytest.approx(fine[1.0], rel=1e-12)
    assert [c.name for c in result.checks] == [
        "sgd: the loss falls monotonically from init to solution, every seed (largest rise / drop)",
        "sgd: the slope grad L . d is negative along the whole path, every seed (largest slope / drop)",
    ]


def test_the_checks_fail_on_corrupted_metrics():
    config = _small()
    metrics = li.EXPERIMENT.measure(config, Context(torch.device("cpu")))
    assert all(c.passed for c in li.checks(metrics, config))
    # a barrier: the loss at one inner grid point of one seed lifted above the initial loss
    barrier = metrics.copy()
    at = (barrier["name"] == "path_loss") & (barrier["optimizer"] == "sgd") & (barrier["seed"] == 1)
    inner = barrier.index[at & np.isclose(barrier["alpha"], 0.5)]
    barrier.loc[inner, "value"] = barrier.loc[at, "value"].max() + 1.0
    assert [c.passed for c in li.checks(barrier, config)] == [False, True]
    # a rising stretch seen only in the derivative: one slope made positive
    rising = metrics.copy()
    at = (rising["name"] == "slope") & (rising["optimizer"] == "sgd") & (rising["seed"] == 0)
    rising.loc[rising.index[at & np.isclose(rising["alpha"], 0.3)], "value"] = 0.01
    checks = li.checks(rising, config)
    assert [c.passed for c in checks] == [True, False] and checks[1].measured > 0


def test_a_diverged_optimiser_is_reported():
    config = li.EXPERIMENT.make_config(
        data={"name": "mnist1d", "n_train": 100, "n_test": 10},
        model={"name": "mlp", "width": 8, "depth": 1, "activation": "relu"},
        optimizers=({"name": "sgd", "lr": sys.float_info.max},),  # the largest finite step: the weights overflow
        seeds=1,
        steps=5,
        batch_size=100,
        num_alphas=9,
    )
    checks = li.EXPERIMENT.run(config, Context(torch.device("cpu"))).checks
    assert [(c.name, c.passed) for c in checks] == [("sgd training stays finite", False)]


@pytest.mark.slow
def test_quick_run_passes_its_checks():
    experiment = li.EXPERIMENT
    config = experiment.make_config()
    result = experiment.run(config, Context(torch.device("cpu")))
    failed = [(c.name, c.measured, c.theory, c.detail) for c in result.checks if not c.passed]
    assert not failed, failed
    assert len(result.checks) == 2
    assert set(result.figures) == {"interpolation", "path_derivatives"}
    assert all(isinstance(f, Figure) for f in result.figures.values())
    loss = result.metrics.query("name == 'loss' and optimizer == 'sgd' and seed == 0")
    assert len(loss) == config.num_alphas and loss.alpha.min() == -0.5 and loss.alpha.max() == 1.5
    again = experiment.measure(config, Context(torch.device("cpu")))
    assert again["value"].equals(result.metrics["value"])  # same seed, same numbers
