"""least-squares-gd: the SVD closed forms (filters, GD iterates, minimum norm, Bayes risk of a filter) against hand
values, plain iteration and direct matrix formulas; the training helper; config validation; re-checking from stored
metrics; a quick run whose checks must all pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from pydantic import ValidationError
from recheck import assert_rechecks

from tdlab.experiments.base import Context
from tdlab.experiments.catalogue import least_squares_gd as lsgd
from tdlab.theory import least_squares as theory


def _problem(n: int, d: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)) / np.sqrt(n), rng.standard_normal(n)


# -------------------------------------------------------------------------------------------------- theory
def test_filters_by_hand():
    np.testing.assert_allclose(
        theory.gd_filter([1.0, 0.25], eta=0.5, t=[[0], [1], [2]]), [[0.0, 0.0], [0.5, 0.125], [0.75, 0.234375]]
    )
    np.testing.assert_allclose(theory.ridge_filter([1.0, 3.0, 0.0], 1.0), [0.5, 0.75, 0.0])
    with pytest.raises(ValueError, match="eta"):
        theory.gd_filter([1.0], eta=0.0, t=1)
    with pytest.raises(ValueError, match="lam"):
        theory.ridge_filter([1.0], -1.0)


@pytest.mark.parametrize(("n", "d"), [(30, 10), (10, 30)])
def test_gd_iterates_match_plain_iteration(n, d):
    X, y = _problem(n, d)
    rng = np.random.default_rng(1)
    w0 = rng.standard_normal(d)
    eta = 1.0 / np.linalg.norm(X, 2) ** 2
    predicted = theory.gd_iterates(X, y, eta, 50, w0=w0)
    w = w0.copy()
    for t in range(51):
        np.testing.assert_allclose(predicted[t], w, rtol=0, atol=1e-12)
        w = w - eta * X.T @ (X @ w - y)
    # several target columns at once
    Y = np.stack([y, 2 * y], axis=1)
    both = theory.gd_iterates(X, Y, eta, 5)
    np.testing.assert_allclose(both[:, :, 1], 2 * both[:, :, 0], atol=1e-12)


def test_min_norm_solution_is_the_pseudo_inverse():
    X, y = _problem(8, 20)
    w = theory.min_norm_solution(X, y)
    np.testing.assert_allclose(w, np.linalg.pinv(X) @ y, atol=1e-12)
    np.testing.assert_allclose(X @ w, y, atol=1e-12)  # consistent: it interpolates
    # orthogonal to the null space of X
    null = np.linalg.svd(X)[2][8:]
    np.testing.assert_allclose(null @ w, 0.0, atol=1e-12)
    # rank-deficient tall design: still the minimum-norm least-squares solution
    Z = np.hstack([X.T, X.T])  # (20, 16), rank 8
    b = np.random.default_rng(8).standard_normal(20)
    np.testing.assert_allclose(theory.min_norm_solution(Z, b), np.linalg.pinv(Z) @ b, atol=1e-10)


def test_spectral_filter_by_hand_and_errors():
    X = np.diag([2.0, 1.0])
    np.testing.assert_allclose(theory.spectral_filter_solution(X, [2.0, 1.0], [1.0, 0.5]), [1.0, 0.5])
    with pytest.raises(ValueError, match="phi"):
        theory.spectral_filter_solution(X, [2.0, 1.0], [1.0])
    with pytest.raises(ValueError, match="y"):
        theory.spectral_filter_solution(X, [1.0, 2.0, 3.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="X"):
        theory.thin_svd(np.ones(3))


@pytest.mark.parametrize(("n", "d"), [(20, 6), (5, 9)])
def test_filter_bayes_risk_matches_the_direct_trace_formula(n, d):
    """E ||A y - beta||_Sigma^2 with A = V diag(phi/s) U^T, y = X beta + eps, written with A and X directly."""
    X, _ = _problem(n, d, seed=2)
    U, s, V = theory.thin_svd(X)
    phi = theory.ridge_filter(s**2, 0.3)
    A = V @ np.diag(phi / s) @ U.T
    rng = np.random.default_rng(3)
    C = rng.standard_normal((d, d))
    Sigma = C @ C.T / d
    tau2, sigma2 = 0.7, 0.2
    M = A @ X - np.eye(d)
    direct = tau2 * np.trace(M.T @ Sigma @ M) + sigma2 * np.trace(A.T @ Sigma @ A)
    assert theory.filter_bayes_risk(s, V, phi, tau2, sigma2, Sigma) == pytest.approx(direct, rel=1e-12)
    # identity covariance: the default
    M_id = tau2 * np.trace(M.T @ M) + sigma2 * np.trace(A.T @ A)
    assert theory.filter_bayes_risk(s, V, phi, tau2, sigma2) == pytest.approx(M_id, rel=1e-12)


def test_filter_bayes_risk_against_monte_carlo():
    X, _ = _problem(15, 5, seed=4)
    U, s, V = theory.thin_svd(X)
    phi = theory.gd_filter(s**2, 0.5, 3)
    rng = np.random.default_rng(5)
    tau2, sigma2, draws = 1.0, 0.5, 20000
    B = rng.standard_normal((5, draws)) * np.sqrt(tau2)
    Y = X @ B + np.sqrt(sigma2) * rng.standard_normal((15, draws))
    W = V @ ((phi / s)[:, None] * (U.T @ Y))
    losses = ((W - B) ** 2).sum(axis=0)
    expected = theory.filter_bayes_risk(s, V, phi, tau2, sigma2)
    assert abs(losses.mean() - expected) <= 4 * losses.std() / np.sqrt(draws)


# --------------------------------------------------------------------------------------------- measurement
def test_descend_is_the_svd_prediction_and_watches_every_step():
    X, y = _problem(20, 8, seed=6)
    Xt, Yt = torch.tensor(X * np.sqrt(20)), torch.tensor(np.stack([y, 2 * y], axis=1) * np.sqrt(20))
    eta = 0.5 / np.linalg.norm(X, 2) ** 2
    seen = []
    path = lsgd.descend(Xt, Yt, eta, 30, watch=lambda W: seen.append(W.clone()))
    predicted = theory.gd_iterates(X, y, eta, 30)
    np.testing.assert_allclose(path, predicted, atol=1e-12)
    assert len(seen) == 31 and seen[0].shape == (8, 2)
    np.testing.assert_allclose(torch.stack(seen)[:, :, 1].numpy(), 2 * predicted, atol=1e-12)


def test_mini_batch_sgd_visits_every_row_once_per_epoch():
    """With lr -> tiny, one epoch of SGD moves w by -lr * sum over batches of the batch-mean gradients at 0."""
    X = torch.eye(4, dtype=torch.float64)
    Y = torch.arange(1.0, 5.0, dtype=torch.float64).unsqueeze(1)
    path = lsgd.descend(X, Y, 1e-3, 2, batch_size=2)
    # each coordinate is touched once in the epoch: w_i = lr * y_i / 2
    np.testing.assert_allclose(path[-1], 1e-3 * np.arange(1.0, 5.0) / 2, rtol=1e-12)


def test_config_validation():
    with pytest.raises(ValidationError, match="d"):
        lsgd.LeastSquaresGDConfig(n=10, d=10)
    with pytest.raises(ValidationError, match="d_under"):
        lsgd.LeastSquaresGDConfig(n_under=50, d_under=40)
    with pytest.raises(ValidationError, match="eta_scale"):
        lsgd.LeastSquaresGDConfig(eta_scale=2.5)


# ----------------------------------------------------------------------------------------------- quick run
SMALL = {"n": 30, "d": 10, "replicates": 4, "steps": 60, "risk_points": 6, "n_under": 10, "d_under": 20}


def test_checks_and_figures_come_from_the_stored_metrics(tmp_path):
    config = lsgd.EXPERIMENT.make_config(**SMALL, under_steps=300, sgd_batch=5, sgd_steps=300)
    result = assert_rechecks(lsgd.EXPERIMENT, config, tmp_path)
    assert len(result.checks) == 8
    assert result.metrics.query("name == 'gd/steps_to_fit'")["value"].isin([np.inf]).any()  # inf survives Parquet


def test_the_path_bound_fails_on_a_gd_risk_too_high_at_one_step():
    """The bound of Ali et al. is checked at every step: raising the GD risk at a single step of the path above 1.69
    times ridge's must flip its verdict."""
    config = lsgd.EXPERIMENT.make_config(**SMALL, under_steps=300, sgd_batch=5, sgd_steps=300)
    metrics = lsgd.EXPERIMENT.measure(config, Context(torch.device("cpu")))
    name = "risk of GD at t / risk of ridge at lambda = 1/(eta t), max over every step t of the path (Ali et al.)"

    def verdict(frame):
        return next(c for c in lsgd.EXPERIMENT.checks(frame, config) if c.name == name)

    honest = verdict(metrics)
    assert honest.passed and 0.5 < honest.measured <= 1.69
    raised = metrics.copy()
    at = (raised["name"] == "gd/risk") & (raised["step"] == 30)
    ridge_30 = raised.loc[(raised["name"] == "ridge_risk_path") & (raised["step"] == 30), "value"].item()
    raised.loc[at, "value"] = 1.8 * ridge_30  # one step of the path only
    assert not verdict(raised).passed


def test_quick_run_passes_every_check():
    experiment = lsgd.EXPERIMENT
    result = experiment.run(experiment.make_config(), Context(torch.device("cpu")))
    failed = [f"{c.name}: {c.measured} vs {c.theory}" for c in result.checks if not c.passed]
    assert not failed, failed
    assert len(result.checks) == 8
    assert set(result.figures) == {"directions", "risk_curves", "min_norm"}
    assert all(isinstance(f, Figure) for f in result.figures.values())
    assert {"name", "value"} <= set(result.metrics.columns)
