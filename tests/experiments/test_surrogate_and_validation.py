"""surrogate-and-validation: the Gaussian-classes theory against Monte Carlo, the losses' bounds and the 0-1 loss's
zero gradient, the batched classifiers and ridge against plain formulas, the joint descent's lambda bound, config
validation, re-checking from stored metrics (the quick run, whose checks must all pass), wrong losses trained for
real, and corrupted metrics that must flip each check."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from recheck import assert_rechecks

from tdlab.experiments.base import Context
from tdlab.experiments.catalogue import surrogate_and_validation as sv
from tdlab.theory.classification import (
    bayes_classifier,
    bayes_error,
    linear_classifier_error,
    mahalanobis_distance,
)
from tdlab.theory.least_squares import ridge_primal
from tdlab.train.trainer import fit


# ------------------------------------------------------------------------------------------------- theory
def _problem(seed: int = 0):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((3, 3))
    return rng.standard_normal(3), rng.standard_normal(3), A @ A.T + 0.5 * np.eye(3)


def _monte_carlo_error(w, b, mean_pos, mean_neg, cov, n=400_000, seed=1):
    rng = np.random.default_rng(seed)
    y = rng.choice([1.0, -1.0], n)
    x = np.where(y[:, None] > 0, mean_pos, mean_neg) + rng.standard_normal((n, 3)) @ np.linalg.cholesky(cov).T
    return np.mean(np.sign(x @ w + b) != y)


def test_linear_classifier_error_matches_monte_carlo():
    mean_pos, mean_neg, cov = _problem()
    rng = np.random.default_rng(2)
    W, b = rng.standard_normal((4, 3)), rng.standard_normal(4)
    exact = linear_classifier_error(W, b, mean_pos, mean_neg, cov)
    sampled = [_monte_carlo_error(w, c, mean_pos, mean_neg, cov) for w, c in zip(W, b, strict=True)]
    np.testing.assert_allclose(exact, sampled, atol=4 * math.sqrt(0.25 / 400_000))


def test_bayes_classifier_attains_the_bayes_error_and_nothing_beats_it():
    mean_pos, mean_neg, cov = _problem(3)
    w, b = bayes_classifier(mean_pos, mean_neg, cov)
    B = bayes_error(mean_pos, mean_neg, cov)
    assert linear_classifier_error(w, np.float64(b), mean_pos, mean_neg, cov) == pytest.approx(B, rel=1e-12)
    assert _monte_carlo_error(w, b, mean_pos, mean_neg, cov) == pytest.approx(B, abs=4 * math.sqrt(0.25 / 400_000))
    rng = np.random.default_rng(4)
    others = w + 0.3 * rng.standard_normal((200, 3)) * np.linalg.norm(w)
    assert linear_classifier_error(others, b + rng.standard_normal(200), mean_pos, mean_neg, cov).min() > B
    # the error depends only on the direction and the threshold relative to |w|: scaling (w, b) changes nothing
    assert linear_classifier_error(7 * w, np.float64(7 * b), mean_pos, mean_neg, cov) == pytest.approx(B)
    gap = mean_pos - mean_neg
    assert mahalanobis_distance(mean_pos, mean_neg, cov) == pytest.approx(math.sqrt(gap @ np.linalg.solve(cov, gap)))


def test_theory_rejects_bad_input():
    with pytest.raises(ValueError, match="covariance"):
        bayes_error([1.0, 0.0], [0.0, 0.0], [[1.0, 2.0], [2.0, 1.0]])  # not positive definite
    with pytest.raises(ValueError, match="mean_pos, mean_neg"):
        bayes_error([1.0, 0.0], [0.0], np.eye(2))
    with pytest.raises(ValueError, match="w, b"):
        linear_classifier_error([[1.0, 0.0]], [0.0, 1.0], [1.0, 0.0], [0.0, 0.0], np.eye(2))


# ------------------------------------------------------------------------------------------------- losses
def test_convex_surrogates_bound_the_zero_one_loss():
    m = torch.linspace(-5, 5, 10_001, dtype=torch.float64)
    assert torch.all(sv.logistic_bits(m) >= sv.zero_one(m) - 1e-15)
    assert torch.all(sv.hinge(m) >= sv.zero_one(m))
    assert float(sv.logistic_bits(torch.zeros(1, dtype=torch.float64))) == pytest.approx(1.0)  # log2 2 = 1


def test_the_zero_one_loss_has_a_zero_gradient_and_gd_on_it_never_moves():
    z = sv.sample_classes(sv.gaussian_classes(sv.EXPERIMENT.make_config()), 64, (), torch.Generator().manual_seed(0))
    w = torch.randn(5, dtype=torch.float64, requires_grad=True)
    sv.zero_one(z @ w).mean().backward()
    assert torch.count_nonzero(w.grad) == 0
    start = torch.randn(3, 5, dtype=torch.float64)
    model = sv.LinearClassifiers(start, batch_dims=0)
    objective = lambda margins, mask: (sv.zero_one(margins) * mask).sum()  # noqa: E731
    fit(model, objective, (z, torch.full((64, 3), 1 / 64)), torch.optim.SGD(model.parameters(), lr=10.0), 50)
    assert torch.equal(model.weight.detach(), start)


def test_the_smoothed_zero_one_loss_is_not_convex():
    """sigmoid(-m / tau) is concave for m < 0: its second derivative is negative there and a midpoint lies above
    the chord."""
    f = sv.smoothed_zero_one(0.5)
    assert torch.func.grad(torch.func.grad(f))(torch.tensor(-1.0)) < 0
    a, b = torch.tensor(-2.0), torch.tensor(0.0)
    assert f((a + b) / 2) > (f(a) + f(b)) / 2


# ------------------------------------------------------------------------------------------------- pieces
def test_problem_has_the_configured_distance_and_a_bayes_direction_off_the_mean():
    config = sv.EXPERIMENT.make_config()
    mean_pos, mean_neg, cov = sv.gaussian_classes(config)
    assert mahalanobis_distance(mean_pos, mean_neg, cov) == pytest.approx(config.mahalanobis)
    assert np.linalg.cond(cov) == pytest.approx(config.condition)
    w, _ = bayes_classifier(mean_pos, mean_neg, cov)
    gap = mean_pos - mean_neg
    assert math.degrees(math.acos(w @ gap / np.linalg.norm(w) / np.linalg.norm(gap))) > 30


def test_batched_classifiers_give_each_classifier_its_own_examples():
    g = torch.Generator().manual_seed(0)
    z, W = torch.randn(7, 2, 4, generator=g), torch.randn(2, 3, 4, generator=g)
    margins = sv.LinearClassifiers(W, batch_dims=1)(z)
    assert margins.shape == (7, 2, 3)
    for s in range(2):
        for k in range(3):
            torch.testing.assert_close(margins[:, s, k], z[:, s] @ W[s, k])


def test_ridge_solutions_match_the_primal_formula():
    g = torch.Generator().manual_seed(0)
    X, y = (
        torch.randn(2, 10, 15, generator=g, dtype=torch.float64),
        torch.randn(2, 10, generator=g, dtype=torch.float64),
    )
    lams = torch.tensor([0.01, 1.0], dtype=torch.float64)
    W = sv.ridge_solutions(X, y, lams)
    for s in range(2):
        for k, lam in enumerate(lams.tolist()):
            expected = ridge_primal(X[s].numpy() / math.sqrt(10), y[s].numpy() / math.sqrt(10), lam)
            np.testing.assert_allclose(W[s, k].numpy(), expected, rtol=1e-9, atol=1e-12)


def test_joint_descent_lambda_falls_below_its_bound():
    """On (w, s = log lambda), s <- s - eta lambda |w|^2, so 1/lambda_T >= 1/lambda_0 + eta sum_t |w_t|^2 (e^-x <=
    1/(1 + x)): lambda falls at every step and at least like 1/t."""
    g = torch.Generator().manual_seed(0)
    X, y = (
        torch.randn(20, 1, 30, generator=g, dtype=torch.float64),
        torch.randn(20, 1, generator=g, dtype=torch.float64),
    )
    model, eta = sv.JointRidge(1, 30, 2.0), 0.02
    lams, norms = [], []

    def keep(step: int, _: float) -> None:
        lams.append(float(model.log_lam.detach().exp()))

    objective = lambda out, target: (out - target).square().mean(dim=0).sum() + model.penalty()  # noqa: E731

    def norm_before_step(step: int, _: float) -> None:
        norms.append(float(model.w.detach().square().sum()))

    norms.append(0.0)
    fit(model, objective, (X, y), torch.optim.SGD(model.parameters(), lr=eta), 200, callbacks=[keep, norm_before_step])
    assert np.all(np.diff([2.0, *lams]) <= 0)
    assert 1 / lams[-1] >= 1 / 2.0 + eta * sum(norms[:200]) - 1e-9


def test_config_validation():
    with pytest.raises(ValidationError, match="sizes"):
        sv.SurrogateAndValidationConfig(sizes=(800, 200))
    with pytest.raises(ValidationError, match="features"):
        sv.SurrogateAndValidationConfig(examples=100, features=101)
    with pytest.raises(ValidationError, match="lambdas"):
        sv.SurrogateAndValidationConfig(lambdas=(1.0, 0.1, 10))
    with pytest.raises(ValidationError, match="seeds"):
        sv.SurrogateAndValidationConfig(seeds=5)


# ------------------------------------------------------------------------------------------------- the run
@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    config = sv.EXPERIMENT.make_config()
    return config, assert_rechecks(sv.EXPERIMENT, config, tmp_path_factory.mktemp("surrogate_and_validation"))


def test_quick_run_passes_every_check(quick):
    _, result = quick
    failed = [f"{c.name}: {c.measured} ({c.detail})" for c in result.checks if not c.passed]
    assert not failed, failed
    assert len(result.checks) == 10 and set(result.figures) == {"surrogates", "validation"}


def test_gd_on_the_zero_one_loss_stays_at_its_start(quick):
    _, result = quick
    table = result.metrics.query("name == 'start_error' and loss == 'zero_one'").pivot(
        index="step", columns="start", values="value"
    )
    assert (table.nunique() == 1).all() and table.iloc[0].nunique() > 1  # each start stays; the starts differ


def _verdicts(metrics, config):
    return {c.name: c.passed for c in sv.checks(metrics, config)}


def _changed(result, config, change):
    metrics = result.metrics.copy()
    change(metrics)
    names = [c.name for c in result.checks]
    return [_verdicts(metrics, config)[n] for n in names]


def _where(metrics, name, **where):
    chosen = metrics["name"] == name
    for column, wanted in where.items():
        chosen &= metrics[column] == wanted
    return chosen


def test_checks_fail_on_corrupted_metrics(quick):
    config, result = quick
    n_max = max(config.sizes)
    last = result.metrics.query("name == 'error'")["step"].max()
    end = result.metrics.query("name == 'start_error'")["step"].max()

    def worse_logistic(m):  # logistic ends 0.01 above where it does, at every n
        m.loc[_where(m, "error", loss="logistic", step=last), "value"] += 0.01

    def plateau(m):  # the hinge's excess no longer falls with n: n_min's errors are n_max's, seeds shuffled
        small = _where(m, "error", loss="hinge", n=min(config.sizes), step=last)
        large = m.loc[_where(m, "error", loss="hinge", n=n_max, step=last), "value"].to_numpy()
        m.loc[small, "value"] = np.roll(large, 3) + 1e-6 * np.arange(len(large))

    def convex_spread(m):
        chosen = m.index[_where(m, "start_error", loss="logistic", step=end, start=0)]
        m.loc[chosen, "value"] += 1e-4

    def smoothed_like_logistic(m):
        final = m.loc[_where(m, "start_error", loss="logistic", step=end)].sort_values("start")["value"].to_numpy()
        chosen = _where(m, "start_error", loss="smoothed", step=end)
        m.loc[m.index[chosen][np.argsort(m.loc[chosen, "start"].to_numpy())], "value"] = final

    def lambda_stuck(m):  # the joint lambda 100x larger
        m.loc[_where(m, "joint_lambda"), "value"] *= 100

    def joint_as_good_as_validation(m):  # the joint descent ends 1% below the validation choice's risk
        summary = sv.ridge_summary(result.metrics)
        final = _where(m, "joint_risk", step=m.query("name == 'joint_risk'")["step"].max())
        m.loc[final, "value"] = summary.loc[m.loc[final, "seed"], "risk_val"].to_numpy() * 0.99

    def train_error_choice(m):  # "validation" that always prefers the smallest lambda, like the training error
        chosen = _where(m, "validation_mse")
        m.loc[chosen, "value"] = m.loc[chosen, "lam"]

    def risk_off(m):
        m.loc[_where(m, "risk"), "value"] *= 1.2

    def joint_off_its_interpolant(m):  # the joint descent's final risk 8% above its seed's minimum-norm fit
        m.loc[_where(m, "joint_risk", step=m.query("name == 'joint_risk'")["step"].max()), "value"] *= 1.08

    def flips(*failing):
        return [k not in failing for k in range(10)]

    expectations = {
        worse_logistic: flips(0),
        plateau: flips(1),
        convex_spread: flips(2),
        smoothed_like_logistic: flips(3),
        lambda_stuck: flips(4),
        joint_off_its_interpolant: flips(5),
        joint_as_good_as_validation: flips(5, 6, 7),
        train_error_choice: flips(7, 8),
        risk_off: flips(9),
    }
    for change, expected in expectations.items():
        assert _changed(result, config, change) == expected, change.__name__


SMALL = dict(
    sizes=(100, 400),
    seeds=6,
    steps=150,
    records=6,
    starts=3,
    start_steps=20,
    examples=20,
    features=40,
    validation=20,
    lambdas=(0.1, 10.0, 5),
    joint_steps=20,
)


@pytest.fixture(scope="module")
def small():
    config = sv.EXPERIMENT.make_config(**SMALL)
    return config, sv.EXPERIMENT.checks(sv.measure(config, Context(torch.device("cpu"))), config)[0]


@pytest.mark.parametrize(
    "wrong",
    [
        pytest.param(lambda m: sv.logistic_bits(-m), id="sign error"),
        pytest.param(lambda m: (-m).clamp(min=0.0), id="perceptron max(0, -m): flat at 0, not calibrated"),
    ],
)
def test_a_wrong_surrogate_trained_for_real_fails_the_bayes_check(small, monkeypatch, wrong):
    config, right = small
    monkeypatch.setitem(sv.SURROGATES, "hinge", wrong)
    broken = sv.EXPERIMENT.checks(sv.measure(config, Context(torch.device("cpu"))), config)[0]
    assert right.passed and not broken.passed, (right.measured, broken.measured)


def test_a_shifted_threshold_fails_the_bayes_check(small, monkeypatch):
    """Classifying by sign(w^T x + b - 1) instead of sign(w^T x + b)."""
    config, right = small
    errors = sv._test_errors
    monkeypatch.setattr(sv, "_test_errors", lambda p, classes: errors(p - np.eye(p.shape[-1])[-1], classes))
    broken = sv.EXPERIMENT.checks(sv.measure(config, Context(torch.device("cpu"))), config)[0]
    assert right.passed and not broken.passed, (right.measured, broken.measured)
