"""tdlab.landscape: paths and barriers, filter-normalised planes, symmetries and weight matching, critical points
and training on flat vectors, each against exact Hessians of small float64 networks, hand computations or
torch.optim."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn
from torch.func import functional_call

from tdlab import Objective
from tdlab.curvature import exact_hessian
from tdlab.landscape import (
    Chain,
    barrier_height,
    directional_curvature,
    filter_normalize,
    filter_normalized_direction,
    filter_norms,
    find_critical_point,
    hessian_directions,
    hessian_index,
    interpolate,
    is_monotone_decreasing,
    largest_bump,
    loss_plane,
    mlp_chain,
    nonconvex_fraction,
    path_profile,
    permute_units,
    random_direction,
    random_permutations,
    rescale_units,
    rising_rays,
    second_difference,
    slice_curvatures,
    weight_matching,
)
from tdlab.models import MLP
from tdlab.oracles.flat import assign, flatten, unflatten
from tdlab.train.trainer import fit

F64 = torch.float64


def _data(n=24, d=3, k=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=F64), torch.randn(n, k, generator=g, dtype=F64)


def _tanh_objective(width=4, depth=1, seed=0):
    X, y = _data()
    model = MLP(3, 2, width=width, depth=depth, activation="tanh", bias_init_std=0.1, seed=seed).double()
    return Objective(model, nn.MSELoss(), (X, y))


# ------------------------------------------------------------------------------------------- interpolation
def test_interpolate_and_path_profile_against_direct_evaluation():
    obj = _tanh_objective()
    a = obj.flat_parameters()
    b = a + torch.randn(obj.dim, generator=torch.Generator().manual_seed(1), dtype=F64)
    assert torch.equal(interpolate(a, b, 0.0), a)
    assert torch.allclose(interpolate(a, b, 1.0), b)
    alphas = [-0.5, 0.0, 0.3, 1.0, 1.5]
    profile = path_profile(obj, a, b, alphas)
    expected = [float(obj.value(a + t * (b - a))) for t in alphas]
    assert profile.loss.tolist() == pytest.approx(expected, rel=1e-14)
    assert profile.accuracy is None
    assert profile.alphas.dtype == F64


def test_path_profile_accuracy_matches_argmax_of_outputs():
    X, _ = _data()
    y = torch.randint(0, 2, (X.shape[0],), generator=torch.Generator().manual_seed(2))
    obj = Objective(MLP(3, 2, width=5, depth=1, seed=0).double(), nn.CrossEntropyLoss(), (X, y))
    theta = obj.flat_parameters()
    profile = path_profile(obj, 0.5 * theta, theta, [0.0, 1.0], with_accuracy=True)
    outputs = functional_call(obj.model, unflatten(theta, obj.params), (X,))
    assert profile.accuracy[1].item() == pytest.approx((outputs.argmax(1) == y).double().mean().item())
    regression = _tanh_objective()
    start = regression.flat_parameters()
    with pytest.raises(ValueError, match="with_accuracy: needs integer class targets"):
        path_profile(regression, start, start, [0.0], with_accuracy=True)
    with pytest.raises(ValueError, match="theta_b: expected the shape of theta_a"):
        path_profile(regression, start, start[:-1], [0.0])


def test_barrier_bump_and_monotonicity_by_hand():
    assert barrier_height([0.0, 0.25, 0.5, 1.0], [1.0, 2.0, 2.0, 3.0]) == pytest.approx(0.5)  # 2 - 1.5 at a = 1/4
    assert barrier_height([-0.5, 0.0, 0.5, 1.0, 1.5], [9.0, 1.0, 1.0, 1.0, 9.0]) == 0.0  # outside [0, 1] ignored
    assert barrier_height([0.0, 0.5, 1.0], [1.0, math.inf, 1.0]) == math.inf
    assert largest_bump([5.0, 1.0, 4.0, 0.0, 2.5]) == pytest.approx(3.0)
    assert is_monotone_decreasing([3.0, 2.0, 2.0]) and not is_monotone_decreasing([3.0, 2.0, 2.1])
    with pytest.raises(ValueError, match="alphas: expected the end points"):
        barrier_height([0.0, 0.5], [1.0, 2.0])
    with pytest.raises(ValueError, match="losses: expected one loss per alpha"):
        barrier_height([0.0, 1.0], [1.0])
    with pytest.raises(ValueError, match="tolerance"):
        is_monotone_decreasing([1.0], tolerance=-1.0)


def test_directional_curvature_and_second_difference_against_the_exact_hessian():
    obj = _tanh_objective()
    theta = obj.flat_parameters()
    d = torch.randn(obj.dim, generator=torch.Generator().manual_seed(3), dtype=F64)
    exact = float(d @ exact_hessian(obj, theta) @ d)
    assert directional_curvature(obj, theta, d) == pytest.approx(exact, rel=1e-12)
    errors = [abs(second_difference(obj, theta, d, h) - exact) for h in (2e-2, 1e-2)]
    assert errors[0] / errors[1] == pytest.approx(4.0, rel=0.1)  # bias h^2 L''''/12: halving h quarters it
    assert second_difference(obj, theta, d, 1e-3) == pytest.approx(exact, rel=1e-5)
    with pytest.raises(ValueError, match="step"):
        second_difference(obj, theta, d, 0.0)


# --------------------------------------------------------------------------------------------------- plane
def test_filter_normalisation_matches_the_weights_filter_norms():
    model = MLP(3, 2, width=4, depth=2, norm="layernorm", seed=0).double()
    reference = dict(model.named_parameters())
    direction = random_direction(reference, torch.Generator().manual_seed(0))
    zero = filter_normalize(direction, reference)
    copy = filter_normalize(direction, reference, one_dim="copy")
    for name, norms in filter_norms(zero).items():
        assert torch.allclose(norms, filter_norms(reference)[name], rtol=1e-14)
        assert torch.allclose(
            zero[name] / zero[name].flatten(1).norm(dim=1).view(-1, 1),
            direction[name] / direction[name].flatten(1).norm(dim=1).view(-1, 1),
        )
    for name, t in reference.items():
        if t.ndim == 1:
            assert not zero[name].any() and torch.equal(copy[name], t)
    assert set(filter_norms(reference)) == {n for n, t in reference.items() if t.ndim == 2}
    with pytest.raises(ValueError, match="one_dim: expected one of 'zero', 'copy'"):
        filter_normalize(direction, reference, one_dim="keep")


def test_filter_normalized_direction_is_reproducible_and_normalised():
    obj = _tanh_objective(depth=2)
    d1 = filter_normalized_direction(obj, generator=torch.Generator().manual_seed(5))
    d2 = filter_normalized_direction(obj, generator=torch.Generator().manual_seed(5))
    assert torch.equal(d1, d2)
    norms = filter_norms(unflatten(d1, obj.params))
    for name, value in filter_norms(obj.params).items():
        assert torch.allclose(norms[name], value)


def test_loss_plane_and_hessian_directions_on_a_least_squares_problem():
    X = torch.diag(torch.tensor([1.0, 2.0, 3.0], dtype=F64))
    obj = Objective(nn.Linear(3, 1, bias=False).double(), nn.MSELoss(), (X, torch.zeros(3, 1, dtype=F64)))
    values, vectors = hessian_directions(obj, torch.zeros(3, dtype=F64), k=2, tol=1e-10)
    assert values.tolist() == pytest.approx([6.0, 8.0 / 3.0])  # H = (2/3) X^T X
    assert torch.allclose(vectors.abs(), torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0]], dtype=F64), atol=1e-8)
    a = torch.tensor([-1.0, 0.0, 2.0], dtype=F64)
    plane = loss_plane(obj, torch.zeros(3, dtype=F64), vectors[:, 0], vectors[:, 1], a, a[:2])
    expected = 0.5 * (6.0 * a[:, None] ** 2 + (8.0 / 3.0) * a[None, :2] ** 2)  # exact quadratic
    assert torch.allclose(plane.loss, expected, rtol=1e-10)
    with pytest.raises(ValueError, match="d1: expected a flat vector"):
        loss_plane(obj, torch.zeros(3, dtype=F64), torch.zeros(2, dtype=F64), vectors[:, 1], a, a)


def test_slice_curvatures_are_the_hessian_of_a_quadratic_slice_restricted_to_the_plane():
    # a least-squares loss is quadratic: its slice along any two directions has the constant 2 x 2 Hessian
    # D^T H D (D = [d1 d2]), which central differences of any step reproduce exactly
    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(20, 4, generator=g, dtype=F64), torch.randn(20, 1, generator=g, dtype=F64)
    obj = Objective(nn.Linear(4, 1, bias=False).double(), nn.MSELoss(), (X, y))
    theta, d1, d2 = (torch.randn(4, generator=g, dtype=F64) for _ in range(3))
    step = 0.3
    axis = torch.arange(-3, 4, dtype=F64) * step
    plane = loss_plane(obj, theta, d1, d2, axis, axis)
    D = torch.stack([d1, d2], 1)
    exact = torch.linalg.eigvalsh(D.T @ exact_hessian(obj, theta) @ D)
    low, high = slice_curvatures(plane.loss, step)
    assert low.shape == high.shape == (5, 5)
    torch.testing.assert_close(low, torch.full((5, 5), float(exact[0]), dtype=F64), rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(high, torch.full((5, 5), float(exact[1]), dtype=F64), rtol=1e-8, atol=1e-10)
    assert nonconvex_fraction(plane.loss) == 0.0 and rising_rays(plane.loss - plane.loss.min()).dtype == torch.bool


def test_nonconvex_fraction_and_rising_rays_on_hand_made_slices():
    a = torch.linspace(-1, 1, 9, dtype=F64)
    A, B = a[:, None], a[None, :]
    bowl = A**2 + 2 * B**2
    assert nonconvex_fraction(bowl) == 0.0 and bool(rising_rays(bowl).all())
    assert nonconvex_fraction(A**2 - B**2) == 1.0  # a saddle: every point has a negative curvature
    # -20 cos(pi A) has curvature 20 pi^2 cos(pi A), below -10 (the bowl's) at the interior points A = +-0.75
    ridge = 5 * bowl - torch.cos(torch.pi * A) * 20 + 0 * B
    low, _ = slice_curvatures(ridge, step=0.25)
    assert nonconvex_fraction(ridge) == pytest.approx(float((low < 0).double().mean()))
    assert 0.0 < nonconvex_fraction(ridge) < 1.0
    # a dip on one ray: only that ray stops rising
    dipped = bowl.clone()
    dipped[6, 4] = 0.0  # on the +alpha axis (centre (4, 4))
    assert rising_rays(dipped).tolist() == [False] + [True] * 7
    assert rising_rays(dipped.numpy()).tolist() == rising_rays(dipped).tolist()  # numpy arrays too
    with pytest.raises(ValueError, match="loss: expected a square grid"):
        rising_rays(bowl[:, :8])
    with pytest.raises(ValueError, match="loss: expected a finite 2-D grid"):
        nonconvex_fraction(torch.ones(2, 2))
    with pytest.raises(ValueError, match="step: expected a positive number"):
        slice_curvatures(bowl, step=0.0)


# ---------------------------------------------------------------------------------------------- symmetries
def _outputs(model, params, x):
    return functional_call(model, params, (x,))


@pytest.mark.parametrize("norm", [None, "layernorm"])
def test_permutations_leave_the_function_unchanged(norm):
    model = MLP(3, 2, width=6, depth=3, norm=norm, activation="tanh", bias_init_std=0.3, seed=1).double()
    chain = mlp_chain(model)
    params = dict(model.named_parameters())
    perms = random_permutations(params, chain, torch.Generator().manual_seed(0))
    x = torch.randn(10, 3, dtype=F64)
    permuted = permute_units(params, chain, perms)
    assert torch.allclose(_outputs(model, permuted, x), model(x), atol=1e-13)
    assert not torch.equal(permuted["hidden.0.linear.weight"], params["hidden.0.linear.weight"])
    with pytest.raises(ValueError, match=r"perms\[0\]: expected a permutation of 0..5"):
        permute_units(params, chain, [torch.zeros(6, dtype=torch.long), None, None])


def test_rescaling_is_a_symmetry_of_relu_only_and_transforms_the_hessian():
    X, y = _data(n=16)
    relu = MLP(3, 2, width=5, depth=2, activation="relu", bias_init_std=0.2, seed=0).double()
    chain = mlp_chain(relu)
    params = dict(relu.named_parameters())
    k = torch.tensor([0.5, 2.0, 3.0, 0.1, 7.0], dtype=F64)
    rescaled = rescale_units(params, chain, 1, k)
    assert torch.allclose(_outputs(relu, rescaled, X), relu(X), atol=1e-12)
    tanh = MLP(3, 2, width=5, depth=2, activation="tanh", seed=0).double()
    assert not torch.allclose(_outputs(tanh, rescale_units(dict(tanh.named_parameters()), chain, 1, k), X), tanh(X))
    # H(D theta) = D^-1 H(theta) D^-1, with D the rescaling of a vector of ones
    obj = Objective(relu, nn.MSELoss(), (X, y))
    D = flatten(rescale_units({n: torch.ones_like(t) for n, t in obj.params.items()}, chain, 1, k))
    theta = obj.flat_parameters()
    H, H_rescaled = exact_hessian(obj, theta), exact_hessian(obj, flatten(rescaled))
    assert torch.allclose(H_rescaled, H / D[:, None] / D[None, :], rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="scale: expected a positive number"):
        rescale_units(params, chain, 0, -1.0)
    with pytest.raises(ValueError, match="layer: expected a hidden layer index in 0..1"):
        rescale_units(params, chain, 2, 1.0)


def test_weight_matching_recovers_a_hidden_permutation():
    model = MLP(4, 3, width=8, depth=3, activation="relu", bias_init_std=0.5, seed=3).double()
    chain = mlp_chain(model)
    a = {n: p.detach() for n, p in model.named_parameters()}
    hidden = random_permutations(a, chain, torch.Generator().manual_seed(7))
    b = permute_units(a, chain, hidden)
    found = weight_matching(a, b, chain, generator=torch.Generator().manual_seed(0))
    aligned = permute_units(b, chain, found)
    for name in a:
        assert torch.equal(aligned[name], a[name])


def test_weight_matching_one_layer_is_the_optimal_assignment():
    chain = Chain(("a", "b"), ((),))
    g = torch.Generator().manual_seed(0)
    a = {"a.weight": torch.randn(4, 2, generator=g, dtype=F64), "b.weight": torch.randn(1, 4, generator=g, dtype=F64)}
    b = {"a.weight": torch.randn(4, 2, generator=g, dtype=F64), "b.weight": torch.randn(1, 4, generator=g, dtype=F64)}

    def score(perm):
        p = permute_units(b, chain, [perm])
        return sum(float((a[n] * p[n]).sum()) for n in a)

    best = max(score(torch.tensor(p)) for p in itertools.permutations(range(4)))
    assert score(weight_matching(a, b, chain)[0]) == pytest.approx(best)


def test_mlp_chain_layouts_and_refusals():
    seq = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    assert mlp_chain(seq) == Chain(("0", "2"), ((),))
    with pytest.raises(ValueError, match="residual"):
        mlp_chain(MLP(3, 2, width=4, depth=2, residual="plain"))
    with pytest.raises(ValueError, match="batch normalisation"):
        mlp_chain(MLP(3, 2, width=4, depth=2, norm="batchnorm"))
    with pytest.raises(TypeError, match="model: expected"):
        mlp_chain(nn.Linear(2, 2))


# ------------------------------------------------------------------------------------------------ critical
def test_hessian_index_counts_clearly_negative_eigenvalues():
    assert hessian_index(torch.tensor([-1.0, -1e-12, 0.5, 2.0])) == 0.25
    assert hessian_index(torch.tensor([-1.0, -0.1, 2.0]), tol=0.5) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="tol"):
        hessian_index(torch.tensor([1.0]), tol=-1.0)


def test_critical_point_of_a_scalar_linear_network():
    # f(x) = w2 w1 x, L = 1/2 E (w2 w1 x - y)^2 with E x^2 = s, E xy = c: the origin is a saddle with
    # eigenvalues -c and +c (index 1/2); the minima lie on w1 w2 = c / s.
    g = torch.Generator().manual_seed(0)
    x = torch.randn(50, 1, generator=g, dtype=F64)
    y = 0.7 * x + 0.1 * torch.randn(50, 1, generator=g, dtype=F64)
    model = nn.Sequential(nn.Linear(1, 1, bias=False), nn.Linear(1, 1, bias=False)).double()
    obj = Objective(model, lambda out, t: 0.5 * (out - t).pow(2).mean(), (x, y))
    s, c = float((x * x).mean()), float((x * y).mean())
    saddle = find_critical_point(obj, torch.tensor([1e-3, -2e-3], dtype=F64))
    assert saddle.converged and saddle.theta.abs().max() < 1e-9
    assert saddle.index == 0.5
    assert saddle.eigenvalues.tolist() == pytest.approx([-abs(c), abs(c)], rel=1e-8)
    minimum = find_critical_point(obj, torch.tensor([1.0, 0.5], dtype=F64))
    assert minimum.converged and minimum.index == 0.0
    assert float(minimum.theta.prod()) == pytest.approx(c / s, rel=1e-8)
    with pytest.raises(ValueError, match="theta0: expected a flat vector of shape"):
        find_critical_point(obj, torch.zeros(3, dtype=F64))


# ------------------------------------------------------------------------------------- training from a flat start
def test_fit_from_a_flat_start_is_gd_on_the_flat_vector():
    # the landscape experiments' pattern: set the model to a flat theta0 (`assign`), train it in place with
    # tdlab.train.fit, read the flat vector back; full-batch SGD is theta <- theta - lr grad L(theta), by hand
    obj = _tanh_objective()
    theta0 = obj.flat_parameters() + 0.1
    assign(obj.params, theta0)
    assert torch.equal(flatten(dict(obj.model.named_parameters())).detach(), theta0)
    fit(obj.model, obj.loss_fn, obj.data.tensors, torch.optim.SGD(obj.model.parameters(), lr=0.1), 5)
    theta = theta0.clone()
    for _ in range(5):
        theta = theta - 0.1 * obj.gradient(theta)
    assert torch.allclose(obj.flat_parameters(), theta, rtol=1e-12)
    with pytest.raises(ValueError, match="vector: expected a 1-D tensor with"):
        assign(obj.params, theta0[:-1])
