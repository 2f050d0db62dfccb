"""The optimiser registry: names and errors, every registered optimiser trained by `tdlab train` (and resumed from
its checkpoint), in a sweep, Newton and the trust region through `fit` against the least-squares solution, the
projections chosen by plain values, and the multi-tensor forms of the ensemble against the optimisers they stand
for, member by member."""

from __future__ import annotations

import math
from contextlib import contextmanager

import pandas as pd
import pytest
import torch
from pydantic import ValidationError
from torch import nn

from tdlab.ensemble.updates import StackedOptimizer, unsupported
from tdlab.optim import SGDW, NewtonCG, TrustRegion
from tdlab.optim.registry import OPTIMIZERS, build_optimizer, lookup, names, stacked_names
from tdlab.store import Run
from tdlab.sweep import SweepSpec, expand, run_sweep
from tdlab.train import TrainConfig, resume, train
from tdlab.train.config import OptimizerConfig
from tdlab.train.trainer import fit

F64 = torch.float64
REQUIRED = {"projected-gd": {"projection": "l2_ball", "radius": 5.0}}
"""Arguments without a default, per optimiser (the others train with their defaults)."""

TINY = {
    "steps": 6,
    "batch_size": None,
    "checkpoint_every": 3,
    "data": {"name": "synthetic-regression", "n_train": 32, "n_test": 16, "in_features": 3},
    "model": {"name": "mlp", "width": 4, "depth": 2, "activation": "tanh"},
    "probes": [{"name": "loss", "every": 3}],
}


def _least_squares(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A linear regression problem and its least-squares solution (weights then bias) by `torch.linalg.lstsq`."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(40, 5, generator=g, dtype=F64)
    y = X @ torch.randn(5, 1, generator=g, dtype=F64) + 0.3 * torch.randn(40, 1, generator=g, dtype=F64)
    design = torch.cat([X, torch.ones(40, 1, dtype=F64)], dim=1)
    return X, y, torch.linalg.lstsq(design, y).solution[:, 0]


def _interrupt_at(stop: int):
    """A progress factory for `train` that raises KeyboardInterrupt (Ctrl-C) after optimiser step `stop`."""

    @contextmanager
    def bar(start: int, steps: int):
        def advance(step: int, text: str) -> None:
            if step == stop:
                raise KeyboardInterrupt

        yield advance

    return bar


def _flat(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


# ------------------------------------------------------------------------------------------ names and errors
def test_every_entry_is_a_torch_optimizer_and_names_are_canonical():
    assert {"sgd", "adam", "adamw", "rmsprop", "adagrad", "sgdw", "proximal-gd", "projected-gd", "newton"} <= set(
        names()
    )
    assert {"trust-region", "lecture-momentum", "lecture-nesterov", "lecture-rmsprop", "lecture-adam"} <= set(names())
    for name, entry in OPTIMIZERS.items():
        assert issubclass(entry.cls, torch.optim.Optimizer), name
        assert entry.cls.__doc__, name
    assert lookup("proximal_gd").name == "proximal-gd"
    assert lookup("trust_region").cls is TrustRegion
    assert set(stacked_names()) == {"sgd", "adam", "adamw", "sgdw"}
    assert lookup("newton").cls.create_graph and lookup("trust-region").cls.needs_closure


def test_errors_name_the_field():
    w = torch.zeros(2, requires_grad=True)
    with pytest.raises(ValueError, match=r"^optimizer\.name: expected one of sgd, adam, .*got 'lbfgs'"):
        build_optimizer("lbfgs", [w], lr=0.1)
    with pytest.raises(ValueError, match=r"^optimizer\.momentum: not an argument of Adam"):
        build_optimizer("adam", [w], lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match=r"^optimizer\.projection: required by ProjectedGD"):
        build_optimizer("projected-gd", [w], lr=0.1)
    with pytest.raises(ValueError, match=r"^optimizer\.projection: expected one of l2_ball, l1_ball, box"):
        build_optimizer("projected-gd", [w], lr=0.1, projection="sphere")
    with pytest.raises(ValueError, match=r"^optimizer\.momentum: expected a number, got 'high'"):
        build_optimizer("sgd", [w], lr=0.1, momentum="high")
    with pytest.raises(ValueError, match=r"^optimizer\.betas: expected a list of 2 numbers"):
        build_optimizer("adam", [w], lr=0.1, betas=[0.9])
    with pytest.raises(ValueError, match=r"^optimizer\.momentum: .*-0\.5"):  # torch's own message
        build_optimizer("sgd", [w], lr=0.1, momentum=-0.5)
    with pytest.raises(ValueError, match=r"^optimizer\.l1: expected a finite number >= 0"):  # tdlab's own message
        build_optimizer("proximal-gd", [w], lr=0.1, l1=-1.0)
    with pytest.raises(ValueError, match=r"^optimizer\.beta: expected a number in"):
        build_optimizer("lecture-momentum", [w], lr=0.1, beta=1.5)
    with pytest.raises(ValueError, match=r"^optimizer\.lr: the initial radius"):
        build_optimizer("trust-region", [w], lr=10.0, max_radius=1.0)


def test_config_validates_the_name_against_the_registry():
    assert OptimizerConfig(name="proximal_gd", lr=0.1, l1=0.01).name == "proximal-gd"
    with pytest.raises(ValidationError, match=r"expected one of sgd, adam, .*lecture-adam, got 'sgdd'"):
        TrainConfig.model_validate({"optimizer": {"name": "sgdd"}})


# ------------------------------------------------------------------------------------------ tdlab train, sweeps
@pytest.mark.parametrize("name", names())
def test_every_registered_optimizer_trains_and_resumes(tmp_path, name):
    config = TrainConfig.model_validate({**TINY, "optimizer": {"name": name, "lr": 0.05, **REQUIRED.get(name, {})}})
    run = train(config, out=tmp_path, run_id="a")
    metrics = run.metrics()
    assert run.status == "done"
    losses = metrics[metrics.name == "train/loss"].sort_values("step")
    assert list(losses.step) == [0, 3, 6] and losses.value.map(math.isfinite).all()
    # interrupted at step 5, resumed from the step-3 checkpoint (model and optimiser state): the same numbers
    with pytest.raises(KeyboardInterrupt):
        train(config, out=tmp_path, run_id="b", progress=_interrupt_at(5))
    resumed = resume(tmp_path / "b").metrics()
    pd.testing.assert_frame_equal(resumed.reset_index(drop=True), metrics.reset_index(drop=True), rtol=1e-5)


def test_a_sweep_over_optimizer_names(tmp_path):
    spec = SweepSpec(name="names", grid={"optimizer.name": ["sgd", "sgdw", "proximal_gd", "newton", "lecture-adam"]})
    points = expand(spec, {**TINY, "optimizer": {"lr": 0.05}})
    summary = run_sweep(spec, points, tmp_path, workers=1)
    assert summary.counts == {"done": 5}
    assert sorted(Run.open(summary.folder / p.run_id).config["optimizer"]["name"] for p in points) == sorted(
        ["sgd", "sgdw", "proximal-gd", "newton", "lecture-adam"]
    )


# ------------------------------------------------------------------------------------------ Newton, trust region
def test_newton_reaches_the_least_squares_solution_in_one_step_through_fit():
    X, y, solution = _least_squares()
    model = nn.Linear(5, 1).double()
    optimizer = build_optimizer("newton", model.parameters(), lr=1.0, forcing=0.0)
    assert isinstance(optimizer, NewtonCG)
    result = fit(model, nn.MSELoss(), (X, y), optimizer, steps=1)
    assert result.steps == 1
    torch.testing.assert_close(_flat(model), solution, rtol=0, atol=1e-10)
    # damped: lr = 1/2 goes half way from the start
    start = nn.Linear(5, 1).double()
    damped = nn.Linear(5, 1).double()
    damped.load_state_dict(start.state_dict())
    fit(damped, nn.MSELoss(), (X, y), build_optimizer("newton", damped.parameters(), 0.5, forcing=0.0), steps=1)
    torch.testing.assert_close(_flat(damped), (_flat(start) + solution) / 2, rtol=0, atol=1e-10)


def test_newton_needs_the_gradient_graph():
    w = nn.Parameter(torch.ones(2))
    (w**2).sum().backward()
    with pytest.raises(RuntimeError, match="create_graph=True"):
        NewtonCG([w]).step()


def test_trust_region_through_fit_reaches_the_least_squares_solution_monotonically():
    X, y, solution = _least_squares(1)
    model = nn.Linear(5, 1).double()
    optimizer = build_optimizer("trust-region", model.parameters(), lr=0.1)
    losses: list[float] = []
    fit(model, nn.MSELoss(), (X, y), optimizer, steps=30, callbacks=[lambda step, loss: losses.append(loss)])
    torch.testing.assert_close(_flat(model), solution, rtol=0, atol=1e-8)
    assert all(b <= a + 1e-12 for a, b in zip(losses, losses[1:], strict=False))  # only accepted steps move w
    state = optimizer.state[next(model.parameters())]
    assert 0.1 < state["radius"] <= 100.0  # grown from the small initial radius
    with pytest.raises(RuntimeError, match="closure"):
        optimizer.step()


# ------------------------------------------------------------------------------------------ projections by values
@pytest.mark.parametrize(
    ("values", "inside"),
    [
        ({"projection": "l2_ball", "radius": 0.5}, lambda w: float(w.norm()) <= 0.5 + 1e-12),
        ({"projection": "l1_ball", "radius": 0.5}, lambda w: float(w.abs().sum()) <= 0.5 + 1e-12),
        ({"projection": "box", "lower": -0.1, "upper": 0.2}, lambda w: bool(((w >= -0.1) & (w <= 0.2)).all())),
    ],
)
def test_projected_gd_from_plain_values_keeps_every_iterate_in_the_set(values, inside):
    X, y, _ = _least_squares(2)
    w = nn.Parameter(torch.zeros(5, dtype=F64))
    optimizer = build_optimizer("projected-gd", [w], lr=0.1, **values)
    for _ in range(50):
        optimizer.zero_grad()
        nn.functional.mse_loss(X @ w, y[:, 0]).backward()
        optimizer.step()
        assert inside(w.detach())
    unconstrained = torch.linalg.lstsq(X, y).solution[:, 0]
    assert not inside(unconstrained)  # the constraint is active


# ------------------------------------------------------------------------------------------ stacked forms
def _members_step_by_step(name: str, hyper: dict, steps: int = 8) -> None:
    """N = 3 members with their own learning rates: the stacked update against the registered optimiser run on
    each member alone, fed the same gradients, at every step."""
    g = torch.Generator().manual_seed(0)
    lrs = torch.tensor([0.05, 0.02, 0.1], dtype=F64)
    shapes = {"weight": (3, 4), "bias": (4,)}
    stacked = {key: torch.randn(3, *shape, generator=g, dtype=F64) for key, shape in shapes.items()}
    members = [{key: nn.Parameter(value[i].clone()) for key, value in stacked.items()} for i in range(3)]
    optimizers = [build_optimizer(name, list(m.values()), float(lrs[i]), **hyper) for i, m in enumerate(members)]
    ensemble = StackedOptimizer(name, hyper)
    for _ in range(steps):
        grads = {key: torch.randn(3, *shape, generator=g, dtype=F64) for key, shape in shapes.items()}
        ensemble.step(stacked, grads, lrs)
        for i, (member, optimizer) in enumerate(zip(members, optimizers, strict=True)):
            for key, p in member.items():
                p.grad = grads[key][i].clone()
            optimizer.step()
            for key, p in member.items():
                torch.testing.assert_close(stacked[key][i], p.detach(), rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize(
    ("name", "hyper"),
    [
        ("sgd", {}),
        ("sgd", {"momentum": 0.9, "dampening": 0.1, "weight_decay": 1e-2}),
        ("sgd", {"momentum": 0.8, "nesterov": True, "foreach": False}),
        ("adam", {"betas": [0.8, 0.99], "eps": 1e-6, "weight_decay": 1e-2, "amsgrad": False}),
        ("adam", {"weight_decay": 0.1, "decoupled_weight_decay": True}),
        ("adamw", {}),
        ("adamw", {"weight_decay": 0.3, "betas": (0.5, 0.9)}),
        ("sgdw", {"weight_decay": 0.1, "momentum": 0.9}),
    ],
)
def test_stacked_forms_equal_the_registered_optimizers_member_by_member(name, hyper):
    _members_step_by_step(name, hyper)


def test_what_the_ensemble_cannot_train():
    assert unsupported("rmsprop", {}).startswith("optimizer.name: the ensemble trainer supports sgd, adam")
    assert unsupported("adam", {"amsgrad": True}) == "optimizer.amsgrad: not supported by the ensemble trainer"
    assert unsupported("sgd", {"maximize": True}) == "optimizer.maximize: not supported by the ensemble trainer"
    assert unsupported("sgdw", {"momentum": 0.5}) is None
    with pytest.raises(ValueError, match="optimizer.name"):
        StackedOptimizer("newton", {})


def test_sgdw_class_and_stacked_form_are_one_rule():
    """SGDW's step is the multi-tensor rule itself: the same iterates as the per-tensor formula, bit for bit."""
    from tdlab.optim import sgdw_step

    w = nn.Parameter(torch.tensor([1.0, -2.0], dtype=F64))
    optimizer = SGDW([w], lr=0.1, weight_decay=0.5)
    v = w.detach().clone()
    for t in range(5):
        grad = torch.tensor([0.3 * t, -0.1], dtype=F64)
        w.grad = grad.clone()
        optimizer.step()
        v = sgdw_step(v, grad, 0.1, 0.5)
        assert torch.equal(w.detach(), v)
