"""tdlab.data.circle: the inputs on a great circle against their stated geometry."""

import math

import numpy as np
import pytest
import torch

from tdlab.data import circle_angles, circle_cosines, circle_inputs


def test_circle_inputs_have_the_stated_geometry():
    X, theta = circle_inputs(12, 7, torch.Generator().manual_seed(3))
    X = X.double()
    np.testing.assert_allclose(theta, 2 * math.pi * np.arange(12) / 12)
    np.testing.assert_array_equal(theta, circle_angles(12))
    np.testing.assert_allclose(X.square().mean(dim=1).numpy(), 1.0, rtol=1e-6)  # |x|^2 / d = 1
    unit = X / X.norm(dim=1, keepdim=True)
    np.testing.assert_allclose((unit @ unit.T).numpy(), circle_cosines(12), atol=1e-6)  # cos(theta_i - theta_j)
    assert torch.linalg.matrix_rank(X, atol=1e-4).item() == 2  # a plane through the origin
    # x_k = sqrt(d) (cos theta_k u + sin theta_k v): u = x_0 / sqrt(d), v = x_3 / sqrt(d) (theta_3 = pi / 2)
    u, v = X[0] / math.sqrt(7), X[3] / math.sqrt(7)
    assert float(u @ v) == pytest.approx(0.0, abs=1e-6) and float(u @ u) == pytest.approx(1.0, rel=1e-6)
    expected = math.sqrt(7) * (np.cos(theta)[:, None] * u.numpy() + np.sin(theta)[:, None] * v.numpy())
    np.testing.assert_allclose(X.numpy(), expected, atol=1e-5)


def test_circle_inputs_follow_the_generator():
    first, _ = circle_inputs(5, 4, torch.Generator().manual_seed(0))
    again, _ = circle_inputs(5, 4, torch.Generator().manual_seed(0))
    other, _ = circle_inputs(5, 4, torch.Generator().manual_seed(1))
    assert torch.equal(first, again) and not torch.allclose(first, other)
    assert first.dtype == torch.float32


def test_circle_cosines_cover_every_correlation():
    cos = circle_cosines(8)
    assert np.allclose(np.diag(cos), 1.0) and cos.min() == pytest.approx(-1.0)
    np.testing.assert_allclose(cos, cos.T)


@pytest.mark.parametrize(("num_inputs", "in_features"), [(0, 3), (4, 1)])
def test_circle_rejects_bad_sizes(num_inputs, in_features):
    with pytest.raises(ValueError):
        circle_inputs(num_inputs, in_features, torch.Generator().manual_seed(0))
