"""regularisation: SGDW against hand computation and torch.optim.SGD, the dropout theory against exact enumeration
of masks, the lasso optimality conditions on an orthogonal design, the training helper, config validation,
re-checking from stored metrics, and a quick run whose checks must all pass."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from pydantic import ValidationError
from recheck import assert_rechecks

from tdlab.experiments.base import Context
from tdlab.experiments.catalogue import regularisation as reg
from tdlab.models import LinearModel
from tdlab.optim.weight_decay import SGDW, sgdw_step
from tdlab.theory import regularisation as theory


# ------------------------------------------------------------------------------------------------- SGDW
def _quadratic_steps(optimizer_factory, steps: int = 5) -> torch.Tensor:
    A = torch.tensor([[2.0, 0.5], [0.5, 1.0]], dtype=torch.float64)
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    optimizer = optimizer_factory([w])
    for _ in range(steps):
        optimizer.zero_grad()
        (0.5 * w @ A @ w - w.sum()).backward()
        optimizer.step()
    return w.detach()


def test_sgdw_step_by_hand():
    # (1 - 0.1 * 2) * 1 - 0.1 * 0.5 = 0.75
    assert sgdw_step(torch.tensor([1.0]), torch.tensor([0.5]), lr=0.1, weight_decay=2.0).tolist() == [0.75]
    w = torch.nn.Parameter(torch.tensor([1.0, 2.0], dtype=torch.float64))
    optimizer = SGDW([w], lr=0.5, weight_decay=0.2, momentum=0.5)
    # step 1: b = g = [1, 0], w = 0.9 [1, 2] - 0.5 b; step 2: b = 0.5 [1, 0] + [1, 1], w = 0.9 [0.4, 1.8] - 0.5 b
    for grad, expected in (([1.0, 0.0], [0.4, 1.8]), ([1.0, 1.0], [-0.39, 1.12])):
        w.grad = torch.tensor(grad, dtype=torch.float64)
        optimizer.step()
        torch.testing.assert_close(w.detach(), torch.tensor(expected, dtype=torch.float64), rtol=0, atol=1e-12)


def test_sgdw_without_momentum_is_sgd_with_an_l2_penalty():
    decoupled = _quadratic_steps(lambda p: SGDW(p, lr=0.1, weight_decay=0.3))
    coupled = _quadratic_steps(lambda p: torch.optim.SGD(p, lr=0.1, weight_decay=0.3))
    torch.testing.assert_close(decoupled, coupled, rtol=0, atol=1e-14)


def test_sgdw_without_decay_is_torch_momentum_sgd_and_with_decay_differs():
    plain = _quadratic_steps(lambda p: SGDW(p, lr=0.1, momentum=0.9))
    torch.testing.assert_close(
        plain, _quadratic_steps(lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9)), rtol=0, atol=1e-14
    )
    decoupled = _quadratic_steps(lambda p: SGDW(p, lr=0.1, momentum=0.9, weight_decay=0.3))
    coupled = _quadratic_steps(lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=0.3))
    assert (decoupled - coupled).norm() > 1e-3


def test_sgdw_rejects_bad_hyperparameters():
    w = torch.nn.Parameter(torch.zeros(1))
    with pytest.raises(ValueError, match="lr"):
        SGDW([w], lr=0.0)
    with pytest.raises(ValueError, match="weight_decay"):
        SGDW([w], lr=0.1, weight_decay=-1.0)
    with pytest.raises(ValueError, match="momentum"):
        SGDW([w], lr=0.1, momentum=1.0)


# ------------------------------------------------------------------------------------------------- theory
def test_dropout_moments_by_enumeration():
    h, p = np.array([2.0, -1.0]), 0.3
    mean, var = theory.dropout_moments(h, p)
    values = np.array([0.0, 1.0 / (1 - p)])[:, None] * h  # mask 0 or 1
    weights = np.array([p, 1 - p])[:, None]
    np.testing.assert_allclose(mean, (weights * values).sum(axis=0))
    np.testing.assert_allclose(var, (weights * (values - mean) ** 2).sum(axis=0))
    plain_mean, plain_var = theory.dropout_moments(h, p, inverted=False)
    np.testing.assert_allclose(plain_mean, (1 - p) * h)
    np.testing.assert_allclose(plain_var, h**2 * p * (1 - p))
    with pytest.raises(ValueError, match="p"):
        theory.dropout_moments(h, 1.0)


def test_dropout_ridge_solution_minimises_the_exact_expected_loss():
    """Enumerate all 2^(n d) masks of a 2 x 2 problem: the expected loss is minimised by the closed form."""
    X = np.array([[1.0, 2.0], [0.5, -1.0]])
    y = np.array([1.0, 0.0])
    p = 0.4
    masks = list(itertools.product([0.0, 1.0], repeat=4))
    probs = np.array([np.prod([(1 - p) if m else p for m in mask]) for mask in masks])
    grams = np.zeros((2, 2))
    rhs = np.zeros(2)
    for mask, prob in zip(masks, probs, strict=True):
        Xm = X * np.reshape(mask, (2, 2)) / (1 - p)
        grams += prob * Xm.T @ Xm
        rhs += prob * Xm.T @ y
    np.testing.assert_allclose(theory.dropout_ridge_solution(X, y, p), np.linalg.solve(grams, rhs), atol=1e-12)


def test_l2_equivalent_and_lasso_conditions():
    assert theory.l2_equivalent_of_decoupled_decay(0.01, 0.1) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="decay"):
        theory.l2_equivalent_of_decoupled_decay(1.5, 0.1)
    # orthogonal design: the lasso solution is the soft-thresholded least-squares solution
    X, y, lam = np.eye(3), np.array([3.0, 0.5, -2.0]), 1.0
    w = np.sign(y) * np.maximum(np.abs(y) - lam, 0.0)
    assert theory.lasso_optimality_violation(X, y, w, lam) == 0.0
    assert theory.lasso_optimality_violation(X, y, w + np.array([0.0, 0.1, 0.0]), lam) > 0.05
    assert theory.lasso_optimality_violation(X, y, 0.9 * w, lam) > 0.05


# --------------------------------------------------------------------------------------------- helpers
def test_path_by_hand_and_reproducible():
    X, y = torch.eye(2, dtype=torch.float64), torch.ones(2, 1, dtype=torch.float64)
    model = LinearModel(2, 1, bias=False).double()
    # one full-batch step from 0 on 1/4 ||w - 1||^2: w = lr * X^T y / n = [0.5, 0.5]
    np.testing.assert_allclose(
        reg._path(model, torch.optim.SGD(model.parameters(), lr=1.0), (X, y), 1), [[0, 0], [0.5, 0.5]]
    )
    X = torch.randn(6, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    runs = []
    for _ in range(2):
        model = LinearModel(3, 1, bias=False).double()
        runs.append(reg._path(model, torch.optim.SGD(model.parameters(), lr=0.1), (X, torch.ones(6, 1)), 10, 2, seed=3))
    assert runs[0].shape == (11, 3)
    np.testing.assert_array_equal(runs[0], runs[1])


def test_config_validation():
    with pytest.raises(ValidationError, match="sparsity"):
        reg.RegularisationConfig(d=4, sparsity=5)
    with pytest.raises(ValidationError, match="ridge_lams"):
        reg.RegularisationConfig(ridge_lams=(0.1, 0.0))
    with pytest.raises(ValidationError, match="dropout"):
        reg.RegularisationConfig(dropout=1.0)


# ----------------------------------------------------------------------------------------------- quick run
def test_checks_and_figures_come_from_the_stored_metrics(tmp_path):
    small = {"n": 40, "d": 10, "sparsity": 3, "ridge_steps": 50, "lasso_points": 4, "lasso_steps": 50}
    small |= {"mc_samples": 500, "units": 8, "gap_n": 20, "gap_features": 40, "gap_steps": 50, "gap_test": 50}
    config = reg.EXPERIMENT.make_config(**small, path_steps=30, path_batch=5)
    result = assert_rechecks(reg.EXPERIMENT, config, tmp_path)
    assert len(result.checks) == 7


def test_quick_run_passes_every_check_and_is_reproducible():
    experiment = reg.EXPERIMENT
    config = experiment.make_config()
    result = experiment.run(config, Context(torch.device("cpu")))
    failed = [f"{c.name}: {c.measured} vs {c.theory}" for c in result.checks if not c.passed]
    assert not failed, failed
    assert len(result.checks) == 7
    assert set(result.figures) == {"l2_and_l1", "dropout", "weight_decay_forms"}
    assert all(isinstance(f, Figure) for f in result.figures.values())
    dropout = [c for c in result.checks if "expected activation" in c.name][0]
    again = experiment.run(
        config.model_copy(update={"ridge_steps": 10, "lasso_steps": 10, "gap_steps": 10, "path_steps": 10}),
        Context(torch.device("cpu")),
    )
    assert [c for c in again.checks if "expected activation" in c.name][0].measured == dropout.measured
