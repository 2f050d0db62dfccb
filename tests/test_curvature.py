"""Tests of tdlab.curvature against ground truth: dense float64 Hessians of small MLPs computed independently
with torch.autograd.functional, their eigendecomposition by torch.linalg.eigh, and closed-form variances."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse.linalg
import torch
from torch import nn
from torch.func import functional_call

from tdlab import Objective
from tdlab.curvature import (
    GGNOperator,
    HessianOperator,
    LinearOperator,
    MatrixOperator,
    as_operator,
    exact_ggn,
    exact_hessian,
    hessian_density,
    hessian_eigs,
    hessian_trace,
    power_iteration,
)

ALL_CASES = [("tanh", "mse"), ("tanh", "ce"), ("relu", "mse"), ("relu", "ce")]
SPECTRAL_CASES = [("tanh", "mse"), ("relu", "ce")]  # the iterative solvers, on two of the four (time budget)


class Problem:
    """An 8-28-28-4 MLP (1180 parameters) in float64 on 64 random examples, with an independent loss f(flat)."""

    def __init__(self, activation: str, loss: str, seed: int = 0):
        gen = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        act = {"tanh": nn.Tanh, "relu": nn.ReLU}[activation]
        self.model = nn.Sequential(nn.Linear(8, 28), act(), nn.Linear(28, 28), act(), nn.Linear(28, 4)).double()
        self.X = torch.randn(64, 8, generator=gen, dtype=torch.float64)
        if loss == "ce":
            self.loss_fn: nn.Module = nn.CrossEntropyLoss()
            self.y = torch.randint(0, 4, (64,), generator=gen)
        else:
            self.loss_fn = nn.MSELoss()
            self.y = torch.randn(64, 4, generator=gen, dtype=torch.float64)
        self.obj = Objective(self.model, self.loss_fn, (self.X, self.y))
        self.theta = torch.cat([p.detach().reshape(-1) for p in self.model.parameters()])

    def as_dict(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        out, offset = {}, 0
        for name, p in self.model.named_parameters():
            out[name] = flat[offset : offset + p.numel()].view_as(p)
            offset += p.numel()
        return out

    def outputs(self, flat: torch.Tensor) -> torch.Tensor:
        return functional_call(self.model, self.as_dict(flat), (self.X,))

    def loss(self, flat: torch.Tensor) -> torch.Tensor:
        return self.loss_fn(self.outputs(flat), self.y)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Run this module on one intra-op thread: its small float64 matrices gain nothing from threads, and on a
    shared 2-core machine two spinning threads per process slow it down tenfold. Restored afterwards."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


_PROBLEMS: dict[tuple[str, str], tuple[Problem, torch.Tensor]] = {}


def reference(activation: str, loss: str) -> tuple[Problem, torch.Tensor]:
    """The problem and its reference Hessian, independent of tdlab: reverse-over-reverse autograd of the loss
    in the flat parameter vector (cached: each is built once per session)."""
    if (activation, loss) not in _PROBLEMS:
        problem = Problem(activation, loss)
        H = torch.autograd.functional.hessian(problem.loss, problem.theta, vectorize=True)
        _PROBLEMS[activation, loss] = problem, H
    return _PROBLEMS[activation, loss]


@pytest.fixture(scope="module", params=ALL_CASES, ids=["-".join(c) for c in ALL_CASES])
def any_case(request) -> tuple[Problem, torch.Tensor]:
    return reference(*request.param)


@pytest.fixture(scope="module", params=SPECTRAL_CASES, ids=["-".join(c) for c in SPECTRAL_CASES])
def case(request) -> tuple[Problem, torch.Tensor, torch.Tensor]:
    problem, H = reference(*request.param)
    return problem, H, torch.linalg.eigvalsh(H)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs() / b.abs()).max().item()


def decaying_matrix(n: int = 200, power: float = 2.0, seed: int = 0) -> torch.Tensor:
    """Q diag(i^-power) Q^T with a random orthogonal Q: a spectrum that decays like a network Hessian's."""
    gen = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    values = torch.arange(1, n + 1, dtype=torch.float64) ** -power
    return Q @ torch.diag(values) @ Q.T


# ----------------------------------------------------------------------------------------- exact + operators
def test_exact_hessian_equals_autograd(any_case):
    problem, H = any_case
    exact = exact_hessian(problem.obj)
    assert exact.shape == (problem.obj.dim, problem.obj.dim) == (1180, 1180)
    torch.testing.assert_close(exact, H, rtol=0, atol=1e-10)


def test_hessian_operator_products_equal_exact(any_case):
    problem, H = any_case
    gen = torch.Generator().manual_seed(1)
    V = torch.randn(problem.obj.dim, 3, generator=gen, dtype=torch.float64)
    op = HessianOperator(problem.obj)
    torch.testing.assert_close(op @ V[:, 0], H @ V[:, 0], rtol=0, atol=1e-6)
    torch.testing.assert_close(op @ V, H @ V, rtol=0, atol=1e-6)  # vmap path, column-wise
    assert op.matvecs == 4
    # at another point, given flat or as a dict: the operator is frozen at its theta
    shifted = problem.theta + 0.1 * torch.randn(problem.obj.dim, generator=gen, dtype=torch.float64)
    _, expected = torch.autograd.functional.hvp(problem.loss, shifted, V[:, 1])
    torch.testing.assert_close(HessianOperator(problem.obj, shifted) @ V[:, 1], expected, rtol=0, atol=1e-6)
    as_dict = {k: v.clone() for k, v in problem.as_dict(shifted).items()}
    torch.testing.assert_close(as_operator(problem.obj, as_dict) @ V[:, 1], expected, rtol=0, atol=1e-6)


def test_ggn_equals_jacobian_sandwich_and_is_psd(any_case):
    """G = J^T H_L J with J the Jacobian of the N*C outputs and H_L the Hessian of the loss in them."""
    problem, _ = any_case
    outputs = problem.outputs(problem.theta).detach()
    J = torch.autograd.functional.jacobian(problem.outputs, problem.theta, vectorize=True)
    J = J.reshape(-1, problem.obj.dim)
    H_L = torch.autograd.functional.hessian(
        lambda o: problem.loss_fn(o.view_as(outputs), problem.y), outputs.reshape(-1), vectorize=True
    )
    G = exact_ggn(problem.obj)
    torch.testing.assert_close(G, J.T @ H_L @ J, rtol=0, atol=1e-10)
    v = torch.randn(problem.obj.dim, dtype=torch.float64)
    torch.testing.assert_close(GGNOperator(problem.obj) @ v, G @ v, rtol=0, atol=1e-10)
    eig = torch.linalg.eigvalsh(G)
    assert eig.min() > -1e-10 * eig.max()


def test_ggn_equals_hessian_for_a_linear_model():
    gen = torch.Generator().manual_seed(0)
    X, y = torch.randn(50, 6, generator=gen, dtype=torch.float64), torch.randint(0, 3, (50,), generator=gen)
    obj = Objective(nn.Linear(6, 3).double(), nn.CrossEntropyLoss(), (X, y))
    torch.testing.assert_close(exact_ggn(obj), exact_hessian(obj), rtol=0, atol=1e-12)


def test_exact_refuses_large_models():
    obj = Objective(nn.Linear(100, 60), nn.MSELoss(), (torch.randn(4, 100), torch.randn(4, 60)))  # 6060 params
    with pytest.raises(ValueError, match="max_params=5000"):
        exact_hessian(obj)
    with pytest.raises(ValueError, match="max_params=10"):
        exact_ggn(reference("tanh", "mse")[0].obj, max_params=10)


def test_to_scipy_agrees_with_scipy_eigsh(case):
    problem, _, spectrum = case
    op = HessianOperator(problem.obj)
    values = scipy.sparse.linalg.eigsh(op.to_scipy(), k=2, which="LA", return_eigenvectors=False, tol=1e-10)
    np.testing.assert_allclose(np.sort(values)[::-1], spectrum.flip(0)[:2].numpy(), rtol=1e-8)
    assert op.matvecs > 0


# ------------------------------------------------------------------------------------------------ Lanczos
@pytest.mark.parametrize("which", ["LA", "SA", "LM"])
def test_lanczos_extreme_eigenvalues(case, which):
    problem, H, spectrum = case
    res = hessian_eigs(problem.obj, k=5, which=which, tol=1e-8, max_iter=600, criterion="residual")
    order = {"LA": spectrum.flip(0), "SA": spectrum, "LM": spectrum[spectrum.abs().argsort(descending=True)]}
    assert res.converged and res.num_matvecs < 600
    assert rel_err(res.eigenvalues, order[which][:5]) < 1e-5
    assert res.eigenvectors.shape == (problem.obj.dim, 5)
    residual = torch.linalg.vector_norm(H @ res.eigenvectors - res.eigenvectors * res.eigenvalues, dim=0)
    assert (residual <= 1e-6 * res.eigenvalues.abs()).all()
    torch.testing.assert_close(residual, res.residuals, rtol=0, atol=1e-9 * spectrum.abs().max().item())
    torch.testing.assert_close(res.eigenvectors.T @ res.eigenvectors, torch.eye(5, dtype=torch.float64))


def test_lanczos_orders_by_magnitude_and_sign():
    A = MatrixOperator(torch.diag(torch.tensor([-10.0, 9.0, -1.0, 0.5, 3.0, -7.0], dtype=torch.float64)))
    assert hessian_eigs(A, k=3, which="LM").eigenvalues.tolist() == pytest.approx([-10.0, 9.0, -7.0])
    assert hessian_eigs(A, k=2, which="LA").eigenvalues.tolist() == pytest.approx([9.0, 3.0])
    assert hessian_eigs(A, k=2, which="SA").eigenvalues.tolist() == pytest.approx([-10.0, -7.0])


def test_lanczos_small_operator_gives_exact_spectrum():
    gen = torch.Generator().manual_seed(3)
    B = torch.randn(12, 12, generator=gen, dtype=torch.float64)
    A = B + B.T
    res = hessian_eigs(MatrixOperator(A), k=12, which="SA", tol=1e-14)
    assert res.converged and res.num_matvecs == 12
    torch.testing.assert_close(res.eigenvalues, torch.linalg.eigvalsh(A), rtol=0, atol=1e-12)


@pytest.mark.parametrize("tol", [1e-3, 1e-6])
@pytest.mark.parametrize("k", [1, 5])
def test_eigenvalue_criterion_reaches_the_asked_accuracy_for_fewer_products(case, tol, k):
    """The default rule stops at an estimated eigenvalue error of tol: the exact spectrum confirms the accuracy,
    and it costs fewer products than a residual of tol (which over-delivers: eigenvalue errors about tol^2)."""
    problem, _, spectrum = case
    for seed in range(3):
        generator = torch.Generator().manual_seed(seed)
        res = hessian_eigs(problem.obj, k=k, tol=tol, generator=generator)
        assert res.converged and rel_err(res.eigenvalues, spectrum.flip(0)[:k]) <= tol
        generator = torch.Generator().manual_seed(seed)
        bound = hessian_eigs(problem.obj, k=k, tol=tol, criterion="residual", generator=generator)
        assert res.num_matvecs <= bound.num_matvecs


def test_lanczos_invariant_subspace_restarts():
    """Three distinct eigenvalues: each Krylov space is 3-dimensional (beta_3 = 0); restarts find the copies."""
    values = torch.cat([torch.full((10,), 3.0), torch.full((20,), 2.0), torch.full((20,), 1.0)]).double()
    gen = torch.Generator().manual_seed(0)
    Q, _ = torch.linalg.qr(torch.randn(50, 50, generator=gen, dtype=torch.float64))
    A = Q @ torch.diag(values) @ Q.T
    bound = hessian_eigs(MatrixOperator(A), k=5, which="LA", tol=1e-10, criterion="residual")
    assert bound.converged and bound.num_matvecs == 15  # five 3-step blocks: five copies of 3
    for res in (bound, hessian_eigs(MatrixOperator(A), k=5, which="LA", tol=1e-10)):  # and the default rule
        assert res.converged
        torch.testing.assert_close(res.eigenvalues, torch.full((5,), 3.0, dtype=torch.float64))
        torch.testing.assert_close(A @ res.eigenvectors, 3.0 * res.eigenvectors)
        torch.testing.assert_close(res.eigenvectors.T @ res.eigenvectors, torch.eye(5, dtype=torch.float64))


def test_lanczos_does_not_trust_an_invariant_start_vector():
    """v0 an exact eigenvector of the second largest eigenvalue: its Krylov space closes at once, and the
    restart in the complement must still find the largest."""
    A = MatrixOperator(torch.diag(torch.arange(1.0, 51.0, dtype=torch.float64)))
    v0 = torch.zeros(50, dtype=torch.float64)
    v0[48] = 1.0
    res = hessian_eigs(A, k=1, which="LA", v0=v0, tol=1e-8, criterion="residual")
    assert res.converged and res.eigenvalues.item() == pytest.approx(50.0, rel=1e-12)
    res = hessian_eigs(A, k=1, which="LA", v0=v0, tol=1e-8)  # the default rule: eigenvalue to tol
    assert res.converged and res.eigenvalues.item() == pytest.approx(50.0, rel=1e-8)


def test_warm_start_converges_in_few_products():
    problem = reference("relu", "ce")[0]
    cold = hessian_eigs(problem.obj, k=1, tol=1e-8, criterion="residual")
    same = hessian_eigs(problem.obj, k=1, tol=1e-8, v0=cold.eigenvectors[:, 0], criterion="residual")
    assert same.num_matvecs <= 2 and same.eigenvalues.item() == pytest.approx(cold.eigenvalues.item(), rel=1e-10)
    # one gradient step later (the use in training): warm start from the previous top eigenvector
    stepped = problem.theta - 0.1 * problem.obj.gradient()
    cold_next = hessian_eigs(problem.obj, k=1, tol=1e-8, theta=stepped, criterion="residual")
    warm_next = hessian_eigs(
        problem.obj, k=1, tol=1e-8, theta=stepped, v0=cold.eigenvectors[:, 0], criterion="residual"
    )
    assert warm_next.eigenvalues.item() == pytest.approx(cold_next.eigenvalues.item(), rel=1e-10)
    assert warm_next.num_matvecs < cold_next.num_matvecs


def test_ritz_criterion_stops_at_the_first_settled_ritz_value():
    problem = reference("tanh", "ce")[0]
    cold = hessian_eigs(problem.obj, k=1, tol=1e-8)
    stepped = problem.theta - 0.1 * problem.obj.gradient()
    exact = hessian_eigs(problem.obj, k=1, tol=1e-10, theta=stepped).eigenvalues.item()
    start = cold.eigenvectors[:, 0]
    # the top Ritz value after m products from the same start, m = 1, 2, ...: the rule stops at the first m whose
    # value moved by at most tol relative from m - 1's
    ritz = [
        hessian_eigs(problem.obj, k=1, tol=1e-14, theta=stepped, v0=start, max_iter=m).eigenvalues.item()
        for m in range(1, 12)
    ]
    tol = 1e-4
    first = next(m for m in range(2, 12) if abs(ritz[m - 1] - ritz[m - 2]) <= tol * abs(ritz[m - 1]))
    settled = hessian_eigs(problem.obj, k=1, tol=tol, theta=stepped, v0=start, criterion="ritz")
    assert settled.num_matvecs == first and settled.converged
    assert settled.eigenvalues.item() == pytest.approx(ritz[first - 1], rel=1e-12)
    assert all(b >= a - 1e-12 * abs(a) for a, b in zip(ritz, ritz[1:], strict=False))  # monotone from below
    assert settled.eigenvalues.item() == pytest.approx(exact, rel=10 * tol)
    bound = hessian_eigs(problem.obj, k=1, tol=tol, theta=stepped, v0=start, criterion="residual")
    assert settled.num_matvecs < bound.num_matvecs
    with pytest.raises(ValueError, match="criterion"):
        hessian_eigs(problem.obj, criterion="change")


def test_lanczos_is_reproducible_and_seeded():
    problem = reference("tanh", "mse")[0]
    a = hessian_eigs(problem.obj, k=2, max_iter=20, tol=1e-12)
    b = hessian_eigs(problem.obj, k=2, max_iter=20, tol=1e-12)
    c = hessian_eigs(problem.obj, k=2, max_iter=20, tol=1e-12, generator=torch.Generator().manual_seed(7))
    assert not a.converged and a.num_matvecs == 20  # stopped by max_iter, and says so
    assert torch.equal(a.eigenvalues, b.eigenvalues) and torch.equal(a.eigenvectors, b.eigenvectors)
    assert not torch.equal(a.eigenvalues, c.eigenvalues)


def test_power_iteration_finds_largest_magnitude(case):
    problem, H, spectrum = case
    res = power_iteration(problem.obj, tol=1e-10, max_iter=3000)
    assert res.converged
    assert res.eigenvalues.item() == pytest.approx(spectrum[spectrum.abs().argmax()].item(), rel=1e-6)
    v = res.eigenvectors[:, 0]
    residual = torch.linalg.vector_norm(H @ v - res.eigenvalues * v).item()
    assert residual == pytest.approx(res.residuals.item(), rel=1e-6)
    A = MatrixOperator(torch.diag(torch.tensor([-4.0, 1.0, 2.0], dtype=torch.float64)))
    assert power_iteration(A, tol=1e-12).eigenvalues.item() == pytest.approx(-4.0, rel=1e-10)


# -------------------------------------------------------------------------------------------------- trace
def test_hutchinson_within_three_standard_errors():
    problem, H = reference("tanh", "ce")
    res = hessian_trace(problem.obj, samples=100)
    assert res.num_matvecs == 100
    assert abs(res.estimate - torch.trace(H).item()) <= 3 * res.std_error
    # the reported standard error estimates the closed form sqrt(2 (||H||_F^2 - sum H_ii^2) / s)
    theory = math.sqrt(2 * ((H**2).sum() - (H.diagonal() ** 2).sum()).item() / 100)
    assert 0.7 < res.std_error / theory < 1.3


def test_hutch_plus_plus_beats_hutchinson_on_decaying_spectrum():
    A = decaying_matrix()
    exact = torch.trace(A).item()
    errors: dict[str, list[float]] = {"hutchinson": [], "hutch++": []}
    for seed in range(10):
        for method, errs in errors.items():
            res = hessian_trace(MatrixOperator(A), method, 30, generator=torch.Generator().manual_seed(seed))
            assert res.num_matvecs == 30
            errs.append(abs(res.estimate - exact))
    assert np.mean(errors["hutch++"]) < 0.25 * np.mean(errors["hutchinson"])


def test_hutch_plus_plus_is_exact_for_low_rank():
    gen = torch.Generator().manual_seed(0)
    B = torch.randn(100, 5, generator=gen, dtype=torch.float64)
    A = B @ B.T  # rank 5: a sketch of 6 columns spans its range
    res = hessian_trace(MatrixOperator(A), method="hutch++", samples=18)
    assert res.estimate == pytest.approx(torch.trace(A).item(), rel=1e-10)
    assert res.std_error < 1e-10 * torch.trace(A).item()


# ------------------------------------------------------------------------------------------------ density
def test_slq_moments_match_traces_of_powers():
    """moment(k) estimates tr(H^k)/n; its standard error with P Rademacher probes is
    sqrt(2 (||H^k||_F^2 - sum_i (H^k)_ii^2) / P) / n (Hutchinson's variance), since each probe's quadrature
    is exact for k <= 2m - 1. Tolerance: 4 standard errors."""
    problem, H = reference("relu", "mse")
    n, probes = problem.obj.dim, 10
    d = hessian_density(problem.obj, num_probes=probes, lanczos_steps=30)
    assert d.nodes.shape == d.weights.shape == (probes, 30) and d.num_matvecs == probes * 30
    np.testing.assert_allclose(d.weights.sum(axis=1), 1.0, atol=1e-12)
    assert d.moment(0) == pytest.approx(1.0, abs=1e-12)
    assert np.trapezoid(d.density, d.grid) == pytest.approx(1.0, abs=1e-12)
    assert (d.density >= 0).all() and d.grid[0] <= d.nodes.min() - 3 * d.sigma
    for k in (1, 2):
        Hk = torch.linalg.matrix_power(H, k)
        se = math.sqrt(2 * ((Hk**2).sum() - (Hk.diagonal() ** 2).sum()).item() / probes) / n
        assert abs(d.moment(k) - torch.trace(Hk).item() / n) <= 4 * se


def test_slq_density_of_uniform_spectrum():
    """Eigenvalues evenly spread on [-1, 1]: the smoothed density is 1/2 inside (away from the smoothed edges).
    With a diagonal matrix each Rademacher probe weighs every eigenvalue 1/n, so moments are exact."""
    A = MatrixOperator(torch.diag(torch.linspace(-1, 1, 400, dtype=torch.float64)))
    d = hessian_density(A, num_probes=4, lanczos_steps=60, sigma=0.05)
    inside = np.abs(d.grid) < 0.8
    np.testing.assert_allclose(d.density[inside], 0.5, rtol=0.05)
    assert d.moment(2) == pytest.approx(torch.linspace(-1, 1, 400, dtype=torch.float64).pow(2).mean().item(), rel=1e-10)
    custom = hessian_density(A, num_probes=2, lanczos_steps=20, grid=np.linspace(-2, 2, 801))
    assert np.trapezoid(custom.density, custom.grid) == pytest.approx(1.0, abs=1e-12)


def test_slq_steps_clipped_to_size():
    """On a 5 x 5 operator the steps are clipped to n and the nodes are the exact eigenvalues."""
    A = torch.diag(torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0], dtype=torch.float64))
    d = hessian_density(MatrixOperator(A), num_probes=3, lanczos_steps=50)
    assert d.nodes.shape == (3, 5)
    np.testing.assert_allclose(np.sort(d.nodes, axis=1), np.tile(np.arange(1.0, 6.0), (3, 1)), atol=1e-12)


# ------------------------------------------------------------------------------------------------ inputs
def test_operator_interface():
    A = torch.tensor([[2.0, 1.0], [1.0, 3.0]], dtype=torch.float64)
    op = MatrixOperator(A)
    assert isinstance(op, LinearOperator) and op.shape == (2, 2) and op.dtype == torch.float64
    torch.testing.assert_close(op @ torch.eye(2, dtype=torch.float64), A)
    assert op.matvecs == 2 and as_operator(op) is op
    assert op.to_scipy().matvec(np.array([1.0, 0.0])).tolist() == [2.0, 1.0]
    assert op.matvecs == 3


def test_bad_inputs_raise_clear_errors():
    op = MatrixOperator(torch.eye(4, dtype=torch.float64))
    obj = reference("tanh", "mse")[0].obj
    with pytest.raises(ValueError, match="which: expected one of 'LA', 'SA', 'LM', got 'XX'"):
        hessian_eigs(op, which="XX")
    with pytest.raises(ValueError, match="k: "):
        hessian_eigs(op, k=5)
    with pytest.raises(ValueError, match="tol: "):
        hessian_eigs(op, tol=0.0)
    with pytest.raises(ValueError, match="max_iter: "):
        hessian_eigs(op, k=3, max_iter=2)
    with pytest.raises(ValueError, match="v0: "):
        hessian_eigs(op, v0=torch.zeros(4, dtype=torch.float64))
    with pytest.raises(ValueError, match="v0: "):
        power_iteration(op, v0=torch.ones(3))
    with pytest.raises(ValueError, match="max_iter: "):
        power_iteration(op, max_iter=0)
    with pytest.raises(ValueError, match="method: expected one of 'hutchinson', 'hutch\\+\\+', got 'exact'"):
        hessian_trace(op, method="exact")
    with pytest.raises(ValueError, match="samples: "):
        hessian_trace(op, samples=1)
    with pytest.raises(ValueError, match="samples: "):
        hessian_trace(op, method="hutch++", samples=5)
    with pytest.raises(ValueError, match="num_probes: "):
        hessian_density(op, num_probes=0)
    with pytest.raises(ValueError, match="lanczos_steps: "):
        hessian_density(op, lanczos_steps=0)
    with pytest.raises(ValueError, match="sigma: "):
        hessian_density(op, sigma=-1.0)
    with pytest.raises(ValueError, match="grid: "):
        hessian_density(op, grid=np.array([1.0, 0.0]))
    with pytest.raises(ValueError, match="grid: carries no mass"):
        hessian_density(op, grid=np.linspace(10.0, 11.0, 5))
    with pytest.raises(ValueError, match="k: "):
        hessian_density(op, lanczos_steps=2).moment(-1)
    with pytest.raises(ValueError, match="theta: "):
        as_operator(op, theta=torch.zeros(4))
    with pytest.raises(ValueError, match="theta: "):
        HessianOperator(obj, torch.zeros(3))
    with pytest.raises(ValueError, match="v: "):
        op @ torch.ones(3, dtype=torch.float64)
    with pytest.raises(ValueError, match="obj: expected a square operator"):
        hessian_eigs(MatrixOperator(torch.ones(2, 3)))
    with pytest.raises(ValueError, match="matrix: "):
        MatrixOperator(torch.ones(3))
    with pytest.raises(TypeError, match="obj: "):
        hessian_eigs(torch.eye(3))
    with pytest.raises(TypeError, match="objective: "):
        exact_hessian(op)


def test_a_non_finite_product_ends_lanczos_with_nan_eigenpairs():
    A = torch.diag(torch.arange(1.0, 11.0, dtype=torch.float64))
    A[3, 3] = float("inf")
    result = hessian_eigs(MatrixOperator(A), k=2)
    assert result.eigenvalues.isnan().all() and result.eigenvectors.isnan().all()
    assert not result.converged and result.num_matvecs == 1
