"""regularisation: SGDW against hand computation and torch.optim.SGD, the dropout theory against exact enumeration
of masks and against torch's nn.Dropout, the lasso optimality conditions on an orthogonal design, the experiment's
helpers (training path, stacked readouts, the scale-invariant nets), config validation, re-checking from stored
metrics, a quick run whose checks must all pass, and checks that fail on corrupted metrics."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from pydantic import ValidationError
from recheck import assert_rechecks
from scipy.stats import norm
from torch import nn

from tdlab.data import half_squared_error
from tdlab.experiments.base import Context
from tdlab.experiments.catalogue import regularisation as reg
from tdlab.models import LinearModel
from tdlab.optim.weight_decay import SGDW, sgdw_step
from tdlab.theory import regularisation as theory
from tdlab.train.trainer import fit


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


def test_inverted_dropout_keeps_the_expected_activation_of_torch_dropout():
    """nn.Dropout's mean over M masks is h within Monte Carlo error: max_j |mean_j - h_j| / (standard error
    |h_j| sqrt(p/(1-p)/M)) below the two-sided 0.001 Bonferroni quantile over the units; without the 1/(1-p) the
    mean is (1 - p) h, sqrt(M p (1 - p)) standard errors away."""
    p, units, M = 0.5, 64, 20000
    h = torch.tanh(torch.randn(units, generator=torch.Generator().manual_seed(0), dtype=torch.float64)) + 0.1
    with torch.random.fork_rng():
        torch.manual_seed(0)
        samples = nn.Dropout(p).train()(h.expand(M, -1))
    mean, var = theory.dropout_moments(h.numpy(), p)
    z = (samples.mean(dim=0).numpy() - mean) / np.sqrt(var / M)
    assert np.abs(z).max() < norm.isf(0.0005 / units)
    plain = (1 - p) * samples.mean(dim=0).numpy()
    assert np.abs((plain - mean) / np.sqrt(var / M)).min() > 50  # sqrt(M p (1 - p)) = 71 standard errors


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
        runs.append(reg._path(model, torch.optim.SGD(model.parameters(), lr=0.1), (X, torch.ones(6, 1)), 10))
    assert runs[0].shape == (11, 3)
    np.testing.assert_array_equal(runs[0], runs[1])


def test_stacked_readouts_train_each_problem_on_its_own():
    """Without dropout, 20 full-batch GD steps of the stacked readouts equal 20 steps of each problem alone."""
    generator = torch.Generator().manual_seed(2)
    phi = torch.randn(7, 3, 5, generator=generator, dtype=torch.float64)  # (n, S, F)
    y = torch.randn(7, 3, generator=generator, dtype=torch.float64)
    stacked = reg._Readouts(3, 5, 0.0, torch.float64)
    fit(stacked, half_squared_error, (phi, y), torch.optim.SGD(stacked.parameters(), 0.1), 20)
    for s in range(3):
        alone = LinearModel(5, 1, bias=False).double()
        w = reg._path(alone, torch.optim.SGD(alone.parameters(), 0.1), (phi[:, s], y[:, s, None]), 20)[-1]
        np.testing.assert_allclose(stacked.weight.detach()[s].numpy(), w, rtol=0, atol=1e-13)


def test_scale_invariant_nets_are_scale_invariant():
    """f(c W) = f(W) for every copy (up to the normalisation's eps), and the gradient of the loss is orthogonal to W."""
    nets = reg._ScaleInvariantNets(2, 4, 3, torch.Generator().manual_seed(0))
    x = torch.randn(16, 4, generator=torch.Generator().manual_seed(1))
    labels = torch.sign(torch.randn(16, generator=torch.Generator().manual_seed(2)))
    before = nets(x)
    with torch.no_grad():
        nets.weights[1].mul_(7.0)
    torch.testing.assert_close(nets(x), before, rtol=1e-3, atol=1e-4)  # the normalisation's eps = 1e-5 in the variance
    reg._logistic(nets(x), labels).backward()
    for weight, grad in ((w.detach(), w.grad) for w in nets.weights):
        assert abs(float((weight * grad).sum())) < 1e-6 * float(weight.norm() * grad.norm())


def test_config_validation():
    with pytest.raises(ValidationError, match="sparsity"):
        reg.RegularisationConfig(d=4, sparsity=5)
    with pytest.raises(ValidationError, match="ridge_lams"):
        reg.RegularisationConfig(ridge_lams=(0.1, 0.0))
    with pytest.raises(ValidationError, match="dropout"):
        reg.RegularisationConfig(dropout=1.0)
    with pytest.raises(ValidationError, match="adam_lrs"):
        reg.RegularisationConfig(adam_lrs=(0.01, 0.003))
    with pytest.raises(ValidationError, match="gap_seeds"):
        reg.RegularisationConfig(gap_seeds=4)


# ----------------------------------------------------------------------------------------------- quick run
def test_same_seed_same_numbers():
    small = {"ridge_steps": 10, "lasso_points": 3, "lasso_steps": 10, "gap_seeds": 5, "gap_features": 20}
    small |= {"gap_steps": 10, "gap_test": 20, "momentum_steps": 10, "adam_steps": 20}
    first, second, other = (
        reg.EXPERIMENT.measure(reg.EXPERIMENT.make_config(seed=seed, **small), Context(torch.device("cpu")))
        for seed in (0, 0, 1)
    )
    assert first.equals(second)
    assert not first.equals(other)


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """The quick config, measured once, re-checked from its stored metrics."""
    return assert_rechecks(reg.EXPERIMENT, reg.EXPERIMENT.make_config(), tmp_path_factory.mktemp("regularisation"))


def test_quick_run_passes_every_check(quick):
    failed = [f"{c.name}: {c.measured} vs {c.theory}" for c in quick.checks if not c.passed]
    assert not failed, failed
    assert len(quick.checks) == 10
    assert set(quick.figures) == {"l2_and_l1", "dropout", "weight_decay_forms"}
    assert all(isinstance(f, Figure) for f in quick.figures.values())


def _failed(metrics) -> set[str]:
    return {c.name for c in reg.EXPERIMENT.checks(metrics, reg.EXPERIMENT.make_config()) if not c.passed}


def test_checks_fail_on_corrupted_metrics(quick):
    """Dropout's test errors swapped with the plain ones; SGDW's limit taken for ridge(lambda'); AdamW's decay
    coupled to the lr (angles as sqrt(lr)); Adam + L2 at a fixed lambda' (angles as (lr^2 lambda')^(1/3)); and the
    theory's momentum term left out (every AdamW angle 4.4 times larger): each fails its checks."""
    config, names = reg.EXPERIMENT.make_config(), [c.name for c in quick.checks]
    dropout, _, sgdw, theory_, decoupled, coupled = names[3], names[4], names[6], names[7], names[8], names[9]

    metrics = quick.metrics.copy()
    test = metrics["name"] == "dropout/test_mse"
    plain, drop = test & (metrics["model"] == "plain"), test & (metrics["model"] == "dropout")
    metrics.loc[plain, "value"], metrics.loc[drop, "value"] = (
        metrics.loc[drop, "value"].to_numpy(),
        metrics.loc[plain, "value"].to_numpy(),
    )
    assert dropout in _failed(metrics)

    metrics = quick.metrics.copy()
    rows_ = (metrics["name"] == "momentum/distance") & (metrics["optimizer"] == "SGDW")
    shifted, plain_ = (rows_ & (metrics["target"] == t) for t in reg.MOMENTUM_TARGETS[::-1])
    metrics.loc[shifted, "value"] = metrics.loc[plain_, "value"].to_numpy()
    assert sgdw in _failed(metrics)

    lrs = np.asarray(config.adam_lrs)
    for form, scale, fails in (
        ("AdamW", np.sqrt(lrs / lrs[0]), {theory_, decoupled}),
        ("Adam + L2", (lrs / lrs[0]) ** (2 / 3), {coupled}),
        ("AdamW", np.full(len(lrs), np.sqrt(1.9 / 0.1)), {theory_}),
    ):
        metrics = quick.metrics.copy()
        for lr, factor in zip(lrs, scale, strict=True):
            chosen = (metrics["name"] == "adam/angle") & (metrics["form"] == form) & (metrics["lr"] == lr)
            metrics.loc[chosen, "value"] *= factor
        assert fails <= _failed(metrics), (form, scale)
