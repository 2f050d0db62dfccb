"""information-bottleneck: the binning estimator against ground truth (an identity layer carries 12 bits, a constant
layer none, a copy of the label H(Y), saturated units only their signs) and against an independent count, the
task's symmetry, the stacked networks against separate ones, config validation, re-checking from stored metrics
(the quick run, whose checks must all pass), and corrupted metrics that must flip the checks."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from recheck import assert_rechecks
from torch import nn

from tdlab.experiments.catalogue import information_bottleneck as ib
from tdlab.probes.information import bin_indices, binned_information, code_entropy, row_codes

X = ib.patterns()
Y = ib.icosahedral_labels(X)
H_Y = -(2036 / 4096 * math.log2(2036 / 4096) + 2060 / 4096 * math.log2(2060 / 4096))


# ------------------------------------------------------------------------------------------- the estimator
def test_identity_constant_and_label_copy_layers():
    identity = binned_information(X, Y, 0.0, 1.0)
    assert [v.item() for v in identity] == pytest.approx([12.0, H_Y], abs=1e-12)
    constant = binned_information(torch.full((4096, 5), 0.3), Y, -1.0, 1.0)
    assert [v.item() for v in constant] == [0.0, 0.0]
    copy = binned_information(Y[:, None].float(), Y, 0.0, 1.0)
    assert [v.item() for v in copy] == pytest.approx([H_Y, H_Y], abs=1e-12)
    # the label and one input bit: I(X;T) = H(Y, x_1) (counted), I(T;Y) = H(Y)
    both = torch.stack([Y.float(), X[:, 0]], dim=1)
    i_xt, i_ty = binned_information(both, Y, 0.0, 1.0)
    joint = Counter(zip(Y.tolist(), X[:, 0].int().tolist(), strict=True))
    assert i_xt.item() == pytest.approx(-sum(c / 4096 * math.log2(c / 4096) for c in joint.values()), abs=1e-12)
    assert i_ty.item() == pytest.approx(H_Y, abs=1e-12)


def test_groups_of_equal_size_carry_log_of_their_number():
    """A unit taking k values on k equal groups of inputs: I(X;T) = log2 k, whatever the bins once they separate
    the values; with bins coarser than the values, groups merge."""
    h = (torch.arange(4096) % 8).float()[:, None] / 7  # 8 values in [0, 1]
    assert binned_information(h, Y, 0.0, 1.0, bins=30)[0].item() == pytest.approx(3.0)
    assert binned_information(h, Y, 0.0, 1.0, bins=2)[0].item() == pytest.approx(1.0)


def test_saturated_tanh_units_keep_only_their_signs():
    """The mechanism of Saxe et al.: tanh(beta w.x) with large beta sits in the two end bins, so I(X;T) falls to
    the entropy of the sign pattern, although the layer is still injective for finite beta."""
    w = torch.randn(12, 2, generator=torch.Generator().manual_seed(0))
    z = (2 * X - 1) @ w
    signs = Counter(map(tuple, (z > 0).int().tolist()))
    sign_entropy = -sum(c / 4096 * math.log2(c / 4096) for c in signs.values())
    large = 2 / z.abs().min().item()  # tanh(2) = 0.96 lies in the end bin above 1 - 2/30
    mild, saturated = (binned_information(torch.tanh(beta * z), Y, -1.0, 1.0)[0].item() for beta in (0.1, large))
    assert saturated == pytest.approx(sign_entropy, abs=1e-12)
    assert mild > sign_entropy + 3


def _independent(h: np.ndarray, labels: np.ndarray, low: float, high: float, bins: int) -> tuple[float, float]:
    """I(X;T_b), I(T_b;Y) by counting distinct bin tuples in Python (no radix codes, no sorting)."""
    k = np.clip(np.floor((h - low) / (high - low) * bins), 0, bins - 1).astype(int)
    tuples = [tuple(row) for row in k]

    def entropy(items: list) -> float:
        counts = np.array(list(Counter(items).values())) / len(items)
        return float(-(counts * np.log2(counts)).sum())

    h_t = entropy(tuples)
    return h_t, h_t + entropy(labels.tolist()) - entropy(list(zip(tuples, labels.tolist(), strict=True)))


@pytest.mark.parametrize("units", [1, 3, 13])  # 13 units of 30 bins exceed 62 bits: the distinct-rows path
def test_estimator_against_an_independent_count(units):
    generator = torch.Generator().manual_seed(units)
    h = torch.tanh(torch.randn(3, 500, units, generator=generator))
    labels = torch.randint(0, 3, (500,), generator=generator)
    i_xt, i_ty = binned_information(h, labels, -1.0, 1.0)
    assert i_xt.shape == (3,)
    for g in range(3):
        expected = _independent(h[g].numpy(), labels.numpy(), -1.0, 1.0, 30)
        assert (i_xt[g].item(), i_ty[g].item()) == pytest.approx(expected, abs=1e-9)
        assert i_ty[g] <= i_xt[g] + 1e-12 and i_xt[g] <= math.log2(500) + 1e-12


def test_information_about_the_label_never_exceeds_the_input_s():
    """Data processing: T_b is a function of X, so I(T_b;Y) <= I(X;Y) = H(Y), for any layer and binning."""
    generator = torch.Generator().manual_seed(3)
    h = torch.randn(20, 4096, 4, generator=generator)
    for bins in (2, 30, 1000):
        _, i_ty = binned_information(h, Y, -2.0, 2.0, bins)
        assert bool((i_ty <= H_Y + 1e-12).all())


def test_ranges_broadcast_per_network_and_bad_arguments_are_refused():
    h = torch.stack([torch.rand(100, 2), 10 * torch.rand(100, 2)])  # two nets with ranges [0, 1] and [0, 10]
    labels = torch.zeros(100, dtype=torch.int64)
    per_net = binned_information(h, labels, 0.0, torch.tensor([1.0, 10.0])[:, None, None])[0]
    assert per_net[0] == binned_information(h[0], labels, 0.0, 1.0)[0]
    assert per_net[1] == binned_information(h[1], labels, 0.0, 10.0)[0]
    assert bin_indices(torch.tensor([0.0, 0.5, 1.0]), 0.0, 1.0, bins=2).tolist() == [0, 1, 1]
    assert row_codes(torch.tensor([[[1, 0], [0, 1]]]), bins=2).tolist() == [[2, 1]]
    assert code_entropy(torch.zeros(2, 3, 8, dtype=torch.int64)).tolist() == [[0.0] * 3] * 2
    with pytest.raises(ValueError, match="bins"):
        bin_indices(h, 0.0, 1.0, bins=0)
    with pytest.raises(ValueError, match="high"):
        bin_indices(h, 1.0, 1.0)
    with pytest.raises(ValueError, match="labels"):
        binned_information(h, labels[:50], 0.0, 1.0)


# ---------------------------------------------------------------------------------------- the task and nets
def test_labels_are_balanced_and_icosahedrally_symmetric():
    assert int(Y.sum()) == 2036 and code_entropy(Y).item() == pytest.approx(H_Y, abs=1e-12)
    v = ib.icosahedron()
    angle, axis = 2 * math.pi / 5, v[0]  # a rotation of the icosahedron: 72 degrees about a vertex
    K = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    R = np.eye(3) + math.sin(angle) * K + (1 - math.cos(angle)) * K @ K
    permutation = [int(np.argmin(np.linalg.norm(v - R @ vertex, axis=1))) for vertex in v]
    assert sorted(permutation) == list(range(12)) and permutation != list(range(12))
    moved = torch.empty_like(X)
    moved[:, permutation] = X  # bit i moves to the vertex R v_i
    assert torch.equal(ib.icosahedral_labels(moved), Y)
    assert torch.equal(ib.icosahedral_labels(1 - X), Y)  # flipping every bit: s -> -s


def test_stacked_networks_are_separate_networks():
    model = ib.StackedPerceptrons(ib.WIDTHS, "relu", members=3, generator=torch.Generator().manual_seed(0))
    x = X[torch.randperm(4096, generator=torch.Generator().manual_seed(1))[:50]]
    logits, hidden = model(x), model.hidden(x)
    member_losses = []
    for m in range(3):
        layers: list[nn.Module] = []
        for weight, bias in zip(model.weights, model.biases, strict=True):
            linear = nn.Linear(weight.shape[2], weight.shape[1])
            with torch.no_grad():
                linear.weight.copy_(weight[m])
                linear.bias.copy_(bias[m, :, 0])
            layers += [linear, nn.ReLU()]
        single = nn.Sequential(*layers[:-1])
        torch.testing.assert_close(logits[m].T, single(x))
        torch.testing.assert_close(hidden[2][m].T, single[:6](x))
        loss = nn.functional.cross_entropy(single(x), Y[:50])
        member_losses.append(torch.autograd.grad(loss, single[0].weight)[0])
    total = ib.member_sum_cross_entropy(model(x), Y[:50])
    gradient = torch.autograd.grad(total, model.weights[0])[0]
    for m in range(3):
        torch.testing.assert_close(gradient[m], member_losses[m])
    std = [w.std().item() * math.sqrt(w.shape[1]) for w in model.weights]
    assert all(0.6 < s < 1.0 for s in std)  # 1/sqrt(fan-out), truncated at 2 deviations (0.88 of it)


def test_config_validation():
    with pytest.raises(ValidationError, match="seeds"):
        ib.InformationBottleneckConfig(seeds=3)
    with pytest.raises(ValidationError, match="batch_size"):
        ib.InformationBottleneckConfig(batch_size=5000)
    with pytest.raises(ValidationError, match="bins"):
        ib.InformationBottleneckConfig(bins=1)
    with pytest.raises(ValidationError, match="tested_layers"):
        ib.InformationBottleneckConfig(tested_layers=(5, 6))
    with pytest.raises(ValidationError, match="tested_layers"):
        ib.InformationBottleneckConfig(tested_layers=(4, 4))
    assert ib.EXPERIMENT.make_config("full").tested_layers == (4, 5)
    assert ib.record_steps(ib.InformationBottleneckConfig(steps=100, records=5)).tolist() == [0, 1, 3, 10, 32, 100]


# ------------------------------------------------------------------------------------------- the quick run
@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    config = ib.EXPERIMENT.make_config()
    return config, assert_rechecks(ib.EXPERIMENT, config, tmp_path_factory.mktemp("information_bottleneck"))


def test_quick_run_passes_every_check(quick):
    _, result = quick
    failed = [f"{c.name}: {c.measured}" for c in result.checks if not c.passed]
    assert not failed, failed
    assert len(result.checks) == 7 and set(result.figures) == {"information_plane"}


def _verdicts(metrics, config) -> list[bool]:
    return [c.passed for c in ib.checks(metrics, config)]


def test_checks_fail_on_corrupted_metrics(quick):
    config, result = quick
    metrics = result.metrics
    # order: premise tanh, premise ReLU, fitting tanh, fitting ReLU, tanh compresses, ReLU does not, contrast
    is_xt = metrics["name"] == "I_XT"
    # the activations swapped in the information (as if tanh were binned like ReLU): the three compression checks
    swapped = metrics.copy()
    swapped.loc[is_xt, "activation"] = metrics.loc[is_xt, "activation"].map({"tanh": "relu", "relu": "tanh"})
    assert _verdicts(swapped, config) == [True, True, True, True, False, False, False]
    # tanh never compresses (I(X;T) held at its running peak): its check and the contrast fail
    held = metrics.copy()
    chosen = is_xt & (metrics["activation"] == "tanh")
    held.loc[chosen, "value"] = (
        metrics[chosen].sort_values("step").groupby(["seed", "layer"])["value"].cummax().reindex(metrics[chosen].index)
    )
    assert _verdicts(held, config) == [True, True, True, True, False, True, False]
    # ReLU's last hidden layer loses 3 bits at the last step: "ReLU does not" fails
    dropped = metrics.copy()
    last = is_xt & (metrics["activation"] == "relu") & (metrics["step"] == config.steps) & (metrics["layer"] == 5)
    dropped.loc[last, "value"] -= 3.0
    assert _verdicts(dropped, config)[5] is False
    # the last hidden layer's I(T;Y) equal to I(X;Y) from the start (bins so fine that T_b is injective)
    injective = metrics.copy()
    ty = (metrics["name"] == "I_TY") & (metrics["layer"] == ib.HIDDEN)
    injective.loc[ty, "value"] = ib.value(metrics, "I_XY")
    assert _verdicts(injective, config)[2:4] == [False, False]
    # a tanh net that never learns the label: I(T;Y) stays at its start
    flat = metrics.copy()
    tanh_ty = ty & (metrics["activation"] == "tanh")
    start = metrics[tanh_ty & (metrics["step"] == 0)].set_index("seed")["value"]
    flat.loc[tanh_ty, "value"] = metrics.loc[tanh_ty, "seed"].map(start)
    assert _verdicts(flat, config)[2] is False
    # three of the ReLU nets stay at the majority class: the ReLU premise fails
    dead = metrics.copy()
    acc = (metrics["name"] == "accuracy") & (metrics["activation"] == "relu") & (metrics["step"] == config.steps)
    dead.loc[acc & metrics["seed"].isin([0, 1, 2]), "value"] = 0.5
    assert _verdicts(dead, config)[:2] == [True, False]
