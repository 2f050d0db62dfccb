"""double-descent-linear: the Marchenko-Pastur transform against numerical integration of the density, the ridge
risk against its ridgeless and optimal limits, the exact finite-n risk against simulation, the solvers against
the pseudo-inverse, config validation, and a quick run whose checks must all pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from pydantic import ValidationError
from recheck import assert_rechecks
from scipy.integrate import quad
from scipy.optimize import minimize_scalar

from tdlab.experiments.base import Context
from tdlab.experiments.catalogue import double_descent_linear as ddl
from tdlab.theory import random_matrix as theory
from tdlab.theory.least_squares import min_norm_least_squares, ridge_dual, ridge_primal


def _mp_integral(gamma: float, lam: float, power: int) -> float:
    """integral of (s + lambda)^-power under the Marchenko-Pastur law of ratio gamma (variance 1), with its atom
    of mass 1 - 1/gamma at 0 when gamma > 1."""
    lo, hi = (1 - np.sqrt(gamma)) ** 2, (1 + np.sqrt(gamma)) ** 2

    def density(s: float) -> float:
        return np.sqrt(max((hi - s) * (s - lo), 0.0)) / (2 * np.pi * gamma * s)

    continuous = quad(lambda s: density(s) / (s + lam) ** power, lo, hi, limit=200)[0]
    atom = max(1 - 1 / gamma, 0.0) / lam**power
    return continuous + atom


@pytest.mark.parametrize("gamma", [0.3, 0.9, 1.0, 2.5])
@pytest.mark.parametrize("lam", [0.05, 1.0])
def test_stieltjes_transform_and_derivative_against_the_density(gamma, lam):
    assert float(theory.marchenko_pastur_stieltjes(gamma, lam)) == pytest.approx(_mp_integral(gamma, lam, 1), rel=1e-7)
    assert float(theory.marchenko_pastur_stieltjes_derivative(gamma, lam)) == pytest.approx(
        _mp_integral(gamma, lam, 2), rel=1e-6
    )


@pytest.mark.parametrize("gamma", [0.4, 2.0])
def test_ridge_risk_tends_to_the_ridgeless_risk(gamma):
    assert float(theory.ridge_risk(gamma, 1e-9, 1.0, 0.25)) == pytest.approx(
        float(theory.ridgeless_risk(gamma, 1.0, 0.25)), rel=1e-5
    )


@pytest.mark.parametrize("gamma", [0.2, 1.0, 3.0])
def test_optimal_penalty_minimises_the_ridge_risk(gamma):
    best = minimize_scalar(
        lambda lam: float(theory.ridge_risk(gamma, lam, 1.0, 0.3)),
        bounds=(1e-4, 10.0),
        method="bounded",
        options={"xatol": 1e-10},
    )
    assert best.x == pytest.approx(float(theory.optimal_ridge_penalty(gamma, 1.0, 0.3)), rel=1e-4)
    assert best.fun == pytest.approx(float(theory.optimal_ridge_risk(gamma, 1.0, 0.3)), rel=1e-9)


def test_ridgeless_risk_by_hand_and_errors():
    np.testing.assert_allclose(theory.ridgeless_risk([0.5, 2.0], 1.0, 1.0), [1.0, 1.5])
    assert np.isinf(theory.ridgeless_risk(1.0, 1.0, 1.0))
    assert np.all(np.diff(theory.optimal_ridge_risk(np.linspace(0.1, 5, 50), 1.0, 0.5)) > 0)
    with pytest.raises(ValueError, match="gamma"):
        theory.ridgeless_risk(-1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="noise_var"):
        theory.ridgeless_risk(0.5, 1.0, -1.0)
    with pytest.raises(ValueError, match="p"):
        theory.ridgeless_risk_finite(10, [2.5], 1.0, 1.0)


@pytest.mark.parametrize(("n", "p"), [(20, 8), (8, 20)])
def test_finite_n_risk_against_simulation(n, p):
    """E ||X^+ y - beta||^2 for Gaussian X and a fixed unit beta, by Monte Carlo over X and the noise."""
    rng = np.random.default_rng(0)
    draws, sigma = 4000, 0.5
    X = rng.standard_normal((draws, n, p))
    beta = np.zeros((p, 1))
    beta[0] = 1.0
    Y = X @ beta + sigma * rng.standard_normal((draws, n, 1))
    risks = np.square(min_norm_least_squares(X, Y) - beta).sum(axis=(1, 2))
    expected = float(theory.ridgeless_risk_finite(n, p, 1.0, sigma**2))
    assert abs(risks.mean() - expected) <= 4 * risks.std() / np.sqrt(draws)


@pytest.mark.parametrize(("n", "p"), [(12, 5), (5, 12)])
def test_solvers_against_pseudo_inverse_and_averaged_ridge(n, p):
    """The QR solver against the pseudo-inverse (a batch of designs), and ridge on the averaged loss,
    (X^T X / n + lambda I)^-1 X^T Y / n, as the experiment gets it: primal or dual form with penalty n lambda."""
    rng = np.random.default_rng(1)
    X, Y = rng.standard_normal((3, n, p)), rng.standard_normal((3, n, 2))
    np.testing.assert_allclose(min_norm_least_squares(X, Y), np.linalg.pinv(X) @ Y, rtol=0, atol=1e-10)
    averaged = np.linalg.solve(X[0].T @ X[0] / n + 0.3 * np.eye(p), X[0].T @ Y[0] / n)
    for ridge in (ridge_primal, ridge_dual):
        np.testing.assert_allclose(ridge(X[0], Y[0], n * 0.3), averaged, rtol=0, atol=1e-10)
    with pytest.raises(ValueError, match="targets"):
        min_norm_least_squares(X, Y[:, :-1])


def test_config_validation():
    with pytest.raises(ValidationError, match="gammas"):
        ddl.DoubleDescentLinearConfig(n=100, gammas=(0.5, 1.0, 2.0))
    with pytest.raises(ValidationError, match="band"):
        ddl.DoubleDescentLinearConfig(band=(1.1, 1.2))


def test_quick_run_passes_every_check():
    result = ddl.EXPERIMENT.run(ddl.EXPERIMENT.make_config(), Context(torch.device("cpu")))
    failed = [f"{c.name}: {c.measured} vs {c.theory}" for c in result.checks if not c.passed]
    assert not failed, failed
    assert len(result.checks) == 6
    assert isinstance(result.figures["double_descent"], Figure)
    risk = result.metrics[result.metrics["name"] == "min_norm_risk"].set_index("gamma")["value"]
    assert risk.idxmax() in (0.95, 1.05)  # the peak sits at the interpolation threshold


def test_checks_and_figures_come_from_the_stored_metrics(tmp_path):
    config = ddl.EXPERIMENT.make_config(n=40, gammas=(0.3, 0.6, 1.5, 2.0), designs=3, replicates=4)
    result = assert_rechecks(ddl.EXPERIMENT, config, tmp_path)
    assert len(result.checks) == 6 and set(result.figures) == {"double_descent"}


def test_the_spectral_checks_fail_on_counted_zero_eigenvalues_or_a_displaced_peak():
    config = ddl.EXPERIMENT.make_config(n=60, gammas=(0.2, 0.5, 0.9, 1.1, 1.5, 2.5), designs=3, replicates=4)
    metrics = ddl.EXPERIMENT.measure(config, Context(torch.device("cpu")))
    spectral = lambda frame: ddl.EXPERIMENT.checks(frame, config)[-2:]  # noqa: E731
    honest = spectral(metrics)
    assert honest[0].measured < 0.3 and honest[1].passed  # n = 60, 3 designs: within 30% of the finite-n edge
    zeros = metrics.copy()  # the smallest eigenvalue of X^T X (p x p) is 0 for p > n: the wrong one to take
    zeros.loc[(zeros["name"] == "lambda_min") & (zeros["gamma"] > 1), "value"] = 0.0
    assert [c.passed for c in spectral(zeros)] == [False, False] and spectral(zeros)[0].measured == 1.0
    moved = metrics.copy()  # a risk peak away from the threshold
    moved.loc[(moved["name"] == "min_norm_risk") & (moved["gamma"] == 2.5), "value"] = 1e3
    assert [c.measured for c in spectral(moved)][0] == honest[0].measured and not spectral(moved)[1].passed
