"""adam-properties: the epsilon identity (Adam on c L is Adam on L with eps/c, bit for bit for c a power of 2), the
tangent response against finite differences, the frozen-path limit, the reparameterisation identity, the stacked
per-member learning rates against separate runs, the storage tracker against known allocations, config
validation, re-checking from stored metrics (the quick run, whose checks must all pass), and corrupted metrics that
must flip each check."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from pydantic import ValidationError
from recheck import assert_rechecks
from torch import nn
from torch.func import functional_call

from tdlab.ensemble.members import Members
from tdlab.ensemble.stacked import StackedModels
from tdlab.experiments.catalogue import adam_properties as ap
from tdlab.models import MLP
from tdlab.optim.reference import adam_step
from tdlab.train.trainer import fit

SMALL = {"examples": 16, "features": 3, "width": 4, "steps": 20}


def _network(**changes):
    config = ap.AdamPropertiesConfig(**{**SMALL, **changes})
    model, X, y = ap.invariance_network(config, torch.device("cpu"))
    return config, model, X, y


def _loss(model, X, y):
    names = [name for name, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]

    def loss(w):
        pieces = torch.split(w, [math.prod(s) for s in shapes])
        params = {n: p.view(s) for n, p, s in zip(names, pieces, shapes, strict=True)}
        return (functional_call(model, params, (X,)) - y).square().mean()

    return loss


def _reference_adam(loss, w, steps, lr, eps, betas=(0.9, 0.999)):
    state = None
    for _ in range(steps):
        leaf = w.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(loss(leaf), leaf)
        w, state = adam_step(w.detach(), g, state, lr, betas, eps)
    return w


@pytest.mark.parametrize("optimiser", ["adam", "lecture-adam"])
def test_adam_on_a_scaled_loss_is_adam_with_a_scaled_epsilon_bit_for_bit(optimiser):
    """c = 2^-20: every gradient, m, sqrt(v) and the denominator scale exactly, so the iterates are identical."""
    config, model, X, y = _network()
    c = 2.0**-20
    scaled = ap._train_scaled(config, optimiser, np.array([c]), model, X, y)[1]
    config_eps = config.model_copy(update={"eps": config.eps / c})
    plain = ap._train_scaled(config_eps, optimiser, np.array([1.0]), model, X, y)[1]
    assert torch.equal(scaled, plain)


def test_eps_response_against_central_differences_of_the_reference_rule():
    config, model, X, y = _network()
    loss = _loss(model, X, y)
    w0 = ap._flat(model.parameters())
    eps, h, lr = 1e-3, 1e-7, 0.05
    direction = torch.linspace(0.5, 2.0, w0.numel(), dtype=torch.float64)  # a per-coordinate epsilon direction
    w_T, (response,), m_hats, sigmas = ap.adam_eps_response(loss, w0, 20, lr, (0.9, 0.999), eps, [direction])
    torch.testing.assert_close(w_T, _reference_adam(loss, w0, 20, lr, eps), rtol=0, atol=1e-14)

    def perturbed(sign):  # the reference rule with a per-coordinate epsilon eps + sign h direction, by hand
        w, m, v = w0.clone(), torch.zeros_like(w0), torch.zeros_like(w0)
        for t in range(1, 21):
            leaf = w.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(loss(leaf), leaf)
            m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
            w = w.detach() - lr * (m / (1 - 0.9**t)) / ((v / (1 - 0.999**t)).sqrt() + eps + sign * h * direction)
        return w

    difference = (perturbed(1) - perturbed(-1)) / (2 * h)
    torch.testing.assert_close(response, difference, rtol=1e-5, atol=1e-9 * difference.abs().max().item())
    assert m_hats.shape == sigmas.shape == (20, w0.numel())


def test_frozen_path_is_the_whole_path_as_c_vanishes_and_zero_at_c_one():
    config, model, X, y = _network()
    loss = _loss(model, X, y)
    w0 = ap._flat(model.parameters())
    w_T, _, m_hats, sigmas = ap.adam_eps_response(loss, w0, 20, 0.05, (0.9, 0.999), 1e-8, [])
    change = ap.frozen_path_change(m_hats, sigmas, 0.05, 1e-8, np.array([1e-40, 1.0]))
    assert change[0] == pytest.approx(float((w_T - w0).norm()), rel=1e-12)
    assert change[1] == 0.0


def test_half_crossing_and_widths_edge_cases():
    scales = np.array([1e-3, 1e-2, 1e-1])
    assert math.isnan(ap.half_crossing(scales, np.array([0.9, 0.8, 0.7])))  # never breaks
    assert math.isnan(ap.half_crossing(scales, np.array([0.4, 0.3, 0.2])))  # broken already at the smallest scale
    losses = np.array([[np.inf, 1.0, 3.0], [np.nan, 2.0, 2.0]])
    np.testing.assert_allclose(ap.good_width(losses, np.array([1.0, 1.0]), 2.0, 2), [0.5, 1.0])


def test_adam_on_rescaled_parameters_is_adam_with_per_coordinate_learning_rates():
    """w = d u: Adam's step in u is m_hat/sigma of w's gradient (the d cancels), so w moves by lr d m_hat/sigma
    (eps -> 0); a rescaled gradient leaves Adam unchanged."""
    config, model, X, y = _network(eps=1e-300)
    loss = _loss(model, X, y)
    w0 = ap._flat(model.parameters())
    d = ap._diagonal(config, w0.numel(), torch.device("cpu"))
    w, state = w0.clone(), None
    for _ in range(config.steps):
        leaf = w.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(loss(leaf), leaf)
        unit, state = adam_step(torch.zeros_like(w), g, state, 1.0, config.betas, 0.0)  # -m_hat / sigma
        w = w.detach() + config.adam_lr * d * unit
    torch.testing.assert_close(ap.train_rescaled(config, model, X, y, d, "parameters"), w, rtol=1e-10, atol=1e-12)
    plain = _reference_adam(loss, w0, config.steps, config.adam_lr, 0.0)
    torch.testing.assert_close(ap.train_rescaled(config, model, X, y, d, "gradient"), plain, rtol=1e-10, atol=1e-12)
    assert (w - plain).norm() > 0.1 * (plain - w0).norm()


def test_member_rates_train_every_member_as_its_own_run():
    X = torch.randn(24, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    y = X.sum(dim=1, keepdim=True).sin()
    lrs = [1e-3, 1e-2, 1e-1]
    models = [MLP(3, 1, width=5, depth=1, seed=7).double() for _ in range(2 * len(lrs))]
    members = Members(StackedModels.of(models))
    rates = torch.tensor(lrs, dtype=torch.float64)
    optimizer = ap.MemberRates(members.parameters(), [("adam", {}, rates), ("sgd", {"momentum": 0.9}, rates)])
    targets = y[:, None].expand(-1, len(models), -1)
    fit(members, ap.member_sum(nn.MSELoss()), (X, targets), optimizer, 30, batch_size=8, seed=3)
    stacked = ap._stacked_flat(members)
    for k, (name, lr) in enumerate([(n, lr) for n in ("adam", "sgd") for lr in lrs]):
        single = MLP(3, 1, width=5, depth=1, seed=7).double()
        hyper = {"momentum": 0.9} if name == "sgd" else {}
        own = getattr(torch.optim, {"adam": "Adam", "sgd": "SGD"}[name])(single.parameters(), lr=lr, **hyper)
        fit(single, nn.MSELoss(), (X, y), own, 30, batch_size=8, seed=3)
        torch.testing.assert_close(stacked[k], ap._flat(single.parameters()), rtol=1e-10, atol=1e-12)


def test_member_sum_drops_diverged_members():
    outputs = torch.tensor([[[1.0], [1.0]], [[math.inf], [0.0]]])  # member 1 diverged
    assert ap.member_sum(nn.MSELoss(), torch.tensor([2.0, 1.0]))(outputs, torch.zeros(2, 2, 1)).item() == 2.0


def test_live_storage_counts_allocations_and_frees():
    x = torch.zeros(100)
    with ap.LiveStorage([x]) as live:
        temporary = torch.ones(1000)  # 4000 bytes
        del temporary
        kept = x * 2  # 400 bytes
    assert live.peak == 400 + 4000 and live.live() == 800
    assert kept.shape == (100,)


def test_config_validation():
    with pytest.raises(ValidationError, match="scale_range"):
        ap.AdamPropertiesConfig(scale_range=(2.0, 10.0))
    with pytest.raises(ValidationError, match="lr_range"):
        ap.AdamPropertiesConfig(lr_range=(1.0, 0.1))
    with pytest.raises(ValidationError, match="problems"):
        ap.AdamPropertiesConfig(problems=("digits", "digits"))
    with pytest.raises(ValidationError, match="problems"):
        ap.AdamPropertiesConfig(problems=("mnist",))
    with pytest.raises(ValidationError, match="batch_size"):
        ap.AdamPropertiesConfig(batch_size=512)


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    config = ap.EXPERIMENT.make_config()
    return config, assert_rechecks(ap.EXPERIMENT, config, tmp_path_factory.mktemp("adam_properties"))


def test_quick_run_passes_every_check(quick):
    _, result = quick
    failed = [f"{c.name}: {c.measured}" for c in result.checks if not c.passed]
    assert not failed, failed
    assert len(result.checks) == 9 and set(result.figures) == {"learning_rates", "invariance", "memory"}


def _with(metrics: pd.DataFrame, name: str, change, **columns) -> pd.DataFrame:
    out = metrics.copy()
    chosen = out["name"] == name
    for column, wanted in columns.items():
        chosen &= out[column].isin(wanted) if isinstance(wanted, list) else out[column] == wanted
    out.loc[chosen, "value"] = change(out.loc[chosen])
    return out


def test_checks_fail_on_corrupted_metrics(quick):
    config, result = quick
    names = [c.name for c in result.checks]
    metrics = result.metrics

    def verdicts(corrupted):
        return [c.passed for c in ap.checks(corrupted, config)]

    adams = list(ap.ADAMS)
    # 1: Adam twice as sensitive to epsilon (a different epsilon)
    doubled = _with(metrics, "distance", lambda r: 2 * r["value"], optimiser=adams)
    assert verdicts(doubled)[0] is False
    # 1: epsilon inside the root: the change grows like 1/c^2 below c = 1
    squared = _with(metrics, "distance", lambda r: r["value"] / r["scale"].clip(upper=1.0), optimiser=adams)
    assert verdicts(squared)[0] is False
    # 2: invariance already broken below c = 1e-3 (three decades early)
    moved = _with(metrics, "distance", lambda r: np.where(r["scale"] < 1e-3, 1e3, r["value"]), optimiser=adams)
    assert verdicts(moved)[1] is False
    # 3: SGD normalised like Adam (displacement independent of c)
    flat = _with(metrics, "displacement", lambda r: np.full(len(r), 2.0), optimiser="sgd")
    assert verdicts(flat) == [True, True, False, True, True, True, True, True, True]
    # 4: the rescaled gradient changes the path 20% more than the epsilon theory allows
    more = _with(metrics, "diagonal_distance", lambda r: 1.2 * r["value"], where="gradient")
    assert verdicts(more) == [True, True, True, False, True, True, True, True, True]
    # 5: an optimiser invariant to rescaled parameters
    invariant = _with(metrics, "diagonal_distance", lambda r: 1e-3 * r["value"], where="parameters")
    assert verdicts(invariant) == [True, True, True, True, False, True, True, True, True]
    # 6: the optimisers swapped: SGD+momentum's range wider
    swapped = metrics.copy()
    swapped["optimiser"] = swapped["optimiser"].replace({"adam": "sgd-momentum", "sgd-momentum": "adam"})
    swapped.loc[swapped["name"] != "final_loss", "optimiser"] = metrics.loc[
        swapped["name"] != "final_loss", "optimiser"
    ]
    assert verdicts(swapped) == [True, True, True, True, True, False, True, True, True]
    # 7: the smallest learning rate as good as the best (the grid cuts the range)
    smallest = metrics.loc[metrics["name"] == "final_loss", "lr"].min()
    cut = _with(metrics, "final_loss", lambda r: np.full(len(r), 1e-9), lr=smallest, optimiser="adam")
    assert verdicts(cut)[6] is False
    # 8: AMSGrad's third buffer
    amsgrad = _with(metrics, "persistent", lambda r: r["value"] + 1, optimiser="adam")
    assert verdicts(amsgrad) == [True, True, True, True, True, True, True, False, True]
    # 9: a temporary of half the parameters in SGD's update
    temporary = _with(metrics, "step_peak", lambda r: r["value"] + 0.5, optimiser="sgd")
    assert verdicts(temporary) == [True, True, True, True, True, True, True, True, False]
    assert len(names) == 9
