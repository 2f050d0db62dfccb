"""linearised-network: GD on the linearisation against least squares on the explicit Jacobian, the mode formulas
against direct iteration, Weyl's inequality, re-checking from stored metrics, and a quick run whose checks must all
pass. (The NTK-parameterised MLP is tested in tests/test_models_ntk.py.)"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from pydantic import ValidationError
from recheck import assert_rechecks
from torch.func import jacrev

from tdlab.experiments.base import Context
from tdlab.experiments.catalogue import linearised_network as ln
from tdlab.models.ntk import NTKMLP
from tdlab.theory.ntk import mode_fitting_time, mode_residual


def _setup(width: int = 12, depth: int = 2, n: int = 10):
    g = torch.Generator().manual_seed(0)
    X = torch.randn(n, 5, generator=g, dtype=torch.float64)
    y = torch.randn(n, 1, generator=g, dtype=torch.float64)
    model = NTKMLP(5, 1, width, depth, "tanh", seed=g, dtype=torch.float64)
    return ln.functional(model), {k: p.detach() for k, p in model.named_parameters()}, X, y


def test_linearised_descent_is_gradient_descent_on_the_explicit_jacobian():
    forward, params, X, y = _setup()
    delta, residuals = ln.linearised_descent(forward, params, X, y, lr=0.5, steps=20)
    blocks = jacrev(lambda p: forward(p, X))(params)  # the whole batch's Jacobian, not per-example gradients
    J = torch.cat([b.reshape(X.shape[0], -1) for b in blocks.values()], dim=1)
    torch.testing.assert_close(torch.cat(list(ln.jacobian(forward, params, X).values()), dim=1), J, rtol=0, atol=1e-12)
    f0 = forward(params, X)[:, 0]
    w = torch.zeros(J.shape[1], dtype=torch.float64)
    for t in range(20):
        torch.testing.assert_close(residuals[t, :, 0], f0 + J @ w - y[:, 0], rtol=0, atol=1e-10)
        w = w - 0.5 * J.T @ (f0 + J @ w - y[:, 0]) / X.shape[0]
    torch.testing.assert_close(residuals[20, :, 0], f0 + J @ w - y[:, 0], rtol=0, atol=1e-10)
    flat = torch.cat([delta[k].reshape(-1) for k in params])
    torch.testing.assert_close(flat, w, rtol=0, atol=1e-10)
    torch.testing.assert_close(ln.push_forward(forward, params, X, delta)[:, 0], J @ w, rtol=0, atol=1e-10)


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
    assert ln.fitting_times(np.abs(path)).tolist() == first_below
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


def test_checks_and_figures_come_from_the_stored_metrics(tmp_path):
    small = {"n_train": 8, "n_test": 16, "widths": (16, 32), "seeds": 2, "steps": 20, "modes": 3}
    result = assert_rechecks(ln.EXPERIMENT, ln.EXPERIMENT.make_config(**small), tmp_path)
    assert len(result.checks) == 6


def test_quick_run_passes_every_check():
    experiment = ln.EXPERIMENT
    result = experiment.run(experiment.make_config(), Context(torch.device("cpu")))
    failed = [f"{c.name}: {c.measured} vs {c.theory}" for c in result.checks if not c.passed]
    assert not failed, failed
    assert len(result.checks) == 6
    assert set(result.figures) == {"linearisation_distance", "eigen_directions", "feature_spectra"}
    assert all(isinstance(f, Figure) for f in result.figures.values())
