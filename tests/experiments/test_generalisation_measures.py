"""generalisation-measures: the KL and the PAC-Bayes bound against their definitions, the norm-based margin bound
by hand, its Rademacher term against the exact complexity of a linear class, the bias-free augmented network against
the MLP, the norm measures against NumPy, the path norm against an explicit sum over paths, margins, perturbed
errors, training to the stopping criterion against one network trained alone, re-checking from stored metrics, a
quick run whose checks must all pass, and the premise and vacuity checks failing on corrupted metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from pydantic import ValidationError
from recheck import assert_rechecks

from tdlab.ensemble import StackedModels
from tdlab.ensemble.members import Members
from tdlab.experiments.base import Context
from tdlab.experiments.catalogue import generalisation_measures as gm
from tdlab.models import MLP
from tdlab.theory.generalisation_bounds import frobenius_rademacher, gaussian_kl, margin_bound, pac_bayes_bound


def test_gaussian_kl_against_torch_distributions():
    w, w0 = torch.randn(7, dtype=torch.float64), torch.randn(7, dtype=torch.float64)
    sigma = 0.3
    expected = (
        torch.distributions.kl_divergence(torch.distributions.Normal(w, sigma), torch.distributions.Normal(w0, sigma))
        .sum()
        .item()
    )
    assert float(gaussian_kl((w - w0).square().sum().item(), sigma)) == pytest.approx(expected, rel=1e-12)


def test_pac_bayes_bound_by_hand_and_validation():
    # 0.05 + sqrt((12 + ln(2 sqrt(400) / 0.1)) / 800)
    assert float(pac_bayes_bound(0.05, 12.0, 400, 0.1)) == pytest.approx(0.05 + math.sqrt((12 + math.log(400)) / 800))
    with pytest.raises(ValueError, match="delta"):
        pac_bayes_bound(0.1, 1.0, 10, 1.5)
    with pytest.raises(ValueError, match="empirical_error"):
        pac_bayes_bound(1.5, 1.0, 10)


def test_margin_bound_and_frobenius_rademacher_by_hand_and_validation():
    # 0.2 + 4 * 10 * 0.05 / 4 + 3 sqrt(ln(2 / 0.1) / 1000)
    expected = 0.2 + 0.5 + 3 * math.sqrt(math.log(20) / 1000)
    assert float(margin_bound(0.2, 4.0, 0.05, num_classes=10, m=500, delta=0.1)) == pytest.approx(expected)
    # (sqrt(2 ln 2 * 3) + 1) * 6 * sqrt(2 + 7) / 2
    assert float(frobenius_rademacher(6.0, [2.0, 7.0], depth=3)) == pytest.approx((math.sqrt(6 * math.log(2)) + 1) * 9)
    with pytest.raises(ValueError, match="rho"):
        margin_bound(0.1, 0.0, 0.1, num_classes=3, m=10)
    with pytest.raises(ValueError, match="num_classes"):
        margin_bound(0.1, 1.0, 0.1, num_classes=1, m=10)
    with pytest.raises(ValueError, match="margin_loss"):
        margin_bound(1.5, 1.0, 0.1, num_classes=3, m=10)
    with pytest.raises(ValueError, match="depth"):
        frobenius_rademacher(1.0, [1.0], depth=0)


def test_frobenius_rademacher_bounds_the_exact_complexity_of_a_linear_class():
    """Depth 1: sup over ||w|| <= M of (1/m) sum_i s_i w.x_i is M ||sum_i s_i x_i|| / m exactly; its mean over random
    signs must lie below the bound, and within about the factor sqrt(2 ln 2) + 1 of it (by Jensen,
    E||sum_i s_i x_i|| <= sqrt(sum_i ||x_i||^2), nearly an equality in 7 dimensions)."""
    rng = np.random.default_rng(0)
    X, M = rng.normal(size=(50, 7)), 3.0
    signs = rng.choice([-1.0, 1.0], size=(20_000, 50))
    exact = M * np.linalg.norm(signs @ X, axis=1).mean() / 50
    bound = float(frobenius_rademacher(M, (X**2).sum(1), depth=1))
    assert exact <= bound <= (math.sqrt(2 * math.log(2)) + 1) * exact * 1.1


def test_augmented_network_is_the_mlp_without_biases():
    """[W1 b1; 0 1] and [W2 b2] on (x, 1) compute the MLP's scores; the norm product is ||[W1 b1; 0 1]||_F times the
    readout's largest row norm; the norm bound is the margin bound at the returned rho, and no rho up to the largest
    training margin gives less."""
    model = MLP(4, 3, width=5, depth=1, seed=0, bias_init_std=0.5).double()
    p = {k: v.detach() for k, v in model.named_parameters()}
    W1, b1, W2, b2 = p["hidden.0.linear.weight"], p["hidden.0.linear.bias"], p["readout.weight"], p["readout.bias"]
    A1 = torch.cat([torch.cat([W1, b1[:, None]], 1), torch.eye(5, dtype=W1.dtype)[-1:]], 0)
    A2 = torch.cat([W2, b2[:, None]], 1)
    X = torch.randn(40, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    augmented = torch.cat([X, torch.ones(40, 1, dtype=X.dtype)], 1)
    with torch.no_grad():
        outputs = model(X)
    torch.testing.assert_close(torch.relu(augmented @ A1.T) @ A2.T, outputs)
    expected = torch.linalg.matrix_norm(A1).item() * A2.norm(dim=1).max().item()
    assert gm.augmented_norm_product(p) == pytest.approx(expected, rel=1e-12)
    labels = outputs.argmax(1)
    value, rho = gm.norm_bound(p, outputs, labels, X, delta=0.05)
    complexity = frobenius_rademacher(expected, (augmented**2).sum(1).numpy(), depth=2)
    gamma = gm.margins(outputs, labels).numpy()
    for r in (*np.linspace(1e-3, 1, 200) * gamma.max(), rho):
        loss = np.clip(1 - gamma / r, 0, 1).mean()
        assert value <= float(margin_bound(loss, r, complexity, 3, 40, 0.05)) + 1e-12
    assert value == pytest.approx(float(margin_bound(np.clip(1 - gamma / rho, 0, 1).mean(), rho, complexity, 3, 40)))


def test_norm_measures_against_numpy():
    model = MLP(5, 3, width=6, depth=2, seed=0)
    params = {k: v.detach() for k, v in model.named_parameters()}
    weights = [v.numpy() for k, v in params.items() if k.endswith("weight")]
    out = gm.norm_measures(params, margin=0.4)
    assert out["spectral"] == pytest.approx(sum(2 * np.log(np.linalg.norm(w, 2)) for w in weights), rel=1e-5)
    assert out["frobenius"] == pytest.approx(sum(2 * np.log(np.linalg.norm(w)) for w in weights), rel=1e-5)
    assert out["spectral_over_margin"] == pytest.approx(out["spectral"] - 2 * np.log(0.4))


def test_path_norm_is_the_sum_over_paths():
    model = MLP(3, 2, width=4, depth=1, seed=1, bias_init_std=0.5).double()
    p = {k: v.detach() for k, v in model.named_parameters()}
    W1, b1, W2, b2 = p["hidden.0.linear.weight"], p["hidden.0.linear.bias"], p["readout.weight"], p["readout.bias"]
    total = 0.0
    for c in range(2):
        total += b2[c] ** 2  # the path from the readout's bias
        for j in range(4):
            total += W2[c, j] ** 2 * b1[j] ** 2  # through hidden unit j from its bias
            total += sum(W2[c, j] ** 2 * W1[j, k] ** 2 for k in range(3))  # from input k
    assert gm.path_norm(model, p) == pytest.approx(math.log(total.item()), rel=1e-12)


def test_margins_and_perturbed_errors():
    outputs = torch.tensor([[2.0, 5.0, 1.0], [0.0, -1.0, 3.0]])
    assert gm.margins(outputs, torch.tensor([1, 0])).tolist() == [3.0, -3.0]
    model = MLP(4, 3, width=8, depth=1, seed=2).double()
    params = {k: v.detach() for k, v in model.named_parameters()}
    X = torch.randn(50, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    labels = model(X).argmax(1)
    errors = gm.perturbed_errors(model, params, X, labels, np.array([1e-9, 100.0]), 16, torch.Generator())
    assert errors[0] == 0.0  # a negligible perturbation changes no prediction
    assert errors[1] > 0.3  # a huge one scrambles them


def test_config_validation():
    with pytest.raises(ValidationError, match="sigma_grid"):
        gm.GeneralisationMeasuresConfig(sigma_grid=(1.0, 0.1, 10))
    with pytest.raises(ValidationError, match="noise_fractions"):
        gm.GeneralisationMeasuresConfig(noise_fractions=(0.5, 1.0))


def test_each_network_is_taken_at_its_first_step_below_the_stopping_loss():
    """Two networks trained together: each one's parameters are those of the same network trained alone by torch's
    SGD with momentum, at the first step whose full-batch cross-entropy is <= stop_loss."""
    g = torch.Generator().manual_seed(0)
    X, labels = torch.randn(30, 4, generator=g), torch.randint(3, (30, 2), generator=g)
    config = gm.GeneralisationMeasuresConfig(stop_loss=0.3, max_steps=400)
    members = Members(StackedModels.of([MLP(4, 3, width=16, depth=1, seed=s) for s in range(2)]))
    taken, stopped = gm.train_to_criterion(members, X, labels, config)
    for k in range(2):
        model = MLP(4, 3, width=16, depth=1, seed=k)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        step = 0
        while torch.nn.functional.cross_entropy(model(X), labels[:, k]).item() > 0.3:
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(X), labels[:, k]).backward()
            optimizer.step()
            step += 1
        assert stopped[k] == step > 0
        for name, p in model.named_parameters():
            torch.testing.assert_close(taken[name][k], p.detach(), rtol=0, atol=1e-6)


def test_checks_and_figures_come_from_the_stored_metrics(tmp_path):
    small = {"n_train": 60, "widths": (8, 16), "seeds": 1, "max_steps": 200, "sigma_grid": (1e-3, 1.0, 5)}
    result = assert_rechecks(gm.EXPERIMENT, gm.EXPERIMENT.make_config(**small, mc_samples=2), tmp_path)
    assert len(result.checks) == 14 and set(result.figures) == {"measures_vs_gap", "pac_bayes_bound"}


@pytest.fixture(scope="module")
def quick():
    experiment = gm.EXPERIMENT
    return experiment.run(experiment.make_config(), Context(torch.device("cpu")))


def test_quick_run_passes_every_check(quick):
    result = quick
    failed = [f"{c.name}: {c.measured} vs {c.theory}" for c in result.checks if not c.passed]
    assert not failed, failed
    assert len(result.checks) == 14
    assert set(result.figures) == {"measures_vs_gap", "pac_bayes_bound"}
    assert all(isinstance(f, Figure) for f in result.figures.values())
    taus = result.metrics[result.metrics["name"].str.startswith("kendall_tau_")]
    assert len(taus) == len(gm.MEASURES) and taus["value"].between(-1, 1).all()


def _failed(metrics, config):
    return [c.name.split(" (")[0] for c in gm.checks(metrics, config) if not c.passed]


def _scaled(metrics, name, factor, noise_fraction=0.0):
    rows = (metrics["name"] == name) & (metrics["noise_fraction"] == noise_fraction)
    return metrics.assign(value=metrics["value"].where(~rows, factor * metrics["value"]))


def test_premise_and_vacuity_checks_fail_on_corrupted_metrics(quick):
    """True-label networks that do not generalise fail the premise; bounds on them below 1 fail the vacuity
    checks; each corruption turns its own check to FAIL."""
    config, metrics = gm.EXPERIMENT.make_config(), quick.metrics
    assert not _failed(metrics, config)
    assert _failed(_scaled(metrics, "test_accuracy", 0.6), config) == [
        "premise: true labels, test error small"
    ]  # accuracy 0.9 -> 0.54: error 0.46
    assert _failed(_scaled(metrics, "pac_bayes_bound", 0.5), config) == [
        "true labels: PAC-Bayes bound at sigma' is vacuous"
    ]
    assert _failed(_scaled(metrics, "norm_bound", 1e-3), config) == [
        "true labels: Frobenius-norm margin bound is vacuous"
    ]
