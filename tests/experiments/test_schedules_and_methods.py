"""schedules-and-methods: its theory (ISTA's bounds, the ball- and L1-ball-constrained quadratic minimisers, the
Cauchy decrease), the facts that hold by construction (the schedule objects are the rates torch's schedulers apply;
projected iterates stay in their set), its config validation, and the experiment: every check of the quick config
passes, gives the same verdicts from its stored metrics, and fails when the measured numbers are off."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from pydantic import ValidationError
from recheck import assert_rechecks
from scipy.optimize import minimize

from tdlab.experiments.base import Context
from tdlab.experiments.catalogue import schedules_and_methods as sm
from tdlab.experiments.catalogue.schedules_and_methods import EXPERIMENT
from tdlab.experiments.tidy import series
from tdlab.models import LinearModel
from tdlab.optim import proximal_gradient_step
from tdlab.optim.schedules import ExponentialDecay, PiecewiseConstant, PowerDecay, learning_rates
from tdlab.theory.ista import ista_distance_bound, ista_objective_bound
from tdlab.theory.trust_region_subproblem import ball_constrained_minimizer, cauchy_decrease_bound
from tdlab.train.trainer import fit


def _spd(d: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    return Q @ np.diag(np.logspace(0, 1.5, d)) @ Q.T


# ------------------------------------------------------------------------------------------ theory
def test_ball_constrained_minimizer_against_slsqp_and_kkt():
    for seed in range(4):
        B = _spd(5, seed)
        g = np.random.default_rng(seed + 10).standard_normal(5)
        newton = -np.linalg.solve(B, g)
        radius = 0.4 * np.linalg.norm(newton)
        p = ball_constrained_minimizer(B, g, radius)
        assert np.linalg.norm(p) == pytest.approx(radius, rel=1e-12)
        # KKT: (B + lambda I) p = -g with one lambda > 0 in every coordinate
        shifts = -(g + B @ p) / p
        assert np.ptp(shifts) < 1e-8 * np.abs(shifts).max() and shifts.min() > 0
        reference = minimize(
            lambda q, g=g, B=B: g @ q + 0.5 * q @ B @ q,
            np.zeros(5),
            method="SLSQP",
            tol=1e-14,
            constraints=[{"type": "ineq", "fun": lambda q, r=radius: r**2 - q @ q}],
        ).x
        np.testing.assert_allclose(p, reference, atol=1e-6)
        # the interior case is the Newton step
        np.testing.assert_allclose(ball_constrained_minimizer(B, g, 2 * np.linalg.norm(newton)), newton, rtol=1e-12)
    with pytest.raises(ValueError, match="B: expected a positive definite matrix"):
        ball_constrained_minimizer(np.diag([1.0, -1.0]), [1.0, 1.0], 1.0)


def test_l1_ball_minimiser_against_slsqp():
    """The face-by-face minimiser of the experiment against SLSQP on the smooth reformulation w = u - v, u, v >= 0,
    sum(u + v) <= r, for centres inside and outside the ball."""
    rng = np.random.default_rng(4)
    for _ in range(6):
        A = _spd(2, int(rng.integers(100)))
        m = rng.uniform(-2.0, 2.0, 2)
        w = sm._l1_ball_minimiser(A, m, 1.0)
        reference = minimize(
            lambda z, A=A, m=m: 0.5 * (z[:2] - z[2:] - m) @ A @ (z[:2] - z[2:] - m),
            np.full(4, 0.1),
            method="SLSQP",
            tol=1e-14,
            bounds=[(0, None)] * 4,
            constraints=[{"type": "ineq", "fun": lambda z: 1.0 - z.sum()}],
        ).x
        np.testing.assert_allclose(w, reference[:2] - reference[2:], atol=1e-6)
        assert np.abs(w).sum() <= 1.0 + 1e-12
    np.testing.assert_array_equal(sm._l1_ball_minimiser(np.eye(2), np.array([0.2, -0.3]), 1.0), [0.2, -0.3])


def test_cauchy_point_achieves_the_bound():
    rng = np.random.default_rng(3)
    for seed in range(10):
        B, g = _spd(4, seed), rng.standard_normal(4)
        for radius in (0.01, 0.1, 1.0, 10.0):
            tau = min(radius / np.linalg.norm(g), (g @ g) / (g @ B @ g))
            p = -tau * g
            decrease = -(g @ p + 0.5 * p @ B @ p)
            bound = cauchy_decrease_bound(np.linalg.norm(g), radius, np.linalg.norm(B, 2))
            assert decrease >= bound - 1e-14


def test_ista_bounds_hold_on_a_small_lasso():
    rng = np.random.default_rng(0)
    X, y, alpha = rng.standard_normal((40, 8)), rng.standard_normal(40), 0.05
    L = np.linalg.eigvalsh(X.T @ X / 40).max()
    mu = np.linalg.eigvalsh(X.T @ X / 40).min()
    Xt, yt = torch.tensor(X), torch.tensor(y)
    w = torch.zeros(8, dtype=torch.float64)
    path = [w]
    for _ in range(3000):
        w = proximal_gradient_step(w, Xt.T @ (Xt @ w - yt) / 40, 1 / L, alpha)
        path.append(w)
    path = torch.stack(path).numpy()
    w_star = path[-1]

    def F(v: np.ndarray) -> float:
        return 0.5 * np.mean((X @ v - y) ** 2) + alpha * np.abs(v).sum()

    k = np.arange(1, 200)
    gaps = np.array([F(p) for p in path[1:200]]) - F(w_star)
    assert np.all(gaps <= ista_objective_bound(k, L, np.linalg.norm(w_star)) + 1e-15)
    distances = np.linalg.norm(path[:200] - w_star, axis=1)
    assert np.all(distances <= ista_distance_bound(np.arange(200), L, mu, np.linalg.norm(w_star)) + 1e-12)
    assert ista_objective_bound([4], L=2.0, initial_distance=1.0).item() == 0.25
    with pytest.raises(ValueError, match="mu"):
        ista_distance_bound([1], L=1.0, mu=2.0, initial_distance=1.0)


# ------------------------------------------------------------------------------------------ config
def test_config_validation():
    with pytest.raises(ValidationError, match="lasso_informative"):
        EXPERIMENT.make_config(lasso_features=4, lasso_informative=5)
    with pytest.raises(ValidationError, match="milestones"):
        EXPERIMENT.make_config(milestones=(200, 100))
    with pytest.raises(ValidationError, match="eta0"):
        EXPERIMENT.make_config(eta0=0.0)
    with pytest.raises(ValidationError, match="schedule_features"):
        EXPERIMENT.make_config(schedule_samples=8, schedule_features=8)


# ------------------------------------------------------------------------------------------ by construction
def test_schedules_are_the_rates_torch_schedulers_apply():
    """The schedule objects, as functions of t, against the learning rates `fit` takes its steps at under torch's
    LambdaLR (the same formula), ExponentialLR and MultiStepLR (their own rules): agreement to rounding."""
    lr_scheduler, T, eta0 = torch.optim.lr_scheduler, 300, 0.1
    cases = (
        (PowerDecay(20.0, 0.5), lambda o: lr_scheduler.LambdaLR(o, PowerDecay(20.0, 0.5))),
        (ExponentialDecay(0.99), lambda o: lr_scheduler.ExponentialLR(o, 0.99)),
        (PiecewiseConstant.multistep((100, 200), 0.1), lambda o: lr_scheduler.MultiStepLR(o, [100, 200], 0.1)),
    )
    for schedule, scheduler in cases:
        model = LinearModel(1, 1, bias=False)
        optimizer = torch.optim.SGD(model.parameters(), lr=eta0)
        zeros = (torch.zeros(1, 1), torch.zeros(1, 1))
        trained = fit(model, torch.nn.MSELoss(), zeros, optimizer, T, scheduler=scheduler(optimizer))
        applied = trained.metrics.query("name == 'lr'")["value"].to_numpy()
        np.testing.assert_allclose(applied, learning_rates(schedule, eta0, T), rtol=1e-12, atol=0)


def test_projected_iterates_never_leave_their_set(quick):
    bounds = {
        "l2 ball": (lambda x, y: np.sqrt(x**2 + y**2), 1.0),
        "l1 ball": (lambda x, y: np.abs(x) + np.abs(y), 1.0),
        "box": (lambda x, y: np.maximum(np.abs(x), np.abs(y)), 0.5),
    }
    metrics = quick.metrics
    for name, (size, bound) in bounds.items():
        x, y = (series(metrics, c, set=name)[1] for c in "xy")
        assert size(x[1:], y[1:]).max() <= bound + 1e-12, name


# ------------------------------------------------------------------------------------------ the experiment
def test_same_seed_same_numbers():
    small = {"schedule_steps": 20, "schedule_problems": 5, "lasso_steps": 50, "projection_steps": 20}
    small |= {"trust_region_iterations": 20}
    first = EXPERIMENT.measure(EXPERIMENT.make_config(**small), Context(torch.device("cpu")))
    second = EXPERIMENT.measure(EXPERIMENT.make_config(**small), Context(torch.device("cpu")))
    other = EXPERIMENT.measure(EXPERIMENT.make_config(seed=1, **small), Context(torch.device("cpu")))
    assert first.equals(second)
    assert not first.equals(other)


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """The quick config, measured once, re-checked from its stored metrics."""
    return assert_rechecks(EXPERIMENT, EXPERIMENT.make_config(), tmp_path_factory.mktemp("schedules_and_methods"))


def test_quick_run_passes_every_check_and_rechecks_from_stored_metrics(quick):
    failed = [f"{c.name}: {c.measured} vs {c.theory}" for c in quick.checks if not c.passed]
    assert not failed, failed
    assert len(quick.checks) == 17
    assert set(quick.figures) == {"schedules", "lasso_paths", "projected_gd", "newton_trust_region"}
    assert all(isinstance(fig, Figure) and fig.axes for fig in quick.figures.values())
    metrics = quick.metrics
    zeros = metrics[(metrics["name"] == "exact_zeros") & (metrics["method"] == "subgradient")]
    assert zeros["value"].iloc[1:].max() == 0


def test_checks_fail_when_the_measurements_are_off(quick):
    """The decaying schedules ending at the constant step's level; the power schedule's plateau twice its exact
    value; ISTA's last iterate 1e-5 off sklearn; projected GD's l2-ball path 1e-3 off the constrained minimiser; the
    trust region stopped 1e-7 from (1, 1): those checks fail."""
    config, names = EXPERIMENT.make_config(), [c.name for c in quick.checks]
    theory, decay = names[0], names[1]

    def failed(metrics) -> set[str]:
        return {c.name for c in EXPERIMENT.checks(metrics, config) if not c.passed}

    metrics = quick.metrics.copy()
    final = metrics["name"] == "final_sq_distance"
    constant = metrics.loc[final & (metrics["schedule"] == "constant"), "value"].to_numpy()
    for name in sm.SCHEDULES[1:]:
        metrics.loc[final & (metrics["schedule"] == name), "value"] = np.roll(constant, 1)  # the floor, reordered
    assert {theory, decay} <= failed(metrics)

    metrics = quick.metrics.copy()
    metrics.loc[final & (metrics["schedule"] == "power"), "value"] *= 2.0
    assert theory in failed(metrics)

    metrics = quick.metrics.copy()
    last = (metrics["name"] == "coefficient") & (metrics["method"] == "ista") & (metrics["step"] == config.lasso_steps)
    metrics.loc[last, "value"] += 1e-5
    l2 = (metrics["name"] == "x") & (metrics["set"] == "l2 ball") & (metrics["step"] > 0)
    metrics.loc[l2, "value"] += 1e-3
    tr = (metrics["name"] == "distance_to_minimiser") & (metrics["method"] == "trust region")
    metrics.loc[tr, "value"] += 1e-7
    assert {
        "lasso: max |ISTA - sklearn Lasso| over the coefficients",
        "projected GD, l2 ball: distance of the last iterate to the constrained minimiser",
        "projected GD, l2 ball: max_k ||w_k - w*|| / (0.9^k ||w_0 - w*||)",
        "trust region on Rosenbrock from (-1.2, 1): distance to the minimiser (1, 1)",
    } <= failed(metrics)
