"""quadratic-step-size: the GD closed forms against hand values and brute-force iteration, the measurement helpers
(torch.optim.SGD with per-row steps, renormalised trajectories, fitted rates, the edge finder) against independent
iterations, config validation, and a quick run whose checks must all pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from pydantic import ValidationError
from scipy.optimize import minimize_scalar

from tdlab.experiments.base import Context
from tdlab.experiments.catalogue import quadratic_step_size as qss
from tdlab.experiments.registry import get
from tdlab.theory import quadratic as theory

F64 = torch.float64


# -------------------------------------------------------------------------------------------------- theory
def test_mode_error_and_rate_by_hand():
    np.testing.assert_allclose(theory.gd_mode_error(1.5, 1.0, 3), [1.0, -0.5, 0.25, -0.125])
    # eta = 0.4 on {1, 4}: factors 0.6 and -0.6, so the rate is 0.6; eta = 0.6: 0.4 and -1.4
    np.testing.assert_allclose(theory.gd_rate([0.4, 0.6], [1.0, 2.5, 4.0]), [0.6, 1.4])


def test_best_step_minimises_the_rate():
    for mu, L in ((1.0, 3.0), (0.01, 1.0), (2.0, 50.0)):
        best = minimize_scalar(
            lambda eta, mu=mu, L=L: float(theory.gd_rate(eta, [mu, L])),
            bounds=(1e-6, 2 / L),
            method="bounded",
            options={"xatol": 1e-12},
        )
        assert best.x == pytest.approx(theory.gd_best_step(mu, L), rel=1e-6)
        assert best.fun == pytest.approx(float(theory.gd_best_rate(L / mu)), rel=1e-6)


def test_stability_threshold_is_where_the_rate_crosses_one():
    lam = [0.1, 0.7, 2.5]
    edge = theory.gd_stability_threshold(2.5)
    assert float(theory.gd_rate(edge * (1 - 1e-9), lam)) < 1.0 < float(theory.gd_rate(edge * (1 + 1e-9), lam))


def test_steps_to_tolerance_against_iteration():
    eta, lam, tol = 0.44, np.array([0.5, 1.0, 2.0, 3.0, 3.8, 1 / 0.44]), 1e-6
    counted = []
    for v in lam:
        e, t = 1.0, 0
        while abs(e) > tol:
            e, t = (1 - eta * v) * e, t + 1
        counted.append(t)
    np.testing.assert_array_equal(theory.gd_steps_to_tolerance(eta, lam, tol), counted)
    assert theory.gd_steps_to_tolerance(1.0, [2.5], tol)[0] == np.inf  # a diverging mode never converges


def test_regimes_and_bad_input():
    assert [theory.gd_regime(h, 1.0) for h in (0.3, 1.0, 1.7, 2.0, 2.3)] == [
        "monotone",
        "one-step",
        "oscillating",
        "period-two",
        "diverging",
    ]
    with pytest.raises(ValueError, match="eta: expected finite positive"):
        theory.gd_rate(-0.1, [1.0])
    with pytest.raises(ValueError, match="kappa: expected finite values >= 1"):
        theory.gd_best_rate(0.5)
    with pytest.raises(ValueError, match="mu: expected mu <= L"):
        theory.gd_best_step(2.0, 1.0)
    with pytest.raises(ValueError, match="tol: expected a value in"):
        theory.gd_steps_to_tolerance(0.1, [1.0], 2.0)


# --------------------------------------------------------------------------------------------- measurement
def _problem(dim: int = 3, rows: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    spectra = torch.rand(rows, dim, generator=generator, dtype=F64) * 2 + 0.1
    A, _ = qss.rotated_quadratics(spectra, generator)
    return A, torch.randn(rows, dim, generator=generator, dtype=F64)


@pytest.mark.parametrize(("momentum", "nesterov"), [(0.0, False), (0.7, False), (0.7, True)])
def test_descend_matches_torch_sgd_with_its_own_lr(momentum, nesterov):
    """Rows with their own step (lr = 1 on eta f) give the iterates of SGD(lr=eta) run separately."""
    A, start = _problem()
    etas = [0.3, 0.8]
    run = qss.QuadraticRun(A, start, torch.tensor(etas, dtype=F64), momentum, nesterov)
    (path,) = qss.descend([run], 25, keep_iterates=True)
    for r, eta in enumerate(etas):
        w = start[r].clone()
        optimizer = torch.optim.SGD([w], lr=eta, momentum=momentum, nesterov=nesterov)
        expected = [w.clone()]
        for _ in range(25):
            w.grad = A[r] @ w
            optimizer.step()
            expected.append(w.clone())
        torch.testing.assert_close(path.iterates()[:, r], torch.stack(expected), rtol=1e-12, atol=1e-14)


def test_heavy_ball_and_nesterov_iterates_follow_the_textbook_recursions():
    """torch's momentum options are Polyak's heavy ball and Nesterov's look-ahead iterates (the stated mapping)."""
    A, start = _problem(rows=1)
    A_, w0 = A[0].numpy(), start[0].numpy()
    eta, beta, steps = 0.4, 0.6, 20
    heavy, nesterov = qss.descend(
        [qss.QuadraticRun(A, start, eta, beta), qss.QuadraticRun(A, start, eta, beta, nesterov=True)],
        steps,
        keep_iterates=True,
    )
    previous, w, path = w0, w0 - eta * A_ @ w0, [w0]  # heavy ball: first step is a gradient step
    for _ in range(steps):
        path.append(w)
        previous, w = w, w - eta * A_ @ w + beta * (w - previous)
    np.testing.assert_allclose(heavy.iterates()[:, 0].numpy(), np.array(path), rtol=1e-11, atol=1e-13)
    x_previous, y, path = w0, w0, [w0]  # Nesterov: x_{t+1} = y_t - eta grad(y_t), y_{t+1} = x_{t+1} + beta (...)
    for _ in range(steps):
        x = y - eta * A_ @ y
        y, x_previous = x + beta * (x - x_previous), x
        path.append(y)
    np.testing.assert_allclose(nesterov.iterates()[:, 0].numpy(), np.array(path), rtol=1e-11, atol=1e-13)


def test_renormalised_trajectory_keeps_the_exact_log_error():
    A = torch.diag_embed(torch.tensor([[1.0, 3.0]], dtype=F64))
    start = torch.tensor([[1.0, 1.0]], dtype=F64)
    (path,) = qss.descend([qss.QuadraticRun(A, start, 2.0 / 3.0)], 2000)  # factors 1/3 and -1
    (short,) = qss.descend([qss.QuadraticRun(A, start, 0.5)], 10)  # factors 1/2 and -1/2
    np.testing.assert_allclose(short.log_error()[:, 0].numpy(), np.log(np.sqrt(2.0) * 0.5 ** np.arange(11)), rtol=1e-13)
    # 2000 steps: ||w_t||^2 = (1/3)^(2t) + 1, far outside float64 for the 1/3 mode alone; the -1 mode dominates
    assert torch.isfinite(path.log_error()).all()
    assert qss.fitted_rate(path.log_error(), 1000)[0] == pytest.approx(1.0, abs=1e-12)
    (fast,) = qss.descend([qss.QuadraticRun(A[:, :1, :1], start[:, :1], 2.0 / 3.0)], 2000)  # 1/3 per step
    assert qss.fitted_rate(fast.log_error(), 100)[0] == pytest.approx(1 / 3, rel=1e-10)
    with pytest.raises(ValueError, match="keep_iterates"):
        fast.iterates()
    # an exact zero (eta lambda = 1) gives -inf, and a rate of 0
    (zero,) = qss.descend([qss.QuadraticRun(A[:, :1, :1], start[:, :1], 1.0)], 5, keep_iterates=True)
    assert zero.log_error()[0, 0] == 0.0 and torch.isneginf(zero.log_error()[1:, 0]).all()
    assert (zero.iterates()[1:] == 0).all() and qss.fitted_rate(zero.log_error(), 0)[0] == 0.0


def test_fitted_rate_recovers_a_slope_and_flags_exact_zeros():
    t = torch.arange(50, dtype=F64).unsqueeze(-1)
    log_error = torch.cat([t * np.log(0.9) + 3.0, t * np.log(1.2), torch.full_like(t, -torch.inf)], dim=1)
    np.testing.assert_allclose(qss.fitted_rate(log_error, 10), [0.9, 1.2, 0.0], rtol=1e-12)


def test_edge_of_stability_finds_two_over_L():
    A = torch.diag_embed(torch.tensor([[0.5, 3.0], [1.0, 8.0]], dtype=F64))
    start = torch.ones(2, 2, dtype=F64)
    (edges,) = qss.edge_of_stability([qss.QuadraticRun(A, start, 1.0)], 0.0, 1.0, steps=200, rounds=3, points=15)
    np.testing.assert_allclose(edges, [2 / 3.0, 2 / 8.0], atol=1.0 / 16**3)


def test_rotations_are_orthogonal_and_keep_the_spectrum():
    eigenvalues = torch.tensor([[0.1, 1.0, 5.0], [2.0, 3.0, 4.0]], dtype=F64)
    A, Q = qss.rotated_quadratics(eigenvalues, torch.Generator().manual_seed(3))
    torch.testing.assert_close(Q @ Q.transpose(1, 2), torch.eye(3, dtype=F64).expand(2, 3, 3))
    torch.testing.assert_close(torch.linalg.eigvalsh(A), eigenvalues)


# ------------------------------------------------------------------------------------------------ config
def test_config_rejects_bad_values():
    with pytest.raises(ValidationError, match="warmup"):
        qss.QuadraticStepSizeConfig(steps=100, warmup=100)
    with pytest.raises(ValidationError, match="kappas"):
        qss.QuadraticStepSizeConfig(kappas=(10.0, 0.5))
    with pytest.raises(ValidationError, match="mode_eta"):
        qss.QuadraticStepSizeConfig(mode_eta=0.6)  # 0.6 * 3.8 > 2
    with pytest.raises(ValidationError, match="spacing"):
        qss.QuadraticStepSizeConfig(spacing="cubic")
    with pytest.raises(ValueError, match="preset"):
        get("quadratic-step-size").make_config("huge")


def test_full_preset_is_a_valid_config():
    assert get("quadratic-step-size").make_config("full").steps > get("quadratic-step-size").make_config().steps


# -------------------------------------------------------------------------------------------------- run
def test_quick_run_passes_every_check():
    experiment = get("quadratic-step-size")
    result = experiment.run(experiment.make_config(), Context(torch.device("cpu")))
    failed = [f"{c.name}: {c.measured} vs {c.theory} ({c.detail})" for c in result.checks if not c.passed]
    assert not failed, failed
    assert len(result.checks) >= 10
    assert set(result.figures) == {"regimes", "mode_order", "rate_vs_eta", "best_step_rate"}
    assert all(isinstance(f, Figure) for f in result.figures.values())
    assert {"name", "value", "eta", "kappa"} <= set(result.metrics.columns)
    assert np.isfinite(result.metrics["value"]).all()


def test_same_seed_same_numbers():
    small = {"eta_points": 4, "kappas": (10.0,), "best_step_kappas": (2.0, 5.0), "steps": 60, "warmup": 20}
    small |= {"edge_steps": 40, "edge_rounds": 1, "edge_points": 3, "mode_steps": 10, "regime_steps": 4}
    experiment = get("quadratic-step-size")
    first = experiment.run(experiment.make_config(**small), Context(torch.device("cpu"))).metrics
    second = experiment.run(experiment.make_config(**small), Context(torch.device("cpu"))).metrics
    other = experiment.run(experiment.make_config(seed=1, **small), Context(torch.device("cpu"))).metrics
    assert first.equals(second)
    assert not first.equals(other)
