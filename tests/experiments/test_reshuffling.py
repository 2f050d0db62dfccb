"""reshuffling: the exact reshuffling theory against an independent moment iteration and against its small-step
expansion, the weighted loss against per-column SGD, config validation, re-checking from stored metrics (the quick
run, whose checks must all pass), and corrupted metrics that must flip the checks."""

from __future__ import annotations

from itertools import permutations

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from recheck import assert_rechecks

from tdlab.experiments.catalogue import reshuffling as rs
from tdlab.theory.sgd_noise import least_squares_sgd_stationary_mse


def _iterate_moments(X: np.ndarray, y: np.ndarray, eta: float, epochs: int) -> float:
    """E f - f* after `epochs` epochs of reshuffled SGD from w*, by propagating the exact mean and second moment
    of the error epoch by epoch, each epoch averaging the step-by-step maps over every permutation (loops, no
    linear solve): an independent route to the stationary value."""
    n, d = X.shape
    w_star = np.linalg.lstsq(X, y, rcond=None)[0]
    r = y - X @ w_star
    mean, second = np.zeros(d), np.zeros((d, d))
    orders = list(permutations(range(n)))
    for _ in range(epochs):
        new_mean, new_second = np.zeros(d), np.zeros((d, d))
        for order in orders:
            m, S = mean.copy(), second.copy()  # moments of e, propagated through this epoch's steps
            for i in order:
                K = np.eye(d) - eta * np.outer(X[i], X[i])
                g = eta * X[i] * r[i]
                S = K @ S @ K.T + np.outer(K @ m, g) + np.outer(g, K @ m) + np.outer(g, g)
                m = K @ m + g
            new_mean += m / len(orders)
            new_second += S / len(orders)
        mean, second = new_mean, new_second
    return 0.5 * float(np.sum((X.T @ X / n) * second))


def test_reshuffling_theory_against_an_epoch_by_epoch_moment_iteration():
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((4, 2)), rng.standard_normal(4)
    exact = rs.reshuffling_stationary_gap(X, y[:, None], 0.1)[0]
    assert exact > 0
    assert _iterate_moments(X, y, 0.1, 400) == pytest.approx(exact, rel=1e-9)


def test_small_steps_leading_order_is_the_epoch_drift():
    """As eta -> 0, E f - f* = eta^2 / (8 n^2) v^T H^-1 v, v = sum_i |x_i|^2 x_i r_i (the docstring's drift), and
    with rows of equal norm (v = 0) the order rises to 3."""
    rng = np.random.default_rng(1)
    X, Y = rng.standard_normal((5, 2)), rng.standard_normal((5, 3))
    n, H = 5, X.T @ X / 5
    residuals = Y - X @ np.linalg.lstsq(X, Y, rcond=None)[0]
    v = ((X**2).sum(axis=1)[:, None] * residuals).T @ X  # (3, d)
    drift = np.einsum("rd,rd->r", v, np.linalg.solve(H, v.T).T) / (8 * n**2)
    eta = 1e-4
    np.testing.assert_allclose(rs.reshuffling_stationary_gap(X, Y, eta) / eta**2, drift, rtol=3e-3)
    unit = X / np.linalg.norm(X, axis=1, keepdims=True)
    etas = np.array([1e-4, 2e-4, 4e-4])
    levels = np.array([rs.reshuffling_stationary_gap(unit, Y, e).mean() for e in etas])
    assert rs.slope(etas, levels) == pytest.approx(3.0, abs=0.01)


def test_reshuffling_stays_below_replacement_and_rejects_large_designs():
    rng = np.random.default_rng(2)
    X, y = rng.standard_normal((6, 2)), rng.standard_normal(6)
    smallest = np.linalg.eigvalsh(X.T @ X / 6)[0]
    for eta in (0.01, 0.1):
        # with replacement E f - f* = E e^T H e / 2 >= lambda_min(H) E|e|^2 / 2
        with_replacement_at_least = 0.5 * smallest * least_squares_sgd_stationary_mse(X, y, eta)
        assert 0 < rs.reshuffling_stationary_gap(X, y[:, None], eta)[0] < with_replacement_at_least
    with pytest.raises(ValueError, match="X"):
        rs.reshuffling_stationary_gap(rng.standard_normal((10, 2)), rng.standard_normal((10, 1)), 0.1)


def test_weighted_loss_gives_each_column_its_own_step():
    """One SGD step at lr 0.1 on weights (1, 3) equals steps 0.1 and 0.3 on each column's own least squares."""
    x, y = torch.tensor([[1.0, 2.0]], dtype=torch.float64), torch.tensor([[1.0, -1.0]], dtype=torch.float64)
    W = torch.zeros(2, 2, dtype=torch.float64, requires_grad=True)  # column c: weights of output c
    loss = rs.weighted_squared_error(torch.tensor([1.0, 3.0], dtype=torch.float64))(x @ W, y)
    loss.backward()
    stepped = W.detach() - 0.1 * W.grad
    for c, eta in ((0, 0.1), (1, 0.3)):
        expected = eta * x[0] * y[0, c]  # w - eta x (x^T w - y) from w = 0
        torch.testing.assert_close(stepped[:, c], expected)


def test_config_validation():
    with pytest.raises(ValidationError, match="n"):
        rs.ReshufflingConfig(n=10)
    with pytest.raises(ValidationError, match="etas"):
        rs.ReshufflingConfig(etas=(0.1, 0.2))
    with pytest.raises(ValidationError, match="burn_in"):
        rs.ReshufflingConfig(epochs=10, burn_in=10)
    with pytest.raises(ValidationError, match="n"):
        rs.ReshufflingConfig(n=3, d=3)


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    config = rs.EXPERIMENT.make_config()
    return config, assert_rechecks(rs.EXPERIMENT, config, tmp_path_factory.mktemp("reshuffling"))


def test_quick_run_passes_every_check(quick):
    _, result = quick
    failed = [f"{c.name}: {c.measured}" for c in result.checks if not c.passed]
    assert not failed, failed
    assert len(result.checks) == 6 and set(result.figures) == {"reshuffling"}


def _with(metrics, name, change, **where):
    out = metrics.copy()
    chosen = out["name"] == name
    for column, wanted in where.items():
        chosen &= out[column] == wanted
    out.loc[chosen, "value"] = change(out.loc[chosen])
    return out


def test_checks_fail_on_corrupted_metrics(quick):
    config, result = quick
    verdicts = lambda metrics: {c.name: c.passed for c in rs.checks(metrics, config)}  # noqa: E731
    names = [c.name for c in result.checks]
    # the samplers swapped: both slopes, both levels and the t-test fail
    swapped = result.metrics.copy()
    swapped["sampler"] = swapped["sampler"].map({"reshuffle": "replacement", "replacement": "reshuffle"})
    swapped.loc[swapped["name"] == "theory", "sampler"] = result.metrics.loc[
        result.metrics["name"] == "theory", "sampler"
    ]
    assert [verdicts(swapped)[n] for n in names] == [False, False, False, False, False, False]
    # with-replacement levels falling like eta^2 instead of eta: its slope fails, and only it and its level
    steeper = _with(
        result.metrics, "suboptimality", lambda rows: rows["value"] * rows["eta"] / 0.16, sampler="replacement"
    )
    assert [verdicts(steeper)[n] for n in names] == [False, True, True, True, False, True]
    # reshuffled levels 1.5x too high at every step: only its level check fails
    higher = _with(result.metrics, "suboptimality", lambda rows: rows["value"] * 1.5, sampler="reshuffle")
    assert [verdicts(higher)[n] for n in names] == [True, True, True, False, True, True]
