"""ridge-views: each route to ridge against a hand-computed case and against the precision form of the Gaussian
posterior; input validation; a quick run whose checks must all pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from pydantic import ValidationError
from recheck import assert_rechecks

from tdlab.experiments.base import Context
from tdlab.experiments.catalogue import ridge_views as rv
from tdlab.theory import least_squares as theory


def test_every_view_on_a_diagonal_design_by_hand():
    # X = diag(2, 1), y = (2, 1), lambda = 1: w_i = s_i y_i / (s_i^2 + 1) = (4/5, 1/2)
    X, y = np.diag([2.0, 1.0]), np.array([2.0, 1.0])
    for view, solve in rv.VIEWS.items():
        np.testing.assert_allclose(solve(X, y, 1.0), [0.8, 0.5], atol=1e-14, err_msg=view)


@pytest.mark.parametrize(("n", "d"), [(15, 6), (6, 15)])
def test_views_agree_with_the_posterior_precision_form(n, d):
    """Posterior of beta ~ N(0, tau^2 I), y ~ N(X beta, sigma^2 I): mean (X^T X / sigma^2 + I / tau^2)^-1 X^T y
    / sigma^2, computed here independently of the library."""
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((n, d)), rng.standard_normal(n)
    sigma2, tau2 = 0.3, 2.0
    precision_form = np.linalg.solve(X.T @ X / sigma2 + np.eye(d) / tau2, X.T @ y / sigma2)
    np.testing.assert_allclose(theory.ridge_posterior_mean(X, y, sigma2, tau2), precision_form, atol=1e-12)
    for view, solve in rv.VIEWS.items():
        if view != "posterior mean":
            np.testing.assert_allclose(solve(X, y, sigma2 / tau2), precision_form, atol=1e-11, err_msg=view)


def test_primal_ridge_is_accurate_when_lambda_is_tiny_against_s_max_squared():
    """X = U diag(s) V^T built from known factors, s^2 / lambda up to 1e8 with d > n (and n > d): the exact
    answer V diag(s / (s^2 + lambda)) U^T y is known without a solve. A plain solve of the formed Gram matrix is
    off by up to ~eps s_max^2 / lambda relative where d > n; the refined solve must be within 1e-13."""
    rng = np.random.default_rng(3)
    for n, d in ((30, 90), (90, 30)):
        r = min(n, d)
        U, _ = np.linalg.qr(rng.standard_normal((n, r)))
        V, _ = np.linalg.qr(rng.standard_normal((d, r)))
        s = np.geomspace(1.0, 100.0, r)
        X, y, lam = (U * s) @ V.T, rng.standard_normal(n), 1e-4
        exact = V @ (s / (s**2 + lam) * (U.T @ y))
        error = np.linalg.norm(theory.ridge_primal(X, y, lam) - exact) / np.linalg.norm(exact)
        assert error < 1e-13, (n, d, error)


def test_views_accept_several_target_columns():
    rng = np.random.default_rng(1)
    X, Y = rng.standard_normal((10, 4)), rng.standard_normal((10, 3))
    for view, solve in rv.VIEWS.items():
        np.testing.assert_allclose(solve(X, Y, 0.5), theory.ridge_primal(X, Y, 0.5), atol=1e-12, err_msg=view)


def test_bad_inputs_are_rejected():
    X, y = np.eye(3), np.ones(3)
    for solve in (
        theory.ridge_primal,
        theory.ridge_dual,
        theory.ridge_augmented,
        theory.ridge_fake_features,
        theory.ridge_svd,
    ):
        with pytest.raises(ValueError, match="lam"):
            solve(X, y, 0.0)
    with pytest.raises(ValueError, match="y"):
        theory.ridge_primal(X, np.ones(4), 1.0)
    with pytest.raises(ValueError, match="noise_var"):
        theory.ridge_posterior_mean(X, y, noise_var=-1.0, prior_var=1.0)
    with pytest.raises(ValidationError, match="lams"):
        rv.RidgeViewsConfig(lams=(1.0, -0.1))


def test_quick_run_passes_every_check():
    result = rv.EXPERIMENT.run(rv.EXPERIMENT.make_config(), Context(torch.device("cpu")))
    failed = [f"{c.name}: {c.measured}" for c in result.checks if not c.passed]
    assert not failed, failed
    assert len(result.checks) == 4
    assert set(result.figures) == {"filter", "agreement"}
    assert all(isinstance(f, Figure) for f in result.figures.values())
    views = set(result.metrics.loc[result.metrics["name"] == "relative_distance_to_svd", "view"])
    assert views == set(rv.VIEWS)
    # every pair of views is compared: 15 pairs per (regime, lambda)
    pairs = result.metrics[result.metrics["name"] == "relative_distance"]
    assert len(pairs) == 15 * 2 * 3


def test_checks_and_figures_come_from_the_stored_metrics(tmp_path):
    config = rv.EXPERIMENT.make_config(n_tall=12, d_tall=4, n_wide=4, d_wide=12, lams=(0.1, 10.0))
    result = assert_rechecks(rv.EXPERIMENT, config, tmp_path)
    assert all(c.passed for c in result.checks)


def test_checks_fail_on_a_wrong_view():
    """A view that is off by 1e-6 (relative) fails the agreement check; a filter off by 1e-6 fails its check."""
    config = rv.EXPERIMENT.make_config()
    metrics = rv.measure(config, Context(torch.device("cpu")))
    wrong = metrics.copy()
    wrong.loc[wrong["name"].isin(["relative_distance", "filter"]), "value"] += 1e-6
    assert [c.passed for c in rv.checks(wrong, config)] == [False, False, False, False]
