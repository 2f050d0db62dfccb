"""linear-interpolation: the second-order path model and the bias of the central difference against hand values
and polynomials, config validation, and a quick run whose checks must all pass."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from pydantic import ValidationError
from recheck import assert_rechecks

from tdlab.experiments.base import Context
from tdlab.experiments.catalogue import linear_interpolation as li
from tdlab.theory import landscape as theory


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


def test_config_rejects_bad_values():
    experiment = li.EXPERIMENT
    with pytest.raises(ValidationError, match="num_alphas"):
        experiment.make_config(num_alphas=40)
    with pytest.raises(ValidationError, match="optimizers"):
        experiment.make_config(optimizers=({"name": "sgd", "lr": 0.1}, {"name": "sgd", "lr": 0.2}))
    with pytest.raises(ValidationError, match="activation"):
        experiment.make_config(model={"name": "mlp", "activation": "relu"})
    assert experiment.make_config("full").data.kwargs()["n_train"] == 4000


def test_small_run_rechecks_and_its_paths_meet_at_the_ends(tmp_path):
    # full-batch GD: the first batch loss is the loss at the initialisation (alpha = 0) of the path
    config = li.EXPERIMENT.make_config(
        data={"name": "mnist1d", "n_train": 100, "n_test": 10},
        model={"name": "mlp", "width": 8, "depth": 1, "activation": "tanh"},
        optimizers=({"name": "sgd", "lr": 0.5}, {"name": "adam", "lr": 0.01}),
        steps=20,
        batch_size=100,
        num_alphas=9,
    )
    result = assert_rechecks(li.EXPERIMENT, config, tmp_path)
    m = result.metrics
    for method in ("sgd", "adam"):
        rows = m[m["optimizer"] == method]
        first = rows.query("name == 'train/batch_loss' and step == 1")["value"].item()
        at = rows.query("name == 'loss'").set_index("alpha")["value"]
        assert at[0.0] == pytest.approx(first, rel=1e-12)
        final = rows.query("name == 'final_loss'")["value"].item()
        assert at[1.0] == pytest.approx(final, rel=1e-12)
    assert [c.name for c in result.checks] == [
        "sgd: path curvature at alpha = 1",
        "adam: path curvature at alpha = 1",
        "sgd: loss decreases monotonically from init to solution",
    ]


def test_a_diverged_optimiser_is_reported():
    config = li.EXPERIMENT.make_config(
        data={"name": "mnist1d", "n_train": 100, "n_test": 10},
        model={"name": "mlp", "width": 8, "depth": 1, "activation": "tanh"},
        optimizers=({"name": "sgd", "lr": sys.float_info.max},),  # the largest finite step: the weights overflow
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
    names = {c.name for c in result.checks}
    assert {"sgd: path curvature at alpha = 1", "adam: path curvature at alpha = 1"} <= names
    assert set(result.figures) == {"interpolation", "path_curvature"}
    assert all(isinstance(f, Figure) for f in result.figures.values())
    loss = result.metrics.query("name == 'loss' and optimizer == 'sgd'")
    assert len(loss) == config.num_alphas and loss.alpha.min() == -0.5 and loss.alpha.max() == 1.5
    again = experiment.measure(config, Context(torch.device("cpu")))
    assert again["value"].equals(result.metrics["value"])  # same seed, same numbers
