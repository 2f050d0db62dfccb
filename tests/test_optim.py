"""tdlab.optim: test functions against autograd, update rules against hand computation and torch.optim (as pure
rules and as the registered lecture optimisers), schedules against torch's schedulers, proximal / projected /
Newton / trust-region steps against their optimality conditions. The registry itself: tests/test_optim_registry.py."""

from __future__ import annotations

import itertools
import pickle
from functools import partial

import numpy as np
import pytest
import torch
from torch.func import grad, hessian

from tdlab.optim import (
    TEST_FUNCTIONS,
    ExponentialDecay,
    LectureAdagrad,
    LectureAdam,
    LectureMomentum,
    LectureNesterov,
    LectureRMSProp,
    PiecewiseConstant,
    PowerDecay,
    ProjectedGD,
    ProximalGD,
    Rosenbrock,
    adagrad_step,
    adam_step,
    backtracking,
    boundary_crossings,
    gd_step,
    get_test_function,
    learning_rates,
    momentum_step,
    nesterov_lookahead,
    nesterov_step,
    newton_cg,
    newton_direction,
    newton_step,
    project_box,
    project_l1_ball,
    project_l2_ball,
    projected_gradient_step,
    proximal_gradient_step,
    rmsprop_step,
    soft_threshold,
    steihaug_cg,
    subgradient_l1_step,
    trust_region,
    update_radius,
)

F64 = torch.float64


def _spd(d: int, seed: int, low: float = 1.0, high: float = 50.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=F64))
    return Q @ torch.diag(torch.logspace(np.log10(low), np.log10(high), d, dtype=F64)) @ Q.T


# ------------------------------------------------------------------------------------------ test functions
@pytest.mark.parametrize("name", sorted(TEST_FUNCTIONS))
def test_closed_form_gradient_and_hessian_match_autograd(name):
    f = get_test_function(name)
    points = torch.randn(6, 2, generator=torch.Generator().manual_seed(1), dtype=F64)
    for w in points:
        torch.testing.assert_close(f.gradient(w), grad(f.value)(w), rtol=1e-12, atol=1e-10)
        torch.testing.assert_close(f.hessian(w), hessian(f.value)(w), rtol=1e-12, atol=1e-10)
    # batched evaluation equals the pointwise one
    torch.testing.assert_close(f.gradient(points), torch.stack([f.gradient(w) for w in points]))
    assert f.hessian(points).shape == (6, 2, 2)
    v = torch.tensor([0.3, -1.1], dtype=F64)
    torch.testing.assert_close(f.hvp(points[0], v), f.hessian(points[0]) @ v)


@pytest.mark.parametrize("name", sorted(TEST_FUNCTIONS))
def test_critical_points(name):
    f = get_test_function(name)
    for point in f.minimizers:
        w = torch.tensor(point, dtype=F64)
        assert f.gradient(w).abs().max() < 1e-12
        assert torch.linalg.eigvalsh(f.hessian(w)).min() > 0
        assert f.value(w) == pytest.approx(f.minimum, abs=1e-14)
    for point in f.saddles:
        eigenvalues = torch.linalg.eigvalsh(f.hessian(torch.tensor(point, dtype=F64)))
        assert f.gradient(torch.tensor(point, dtype=F64)).abs().max() < 1e-12
        assert eigenvalues.min() < 0 < eigenvalues.max()
    assert (f.minimum is None) == (name == "saddle")


def test_test_function_errors():
    with pytest.raises(ValueError, match="name: expected one of"):
        get_test_function("himmelblau")
    with pytest.raises(ValueError, match="kappa"):
        get_test_function("quadratic", kappa=0.5)
    with pytest.raises(ValueError, match=r"w: expected a tensor of shape \(\.\.\., 2\)"):
        Rosenbrock().value(torch.zeros(3))


# ------------------------------------------------------------------------------------------ update rules
def test_rules_by_hand():
    w, g1, g2 = torch.tensor([1.0], dtype=F64), torch.tensor([2.0], dtype=F64), torch.tensor([-1.0], dtype=F64)
    # momentum: a1 = beta g1, a2 = (1 - beta) a1 + beta g2
    w1, s = momentum_step(w, g1, None, lr=0.5, beta=0.25)
    w2, s = momentum_step(w1, g2, s, lr=0.5, beta=0.25)
    a1, a2 = 0.25 * 2.0, 0.75 * 0.25 * 2.0 + 0.25 * -1.0
    assert w2.item() == pytest.approx(1.0 - 0.5 * a1 - 0.5 * a2, abs=1e-15)
    # adagrad: G = 4, then 5
    w1, s = adagrad_step(w, g1, None, lr=0.5, eps=1e-3)
    w2, s = adagrad_step(w1, g2, s, lr=0.5, eps=1e-3)
    assert w2.item() == pytest.approx(1.0 - 0.5 * 2 / (2 + 1e-3) + 0.5 / (np.sqrt(5) + 1e-3), abs=1e-15)
    # rmsprop: v1 = 0.1 * 4, v2 = 0.9 v1 + 0.1 * 1
    w1, s = rmsprop_step(w, g1, None, lr=0.5, rho=0.9, eps=1e-3)
    w2, s = rmsprop_step(w1, g2, s, lr=0.5, rho=0.9, eps=1e-3)
    v1, v2 = 0.4, 0.9 * 0.4 + 0.1
    assert w2.item() == pytest.approx(1.0 - 0.5 * 2 / (np.sqrt(v1) + 1e-3) + 0.5 / (np.sqrt(v2) + 1e-3), abs=1e-14)
    # adam: m2 = 0.9 * 0.1 * 2 + 0.1 * (-1), v2 = 0.99 * 0.01 * 4 + 0.01 * 1, bias corrections at t = 2
    w1, s = adam_step(w, g1, None, lr=0.5, betas=(0.9, 0.99), eps=1e-3)
    w2, s = adam_step(w1, g2, s, lr=0.5, betas=(0.9, 0.99), eps=1e-3)
    m2, v2 = 0.9 * 0.2 + 0.1 * -1.0, 0.99 * 0.04 + 0.01
    step1 = 0.5 * 1.0 / (1.0 + 1e-3 / 2)
    step2 = 0.5 * (m2 / (1 - 0.81)) / (np.sqrt(v2 / (1 - 0.99**2)) + 1e-3)
    assert s.step == 2
    assert w2.item() == pytest.approx(1.0 - step1 - step2, abs=1e-14)
    # Nesterov evaluates at the look-ahead point w - eta (1 - beta) a
    state = momentum_step(w, g1, None, lr=0.5, beta=0.25)[1]
    assert nesterov_lookahead(w, state, lr=0.5, beta=0.25).item() == pytest.approx(1.0 - 0.5 * 0.75 * 0.5)


def _quadratic_gradient(seed: int):
    A = _spd(5, seed)
    b = torch.randn(5, generator=torch.Generator().manual_seed(seed + 1), dtype=F64)
    return lambda w: A @ w - b


LECTURE = {
    "momentum": LectureMomentum,
    "nesterov": LectureNesterov,
    "adagrad": LectureAdagrad,
    "rmsprop": LectureRMSProp,
    "adam": LectureAdam,
}
RULES = {"momentum": momentum_step, "adagrad": adagrad_step, "rmsprop": rmsprop_step, "adam": adam_step}


@pytest.mark.parametrize(
    ("method", "lr", "hyper"),
    [
        ("gd", 0.03, {}),
        ("momentum", 0.2, {"beta": 0.1}),
        ("nesterov", 0.2, {"beta": 0.1}),
        ("adagrad", 0.5, {"eps": 1e-10}),
        ("rmsprop", 0.01, {"rho": 0.95, "eps": 1e-8}),
        ("adam", 0.05, {"betas": (0.8, 0.99), "eps": 1e-8}),
    ],
)
def test_reference_rules_match_torch_optim_and_the_lecture_optimizers(method, lr, hyper):
    """200 steps on a quadratic: the pure rule, its registered optimiser (the same rule on a parameter) and the
    torch.optim optimiser of `torch_equivalent` (SGD for gd) give the same iterates; for Nesterov, torch's and the
    lecture optimiser's parameters are the look-ahead points."""
    gradient = _quadratic_gradient(3)
    w = torch.randn(5, generator=torch.Generator().manual_seed(7), dtype=F64)
    p, q = w.clone().requires_grad_(True), w.clone().requires_grad_(True)
    if method == "gd":
        optimizer, lecture = torch.optim.SGD([p], lr=lr), torch.optim.SGD([q], lr=lr)
    else:
        optimizer, lecture = LECTURE[method].torch_equivalent([p], lr, **hyper), LECTURE[method]([q], lr, **hyper)
    state = None
    for _ in range(200):
        if method == "gd":
            w = gd_step(w, gradient(w), lr)
        elif method == "nesterov":
            w, state = nesterov_step(w, gradient(nesterov_lookahead(w, state, lr, **hyper)), state, lr, **hyper)
        else:
            w, state = RULES[method](w, gradient(w), state, lr, **hyper)
        for param, opt in ((p, optimizer), (q, lecture)):
            param.grad = gradient(param.detach())
            opt.step()
        expected = nesterov_lookahead(w, state, lr, **hyper) if method == "nesterov" else w
        torch.testing.assert_close(p.detach(), expected, rtol=0, atol=1e-12)
        torch.testing.assert_close(q.detach(), expected, rtol=0, atol=1e-12)
    if method == "nesterov":
        torch.testing.assert_close(lecture.state[q]["w"], w, rtol=0, atol=1e-12)  # the lecture's own iterate


def test_lecture_optimizers_keep_plain_state_and_resume_from_it():
    """The rule state lives in optimizer.state as tensors: a state_dict round trip continues the same iterates."""
    gradient = _quadratic_gradient(4)
    w = torch.randn(5, generator=torch.Generator().manual_seed(2), dtype=F64)
    for cls in LECTURE.values():
        a, b = w.clone().requires_grad_(True), w.clone().requires_grad_(True)
        first, second = cls([a], lr=0.05), cls([b], lr=0.05)
        for t in range(10):
            if t == 5:
                second.load_state_dict(pickle.loads(pickle.dumps(first.state_dict())))
                b.data.copy_(a.detach())
            for param, opt in ((a, first), (b, second)):
                param.grad = gradient(param.detach())
                opt.step()
        torch.testing.assert_close(a.detach(), b.detach(), rtol=0, atol=1e-15)


def test_rmsprop_epsilon_inside_and_outside_the_root():
    """Outside (torch, Hinton): g / (sqrt(v) + eps); inside (the lectures, Goodfellow et al. Alg. 8.5):
    g / sqrt(delta + v). With v = (1 - rho) g^2 = 0.04 and eps = 0.01: 0.2 + 0.01 against sqrt(0.05)."""
    w, g = torch.tensor([0.0], dtype=F64), torch.tensor([2.0], dtype=F64)
    outside, _ = rmsprop_step(w, g, None, lr=1.0, rho=0.99, eps=0.01)
    inside, _ = rmsprop_step(w, g, None, lr=1.0, rho=0.99, eps=0.01, eps_in_root=True)
    assert outside.item() == pytest.approx(-2.0 / (0.2 + 0.01), rel=1e-14)
    assert inside.item() == pytest.approx(-2.0 / np.sqrt(0.05), rel=1e-14)
    p = torch.zeros(1, dtype=F64, requires_grad=True)
    optimizer = LectureRMSProp([p], lr=1.0, eps=0.01, eps_in_root=True)
    p.grad = g.clone()
    optimizer.step()
    assert p.item() == pytest.approx(inside.item(), rel=1e-15)
    with pytest.raises(ValueError, match="eps_in_root"):
        LectureRMSProp.torch_equivalent([p], lr=1.0, eps_in_root=True)


def test_momentum_with_dampening_is_not_the_lecture_rule():
    """The tempting map lr = eta, momentum = dampening = 1 - beta is off by eta (1 - beta)(1 - (1 - beta)^t) / beta
    * g under a constant gradient g, as the module docstring derives (torch skips dampening on the first step)."""
    eta, beta, g = 0.1, 0.2, torch.tensor([1.0, -3.0], dtype=F64)
    w = torch.zeros(2, dtype=F64)
    p = w.clone().requires_grad_(True)
    optimizer = torch.optim.SGD([p], lr=eta, momentum=1 - beta, dampening=1 - beta)
    state = None
    for t in range(1, 30):
        w, state = momentum_step(w, g, state, eta, beta)
        p.grad = g.clone()
        optimizer.step()
        offset = eta * (1 - beta) * (1 - (1 - beta) ** t) / beta * g
        torch.testing.assert_close(w - p.detach(), offset, rtol=1e-12, atol=1e-14)


def test_rule_errors():
    w = torch.zeros(2)
    with pytest.raises(ValueError, match="lr: expected a finite number > 0"):
        gd_step(w, w, lr=0.0)
    with pytest.raises(ValueError, match="beta: expected a number in"):
        momentum_step(w, w, None, lr=0.1, beta=1.5)
    with pytest.raises(ValueError, match="beta: expected a number in"):
        momentum_step(w, w, None, lr=0.1, beta=0.0)
    with pytest.raises(ValueError, match=r"betas\[1\]"):
        adam_step(w, w, None, lr=0.1, betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="rho"):
        rmsprop_step(w, w, None, lr=0.1, rho=-0.1)
    with pytest.raises(ValueError, match="beta: expected a number in"):
        LectureMomentum.torch_equivalent([w.requires_grad_()], lr=0.1, beta=1.5)
    with pytest.raises(TypeError, match="beta"):
        LectureAdam([w], lr=0.1, beta=0.9)


# ------------------------------------------------------------------------------------------ schedules
def _torch_lrs(make, steps=60, eta0=0.3):
    p = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.SGD([p], lr=eta0)
    scheduler = make(optimizer)
    out = []
    for _ in range(steps):
        out.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return np.asarray(out)


def test_schedules_formulas_and_torch():
    t = np.arange(60)
    power = PowerDecay(t0=5.0, p=0.75)
    np.testing.assert_allclose(learning_rates(power, 0.3, 60), 0.3 / (1 + t / 5.0) ** 0.75, rtol=1e-15)
    lam = _torch_lrs(lambda o: torch.optim.lr_scheduler.LambdaLR(o, power))
    np.testing.assert_allclose(lam, 0.3 / (1 + t / 5.0) ** 0.75, rtol=1e-14)
    ours = learning_rates(ExponentialDecay(0.95), 0.3, 60)
    np.testing.assert_allclose(ours, 0.3 * 0.95**t, rtol=1e-14)
    np.testing.assert_allclose(ours, _torch_lrs(lambda o: torch.optim.lr_scheduler.ExponentialLR(o, 0.95)), rtol=1e-13)
    steps = PiecewiseConstant.multistep((10, 25, 40), gamma=0.5)
    np.testing.assert_allclose(
        learning_rates(steps, 0.3, 60),
        _torch_lrs(lambda o: torch.optim.lr_scheduler.MultiStepLR(o, [10, 25, 40], 0.5)),
        rtol=1e-14,
    )
    assert steps(9) == 1.0 and steps(10) == 0.5 and steps(59) == 0.125


def test_schedule_survives_lambdalr_state_dict():
    p = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.SGD([p], lr=1.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, PowerDecay(t0=2.0, p=1.0))
    restored = pickle.loads(pickle.dumps(scheduler.state_dict()))
    other = torch.optim.lr_scheduler.LambdaLR(torch.optim.SGD([p], lr=1.0), PowerDecay(t0=9.0, p=3.0))
    other.load_state_dict(restored)
    assert other.lr_lambdas[0](2) == pytest.approx(0.5)


def test_schedule_errors():
    with pytest.raises(ValueError, match="t0"):
        PowerDecay(t0=0.0, p=1.0)
    with pytest.raises(ValueError, match="gamma"):
        ExponentialDecay(1.5)
    with pytest.raises(ValueError, match="milestones: expected strictly increasing"):
        PiecewiseConstant((5, 5), (1.0, 0.1, 0.01))
    with pytest.raises(ValueError, match="factors: expected 3 values"):
        PiecewiseConstant((5, 10), (1.0, 0.1))


# ------------------------------------------------------------------------------------------ proximal
def test_soft_threshold_is_the_prox_of_l1():
    """prox minimises tau |w| + (w - u)^2 / 2; compare with a fine grid search per coordinate."""
    u = torch.tensor([-2.0, -0.3, 0.0, 0.4, 1.7], dtype=F64)
    tau = 0.5
    grid = torch.linspace(-3, 3, 600001, dtype=F64)
    brute = torch.stack([grid[torch.argmin(tau * grid.abs() + 0.5 * (grid - ui) ** 2)] for ui in u])
    torch.testing.assert_close(soft_threshold(u, tau), brute, rtol=0, atol=1e-5)
    assert (soft_threshold(u, tau)[1:4] == 0).all()


def test_proximal_optimizer_and_subgradient():
    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(30, 6, generator=g, dtype=F64), torch.randn(30, generator=g, dtype=F64)
    w = torch.zeros(6, dtype=F64, requires_grad=True)
    optimizer = ProximalGD([w], lr=0.1, l1=0.2)
    v = torch.zeros(6, dtype=F64)
    for _ in range(20):
        optimizer.zero_grad()
        (0.5 * ((X @ w - y) ** 2).mean()).backward()
        optimizer.step()
        v = proximal_gradient_step(v, X.T @ (X @ v - y) / 30, 0.1, 0.2)
        torch.testing.assert_close(w.detach(), v, rtol=0, atol=1e-14)
    s = subgradient_l1_step(torch.tensor([0.5, 0.0, -0.5], dtype=F64), torch.zeros(3, dtype=F64), lr=0.1, l1=1.0)
    torch.testing.assert_close(s, torch.tensor([0.4, 0.0, -0.4], dtype=F64))
    with pytest.raises(ValueError, match="l1: expected a finite number >= 0"):
        ProximalGD([w], lr=0.1, l1=-1.0)
    with pytest.raises(ValueError, match="lr"):
        ProximalGD([{"params": [w], "lr": -1.0}], lr=0.1)


# ------------------------------------------------------------------------------------------ projections
def _variational_inequality(u: torch.Tensor, p: torch.Tensor, extreme_points: list[torch.Tensor]) -> float:
    """max over the set's extreme points z of (u - p)^T (z - p): <= 0 iff p is the projection of u (the
    inequality is linear in z, so extreme points suffice for a polytope)."""
    return max(float((u - p) @ (z - p)) for z in extreme_points)


def test_l1_ball_projection_is_optimal():
    g = torch.Generator().manual_seed(4)
    d, r = 6, 1.5
    vertices = [s * r * torch.eye(d, dtype=F64)[i] for i in range(d) for s in (-1.0, 1.0)]
    for _ in range(20):
        u = 2 * torch.randn(d, generator=g, dtype=F64)
        p = project_l1_ball(u, r)
        assert float(p.abs().sum()) <= r + 1e-12
        assert _variational_inequality(u, p, vertices) <= 1e-12
    inside = torch.tensor([0.1, -0.2], dtype=F64)
    assert torch.equal(project_l1_ball(inside, 1.0), inside)


def test_box_and_l2_projections_are_optimal():
    g = torch.Generator().manual_seed(5)
    corners = [torch.tensor(c, dtype=F64) for c in itertools.product((-0.5, 1.0), repeat=3)]
    for _ in range(20):
        u = 2 * torch.randn(3, generator=g, dtype=F64)
        assert _variational_inequality(u, project_box(u, -0.5, 1.0), corners) <= 1e-12
        p = project_l2_ball(u, 0.7, center=torch.ones(3, dtype=F64))
        assert float(torch.linalg.vector_norm(p - 1)) <= 0.7 + 1e-12
        # the ball's optimality condition: u - p is a non-negative multiple of the outward normal p - c
        if float(torch.linalg.vector_norm(u - 1)) > 0.7:
            cross = torch.linalg.cross(u - p, p - 1)
            assert float(cross.abs().max()) < 1e-12 and float((u - p) @ (p - 1)) > 0
    with pytest.raises(ValueError, match="lower"):
        project_box(torch.zeros(2), 1.0, 0.0)


def test_projected_optimizer():
    w = torch.tensor([0.0, 0.0], dtype=F64, requires_grad=True)
    projection = partial(project_l2_ball, radius=1.0)
    optimizer = ProjectedGD([w], lr=0.5, projection=projection)
    v = w.detach().clone()
    target = torch.tensor([3.0, -1.0], dtype=F64)
    for _ in range(10):
        optimizer.zero_grad()
        (0.5 * ((w - target) ** 2).sum()).backward()
        optimizer.step()
        v = projected_gradient_step(v, v - target, 0.5, projection)
        torch.testing.assert_close(w.detach(), v)
    torch.testing.assert_close(w.detach(), target / target.norm(), rtol=0, atol=1e-3)
    with pytest.raises(ValueError, match="projection: expected one of l2_ball, l1_ball, box"):
        ProjectedGD([w], lr=0.1, projection=1.0)
    with pytest.raises(ValueError, match="lower: expected lower <= upper"):
        ProjectedGD([w], lr=0.1, projection="box", lower=1.0, upper=0.0)
    named = torch.tensor([0.0, 0.0], dtype=F64, requires_grad=True)
    by_name = ProjectedGD([named], lr=0.5, projection="l2_ball", radius=1.0)
    for _ in range(10):
        by_name.zero_grad()
        (0.5 * ((named - target) ** 2).sum()).backward()
        by_name.step()
    torch.testing.assert_close(named.detach(), w.detach(), rtol=0, atol=0)


# ------------------------------------------------------------------------------------------ Newton
def test_newton_direction_and_step():
    A = _spd(8, 2)
    b = torch.randn(8, generator=torch.Generator().manual_seed(3), dtype=F64)
    w0 = torch.zeros(8, dtype=F64)
    result = newton_direction(A @ w0 - b, lambda v: A @ v, forcing=0.0)
    torch.testing.assert_close(result.direction, torch.linalg.solve(A, b), rtol=0, atol=1e-10)
    assert not result.negative_curvature
    w1 = newton_step(w0, A @ w0 - b, lambda v: A @ v, forcing=0.0)
    torch.testing.assert_close(w1, torch.linalg.solve(A, b), rtol=0, atol=1e-10)
    # immediate negative curvature: steepest descent
    H = torch.diag(torch.tensor([-1.0, 2.0], dtype=F64))
    g = torch.tensor([1.0, 0.0], dtype=F64)
    indefinite = newton_direction(g, lambda v: H @ v)
    assert indefinite.negative_curvature
    torch.testing.assert_close(indefinite.direction, -g)


def test_backtracking_and_newton_cg():
    f = Rosenbrock()
    w = torch.tensor(f.start, dtype=F64)
    d = -f.gradient(w)
    alpha = backtracking(f.value, w, d, float(f.value(w)), float(f.gradient(w) @ d))
    assert float(f.value(w + alpha * d)) <= float(f.value(w)) + 1e-4 * alpha * float(f.gradient(w) @ d)
    assert float(f.value(w + 2 * alpha * d)) > float(f.value(w)) + 2e-4 * alpha * float(f.gradient(w) @ d)
    result = newton_cg(f.value, f.gradient, f.hvp, w, forcing=0.0)
    assert result.converged
    torch.testing.assert_close(result.w, torch.ones(2, dtype=F64), rtol=0, atol=1e-10)
    assert all(a == 1.0 for a in result.step_sizes[-5:])  # full steps near the minimiser


# ------------------------------------------------------------------------------------------ trust region
def test_boundary_crossings():
    z, d = torch.tensor([0.3, -0.2], dtype=F64), torch.tensor([1.0, 2.0], dtype=F64)
    low, high = boundary_crossings(z, d, radius=2.0)
    assert low < 0 < high
    for tau in (low, high):
        assert float(torch.linalg.vector_norm(z + tau * d)) == pytest.approx(2.0, rel=1e-14)


def _model(g, B, p):
    return float(g @ p + 0.5 * p @ B @ p)


def test_steihaug_cases():
    B = _spd(6, 9)
    g = torch.randn(6, generator=torch.Generator().manual_seed(10), dtype=F64)
    newton = -torch.linalg.solve(B, g)
    # interior: the (inexact) Newton step, with its model decrease reported correctly
    big = steihaug_cg(g, lambda v: B @ v, radius=10 * float(newton.norm()))
    assert big.termination == "converged"
    assert float(torch.linalg.vector_norm(B @ big.step + g)) <= min(0.5, float(g.norm())) * float(g.norm()) + 1e-12
    assert big.decrease == pytest.approx(-_model(g, B, big.step), rel=1e-10)
    # boundary: on the sphere, decreasing the model at least as much as the Cauchy point
    small = steihaug_cg(g, lambda v: B @ v, radius=0.1 * float(newton.norm()))
    assert small.termination == "boundary"
    assert float(small.step.norm()) == pytest.approx(0.1 * float(newton.norm()), rel=1e-12)
    assert small.decrease == pytest.approx(-_model(g, B, small.step), rel=1e-10)
    radius = 0.1 * float(newton.norm())
    cauchy = -min(radius / float(g.norm()), float(g @ g) / float(g @ B @ g)) * g
    assert small.decrease >= -_model(g, B, cauchy) - 1e-12
    # negative curvature along -g: the boundary crossing with the lower model value (here tau > 0)
    H = torch.diag(torch.tensor([1.0, -2.0], dtype=F64))
    g2 = torch.tensor([0.5, 1.0], dtype=F64)
    neg = steihaug_cg(g2, lambda v: H @ v, radius=1.0)
    assert neg.termination == "negative curvature"
    assert float(neg.step.norm()) == pytest.approx(1.0, rel=1e-12)
    assert neg.decrease == pytest.approx(-_model(g2, H, neg.step), rel=1e-10)
    other = g2 / g2.norm()  # the crossing along +g
    assert neg.decrease > max(0.0, -_model(g2, H, other))


def test_update_radius_rules():
    assert update_radius(1.0, rho=0.1, step_norm=1.0, max_radius=10.0) == 0.25
    assert update_radius(1.0, rho=float("nan"), step_norm=1.0, max_radius=10.0) == 0.25
    assert update_radius(1.0, rho=0.9, step_norm=1.0, max_radius=10.0) == 2.0
    assert update_radius(8.0, rho=0.9, step_norm=8.0, max_radius=10.0) == 10.0
    assert update_radius(1.0, rho=0.9, step_norm=0.5, max_radius=10.0) == 1.0  # interior step: keep
    assert update_radius(1.0, rho=0.5, step_norm=1.0, max_radius=10.0) == 1.0


def test_trust_region_converges_and_validates():
    f = Rosenbrock()
    result = trust_region(f.value, f.gradient, f.hvp, torch.tensor(f.start, dtype=F64))
    assert result.converged
    torch.testing.assert_close(result.w, torch.ones(2, dtype=F64), rtol=0, atol=1e-9)
    values = [float(f.value(w)) for w in result.path]
    assert all(b <= a for a, b in itertools.pairwise(values))  # accepted steps only decrease f
    with pytest.raises(ValueError, match="eta: expected a number in"):
        trust_region(f.value, f.gradient, f.hvp, torch.zeros(2, dtype=F64), eta=0.5)
    with pytest.raises(ValueError, match="radius: expected a number <= max_radius"):
        trust_region(f.value, f.gradient, f.hvp, torch.zeros(2, dtype=F64), radius=5.0, max_radius=1.0)
