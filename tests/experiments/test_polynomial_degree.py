"""polynomial-degree: the QR least-squares solver against NumPy's, Legendre features by hand, the residual theory
against simulation, config validation, and a quick run whose checks must all pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from pydantic import ValidationError
from recheck import assert_rechecks

from tdlab.experiments.base import Context
from tdlab.experiments.catalogue import polynomial_degree as pd_
from tdlab.theory.least_squares import residual_mean_square


@pytest.mark.parametrize(("n", "p"), [(20, 6), (6, 20)])
def test_least_squares_fit_is_the_minimum_norm_solution(n, p):
    rng = np.random.default_rng(0)
    A, y = rng.standard_normal((n, p)), rng.standard_normal(n)
    w = pd_.least_squares_fit(torch.tensor(A), torch.tensor(y)).numpy()
    np.testing.assert_allclose(w, np.linalg.pinv(A) @ y, atol=1e-12)


def test_legendre_features_by_hand():
    x = np.array([-1.0, 0.0, 0.5, 1.0])
    V = pd_.legendre_features(x, 3)
    np.testing.assert_allclose(V[:, 2], (3 * x**2 - 1) / 2)
    np.testing.assert_allclose(V[:, 3], (5 * x**3 - 3 * x) / 2)
    assert np.all(np.abs(pd_.legendre_features(np.linspace(-1, 1, 101), 30)) <= 1 + 1e-12)


def test_residual_mean_square_against_simulation():
    rng = np.random.default_rng(1)
    n, p, sigma, draws = 12, 4, 0.7, 4000
    A = rng.standard_normal((n, p))
    projector = np.eye(n) - A @ np.linalg.pinv(A)
    noise = sigma * rng.standard_normal((n, draws))
    rss = ((projector @ (A @ np.ones(p)[:, None] + noise)) ** 2).mean(axis=0)
    assert abs(rss.mean() - residual_mean_square(n, p, sigma**2)) <= 4 * rss.std() / np.sqrt(draws)
    assert residual_mean_square(5, 8, 1.0) == 0.0
    with pytest.raises(ValueError, match="n"):
        residual_mean_square(0, 1, 1.0)


def test_config_validation():
    with pytest.raises(ValidationError, match="cubic"):
        pd_.PolynomialDegreeConfig(cubic=(1.0, 0.0, 0.0, 0.0))
    with pytest.raises(ValidationError, match="far_degrees"):
        pd_.PolynomialDegreeConfig(n=30, far_degrees=(20, 100))
    with pytest.raises(ValidationError, match="shown"):
        pd_.PolynomialDegreeConfig(n=30, shown=(1, 3, 40))


def test_quick_run_passes_every_check():
    result = pd_.EXPERIMENT.run(pd_.EXPERIMENT.make_config(), Context(torch.device("cpu")))
    failed = [f"{c.name}: {c.measured} vs {c.theory}" for c in result.checks if not c.passed]
    assert not failed, failed
    assert len(result.checks) == 5
    assert set(result.figures) == {"fits", "errors"}
    assert all(isinstance(f, Figure) for f in result.figures.values())
    train = result.metrics[result.metrics["name"] == "train_error"].set_index("degree")["value"]
    assert train.loc[29] < 1e-12  # p = n: interpolation (up to rounding)
    # a best degree of 4 (its test errors halved, as if the truth were a quartic) fails both pinning checks
    wrong = result.metrics.copy()
    wrong.loc[wrong["name"].isin(["test_error", "test_error_set"]) & (wrong["degree"] == 4), "value"] *= 0.5
    verdicts = {c.name: c.passed for c in pd_.EXPERIMENT.checks(wrong, pd_.EXPERIMENT.make_config())}
    assert [passed for name, passed in verdicts.items() if "degree 3" in name] == [False, False]


def test_checks_and_figures_come_from_the_stored_metrics(tmp_path):
    config = pd_.EXPERIMENT.make_config(n=12, datasets=4, far_degrees=(20, 60), shown=(1, 3, 8), grid=60)
    result = assert_rechecks(pd_.EXPERIMENT, config, tmp_path)
    train = result.metrics[result.metrics["name"] == "train_error_set"]
    assert len(train) == 4 * (12 + 2)
    assert train[train["degree"] == 11]["value"].max() < 1e-20  # p = n: every set interpolated
