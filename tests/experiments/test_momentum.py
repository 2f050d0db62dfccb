"""momentum: the closed forms of heavy ball, Nesterov and SGD noise against independent routes (eigenvalues of the
2x2 matrices, the Lyapunov equation, brute-force sums, exact enumeration of SGD's sample paths), config validation,
and the experiment: every check of the quick config passes, gives the same verdicts from its stored metrics, and
fails when the measured numbers are off."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from matplotlib.figure import Figure
from pydantic import ValidationError
from recheck import assert_rechecks
from scipy.linalg import solve_discrete_lyapunov

from tdlab.experiments.catalogue.momentum import EXPERIMENT, MomentumConfig
from tdlab.theory import momentum as theory
from tdlab.theory import sgd_noise


# ------------------------------------------------------------------------------------------------ momentum
@pytest.mark.parametrize("beta", [0.0, 0.3, 0.9])
def test_rates_are_spectral_radii_of_the_2x2_matrices(beta):
    h = np.linspace(0.01, 4.5, 200)
    heavy = [np.abs(np.linalg.eigvals(theory.heavy_ball_matrix(x, beta, 1.0))).max() for x in h]
    np.testing.assert_allclose(theory.heavy_ball_rate(1.0, beta, h), heavy, rtol=1e-6, atol=1e-12)
    if beta > 0:
        nesterov = [np.abs(np.linalg.eigvals(theory.nesterov_matrix(x, beta, 1.0))).max() for x in h]
        np.testing.assert_allclose(theory.nesterov_rate(1.0, beta, h), nesterov, rtol=1e-6, atol=1e-12)


def test_heavy_ball_matrix_iterates_the_recursion():
    eta, beta, lam = 0.3, 0.5, 2.0
    e = [1.0, 1.0 - eta * lam]  # e_0 and a first gradient step
    for _ in range(10):
        e.append(e[-1] - eta * lam * e[-1] + beta * (e[-1] - e[-2]))
    state = np.array([e[1], e[0]])
    for t in range(2, 12):
        state = theory.heavy_ball_matrix(eta, beta, lam) @ state
        assert state[0] == pytest.approx(e[t], rel=1e-12)


@pytest.mark.parametrize("kappa", [4.0, 50.0, 1000.0])
def test_tuned_parameters_give_the_accelerated_rates(kappa):
    lam = np.linspace(1 / kappa, 1.0, 2001)
    eta, beta = theory.polyak_parameters(1 / kappa, 1.0)
    worst = theory.heavy_ball_rate(eta, beta, lam).max()
    assert worst == pytest.approx(float(theory.polyak_rate(kappa)), rel=1e-6)
    for d_eta, d_beta in ((1.01, 1.0), (0.99, 1.0), (1.0, 1.01), (1.0, 0.99)):  # Polyak's choice is optimal
        assert theory.heavy_ball_rate(eta * d_eta, min(beta * d_beta, 0.999), lam).max() > worst
    eta, beta = theory.nesterov_parameters(1 / kappa, 1.0)
    assert theory.nesterov_rate(eta, beta, lam).max() == pytest.approx(
        float(theory.nesterov_tuned_rate(kappa)), rel=1e-6
    )


@pytest.mark.parametrize("beta", [0.2, 0.6, 0.95])
def test_stability_thresholds_are_where_the_radius_crosses_one(beta):
    for rate, edge in (
        (theory.heavy_ball_rate, theory.heavy_ball_stability_threshold(beta)),
        (theory.nesterov_rate, theory.nesterov_stability_threshold(beta)),
    ):
        below, above = rate(1.0, beta, [edge * (1 - 1e-7)]), rate(1.0, beta, [edge * (1 + 1e-7)])
        assert below[0] < 1.0 < above[0]


def test_terminal_velocity_is_the_geometric_sum():
    eta, beta, g = 0.2, 0.8, np.array([1.0, -3.0])
    v = np.zeros(2)
    for _ in range(400):
        v = beta * v - eta * g
    np.testing.assert_allclose(theory.terminal_velocity(eta, beta, g), v, rtol=1e-12)


def test_momentum_theory_rejects_bad_input():
    with pytest.raises(ValueError, match="beta: expected a momentum in"):
        theory.heavy_ball_rate(0.1, 1.0, [1.0])
    with pytest.raises(ValueError, match="eigenvalues: expected finite positive"):
        theory.nesterov_rate(0.1, 0.5, [0.0])
    with pytest.raises(ValueError, match="kappa"):
        theory.polyak_rate(0.9)


# ------------------------------------------------------------------------------------------------- noise
@pytest.mark.parametrize("beta", [0.0, 0.5, 0.9])
def test_stationary_variances_solve_the_lyapunov_equation(beta):
    s2 = 0.7
    for eta, lam in itertools.product((0.05, 0.5, 1.2), (0.3, 1.0)):
        M = theory.heavy_ball_matrix(eta, beta, lam)
        sigma = solve_discrete_lyapunov(M, np.diag([eta**2 * s2, 0.0]))
        closed = sgd_noise.heavy_ball_stationary_variance(eta, beta, [lam], s2)[0]
        assert closed == pytest.approx(sigma[0, 0], rel=1e-10)
        if beta == 0.0:
            assert sgd_noise.sgd_stationary_variance(eta, [lam], s2)[0] == pytest.approx(sigma[0, 0], rel=1e-10)
    assert sgd_noise.sgd_stationary_variance(1.0, [2.5], s2)[0] == np.inf


def test_averaged_iterate_variance_is_the_double_sum_of_autocovariances():
    eta, lam, s2 = 0.1, 0.8, 2.0
    r, V = 1 - eta * lam, sgd_noise.sgd_stationary_variance(eta, [lam], s2)[0]
    for K in (1, 7, 150):
        lag = np.abs(np.subtract.outer(np.arange(K), np.arange(K)))
        assert sgd_noise.averaged_iterate_variance(eta, [lam], s2, K)[0] == pytest.approx(
            V * (r**lag).sum() / K**2, rel=1e-10
        )
    # K >> 1/(eta lambda): the Polyak-Juditsky limit s^2/(lambda^2 K)
    K = 10**6
    assert sgd_noise.averaged_iterate_variance(eta, [lam], s2, K)[0] == pytest.approx(s2 / (lam**2 * K), rel=1e-4)


def _enumerated_mse(X, y, w0, etas):
    """E||w_t - w_LS||^2 by enumerating every sequence of sampled examples (n^T paths, equal weights)."""
    n = len(y)
    w_ls = np.linalg.lstsq(X, y, rcond=None)[0]
    result = [float(((w0 - w_ls) ** 2).sum())]
    for T in range(1, len(etas) + 1):
        total = 0.0
        for path in itertools.product(range(n), repeat=T):
            w = w0.copy()
            for eta, i in zip(etas, path, strict=False):
                w = w - eta * X[i] * (X[i] @ w - y[i])
            total += ((w - w_ls) ** 2).sum()
        result.append(total / n**T)
    return np.array(result)


def test_least_squares_moment_recursion_against_exact_enumeration():
    rng = np.random.default_rng(0)
    X, y, w0 = rng.normal(size=(3, 2)), rng.normal(size=3), rng.normal(size=2)
    for etas in ([0.3] * 5, [0.5, 0.25, 0.125, 0.1, 0.05]):
        np.testing.assert_allclose(
            sgd_noise.least_squares_sgd_mse(X, y, w0, etas), _enumerated_mse(X, y, w0, etas), rtol=1e-10
        )


def test_least_squares_plateau_and_contraction_are_the_limits_of_the_recursion():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(6, 3))
    y_noisy, y_clean = rng.normal(size=6), X @ rng.normal(size=3)
    eta = 0.1
    mse = sgd_noise.least_squares_sgd_mse(X, y_noisy, np.zeros(3), [eta] * 3000)
    assert mse[-1] == pytest.approx(sgd_noise.least_squares_sgd_stationary_mse(X, y_noisy, eta), rel=1e-8)
    assert sgd_noise.least_squares_sgd_stationary_mse(X, y_clean, eta) == pytest.approx(0.0, abs=1e-15)
    clean = sgd_noise.least_squares_sgd_mse(X, y_clean, np.zeros(3), [eta] * 400)
    assert clean[-1] / clean[-2] == pytest.approx(sgd_noise.least_squares_sgd_contraction(X, eta), rel=1e-6)
    assert sgd_noise.least_squares_sgd_stationary_mse(X, y_noisy, 5.0) == np.inf  # too large a step


def test_noise_theory_rejects_bad_input():
    with pytest.raises(ValueError, match="X: expected full column rank"):
        sgd_noise.least_squares_sgd_mse(np.ones((4, 2)), np.ones(4), np.zeros(2), [0.1])
    with pytest.raises(ValueError, match="window: expected a positive integer"):
        sgd_noise.averaged_iterate_variance(0.1, [1.0], 1.0, 0)
    with pytest.raises(ValueError, match="noise_var"):
        sgd_noise.sgd_stationary_variance(0.1, [1.0], -1.0)


# ------------------------------------------------------------------------------------------------ config
def test_config_rejects_bad_values():
    with pytest.raises(ValidationError, match="curve_kappa"):
        MomentumConfig(curve_kappa=50.0)
    with pytest.raises(ValidationError, match="noise_etas"):
        MomentumConfig(noise_etas=(0.5, 2.5))
    with pytest.raises(ValidationError, match="betas"):
        MomentumConfig(betas=(0.5, 1.0))
    with pytest.raises(ValidationError, match="betas: expected distinct"):
        MomentumConfig(betas=(0.5, 0.5))
    with pytest.raises(ValidationError, match="ls_dim"):
        MomentumConfig(ls_dim=40)
    with pytest.raises(ValidationError, match="ls_chains"):
        MomentumConfig(ls_chains=1005)
    with pytest.raises(ValidationError, match="extra"):
        MomentumConfig(learning_rate=0.1)


def test_full_preset_is_a_valid_config():
    assert EXPERIMENT.make_config("full").steps > EXPERIMENT.make_config().steps


# -------------------------------------------------------------------------------------------------- run
@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """The quick config, measured once, re-checked from its stored metrics."""
    return assert_rechecks(EXPERIMENT, EXPERIMENT.make_config(), tmp_path_factory.mktemp("momentum"))


def test_quick_run_passes_every_check_and_rechecks_from_stored_metrics(quick):
    failed = [f"{c.name}: {c.measured} vs {c.theory} ({c.detail})" for c in quick.checks if not c.passed]
    assert not failed, failed
    assert len(quick.checks) == 25
    assert set(quick.figures) == {
        "error_curves",
        "rates",
        "sgd_error",
        "stationary_variance",
        "terminal_velocity",
    }
    assert all(isinstance(f, Figure) for f in quick.figures.values())
    assert {"name", "value", "method", "beta", "kappa", "eta", "step"} <= set(quick.metrics.columns)
    assert np.isfinite(quick.metrics["value"]).all()


def test_checks_fail_when_the_measurements_are_off(quick):
    """Tuned rates 3% off, edges 5% off, SGD variances 20% off, the 1/t curve decaying as t^-0.9: those checks fail."""
    config, metrics = EXPERIMENT.make_config(), quick.metrics.copy()
    scale = {"tuned_rate": 1.03, "stability_edge": 1.05, "sgd_variance": 1.2}
    metrics["value"] *= metrics["name"].map(scale).fillna(1.0)
    slow = (metrics["name"] == "mse") & (metrics["regime"] == "1/t step")
    metrics.loc[slow, "value"] *= (1 + metrics.loc[slow, "step"]) ** 0.1
    failed = {c.name for c in EXPERIMENT.checks(metrics, config) if not c.passed}
    assert {c.name for c in quick.checks if c.name.startswith(("tuned heavy ball", "tuned nesterov"))} <= failed
    assert {c.name for c in quick.checks if "edge of stability" in c.name} <= failed
    assert "SGD stationary variance vs eta s^2/(lambda (2 - eta lambda)), worst relative error" in failed
    assert "eta_t ~ 1/t: log-log slope of E||w_t - w_LS||^2 against t + t0" in failed
