"""implicit-max-margin: the SVM solver against the planted separator, the smoothness bound, config validation, and the
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

from tdlab.experiments.catalogue.implicit_max_margin import (
    EXPERIMENT,
    ImplicitMaxMarginConfig,
    max_margin,
    planted_data,
    record_steps,
    smoothness,
)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_solver_finds_the_planted_max_margin_separator(seed):
    config = ImplicitMaxMarginConfig(seed=seed)
    X, y, u = planted_data(config)
    Z = y[:, None] * X
    w_hat, alpha = max_margin(Z)
    np.testing.assert_allclose(w_hat, u / config.margin, rtol=1e-7)
    assert np.count_nonzero(alpha) == 2 and alpha[:2].min() > 0  # the two planted support vectors
    assert alpha.sum() == pytest.approx(w_hat @ w_hat, rel=1e-7)  # sum alpha = ||w_hat||^2 = 1/gamma^2
    assert np.sort(Z @ w_hat)[2] >= config.ratio - 1e-9  # the other margins keep the planted gap


def test_the_solver_refuses_data_that_are_not_separable():
    Z = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]])  # z and -z: no w has z^T w >= 1 for both
    with pytest.raises(RuntimeError, match="max_margin: no separating solution"):
        max_margin(Z)


def test_smoothness_bounds_the_hessian_of_the_mean_logistic_loss():
    X, y, _ = planted_data(ImplicitMaxMarginConfig())
    Z = torch.as_tensor(y[:, None] * X)
    beta = smoothness(Z.numpy())
    for w in (torch.zeros(2, dtype=torch.float64), torch.tensor([0.3, -0.2], dtype=torch.float64)):
        H = torch.autograd.functional.hessian(lambda v: torch.nn.functional.softplus(-(Z @ v)).mean(), w)
        assert float(torch.linalg.eigvalsh(H).max()) <= beta + 1e-12
    # at w = 0 every sigma' is exactly 1/4: the bound is attained
    H0 = torch.autograd.functional.hessian(lambda v: torch.nn.functional.softplus(-(Z @ v)).mean(), w.zero_())
    assert float(torch.linalg.eigvalsh(H0).max()) == pytest.approx(beta, rel=1e-12)


def test_config_and_records():
    with pytest.raises(ValidationError, match="step_multiples"):
        ImplicitMaxMarginConfig(step_multiples=(2.5,))
    with pytest.raises(ValidationError, match="step_multiples: expected distinct"):
        ImplicitMaxMarginConfig(step_multiples=(1.0, 1.0))
    with pytest.raises(ValidationError, match="ratio"):
        ImplicitMaxMarginConfig(ratio=1.0)
    steps = record_steps(ImplicitMaxMarginConfig(steps=1000, records=50))
    assert steps[0] == 1 and steps[-1] == 1000 and np.all(np.diff(steps) > 0)
    assert EXPERIMENT.make_config("full").steps > EXPERIMENT.make_config().steps


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    return assert_rechecks(EXPERIMENT, EXPERIMENT.make_config(), tmp_path_factory.mktemp("implicit_max_margin"))


def test_quick_run_passes_every_check(quick):
    failed = [f"{c.name}: {c.measured} vs {c.theory} ({c.detail})" for c in quick.checks if not c.passed]
    assert not failed, failed
    assert len(quick.checks) == 6
    assert set(quick.figures) == {"separators", "rates"}
    assert all(isinstance(f, Figure) for f in quick.figures.values())


def test_checks_fail_when_the_measurements_are_off(quick):
    """||w|| 10% too large and turned by 1 degree, a loss 20% too high and one that rises once fail their checks."""
    config, metrics = EXPERIMENT.make_config(), quick.metrics.copy()
    w = metrics[metrics["name"] == "w"].pivot_table(index=["eta", "step"], columns="coordinate", values="value")
    turn = math.radians(1.0)
    rotated = 1.1 * w.to_numpy() @ np.array([[math.cos(turn), math.sin(turn)], [-math.sin(turn), math.cos(turn)]])
    for coordinate in (0, 1):
        frame = metrics[(metrics["name"] == "w") & (metrics["coordinate"] == coordinate)]
        lookup = dict(zip(w.index, rotated[:, coordinate], strict=True))
        metrics.loc[frame.index, "value"] = [lookup[(e, s)] for e, s in zip(frame["eta"], frame["step"], strict=True)]
    loss = metrics["name"] == "loss"
    metrics.loc[loss, "value"] *= 1.2
    last = loss & (metrics["step"] == metrics.loc[loss, "step"].max())
    metrics.loc[last, "value"] *= 10.0  # the last record rises above the one before
    verdicts = {c.name: c.passed for c in EXPERIMENT.checks(metrics, config)}
    assert not verdicts[
        "||w|| grows like log(t)/gamma: slope of ||w|| vs log t over [T/10, T] times gamma, worst |. - 1|"
    ]
    assert not verdicts[
        "angle(w(T), w_hat) vs Soudry's asymptote angle(w_hat log T + w_tilde, w_hat), worst relative error"
    ]
    assert not verdicts["the loss decays like 1/(gamma^2 eta t): worst |T eta gamma^2 L(T) - 1|"]
    assert not verdicts["the loss decreases at every record, for every eta (eta < 2/beta)"]

    frozen = quick.metrics.copy()  # a direction that stopped moving after T/10
    for eta in frozen.loc[frozen["name"] == "w", "eta"].unique():
        rows_ = (frozen["name"] == "w") & (frozen["eta"] == eta)
        steps = frozen.loc[rows_, "step"]
        cut = steps[steps >= steps.max() / 10].min()
        for coordinate in (0, 1):
            at_cut = frozen.loc[rows_ & (frozen["step"] == cut) & (frozen["coordinate"] == coordinate), "value"]
            late = rows_ & (frozen["step"] >= cut) & (frozen["coordinate"] == coordinate)
            frozen.loc[late, "value"] = float(at_cut.iloc[0])
    verdicts = {c.name: c.passed for c in EXPERIMENT.checks(frozen, config)}
    assert not verdicts["the angle to w_hat falls over the last decade: angle(T) < angle(T/10), for every eta"]


def test_a_small_config_rechecks(tmp_path):
    config = EXPERIMENT.make_config(steps=300, records=20, step_multiples=(1.9,))
    assert len(assert_rechecks(EXPERIMENT, config, tmp_path).checks) == 6
