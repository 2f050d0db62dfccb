"""junk-features-ridge: the junk-feature theory against Monte Carlo and exact identities, the measurement helpers,
config validation, re-checking from stored metrics (the quick run, whose checks must all pass), and wrong penalties
and corrupted metrics that must flip the checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from recheck import assert_rechecks

from tdlab.experiments.catalogue import junk_features_ridge as jfr
from tdlab.theory.junk_features import (
    fresh_junk_risk,
    junk_fluctuation,
    junk_ridge_penalty,
    junk_ridge_penalty_finite,
)
from tdlab.theory.least_squares import ridge_dual


def _gaussian(rng: np.random.Generator, n: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    return rng.standard_normal((n, d)), rng.standard_normal(n)


# ------------------------------------------------------------------------------------------------------- theory
def test_penalty_is_p_sigma_squared_and_rejects_bad_input():
    assert junk_ridge_penalty(400, 0.5) == 100.0
    assert junk_ridge_penalty(3, 2.0) == 12.0
    with pytest.raises(ValueError, match="p"):
        junk_ridge_penalty(0, 1.0)
    with pytest.raises(ValueError, match="sigma"):
        junk_ridge_penalty(10, 0.0)
    with pytest.raises(ValueError, match="p"):
        junk_ridge_penalty_finite(np.zeros((10, 3)), 10, 1.0)  # Z Z^T cannot fill 10 null directions with 10 columns


@pytest.mark.parametrize("d", [3, 12])
def test_min_norm_signal_coefficients_are_the_kernel_formula(d):
    """The premise: the minimum-norm solution of [X, Z] w = y has signal part X^T (X X^T + Z Z^T)^{-1} y (checked
    against the pseudo-inverse), in both regimes n > d and d > n."""
    rng = np.random.default_rng(d)
    X, y = _gaussian(rng, 8, d)
    Z = 0.3 * rng.standard_normal((3, 8, 40))
    b, c = jfr.min_norm_fit(torch.as_tensor(X), torch.as_tensor(Z), torch.as_tensor(y))
    for k in range(3):
        w = np.linalg.pinv(np.hstack([X, Z[k]])) @ y
        np.testing.assert_allclose(np.concatenate([b[k].numpy(), c[k].numpy()]), w, atol=1e-12)
        np.testing.assert_allclose(b[k].numpy(), X.T @ np.linalg.solve(X @ X.T + Z[k] @ Z[k].T, y), atol=1e-12)


def test_fluctuation_against_monte_carlo():
    """sqrt(E ||b - b_lambda||^2) / ||b_lambda|| over 1000 draws of Z at p = 2000 equals the first-order formula
    (the Monte Carlo standard error of the ratio is 1.2%; the second order is ~n / p = 0.3%)."""
    rng = np.random.default_rng(0)
    X, y = _gaussian(rng, 6, 3)
    lam, p = 5.0, 2000
    ridge = ridge_dual(X, y, lam)
    squared = []
    for _ in range(1000):
        Z = np.sqrt(lam / p) * rng.standard_normal((6, p))
        squared.append(np.sum((X.T @ np.linalg.solve(X @ X.T + Z @ Z.T, y) - ridge) ** 2))
    measured = np.sqrt(np.mean(squared)) / np.linalg.norm(ridge)
    assert measured == pytest.approx(junk_fluctuation(X, y, lam, p), rel=0.05)
    # the 1/sqrt(p) law is the formula's: four times the junk, half the distance
    assert junk_fluctuation(X, y, lam, 4 * p) == pytest.approx(junk_fluctuation(X, y, lam, p) / 2, rel=1e-12)


def test_fresh_junk_risk_against_monte_carlo():
    """sigma^2 ||c||^2 averaged over draws of Z equals ridge's RSS / p to leading order."""
    rng = np.random.default_rng(1)
    X, y = _gaussian(rng, 6, 3)
    lam, p = 5.0, 2000
    sigma = np.sqrt(lam / p)
    rss = np.sum((X @ ridge_dual(X, y, lam) - y) ** 2)
    terms = []
    for _ in range(300):
        Z = sigma * rng.standard_normal((6, p))
        terms.append(sigma**2 * np.sum((Z.T @ np.linalg.solve(X @ X.T + Z @ Z.T, y)) ** 2))
    assert np.mean(terms) == pytest.approx(float(fresh_junk_risk(rss, p)), rel=0.02)
    with pytest.raises(ValueError, match="residual_sum_of_squares"):
        fresh_junk_risk(-1.0, p)


def test_finite_penalty_is_the_deterministic_equivalent():
    """kappa: (p - n) sigma^2 without signal features; 1 - (n - df) / p to first order in 1/p; and the trace of
    (X X^T + kappa I)^{-1} matches Monte Carlo's E tr (X X^T + Z Z^T)^{-1} far better than p sigma^2 does."""
    assert junk_ridge_penalty_finite(np.zeros((10, 3)), 110, 0.5) == pytest.approx(25.0, rel=1e-12)
    rng = np.random.default_rng(2)
    X, _ = _gaussian(rng, 20, 10)
    lam = 20.0
    for p in (2000, 20000):
        eigenvalues = np.linalg.eigvalsh(X @ X.T)
        df = np.sum(eigenvalues / (eigenvalues + lam))
        kappa = junk_ridge_penalty_finite(X, p, np.sqrt(lam / p))
        assert kappa / lam == pytest.approx(1 - (20 - df) / p, abs=2 * (20 / p) ** 2)
    p, sigma = 200, np.sqrt(lam / 200)
    kappa = junk_ridge_penalty_finite(X, p, sigma)
    traces = [
        np.trace(np.linalg.inv(X @ X.T + sigma**2 * (G := rng.standard_normal((20, p))) @ G.T)) for _ in range(2000)
    ]
    monte_carlo = np.mean(traces)  # standard error 0.05%
    equivalent = np.trace(np.linalg.inv(X @ X.T + kappa * np.eye(20)))
    naive = np.trace(np.linalg.inv(X @ X.T + lam * np.eye(20)))
    assert abs(equivalent / monte_carlo - 1) < 0.01 < 0.04 < abs(naive / monte_carlo - 1)


# -------------------------------------------------------------------------------------------- measurement helpers
@pytest.mark.parametrize("d", [3, 12])
def test_implied_penalty_recovers_a_ridge_solution(d):
    rng = np.random.default_rng(3)
    X, y = _gaussian(rng, 8, d)
    for lam in (0.05, 3.0, 200.0):
        assert jfr.implied_penalty(X, y, ridge_dual(X, y, lam)) == pytest.approx(lam, rel=1e-6)
    # the search never looks beyond 1e4 s_max^2: a zero vector sits at the grid's end
    assert jfr.implied_penalty(X, y, np.zeros(d)) == pytest.approx(1e4 * np.linalg.norm(X, 2) ** 2, rel=1e-9)


def test_ridge_risk_path_matches_ridge():
    rng = np.random.default_rng(4)
    for d in (3, 12):
        X, y = _gaussian(rng, 8, d)
        beta = rng.standard_normal(d)
        lams = np.array([1e-3, 0.7, 50.0])
        risk, rss = jfr.ridge_risk_path(X, y, beta, lams)
        for k, lam in enumerate(lams):
            b = ridge_dual(X, y, lam)
            assert risk[k] == pytest.approx(np.sum((b - beta) ** 2), rel=1e-10)
            assert rss[k] == pytest.approx(np.sum((X @ b - y) ** 2), rel=1e-9, abs=1e-12)


def test_config_validation():
    with pytest.raises(ValidationError, match="d_tall"):
        jfr.JunkFeaturesRidgeConfig(d_tall=40)
    with pytest.raises(ValidationError, match="d_tall, d_wide"):
        jfr.JunkFeaturesRidgeConfig(d_wide=30)
    with pytest.raises(ValidationError, match="rate_features"):
        jfr.JunkFeaturesRidgeConfig(rate_features=(400, 800))
    with pytest.raises(ValidationError, match="rate_features"):
        jfr.JunkFeaturesRidgeConfig(rate_features=(800, 400, 1600))
    with pytest.raises(ValidationError, match="rate_features"):
        jfr.JunkFeaturesRidgeConfig(rate_features=(40, 400, 800))
    with pytest.raises(ValidationError, match="pairs"):
        jfr.JunkFeaturesRidgeConfig(pairs=((30, 0.5), (400, 0.2)))
    with pytest.raises(ValidationError, match="risk_features"):
        jfr.JunkFeaturesRidgeConfig(risk_features=40)
    with pytest.raises(ValidationError, match="risk_sigmas"):
        jfr.JunkFeaturesRidgeConfig(risk_sigmas=(1.0, 0.1))
    with pytest.raises(ValidationError, match="gd_features"):
        jfr.JunkFeaturesRidgeConfig(gd_features=20)
    full = jfr.EXPERIMENT.make_config("full")
    assert full.n > jfr.EXPERIMENT.make_config().n and min(p for p, _ in full.pairs) >= 20 * full.n


# ----------------------------------------------------------------------------------------------------- the run
@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    config = jfr.EXPERIMENT.make_config()
    return config, assert_rechecks(jfr.EXPERIMENT, config, tmp_path_factory.mktemp("junk_features_ridge"))


def test_quick_run_passes_every_check(quick):
    _, result = quick
    failed = [f"{c.name}: {c.measured} ({c.detail})" for c in result.checks if not c.passed]
    assert not failed, failed
    assert len(result.checks) == 7 and set(result.figures) == {"junk_features_ridge"}


def _verdicts(metrics, config) -> list[bool]:
    return [c.passed for c in jfr.checks(metrics, config)]


@pytest.mark.parametrize(
    "wrong",
    [
        pytest.param(lambda p, sigma: sigma**2, id="sigma^2 alone"),
        pytest.param(lambda p, sigma: p * sigma**2 / 40, id="divided by n"),
        pytest.param(lambda p, sigma: 40 * p * sigma**2, id="times n"),
    ],
)
def test_a_wrong_penalty_fails_the_checks(quick, monkeypatch, wrong):
    """The checks read ridge at the penalty the theory predicts: sigma^2 instead of p sigma^2, or a missing or extra
    factor n (n = 40), fails the rate, the size, the implied penalty and both risk checks; the t-test and GD do not
    use the penalty's value beyond picking a sigma."""
    config, result = quick
    monkeypatch.setattr(jfr, "junk_ridge_penalty", wrong)
    assert _verdicts(result.metrics, config)[:5] == [False] * 5


def _with(metrics, name, change):
    out = metrics.copy()
    chosen = out["name"] == name
    out.loc[chosen, "value"] = change(out.loc[chosen])
    return out


def test_checks_fail_on_corrupted_metrics(quick):
    config, result = quick
    m = result.metrics
    # signal coefficients 10% off ridge at every p: the distance stops falling (slope, size); 3% off: the size only
    off = _with(m, "signal_coefficient", lambda rows: rows["value"] * 1.1)
    assert _verdicts(off, config) == [False, False, True, True, True, True, True]
    off = _with(m, "signal_coefficient", lambda rows: rows["value"] * 1.03)
    assert _verdicts(off, config) == [True, False, True, True, True, True, True]
    # implied penalties 20% high: only the implied-penalty check
    high = _with(m, "implied_penalty", lambda rows: rows["value"] * 1.2)
    assert _verdicts(high, config) == [True, True, False, True, True, True, True]
    # the junk fit's risk 15% above ridge's: only the risk-curve check
    worse = _with(m, "signal_risk", lambda rows: rows["value"] * 1.15)
    assert _verdicts(worse, config) == [True, True, True, False, True, True, True]
    # fresh junk that costs nothing at test time: only the junk-risk check
    free = _with(m, "junk_risk", lambda rows: rows["value"] * 0.0)
    assert _verdicts(free, config) == [True, True, True, True, False, True, True]
    # junk that hurts (risk 3x): the risk curve and the t-test (p ~ 1) fail
    hurts = _with(m, "signal_risk", lambda rows: rows["value"] * 3.0)
    assert _verdicts(hurts, config)[3:6] == [False, True, False]
    # GD from a random start (its distances stored as the zero start's): only the GD check
    gd = m.copy()
    zero, random = (gd["name"] == "gd_distance") & (gd["init"] == "zero"), gd["init"] == "random"
    gd.loc[zero, "value"] = gd.loc[random, "value"].to_numpy()
    assert _verdicts(gd, config) == [True, True, True, True, True, True, False]
    # GD stopped after 20 steps: not converged
    early = m[~((m["name"] == "gd_distance") & (m["step"] > 20))]
    assert _verdicts(early, config)[-1] is False
