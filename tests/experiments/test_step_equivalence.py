"""step-equivalence: the theory (the trust-region multiplier and its small-radius expansion, the error coefficient of
a one-step method) against independent solutions, each step rule against its defining argmin and the library's
routines, the distances against brute force, config validation, re-checking from stored metrics (the quick run,
whose checks must all pass), and wrong methods and corrupted metrics that must flip the checks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from pydantic import ValidationError
from recheck import assert_rechecks
from scipy.optimize import minimize, minimize_scalar

from tdlab.experiments.catalogue import step_equivalence as se
from tdlab.optim.projected import project_l2_ball
from tdlab.optim.test_functions import Rosenbrock
from tdlab.optim.trust_region import steihaug_cg
from tdlab.theory.gradient_flow import euler_error_coefficient
from tdlab.theory.small_steps import (
    across_curve,
    one_step_error,
    small_radius_angle,
    small_radius_multiplier,
)
from tdlab.theory.trust_region_subproblem import trust_region_step


# ------------------------------------------------------------------------------------------------ theory
def _sphere_minimum(H: np.ndarray, g: np.ndarray, radius: float) -> np.ndarray:
    """The model's minimiser on the circle |p| = radius in the plane, by a dense angle grid refined by Brent's
    method: an independent route (no secular equation)."""

    def model(theta: float) -> float:
        p = radius * np.array([np.cos(theta), np.sin(theta)])
        return float(g @ p + 0.5 * p @ H @ p)

    grid = np.linspace(0.0, 2 * np.pi, 20001)
    best = grid[np.argmin([model(t) for t in grid])]
    theta = minimize_scalar(model, bracket=(best - 1e-3, best, best + 1e-3), tol=1e-14).x
    return radius * np.array([np.cos(theta), np.sin(theta)])


def test_trust_region_step_meets_the_kkt_conditions():
    rng = np.random.default_rng(0)
    for _ in range(20):
        A = rng.standard_normal((4, 4))
        H, g, r = A @ A.T + 0.1 * np.eye(4), rng.standard_normal(4), rng.uniform(0.05, 2.0)
        p, lam = trust_region_step(H, g, r)
        np.testing.assert_allclose((H + lam * np.eye(4)) @ p, -g, atol=1e-10)
        assert lam >= 0 and (lam == 0 or abs(np.linalg.norm(p) - r) < 1e-12)


def test_trust_region_step_on_indefinite_models_against_the_circle():
    rng = np.random.default_rng(1)
    for _ in range(10):
        A = rng.standard_normal((2, 2))
        H, g, r = A + A.T, rng.standard_normal(2), rng.uniform(0.1, 2.0)
        if np.linalg.eigvalsh(H)[0] >= 0:
            H -= 2 * np.linalg.eigvalsh(H)[0] * np.eye(2) + np.eye(2)  # make it indefinite or negative definite
        p, lam = trust_region_step(H, g, r)
        np.testing.assert_allclose(p, _sphere_minimum(H, g, r), atol=1e-7)
        assert np.linalg.eigvalsh(H + lam * np.eye(2))[0] >= 0
        assert np.linalg.norm(p) == pytest.approx(r, rel=1e-12)


def test_trust_region_step_closed_forms_interior_and_hard_case():
    g = np.array([3.0, -4.0])
    for r in (0.1, 1.0, 4.0):  # H = I: (1 + lambda) r = |g|
        assert trust_region_step(np.eye(2), g, r).multiplier == pytest.approx(5.0 / r - 1.0, rel=1e-13)
    inside = trust_region_step(np.diag([2.0, 4.0]), g, 10.0)  # the Newton step (1.5, -1) lies inside
    assert inside.multiplier == 0 and inside.step.tolist() == [-1.5, 1.0]
    with pytest.raises(ValueError, match="hard case"):
        trust_region_step(np.diag([-1.0, 1.0]), np.array([0.0, 0.1]), 5.0)
    with pytest.raises(ValueError, match="symmetric"):
        trust_region_step(np.array([[1.0, 2.0], [0.0, 1.0]]), g, 1.0)
    with pytest.raises(ValueError, match="radius"):
        trust_region_step(np.eye(2), g, 0.0)


def test_small_radius_expansions_are_exact_for_identity_and_second_order_otherwise():
    g = np.array([3.0, 4.0])
    assert small_radius_multiplier(np.eye(2), g, 0.5) == pytest.approx(1.0 - 0.5 / 5.0)
    assert small_radius_angle(np.eye(2), g, 0.5) == 0.0
    rng = np.random.default_rng(2)
    A = rng.standard_normal((3, 3))
    H, g = A + A.T, rng.standard_normal(3)
    errors = []
    for r in (1e-3, 5e-4):
        p, lam = trust_region_step(H, g, r)
        angle = np.arccos(np.clip(-(p @ g) / (np.linalg.norm(p) * np.linalg.norm(g)), -1, 1))
        errors.append(
            (lam * r / np.linalg.norm(g) - small_radius_multiplier(H, g, r), angle - small_radius_angle(H, g, r))
        )
    ratio = np.abs(np.array(errors[0]) / np.array(errors[1]))  # remainders O(r^2): halving r divides them by 4
    np.testing.assert_allclose(ratio, 4.0, rtol=0.02)


def test_one_step_error_is_gradient_flows_euler_coefficient():
    """For F = -grad f (gradient descent), e(t) equals `tdlab.theory.gradient_flow.euler_error_coefficient`, an
    independent implementation."""
    f = se.Valley(10.0)
    start = np.array([-1.2, 1.0])
    path = one_step_error(
        lambda x: -f.gradient(x), lambda x: -f.hessian(x), start, lambda x: f.value(x) - 0.5, 100.0, points=201
    )
    x, e = euler_error_coefficient(f.gradient, f.hessian, start, path.time)
    np.testing.assert_allclose(path.x, x, atol=1e-8)
    np.testing.assert_allclose(path.e, e, atol=1e-7)
    assert f.value(path.x[-1]) == pytest.approx(0.5, abs=1e-9)


def test_one_step_error_vanishes_for_a_second_order_method_and_checks_its_input():
    """With D = J F / 2 (the second-order Taylor method) the first-order error coefficient is 0."""
    lam = np.array([1.0, 3.0])

    def field(x):
        return -lam * x

    def jacobian(x):
        return -np.diag(lam)

    path = one_step_error(
        field, jacobian, [1.0, 1.0], lambda x: x[0] - 0.5, 10.0, correction=lambda x: 0.5 * jacobian(x) @ field(x)
    )
    assert np.abs(path.e).max() < 1e-10 and path.duration == pytest.approx(np.log(2.0), rel=1e-9)
    with pytest.raises(ValueError, match="stop"):
        one_step_error(field, jacobian, [1.0, 1.0], lambda x: x[0] - 2.0, 10.0)
    with pytest.raises(RuntimeError, match="did not reach"):
        one_step_error(field, jacobian, [1.0, 1.0], lambda x: x[0] + 1.0, 10.0)


def test_euler_error_coefficient_predicts_a_real_trust_region_path():
    """The arc-length flow's e(t): the linear trust-region iterates at a small r sit at x(k r) + r e(k r)."""
    f = se.Valley(10.0)
    start, r = np.array([-1.2, 1.0]), 1e-3
    F, J, _ = se.continuous_limit("trust-region", f, 1.0)
    path = one_step_error(F, J, start, lambda x: f.value(x) - 1.0, 100.0, points=1001)
    steps = int(path.time[-1] / r) - 1
    w = start.copy()
    for _ in range(steps):
        w = se.trust_region_linear_step(w, f.gradient(w), r)
    x = np.array([np.interp(steps * r, path.time, path.x[:, i]) for i in range(2)])
    e = np.array([np.interp(steps * r, path.time, path.e[:, i]) for i in range(2)])
    assert np.linalg.norm((w - x) / r - e) < 0.02 * np.linalg.norm(e)


def test_across_curve_sign_and_shape():
    assert across_curve([[1.0, 2.0]], [[0.0, -3.0]]).tolist() == [-1.0]  # travelling +y: nu points to -x
    assert across_curve([[0.0, 1.0]], [[-2.0, 0.0]]).tolist() == [1.0]  # travelling +x: nu points to +y
    with pytest.raises(ValueError, match="shape"):
        across_curve(np.zeros((2, 3)), np.ones((2, 3)))


# ------------------------------------------------------------------------------------------------ steps
def test_valley_matches_the_library_rosenbrock():
    rng = np.random.default_rng(3)
    points = rng.uniform(-2, 2, (5, 2))
    torch_f, f = Rosenbrock(a=1.0, b=7.0), se.Valley(7.0)
    for method in ("value", "gradient", "hessian"):
        expected = getattr(torch_f, method)(torch.from_numpy(points)).numpy()
        np.testing.assert_allclose(getattr(f, method)(points), expected, rtol=1e-13)
        np.testing.assert_allclose(getattr(f, method)(points[0]), expected[0], rtol=1e-13)


def test_each_step_is_its_argmin_and_the_librarys_step():
    rng = np.random.default_rng(4)
    w, g, eta, r = rng.standard_normal(2), rng.standard_normal(2), 0.3, 0.2

    def argmin(objective, constraint=None):
        constraints = [] if constraint is None else [{"type": "ineq", "fun": constraint}]
        return minimize(objective, w, method="SLSQP", constraints=constraints, options={"ftol": 1e-14}).x

    proximal = argmin(lambda v: g @ (v - w) + (v - w) @ (v - w) / (2 * eta))
    np.testing.assert_allclose(se.proximal_step(w, g, eta), proximal, atol=1e-6)
    ball = lambda v: r**2 - (v - w) @ (v - w)  # noqa: E731
    np.testing.assert_allclose(se.trust_region_linear_step(w, g, r), argmin(lambda v: g @ (v - w), ball), atol=1e-6)
    steihaug = torch.from_numpy(w) + steihaug_cg(torch.from_numpy(g), torch.zeros_like, r).step
    np.testing.assert_allclose(se.trust_region_linear_step(w, g, r), steihaug.numpy(), atol=1e-15)
    for eta_ in (0.01, 0.3):  # inside the ball (a gradient step) and clipped
        library = project_l2_ball(torch.from_numpy(w - eta_ * g), r, center=torch.from_numpy(w)).numpy()
        np.testing.assert_allclose(se.projected_step(w, g, eta_, r), library, atol=1e-15)
    H = np.array([[3.0, 1.0], [1.0, 2.0]])
    quadratic = argmin(lambda v: g @ (v - w) + 0.5 * (v - w) @ H @ (v - w), ball)
    np.testing.assert_allclose(se.trust_region_quadratic_step(w, g, H, r), quadratic, atol=1e-6)
    with pytest.raises(ValueError, match="method"):
        se.step_rule("newton", se.Valley(1.0), 0.1, 1.0)


def test_descend_cuts_at_the_level_and_reports_an_unreached_one():
    f = se.Valley(10.0)
    path, steps, reached = se.descend(f, se.step_rule("proximal", f, 0.004, 1.0), np.array([-1.2, 1.0]), 1.0, 10000)
    assert reached and f.value(path[-1]) == pytest.approx(1.0, abs=1e-12) and len(path) - 2 < steps <= len(path) - 1
    assert all(f.value(p) > 1.0 for p in path[:-1])
    path, steps, reached = se.descend(f, lambda w: w, np.array([-1.2, 1.0]), 1.0, 5)
    assert not reached and steps == 5 and len(path) == 6


def test_polyline_distance_against_brute_force():
    rng = np.random.default_rng(5)
    t = np.sort(rng.uniform(0, 3, 300))
    polyline = np.stack([t, np.sin(2 * t)], axis=1)  # a curve with uneven vertices
    points = polyline[::7] + 0.05 * rng.standard_normal((43, 2))
    a, b = polyline[:-1][None], polyline[1:][None]
    ab, ap = b - a, points[:, None] - a
    s = np.clip((ap * ab).sum(2) / (ab * ab).sum(2), 0, 1)
    brute = np.linalg.norm(ap - s[..., None] * ab, axis=2).min(1)
    np.testing.assert_allclose(se.polyline_distance(points, polyline), brute, atol=1e-15)
    assert se.hausdorff(polyline, polyline + [0.0, 0.01]) == pytest.approx(0.01, rel=0.5)


def test_config_validation():
    with pytest.raises(ValidationError, match="level"):
        se.StepEquivalenceConfig(level=10.0)  # f(start) = 6.78
    with pytest.raises(ValidationError, match="halvings"):
        se.StepEquivalenceConfig(halvings=2)
    with pytest.raises(ValidationError, match="eta"):
        se.StepEquivalenceConfig(eta=0.0)


# ------------------------------------------------------------------------------------------------ the run
@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    config = se.EXPERIMENT.make_config()
    return config, assert_rechecks(se.EXPERIMENT, config, tmp_path_factory.mktemp("step_equivalence"))


def test_quick_run_passes_every_check(quick):
    _, result = quick
    failed = [f"{c.name}: {c.measured}" for c in result.checks if not c.passed]
    assert not failed, failed
    assert len(result.checks) == 12 and set(result.figures) == {"paths", "convergence"}
    assert (se.select(result.metrics, "reached")["value"] == 1.0).all()


def _verdicts(metrics, config):
    return [c.passed for c in se.checks(metrics, config)]


def _replaced(metrics, config, method, step_for):
    """The metrics with `method`'s paths (and their rows) recomputed by the step rule step_for(h)."""
    f, start, curve = se.Valley(config.b), np.asarray(config.start), se.flow_curve(metrics)
    kept = metrics[
        ~((metrics["method"] == method) & metrics["name"].isin(["path", "steps_to_level", "reached", "hausdorff"]))
    ]
    frames, paths = [kept], {}
    duration = se.value(metrics, "duration", method=method)
    for h in se.step_sizes(config, method):
        path, steps, reached = se.descend(f, step_for(h), start, config.level, int(np.ceil(3 * duration / h)) + 10)
        paths[h] = path
        frames.append(se.path_rows(method, h, path, steps, reached, curve, curve))
    return pd.concat(frames, ignore_index=True), paths


def _expect(failing):
    """The verdicts with the checks `failing` failed; the checks' order: (order, constant) x (proximal, trust
    region, projected, quadratic trust region), the two trust regions' pair, the clocks, the multiplier, the angle."""
    return [i not in failing for i in range(12)]


def test_the_l_infinity_trust_region_follows_another_curve(quick):
    """argmin of the linear model over the l-infinity ball, w - r sign(g): not the gradient-flow curve."""
    config, result = quick
    f = se.Valley(config.b)
    metrics, _ = _replaced(result.metrics, config, "trust-region", lambda h: lambda w: w - h * np.sign(f.gradient(w)))
    assert _verdicts(metrics, config) == _expect({2, 3, 9})


def test_a_projection_around_the_wrong_centre_fails(quick):
    """The gradient step projected onto the ball of radius clip eta around w_0 instead of w_t: stuck on that
    sphere."""
    config, result = quick
    f, start = se.Valley(config.b), np.asarray(config.start)

    def around_start(h):
        def step(w):
            offset = w - h * f.gradient(w) - start
            return start + offset * min(1.0, config.clip * h / np.linalg.norm(offset))

        return step

    metrics, _ = _replaced(result.metrics, config, "projected", around_start)
    assert _verdicts(metrics, config) == _expect({4, 5, 9})


def test_a_step_ten_percent_too_long_moves_the_constant_and_the_clock(quick):
    """The proximal step at 1.1 eta, labelled eta: the same curve (order still 1), another constant and clock."""
    config, result = quick
    f = se.Valley(config.b)
    metrics, _ = _replaced(result.metrics, config, "proximal", lambda h: se.step_rule("proximal", f, 1.1 * h, 1.0))
    assert _verdicts(metrics, config) == _expect({1, 9})


def test_a_quadratic_trust_region_that_drops_the_hessian_fails(quick):
    """The linear model's step in place of the quadratic model's: the paths coincide (pair distance 0), lambda =
    |g| / r exactly and the step lies along -g."""
    config, result = quick
    f = se.Valley(config.b)
    metrics, paths = _replaced(
        result.metrics, config, "trust-region-quadratic", lambda h: se.step_rule("trust-region", f, h, 1.0)
    )
    linear = {h: se.stored_path(metrics, "trust-region", h) for h in paths}
    pair = metrics["name"] == "pair_hausdorff"
    metrics.loc[pair, "value"] = [se.hausdorff(paths[h], linear[h]) for h in metrics.loc[pair, "h"]]
    assert _verdicts(metrics, config) == _expect({8})
    for point in metrics.loc[metrics["name"] == "multiplier", "point"].unique():
        g = se.series(metrics, "model_gradient", "coordinate", point=point)[1]
        chosen = (metrics["name"] == "multiplier") & (metrics["point"] == point)
        metrics.loc[chosen, "value"] = np.linalg.norm(g) / metrics.loc[chosen, "radius"]
        metrics.loc[(metrics["name"] == "step_angle") & (metrics["point"] == point), "value"] = 0.0
    assert _verdicts(metrics, config) == _expect({8, 10, 11})


def test_a_wrong_expansion_sign_fails(quick):
    """A multiplier of the model with H's sign flipped (lambda r / |g| = 1 + q r / |g|) fails the multiplier check
    alone."""
    config, result = quick
    metrics = result.metrics.copy()
    for point in metrics.loc[metrics["name"] == "multiplier", "point"].unique():
        g = se.series(metrics, "model_gradient", "coordinate", point=point)[1]
        H = se.table(metrics, "model_hessian", "row", "column", point=point).to_numpy()
        chosen = (metrics["name"] == "multiplier") & (metrics["point"] == point)
        radii = metrics.loc[chosen, "radius"].to_numpy()
        metrics.loc[chosen, "value"] = [trust_region_step(-H, g, r).multiplier for r in radii]
    assert _verdicts(metrics, config) == _expect({10})
