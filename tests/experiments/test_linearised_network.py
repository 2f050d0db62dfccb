"""linearised-network: the functional GD against torch.optim, GD on the linearisation against least squares on the
explicit Jacobian, the mode formulas against direct iteration, Weyl's inequality, and a quick run whose checks
must all pass."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from pydantic import ValidationError

from tdlab.experiments.base import Context
from tdlab.experiments.catalogue import linearised_network as ln
from tdlab.experiments.registry import get
from tdlab.theory.ntk import mode_fitting_time, mode_residual


def _setup(width: int = 12, depth: int = 2, n: int = 10):
    g = torch.Generator().manual_seed(0)
    X = torch.randn(n, 5, generator=g, dtype=torch.float64)
    y = torch.randn(n, generator=g, dtype=torch.float64)
    params = ln.init_ntk_mlp(5, width, depth, g, torch.float64)
    return ln.ntk_mlp("tanh"), params, X, y


def test_gradient_descent_is_torch_sgd():
    forward, params, X, y = _setup()
    _, residuals = ln.gradient_descent(forward, params, X, y, lr=0.7, steps=15)
    leaves = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    optimizer = torch.optim.SGD(leaves.values(), lr=0.7)
    for t in range(15):
        optimizer.zero_grad()
        residual = forward(leaves, X) - y
        torch.testing.assert_close(residuals[t], residual.detach(), rtol=0, atol=1e-12)
        (0.5 * residual.square().mean()).backward()
        optimizer.step()


def test_linearised_descent_is_gradient_descent_on_the_explicit_jacobian():
    forward, params, X, y = _setup()
    delta, residuals = ln.linearised_descent(forward, params, X, y, lr=0.5, steps=20)
    J = torch.cat(list(ln.jacobian(forward, params, X).values()), dim=1)
    f0 = forward(params, X)
    w = torch.zeros(J.shape[1], dtype=torch.float64)
    for t in range(20):
        torch.testing.assert_close(residuals[t], f0 + J @ w - y, rtol=0, atol=1e-10)
        w = w - 0.5 * J.T @ (f0 + J @ w - y) / X.shape[0]
    torch.testing.assert_close(residuals[20], f0 + J @ w - y, rtol=0, atol=1e-10)
    flat = torch.cat([delta[k].reshape(-1) for k in params])
    torch.testing.assert_close(flat, w, rtol=0, atol=1e-10)
    torch.testing.assert_close(ln.push_forward(forward, params, X, delta), J @ w, rtol=0, atol=1e-10)


def test_mode_formulas_against_direct_iteration():
    lam, lr, n = np.array([3.0, 1.5, 0.2]), 0.8, 4
    residual = np.ones(3)
    path = [residual.copy()]
    for _ in range(30):
        residual = residual - lr * lam / n * residual
        path.append(residual.copy())
    path = np.array(path)
    np.testing.assert_allclose(mode_residual(lam, lr, n, np.arange(31)), path, rtol=1e-12)
    first_below = [int(np.argmax(np.abs(path[:, i]) <= 1 / math.e)) for i in range(3)]
    assert mode_fitting_time(lam, lr, n).tolist() == first_below
    assert ln.fitting_times(torch.tensor(path), torch.eye(3, dtype=torch.float64)).tolist() == first_below
    with pytest.raises(ValueError, match="eigenvalues"):
        mode_residual([-1.0], lr, n, [0])


def test_gradient_features_dominate_the_probe_features():
    forward, params, X, _ = _setup(width=30, depth=1, n=8)
    blocks = ln.jacobian(forward, params, X)
    J = torch.cat(list(blocks.values()), dim=1)
    hidden = torch.tanh(X @ params["hidden.0.weight"].T / math.sqrt(5))
    torch.testing.assert_close(blocks["readout.weight"], hidden / math.sqrt(30))  # the penultimate features
    gap = torch.linalg.svdvals(J) - torch.linalg.svdvals(blocks["readout.weight"])
    assert gap.min().item() >= -1e-12


def test_config_validation():
    with pytest.raises(ValidationError, match="widths"):
        ln.LinearisedNetworkConfig(widths=(64,))
    with pytest.raises(ValidationError, match="activation"):
        ln.LinearisedNetworkConfig(activation="gelu")


def test_quick_run_passes_every_check():
    experiment = get("linearised-network")
    result = experiment.run(experiment.make_config(), Context(torch.device("cpu")))
    failed = [f"{c.name}: {c.measured} vs {c.theory}" for c in result.checks if not c.passed]
    assert not failed, failed
    assert len(result.checks) == 6
    assert set(result.figures) == {"linearisation_distance", "eigen_directions", "feature_spectra"}
    assert all(isinstance(f, Figure) for f in result.figures.values())
