"""Tests of tdlab.models: forward formulas against hand-written references, init variances against their
formulas (within sampling error), signal propagation of ReLU nets against the He et al. (2015) recursion."""

from __future__ import annotations

import itertools
import math
import re

import pytest
import torch
from torch import nn

from tdlab import Objective
from tdlab.models import (
    ACTIVATIONS,
    MLP,
    NORMS,
    RESIDUALS,
    SCHEMES,
    LinearModel,
    RandomFeatures,
    build_model,
    init_variance,
    initialise,
)

# Hand-written activations, the ground truth for the modules the models build.
REFERENCE_ACTIVATIONS = {
    "relu": lambda z: torch.where(z > 0, z, torch.zeros_like(z)),
    "tanh": lambda z: (torch.exp(z) - torch.exp(-z)) / (torch.exp(z) + torch.exp(-z)),
    "gelu": lambda z: 0.5 * z * (1 + torch.erf(z / math.sqrt(2))),
    "linear": lambda z: z,
    "sigmoid": lambda z: 1 / (1 + torch.exp(-z)),
    "leaky_relu": lambda z: torch.where(z > 0, z, 0.01 * z),
}


def reference_norm(name: str | None, z: torch.Tensor) -> torch.Tensor:
    """BatchNorm (train mode, batch statistics) and LayerNorm at their initial affine (1, 0), eps = 1e-5."""
    if name is None:
        return z
    dim = 0 if name == "batchnorm" else 1
    mean, var = z.mean(dim, keepdim=True), z.var(dim, keepdim=True, correction=0)
    return (z - mean) / torch.sqrt(var + 1e-5)


def capture_outputs(
    modules: list[nn.Module],
) -> tuple[list[torch.Tensor], list[torch.utils.hooks.RemovableHandle]]:
    outputs: list[torch.Tensor] = []
    handles = [m.register_forward_hook(lambda _m, _i, o: outputs.append(o.detach())) for m in modules]
    return outputs, handles


# ----------------------------------------------------------------------------------------------- MLP forward
@pytest.mark.parametrize(("activation", "norm", "residual"), list(itertools.product(ACTIVATIONS, NORMS, RESIDUALS)))
def test_mlp_forward_matches_hand_computation(activation, norm, residual):
    depth, width = 3, 7
    model = MLP(
        6,
        3,
        width=width,
        depth=depth,
        activation=activation,
        norm=norm,
        residual=residual,
        bias_init_std=0.1,
        seed=0,
    ).double()
    X = torch.randn(5, 2, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    hidden, handles = capture_outputs(model.hidden_layers())
    out = model(X)
    for handle in handles:
        handle.remove()

    phi = REFERENCE_ACTIVATIONS[activation]
    scaled = 1 / math.sqrt(depth)
    alpha = {None: 0.0, "plain": 1.0, "scaled": scaled, "preact": 1.0, "preact-scaled": scaled}[residual]
    h = X.reshape(5, 6)
    p = dict(model.named_parameters())
    expected_hidden = []
    for l in range(depth):
        W, b = p[f"hidden.{l}.linear.weight"], p[f"hidden.{l}.linear.bias"]
        if residual in ("preact", "preact-scaled"):  # h_1 = W_1 x + b_1, h_l = h + alpha (W phi(norm(h)) + b)
            h = h @ W.T + b if l == 0 else h + alpha * (phi(reference_norm(norm, h)) @ W.T + b)
        else:
            z = phi(reference_norm(norm, h @ W.T + b))
            h = z if l == 0 or residual is None else h + alpha * z
        expected_hidden.append(h)
    expected_out = h @ p["readout.weight"].T + p["readout.bias"]

    assert len(hidden) == depth
    for got, want in zip(hidden, expected_hidden, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(out, expected_out, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(("init", "bias"), list(itertools.product(SCHEMES, [True, False])))
@pytest.mark.parametrize("norm", NORMS)
def test_mlp_shapes_and_parameter_count(init, bias, norm):
    d, n, k, L = 6, 9, 4, 3
    model = MLP(d, k, width=n, depth=L, norm=norm, bias=bias, init=init, seed=0)
    hidden, _ = capture_outputs(model.hidden_layers())
    assert model(torch.randn(11, 2, 3)).shape == (11, k)
    assert [tuple(h.shape) for h in hidden] == [(11, n)] * L
    weights = d * n + (L - 1) * n * n + n * k
    biases = (L * n + k) if bias else 0
    norm_params = 2 * n * L if norm is not None else 0
    assert sum(p.numel() for p in model.parameters()) == weights + biases + norm_params


def test_mlp_depth_zero_is_linear():
    model = MLP(5, 2, depth=0, seed=0)
    X = torch.randn(3, 5)
    assert model.hidden_layers() == []
    torch.testing.assert_close(model(X), X @ model.readout.weight.T + model.readout.bias)


def test_residual_scaled_and_plain_differ_only_by_alpha():
    depth, X = 4, torch.randn(8, 5, generator=torch.Generator().manual_seed(0))
    for residual, alpha in (("plain", 1.0), ("scaled", 0.5)):  # post-activation branches
        model = MLP(5, 1, width=6, depth=depth, activation="tanh", residual=residual, seed=3)
        assert model.residual_scale == alpha
        blocks = model.hidden_layers()
        hidden, _ = capture_outputs(blocks)
        branch, _ = capture_outputs([b.activation for b in blocks])
        model(X)
        torch.testing.assert_close(hidden[0], branch[0])  # the first layer changes the dimension: no skip
        for l in range(1, depth):
            torch.testing.assert_close(hidden[l] - hidden[l - 1], alpha * branch[l])
    same_seed = [MLP(5, 1, width=6, depth=depth, residual=r, seed=3).state_dict() for r in RESIDUALS]
    for state in same_seed[1:]:
        assert all(torch.equal(state[key], same_seed[0][key]) for key in state)


# ------------------------------------------------------------------------------------------ initialisation
def sample_variance_tolerance(sigma2: float, kurtosis: float, n: int) -> float:
    """5 standard errors of the sample variance of n draws, 5 sqrt((mu4 - sigma^4) / n), mu4 = k sigma^4."""
    return 5 * sigma2 * math.sqrt((kurtosis - 1) / n)


@pytest.mark.parametrize("scale", [0.5, 2.0])
@pytest.mark.parametrize("scheme", ["normal", "xavier", "he", "default"])
def test_init_variance_matches_formula_empirically(scheme, scale):
    fan_in, fan_out = 1000, 400
    layer = initialise(nn.Linear(fan_in, fan_out), scheme, scale=scale, generator=torch.Generator().manual_seed(0))
    w = layer.weight.detach().double().flatten()
    n = w.numel()
    sigma2 = {
        "normal": scale**2,
        "xavier": scale**2 * 2 / (fan_in + fan_out),
        "he": scale**2 * 2 / fan_in,
        "default": scale**2 / (3 * fan_in),
    }[scheme]
    assert init_variance(scheme, fan_in, fan_out, scale) == pytest.approx(sigma2, rel=1e-12)
    gaussian = scheme != "default"
    kurtosis = 3.0 if gaussian else 9 / 5  # uniform on [-a, a]: mu4 = a^4 / 5, sigma^2 = a^2 / 3
    assert abs(w.var(correction=1).item() - sigma2) < sample_variance_tolerance(sigma2, kurtosis, n)
    assert abs(w.mean().item()) < 5 * math.sqrt(sigma2 / n)
    # The law itself: P(|w| < sigma) is 0.6827 for a Gaussian, 1/sqrt(3) for a uniform.
    p = math.erf(1 / math.sqrt(2)) if gaussian else 1 / math.sqrt(3)
    inside = (w.abs() < math.sqrt(sigma2)).double().mean().item()
    assert abs(inside - p) < 5 * math.sqrt(p * (1 - p) / n)
    if gaussian:
        assert torch.count_nonzero(layer.bias) == 0
    else:
        assert layer.weight.abs().max() <= scale / math.sqrt(fan_in)
        assert layer.bias.abs().max() <= 1 / math.sqrt(fan_in)  # torch's bias law, not rescaled


def test_init_bias_std_and_conv_fans():
    g = torch.Generator().manual_seed(0)
    layer = initialise(nn.Linear(3, 40000), "he", bias_std=0.3, generator=g)
    b = layer.bias.detach().double()
    assert abs(b.var().item() - 0.09) < sample_variance_tolerance(0.09, 3.0, b.numel())
    conv = initialise(nn.Conv2d(16, 32, kernel_size=3), "xavier", generator=g)
    sigma2 = 2 / (16 * 9 + 32 * 9)  # fan_in = in_channels * kernel area, fan_out = out_channels * kernel area
    w = conv.weight.detach().double()
    assert abs(w.var().item() - sigma2) < sample_variance_tolerance(sigma2, 3.0, w.numel())


def test_init_variance_values_and_zeros():
    assert init_variance("he", 100, 10) == pytest.approx(0.02)
    assert init_variance("xavier", 100, 300) == pytest.approx(0.005)
    assert init_variance("normal", 7, 9, scale=3.0) == pytest.approx(9.0)
    assert init_variance("default", 50, 1) == pytest.approx(1 / 150)
    assert init_variance("zeros", 5, 5) == 0.0
    model = initialise(MLP(4, 2, width=8, depth=2), "zeros")
    assert all(torch.count_nonzero(p) == 0 for p in model.parameters())


def test_default_scheme_without_generator_keeps_torch_draw():
    torch.manual_seed(0)
    layer = nn.Linear(20, 30)
    weight, bias = layer.weight.detach().clone(), layer.bias.detach().clone()
    initialise(layer, "default", scale=2.0)
    torch.testing.assert_close(layer.weight.detach(), 2 * weight)
    torch.testing.assert_close(layer.bias.detach(), bias)
    initialise(layer, "default", generator=torch.Generator().manual_seed(0))
    assert not torch.equal(layer.weight.detach(), 2 * weight)


def test_initialise_touches_only_linear_layers_in_order():
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Sequential(nn.Tanh(), nn.Linear(4, 2)))
    initialise(model, "normal", generator=torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    torch.testing.assert_close(model[0].weight.detach(), torch.randn(4, 3, generator=g))
    torch.testing.assert_close(model[2][1].weight.detach(), torch.randn(2, 4, generator=g))
    assert torch.equal(model[1].weight.detach(), torch.ones(4))


def relu_second_moments(init: str, width: int, depth: int, nets: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Over `nets` networks of bias-free ReLU layers n -> n and a batch of inputs, the means of the layer
    gains r_l(x) = |h_l(x)|^2 / |h_{l-1}(x)|^2 (h_0 = x) and of the cumulative ratios |h_l(x)|^2 / |x|^2."""
    X = torch.randn(64, width, generator=torch.Generator().manual_seed(123))
    gains = torch.zeros(depth, dtype=torch.float64)
    cumulative = torch.zeros(depth, dtype=torch.float64)
    for seed in range(nets):
        model = MLP(width, 1, width=width, depth=depth, activation="relu", bias=False, init=init, seed=seed)
        hidden, _ = capture_outputs(model.hidden_layers())
        with torch.no_grad():
            model(X)
        norms = torch.stack([h.double().square().sum(dim=1) for h in [X, *hidden]])  # (depth + 1, batch)
        gains += (norms[1:] / norms[:-1]).mean(dim=1)
        cumulative += (norms[1:] / norms[0]).mean(dim=1)
    return gains / nets, cumulative / nets


def test_he_init_preserves_relu_second_moment_and_normal_init_explodes():
    """Given h_{l-1}, z = W h_{l-1} has i.i.d. N(0, s2 |h_{l-1}|^2) entries (s2 = Var W_ij), so the gain
    r_l = |relu(z)|^2 / |h_{l-1}|^2 = s2 sum_i B_i chi2_i (B_i ~ Bernoulli(1/2), chi2_i ~ chi2_1) does not
    depend on h_{l-1}: E r_l = s2 n / 2 (He et al. 2015: 1 under He init, n / 2 under N(0, 1)) and
    Var r_l / (E r_l)^2 = 4 * 1.25 / n = 5 / n. Hence the product of l gains has relative variance
    (1 + 5/n)^l - 1, the gains of successive layers are uncorrelated (martingale differences), a batch mean
    has at most the variance of one input, and independent networks divide it by their number."""
    width, depth, nets = 512, 10, 16
    layers = torch.arange(1, depth + 1, dtype=torch.float64)
    gain_tolerance = 5 * math.sqrt(5 / width / (depth * nets))
    cumulative_tolerance = 5 * torch.sqrt(((1 + 5 / width) ** layers - 1) / nets)
    for init, gain in (("he", 1.0), ("normal", width / 2)):
        gains, cumulative = relu_second_moments(init, width, depth, nets)
        assert abs(gains.mean().item() / gain - 1) < gain_tolerance, (init, gains)
        assert torch.all((cumulative / gain**layers - 1).abs() < cumulative_tolerance), (init, cumulative)


# --------------------------------------------------------------------------------------------- seeding
@pytest.mark.parametrize(
    "make",
    [
        lambda seed: MLP(5, 3, width=16, depth=3, init="xavier", bias_init_std=0.1, seed=seed),
        lambda seed: MLP(5, 3, width=16, depth=2, init="default", seed=seed),
        lambda seed: RandomFeatures(5, 40, 2, init="he", seed=seed),
        lambda seed: LinearModel(5, 2, init="normal", seed=seed),
    ],
)
def test_same_seed_same_weights(make):
    a, b, c = make(7).state_dict(), make(7).state_dict(), make(8).state_dict()
    assert all(torch.equal(a[key], b[key]) for key in a)
    assert not all(torch.equal(a[key], c[key]) for key in a if a[key].is_floating_point() and a[key].any())
    generated = make(torch.Generator().manual_seed(7)).state_dict()
    assert all(torch.equal(a[key], generated[key]) for key in a)


def test_no_seed_follows_torch_global_generator():
    torch.manual_seed(11)
    a = MLP(4, 2, width=8, depth=2).state_dict()
    torch.manual_seed(11)
    b = MLP(4, 2, width=8, depth=2).state_dict()
    assert all(torch.equal(a[key], b[key]) for key in a)


# ----------------------------------------------------------------------------------- shallow models
def test_random_features_forward_and_fixed_first_layer():
    d, N = 30, 2000
    model = RandomFeatures(d, N, 2, activation="tanh", init="he", bias=True, seed=0).double()
    F = model.feature_weight
    assert [name for name, _ in model.named_parameters()] == ["readout.weight", "readout.bias"]
    assert "feature_weight" in model.state_dict() and F.dtype == torch.float64
    assert abs(F.var().item() - 1 / d) < sample_variance_tolerance(1 / d, 3.0, F.numel())
    X = torch.randn(6, d, dtype=torch.float64)
    expected = torch.tanh(X @ F.T) @ model.readout.weight.T + model.readout.bias
    torch.testing.assert_close(model(X), expected)
    features, _ = capture_outputs(model.hidden_layers())
    model(X)
    torch.testing.assert_close(features[0], torch.tanh(X @ F.T))
    gradient = Objective(model, nn.MSELoss(), (X, torch.randn(6, 2, dtype=torch.float64))).gradient()
    assert gradient.shape == (N * 2 + 2,)  # only the readout is trained


def test_zero_initialised_readouts_and_linear_model():
    assert RandomFeatures(4, 10, 1, seed=0)(torch.randn(3, 4)).abs().max() == 0
    model = LinearModel(6, 2, init="he", seed=0)
    X = torch.randn(3, 2, 3)
    torch.testing.assert_close(model(X), X.reshape(3, 6) @ model.linear.weight.T + model.linear.bias)
    assert LinearModel(6, 2).linear.weight.abs().max() == 0
    assert model.hidden_layers() == []


def test_build_model_registry():
    assert isinstance(build_model("mlp", 4, 2, width=8, depth=1), MLP)
    assert build_model("linear", 4, 2, bias=False).linear.bias is None
    rf = build_model("random-features", 4, 3, num_features=12, activation="gelu", seed=0)
    assert isinstance(rf, RandomFeatures) and rf(torch.randn(2, 4)).shape == (2, 3)


# ------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda: MLP(3, 1, activation="swish"),
            "activation: expected one of 'relu', 'tanh', 'gelu', 'linear', 'sigmoid', 'leaky_relu', got 'swish'",
        ),
        (
            lambda: MLP(3, 1, norm="groupnorm"),
            "norm: expected one of None, 'batchnorm', 'layernorm', got 'groupnorm'",
        ),
        (
            lambda: MLP(3, 1, residual="gated"),
            "residual: expected one of None, 'plain', 'scaled', 'preact', 'preact-scaled', got 'gated'",
        ),
        (
            lambda: MLP(3, 1, init="lecun"),
            "init: expected one of 'normal', 'xavier', 'he', 'default', 'zeros', got 'lecun'",
        ),
        (lambda: MLP(3, 1, depth=-1), "depth: expected an integer >= 0, got -1"),
        (lambda: MLP(3, 1, width=0), "width: expected an integer >= 1, got 0"),
        (lambda: RandomFeatures(3, 10, 1, activation="elu"), "activation: expected one of 'relu'"),
        (
            lambda: build_model("cnn", 3, 1),
            "model: expected one of 'mlp', 'linear', 'random-features', got 'cnn'",
        ),
        (lambda: initialise(nn.Linear(2, 2), "orthogonal"), "scheme: expected one of 'normal', 'xavier'"),
        (lambda: initialise(nn.Linear(2, 2), "default", bias_std=0.1), "bias_std: the 'default' scheme"),
        (lambda: initialise(nn.Linear(2, 2), "he", scale=-1.0), "scale: expected a non-negative number"),
        (lambda: initialise(nn.Tanh(), "he"), "module: expected nn.Linear or nn.Conv layers"),
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(build, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        build()


def test_seed_of_wrong_type_raises_type_error():
    with pytest.raises(TypeError, match="seed: expected an int, a torch.Generator or None"):
        MLP(3, 1, seed=1.5)


# --------------------------------------------------------------------------------------------- devices
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_same_weights_and_outputs_on_cuda():
    cpu = MLP(5, 3, width=32, depth=3, norm="layernorm", residual="scaled", seed=0)
    cuda = MLP(5, 3, width=32, depth=3, norm="layernorm", residual="scaled").cuda()
    initialise(cuda, "he", generator=torch.Generator().manual_seed(0))
    assert all(torch.equal(p.cpu(), q) for p, q in zip(cuda.parameters(), cpu.parameters(), strict=True))
    X = torch.randn(4, 5)
    torch.testing.assert_close(cuda(X.cuda()).cpu(), cpu(X), rtol=1e-4, atol=1e-5)
    rf = RandomFeatures(5, 20, 1, init="he", seed=0)
    torch.testing.assert_close(rf.cuda()(X.cuda()).cpu(), rf.cpu()(X), rtol=1e-4, atol=1e-5)
