"""tdlab.optim.quadratics: torch.optim.SGD with per-row steps, renormalised trajectories, fitted rates and the edge
finder, against independent iterations (separate SGD runs, the textbook heavy-ball and Nesterov recursions) and
hand values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tdlab.optim.quadratics import (
    QuadraticRun,
    descend,
    edge_of_stability,
    fitted_rate,
    rotated_quadratics,
    spectrum,
)

F64 = torch.float64


# --------------------------------------------------------------------------------------------- measurement
def _problem(dim: int = 3, rows: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    spectra = torch.rand(rows, dim, generator=generator, dtype=F64) * 2 + 0.1
    A, _ = rotated_quadratics(spectra, generator)
    return A, torch.randn(rows, dim, generator=generator, dtype=F64)


@pytest.mark.parametrize(("momentum", "nesterov"), [(0.0, False), (0.7, False), (0.7, True)])
def test_descend_matches_torch_sgd_with_its_own_lr(momentum, nesterov):
    """Rows with their own step (lr = 1 on eta f) give the iterates of SGD(lr=eta) run separately."""
    A, start = _problem()
    etas = [0.3, 0.8]
    run = QuadraticRun(A, start, torch.tensor(etas, dtype=F64), momentum, nesterov)
    (path,) = descend([run], 25, keep_iterates=True)
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
    heavy, nesterov = descend(
        [QuadraticRun(A, start, eta, beta), QuadraticRun(A, start, eta, beta, nesterov=True)],
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
    (path,) = descend([QuadraticRun(A, start, 2.0 / 3.0)], 2000)  # factors 1/3 and -1
    (short,) = descend([QuadraticRun(A, start, 0.5)], 10)  # factors 1/2 and -1/2
    np.testing.assert_allclose(short.log_error()[:, 0].numpy(), np.log(np.sqrt(2.0) * 0.5 ** np.arange(11)), rtol=1e-13)
    # 2000 steps: ||w_t||^2 = (1/3)^(2t) + 1, far outside float64 for the 1/3 mode alone; the -1 mode dominates
    assert torch.isfinite(path.log_error()).all()
    assert fitted_rate(path.log_error(), 1000)[0] == pytest.approx(1.0, abs=1e-12)
    (fast,) = descend([QuadraticRun(A[:, :1, :1], start[:, :1], 2.0 / 3.0)], 2000)  # 1/3 per step
    assert fitted_rate(fast.log_error(), 100)[0] == pytest.approx(1 / 3, rel=1e-10)
    with pytest.raises(ValueError, match="keep_iterates"):
        fast.iterates()
    # an exact zero (eta lambda = 1) gives -inf, and a rate of 0
    (zero,) = descend([QuadraticRun(A[:, :1, :1], start[:, :1], 1.0)], 5, keep_iterates=True)
    assert zero.log_error()[0, 0] == 0.0 and torch.isneginf(zero.log_error()[1:, 0]).all()
    assert (zero.iterates()[1:] == 0).all() and fitted_rate(zero.log_error(), 0)[0] == 0.0


def test_fitted_rate_recovers_a_slope_and_flags_exact_zeros():
    t = torch.arange(50, dtype=F64).unsqueeze(-1)
    log_error = torch.cat([t * np.log(0.9) + 3.0, t * np.log(1.2), torch.full_like(t, -torch.inf)], dim=1)
    np.testing.assert_allclose(fitted_rate(log_error, 10), [0.9, 1.2, 0.0], rtol=1e-12)


def test_edge_of_stability_finds_two_over_L():
    A = torch.diag_embed(torch.tensor([[0.5, 3.0], [1.0, 8.0]], dtype=F64))
    start = torch.ones(2, 2, dtype=F64)
    (edges,) = edge_of_stability([QuadraticRun(A, start, 1.0)], 0.0, 1.0, steps=200, rounds=3, points=15)
    np.testing.assert_allclose(edges, [2 / 3.0, 2 / 8.0], atol=1.0 / 16**3)


def test_rotations_are_orthogonal_and_keep_the_spectrum():
    eigenvalues = torch.tensor([[0.1, 1.0, 5.0], [2.0, 3.0, 4.0]], dtype=F64)
    A, Q = rotated_quadratics(eigenvalues, torch.Generator().manual_seed(3))
    torch.testing.assert_close(Q @ Q.transpose(1, 2), torch.eye(3, dtype=F64).expand(2, 3, 3))
    torch.testing.assert_close(torch.linalg.eigvalsh(A), eigenvalues)


def test_spectrum_ends_and_spacing():
    np.testing.assert_allclose(spectrum(100.0, 3).numpy(), [0.01, 0.505, 1.0])
    np.testing.assert_allclose(spectrum(100.0, 3, "geometric").numpy(), [0.01, 0.1, 1.0])
    with pytest.raises(ValueError, match="spacing"):
        spectrum(10.0, 3, "cubic")
    with pytest.raises(ValueError, match="one dimension d"):
        descend(
            [
                QuadraticRun(torch.eye(2, dtype=F64)[None], torch.ones(1, 2, dtype=F64), 0.1),
                QuadraticRun(torch.eye(3, dtype=F64)[None], torch.ones(1, 3, dtype=F64), 0.1),
            ],
            3,
        )
