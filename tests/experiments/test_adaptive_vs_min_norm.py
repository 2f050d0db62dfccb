"""adaptive-vs-min-norm: Wilson et al.'s construction (X sign(X^T y) = 4 y), Lemma 3.1 on a small instance (the
adaptive iterates stay on the ray of sign(X^T y)), the training helper, config validation, and a quick run whose
checks must all pass and re-check from its stored metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from pydantic import ValidationError
from recheck import assert_rechecks

from tdlab.experiments.catalogue import adaptive_vs_min_norm as avm


def _instance(n: int = 12, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    y = avm.draw_labels(n, 0.75, torch.Generator().manual_seed(seed))
    return avm.wilson_features(y, 0, 3 + 5 * n), y


def test_construction_makes_sign_solution_interpolate():
    X, y = _instance()
    assert y.sum() > 0
    direction = torch.sign(X.T @ y)
    assert torch.all(direction[:3] == 1)  # label, and the two constant features (more positives)
    torch.testing.assert_close(X @ direction, 4 * y)
    # row norms: 1 + 2 + 1 for a positive example, 1 + 2 + 5 for a negative one
    torch.testing.assert_close(X.square().sum(dim=1), torch.where(y > 0, 4.0, 8.0).to(torch.float64))


def test_private_blocks_do_not_overlap():
    y = torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64)
    train, test = avm.wilson_features(y[:2], 0, 18), avm.wilson_features(y[2:], 2, 18)
    assert torch.all((train[:, 3:] != 0).sum(dim=0) + (test[:, 3:] != 0).sum(dim=0) <= 1)
    with pytest.raises(ValueError, match="dim"):
        avm.wilson_features(y, 0, 10)


@pytest.mark.parametrize(("method", "lr"), [("adagrad", 0.1), ("rmsprop", 0.001), ("adam", 0.01)])
def test_adaptive_iterates_stay_on_the_sign_ray(method, lr):
    """Wilson et al. Lemma 3.1: every iterate is a multiple of sign(X^T y) (up to torch's eps)."""
    X, y = _instance()
    _, path = avm.train(method, X, y, lr, 200, len(y), 0, 10)
    direction = torch.sign(X.T @ y)
    cosines = path[1:] @ direction / (path[1:].norm(dim=1) * direction.norm())
    assert torch.all(cosines > 1 - 1e-10)


def test_gd_reaches_the_minimum_norm_interpolant():
    X, y = _instance()
    w, _ = avm.train("gd", X, y, 0.25, 2000, len(y), 0, 100)
    torch.testing.assert_close(w, torch.linalg.pinv(X) @ y, rtol=0, atol=1e-10)
    # the minimum-norm interpolant weights the label feature most and labels unseen examples correctly
    assert w[0] > abs(w[1] + w[2])


def test_config_validation():
    with pytest.raises(ValidationError, match="sgd_batch"):
        avm.AdaptiveVsMinNormConfig(n=5, sgd_batch=8)
    with pytest.raises(ValidationError, match="p"):
        avm.AdaptiveVsMinNormConfig(p=0.5)


def test_sgd_reaches_the_minimum_norm_interpolant():
    X, y = _instance()
    w, _ = avm.train("sgd", X, y, 0.5, 3000, 3, 1, 3000)
    torch.testing.assert_close(w, torch.linalg.pinv(X) @ y, rtol=0, atol=1e-8)


def test_quick_run_passes_every_check_and_rechecks_from_the_store(tmp_path):
    result = assert_rechecks(avm.EXPERIMENT, avm.EXPERIMENT.make_config(), tmp_path)
    failed = [f"{c.name}: {c.measured} vs {c.theory}" for c in result.checks if not c.passed]
    assert not failed, failed
    assert len(result.checks) == 10
    assert set(result.figures) == {"weights", "norms_and_errors", "paths"}
    assert all(isinstance(f, Figure) for f in result.figures.values())
    norms = result.metrics[result.metrics["name"] == "norm"].set_index("method")["value"]
    assert np.all(norms[list(avm.ADAPTIVE)] > 2 * norms["gd"])
