"""The oracles against ground truth: autograd's dense Hessian and Jacobian of small float64 nets."""

import pytest
import torch
from torch import nn
from torch.autograd.functional import hessian, jacobian

from tdlab import Objective
from tdlab.oracles import flatten, unflatten


def make_net(activation: type[nn.Module], outputs: int, norm: bool = False) -> nn.Module:
    torch.manual_seed(0)
    layers = [nn.Linear(4, 6)] + ([nn.BatchNorm1d(6)] if norm else []) + [activation(), nn.Linear(6, outputs)]
    return nn.Sequential(*layers).double()


def dense_loss(obj: Objective, loss_fn, X, y):
    return lambda theta: loss_fn(obj.outputs(unflatten(theta, obj.params), X), y)


CASES = [
    (nn.Tanh, nn.MSELoss(), lambda n: torch.randn(n, 2, dtype=torch.float64), 2),
    (nn.ReLU, nn.CrossEntropyLoss(), lambda n: torch.randint(0, 3, (n,)), 3),
    (nn.Tanh, nn.CrossEntropyLoss(), lambda n: torch.randint(0, 3, (n,)), 3),
]


@pytest.mark.parametrize(("activation", "loss_fn", "targets", "outputs"), CASES)
@pytest.mark.parametrize("batch_size", [None, 7])
def test_oracles_match_autograd(activation, loss_fn, targets, outputs, batch_size):
    torch.manual_seed(1)
    X, y = torch.randn(20, 4, dtype=torch.float64), targets(20)
    obj = Objective(make_net(activation, outputs), loss_fn, (X, y), batch_size=batch_size)
    theta = obj.flat_parameters() + 0.1 * torch.randn(obj.dim, dtype=torch.float64)
    f = dense_loss(obj, loss_fn, X, y)
    H = hessian(f, theta)
    J = jacobian(lambda t: obj.outputs(unflatten(t, obj.params), X), theta).reshape(-1, obj.dim)
    out = obj.outputs(unflatten(theta, obj.params), X).detach()
    H_L = hessian(lambda o: loss_fn(o.view_as(out), y), out.reshape(-1))
    G = J.T @ H_L @ J
    v = torch.randn(obj.dim, dtype=torch.float64)

    assert obj.value(theta).item() == pytest.approx(f(theta).item(), rel=1e-12)
    value, g = obj.value_and_gradient(theta)
    assert value.item() == pytest.approx(f(theta).item(), rel=1e-12)
    torch.testing.assert_close(g, torch.autograd.functional.jacobian(f, theta), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(obj.hvp(v, theta), H @ v, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(obj.ggn_vp(v, theta), G @ v, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize(("activation", "loss_fn", "targets", "outputs"), CASES)
@pytest.mark.parametrize("batch_size", [None, 7])
@pytest.mark.parametrize("keep_graphs", [None, True, False])
def test_hvp_function_matches_the_dense_hessian_for_many_vectors(
    activation, loss_fn, targets, outputs, batch_size, keep_graphs
):
    torch.manual_seed(4)
    X, y = torch.randn(20, 4, dtype=torch.float64), targets(20)
    obj = Objective(make_net(activation, outputs), loss_fn, (X, y), batch_size=batch_size)
    theta = obj.flat_parameters() + 0.1 * torch.randn(obj.dim, dtype=torch.float64)
    H = hessian(dense_loss(obj, loss_fn, X, y), theta)
    product = obj.hvp_function(theta, keep_graphs=keep_graphs)
    for _ in range(3):  # the kept graphs serve every product
        v = torch.randn(obj.dim, dtype=torch.float64)
        torch.testing.assert_close(product(v), H @ v, rtol=1e-8, atol=1e-10)
    v = torch.randn(obj.dim, dtype=torch.float64)
    as_dict = product(unflatten(v, obj.params))
    assert isinstance(as_dict, dict)
    torch.testing.assert_close(flatten(as_dict), H @ v, rtol=1e-8, atol=1e-10)


class WithUnused(nn.Module):
    """A conv net with BatchNorm in eval mode, ReLU in and out of place, and a parameter the loss ignores."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(2, 4, 3, stride=2, padding=1),
            nn.BatchNorm2d(4),
            nn.ReLU(),
            nn.Conv2d(4, 4, 3, padding=2, dilation=2, groups=2, bias=False),
            nn.BatchNorm2d(4),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(4, 3),
        )
        self.unused = nn.Parameter(torch.ones(2))

    def forward(self, x):
        return self.net(x)


@pytest.mark.parametrize("keep_graphs", [True, False])
def test_hvp_of_a_conv_net_with_eval_batchnorm_matches_the_dense_hessian(keep_graphs):
    torch.manual_seed(6)
    model = WithUnused().double()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
    model.eval()
    X, y = torch.randn(12, 2, 7, 7, dtype=torch.float64), torch.randint(0, 3, (12,))
    obj = Objective(model, nn.CrossEntropyLoss(), (X, y))
    theta = obj.flat_parameters() + 0.1 * torch.randn(obj.dim, dtype=torch.float64)
    H = hessian(dense_loss(obj, nn.CrossEntropyLoss(), X, y), theta)
    assert list(obj.params)[0] == "unused" and H[:, :2].abs().max() == 0  # its rows and columns are zero
    product = obj.hvp_function(theta, keep_graphs=keep_graphs)
    V = torch.randn(obj.dim, 3, dtype=torch.float64)
    for j in range(3):
        torch.testing.assert_close(product(V[:, j]), H @ V[:, j], rtol=1e-8, atol=1e-10)
    columns = torch.func.vmap(product, in_dims=1, out_dims=1)(V)  # as HessianOperator @ V does
    torch.testing.assert_close(columns, H @ V, rtol=1e-8, atol=1e-10)


def test_kept_graphs_are_the_default_for_one_batch_in_memory_and_fix_dropout_masks():
    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Dropout(0.5), nn.Linear(16, 1)).double()
    X, y = torch.randn(32, 4, dtype=torch.float64), torch.randn(32, 1, dtype=torch.float64)
    v = torch.randn(sum(p.numel() for p in model.parameters()), dtype=torch.float64)
    one_batch = Objective(model, nn.MSELoss(), (X, y)).hvp_function()
    # Train mode: one dropout mask serves every product of a kept graph (a fixed matrix) ...
    torch.testing.assert_close(one_batch(v), one_batch(v), rtol=0, atol=0)
    # ... while recomputed products draw a fresh mask each time.
    chunked = Objective(model, nn.MSELoss(), (X, y), batch_size=8).hvp_function()
    assert not torch.equal(chunked(v), chunked(v))


def test_dict_in_dict_out_and_model_untouched():
    torch.manual_seed(2)
    model = make_net(nn.Tanh, 2)
    before = {k: p.detach().clone() for k, p in model.named_parameters()}
    obj = Objective(model, nn.MSELoss(), (torch.randn(10, 4), torch.randn(10, 2)))
    theta = {k: p + 1.0 for k, p in before.items()}
    grad_dict = obj.gradient(theta)
    assert isinstance(grad_dict, dict) and set(grad_dict) == set(before)
    torch.testing.assert_close(flatten(grad_dict), obj.gradient(flatten(theta)))
    hv = obj.hvp(grad_dict, theta)
    assert isinstance(hv, dict)
    for k, p in model.named_parameters():
        assert torch.equal(p, before[k])


def test_batchnorm_train_mode_uses_batch_statistics_without_updating_running_ones():
    torch.manual_seed(3)
    model = make_net(nn.ReLU, 1, norm=True)
    X, y = torch.randn(16, 4, dtype=torch.float64), torch.randn(16, 1, dtype=torch.float64)
    obj = Objective(model, nn.MSELoss(), (X, y), batch_size=8)
    running = model[1].running_mean.clone()
    v = torch.randn(obj.dim, dtype=torch.float64)
    obj.value(), obj.gradient(), obj.hvp(v), obj.ggn_vp(v)
    assert torch.equal(model[1].running_mean, running)
    assert model[1].num_batches_tracked.item() == 0
    # Batch statistics: the mini-batch objective is the mean of the two half-batch losses.
    halves = [nn.MSELoss()(model(X[i : i + 8]), y[i : i + 8]) for i in (0, 8)]
    model[1].running_mean.copy_(running)
    model[1].num_batches_tracked.zero_()
    assert obj.value().item() == pytest.approx(0.5 * (halves[0] + halves[1]).item(), rel=1e-12)
    # Eval mode: running statistics, one deterministic function whatever the batch split.
    model.eval()
    full = Objective(model, nn.MSELoss(), (X, y))
    assert obj.value().item() == pytest.approx(full.value().item(), rel=1e-12)
    torch.testing.assert_close(obj.hvp(v), full.hvp(v))


def test_bad_input_names_the_argument():
    model = make_net(nn.Tanh, 2)
    with pytest.raises(ValueError, match="batch_size"):
        Objective(model, nn.MSELoss(), (torch.randn(4, 4), torch.randn(4, 2)), batch_size=0)
    with pytest.raises(ValueError, match="data"):
        Objective(model, nn.MSELoss(), (torch.randn(4, 4), torch.randn(5, 2)))
    with pytest.raises(TypeError, match="data"):
        Objective(model, nn.MSELoss(), [1, 2, 3])
    obj = Objective(model, nn.MSELoss(), (torch.randn(4, 4), torch.randn(4, 2)))
    with pytest.raises(ValueError, match="vector"):
        obj.hvp(torch.zeros(3))
