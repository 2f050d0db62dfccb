"""linear-interpolation: the second-order path model and the bias of the central difference against hand values
and polynomials, config validation, and a quick run whose checks must all pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from pydantic import ValidationError

from tdlab.experiments.base import Context
from tdlab.experiments.registry import get
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
    experiment = get("linear-interpolation")
    with pytest.raises(ValidationError, match="num_alphas"):
        experiment.make_config(num_alphas=40)
    with pytest.raises(ValidationError, match="optimizers"):
        experiment.make_config(optimizers=("sgd", "sgd"))
    with pytest.raises(ValidationError, match="activation"):
        experiment.make_config(activation="relu")
    assert experiment.make_config("full").n_train == 4000


@pytest.mark.slow
def test_quick_run_passes_its_checks():
    experiment = get("linear-interpolation")
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
    again = experiment.run(config, Context(torch.device("cpu")))
    assert again.metrics["value"].equals(result.metrics["value"])  # same seed, same numbers
