"""The ensemble trainer: each member's metrics equal a sequential run of that member (to 1e-9 in float64, 1e-5 in
float32); stacked layers and stacked losses equal the members' own, one by one."""

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from tdlab.ensemble import StackedModels, member_losses, stacked_module, train_ensemble
from tdlab.ensemble.probes import measure_together, members_loss_and_accuracy
from tdlab.models import ACTIVATIONS, MLP, LinearModel, RandomFeatures
from tdlab.models.ntk import NTKMLP
from tdlab.probes import (
    GradientNorm,
    HessianTrace,
    LossProbe,
    ParameterNorm,
    ProbeSet,
    Sharpness,
    UpdateNorm,
    loss_and_accuracy,
)
from tdlab.store import Run
from tdlab.train import TrainConfig, resume, train

BASE = {  # float64: rounding stays far below the tolerances, so only an algorithmic difference fails them
    "dtype": "float64",
    "steps": 40,
    "batch_size": 32,
    "data": {"name": "synthetic-regression", "n_train": 128, "n_test": 64, "in_features": 5},
    "model": {"name": "mlp", "width": 16, "depth": 2, "activation": "tanh"},
    "checkpoint_every": 20,
    "probes": [
        {"name": "loss", "every": 5},
        {"name": "gradient-norm", "every": 10},
        {"name": "update-norm", "every": 10},
        {"name": "parameter-norm", "every": 10},
        {"name": "sharpness", "every": 20},
    ],
}


def members(optimizer: dict, schedule: dict | None = None) -> list[TrainConfig]:
    settings = [(0, 0.05, 1.0), (1, 0.02, 0.5), (2, 0.1, 1.5)]
    return [
        TrainConfig.model_validate(
            {
                **BASE,
                "seed": seed,
                "optimizer": {**optimizer, "lr": lr},
                "schedule": schedule or {"name": "constant"},
                "model": {**BASE["model"], "init_scale": scale},
            }
        )
        for seed, lr, scale in settings
    ]


@pytest.mark.parametrize(
    ("optimizer", "schedule"),
    [
        ({"name": "sgd", "momentum": 0.9, "nesterov": True, "weight_decay": 1e-3}, {"name": "cosine"}),
        ({"name": "adam", "betas": [0.9, 0.99]}, None),
        ({"name": "adamw", "weight_decay": 0.1}, {"name": "exponential", "gamma": 0.99}),
    ],
)
def test_members_equal_sequential_runs(tmp_path, optimizer, schedule):
    configs = members(optimizer, schedule)
    ensemble = train_ensemble(configs, out=tmp_path / "ensemble", run_ids=["a", "b", "c"])
    for config, run in zip(configs, ensemble, strict=True):
        sequential = train(config, out=tmp_path / "sequential", run_id=run.id).metrics()
        got = run.metrics()
        assert run.status == "done"
        assert got[["step", "name"]].equals(sequential[["step", "name"]])
        pd.testing.assert_series_equal(got["value"], sequential["value"], rtol=1e-9, atol=1e-10)


def test_classification_members_with_layernorm_and_residuals_equal_sequential_runs(tmp_path):
    configs = [
        TrainConfig.model_validate(
            {
                "seed": seed,
                "steps": 30,
                "batch_size": 64,
                "data": {"name": "digits"},
                "model": {"name": "mlp", "width": 32, "depth": 3, "norm": "layernorm", "residual": "preact"},
                "optimizer": {"name": "sgd", "lr": lr, "momentum": 0.9},
                "probes": [{"name": "loss", "every": 10}, {"name": "update-norm", "every": 15}],
            }
        )
        for seed, lr in [(0, 0.05), (1, 0.1)]
    ]
    for config, run in zip(configs, train_ensemble(configs, out=tmp_path / "e", run_ids=["a", "b"]), strict=True):
        sequential = train(config, out=tmp_path / "s", run_id=run.id).metrics()
        assert run.metrics()[["step", "name"]].equals(sequential[["step", "name"]])
        pd.testing.assert_series_equal(run.metrics()["value"], sequential["value"], rtol=1e-5, atol=1e-6)


def test_vmap_and_stacked_layers_train_the_same_members(tmp_path):
    configs = members({"name": "adam"})
    stacked = train_ensemble(configs, out=tmp_path / "stacked", run_ids=["a", "b", "c"])
    vmapped = train_ensemble(configs, out=tmp_path / "vmap", run_ids=["a", "b", "c"], vmap=True)
    for one, other in zip(stacked, vmapped, strict=True):
        assert one.metrics()[["step", "name"]].equals(other.metrics()[["step", "name"]])
        pd.testing.assert_series_equal(one.metrics()["value"], other.metrics()["value"], rtol=1e-5, atol=1e-6)


def test_a_diverging_member_stops_where_its_sequential_run_does(tmp_path):
    configs = members({"name": "sgd"})
    configs[1] = TrainConfig.model_validate({**configs[1].model_dump(), "optimizer": {"name": "sgd", "lr": 1e4}})
    runs = train_ensemble(configs, out=tmp_path / "e", run_ids=["a", "b", "c"])
    assert [run.status for run in runs] == ["done", "diverged", "done"]
    sequential = train(configs[1], out=tmp_path / "s", run_id="b")
    assert sequential.status == "diverged"
    assert runs[1].meta["diverged_step"] == sequential.meta["diverged_step"]
    got, expected = runs[1].metrics(), sequential.metrics()
    assert got[["step", "name"]].equals(expected[["step", "name"]])
    finite = np.isfinite(expected["value"])
    assert np.isfinite(got["value"]).equals(finite) and (~finite).sum() >= 1  # the last step's losses: inf or nan
    pd.testing.assert_series_equal(got["value"][finite], expected["value"][finite], rtol=1e-5, atol=1e-6)


def test_member_checkpoint_resumes_alone(tmp_path):
    configs = members({"name": "sgd", "momentum": 0.9})
    configs = [TrainConfig.model_validate({**c.model_dump(), "steps": 30, "checkpoint_every": 20}) for c in configs]
    (first, *_) = train_ensemble(configs, out=tmp_path / "e", run_ids=["a", "b", "c"])
    reference = first.metrics()
    first.set_status("running")  # pretend it was killed after its checkpoint at step 20
    resumed = resume(first.path).metrics()
    pd.testing.assert_series_equal(resumed["value"], reference["value"], rtol=1e-5, atol=1e-6)
    assert Run.open(first.path).status == "done"


def test_members_must_share_their_shape(tmp_path):
    configs = members({"name": "sgd"})
    wider = TrainConfig.model_validate({**configs[1].model_dump(), "model": {**BASE["model"], "width": 32}})
    with pytest.raises(ValueError, match="model.width"):
        train_ensemble([configs[0], wider], out=tmp_path)
    with pytest.raises(ValueError, match="optimizer.name"):
        train_ensemble(members({"name": "rmsprop"}), out=tmp_path)


def _models(**kwargs) -> list[nn.Module]:
    return [MLP(6, 3, width=5, depth=3, seed=s, **kwargs).double() for s in range(4)]


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
@pytest.mark.parametrize("norm", [None, "layernorm"])
@pytest.mark.parametrize("residual", [None, "scaled", "preact"])
def test_stacked_layers_compute_each_members_output(activation, norm, residual):
    models = _models(activation=activation, norm=norm, residual=residual)
    ensemble = StackedModels.of(models)
    assert ensemble.stacked is not None
    x = torch.randn(4, 7, 2, 3, dtype=torch.float64)  # flattened to 6 features per example
    outputs = ensemble(x)
    for m, model in enumerate(models):
        torch.testing.assert_close(outputs[m], model(x[m]), rtol=0, atol=1e-12)
    some = ensemble.outputs(x[1], rows=torch.tensor([3, 1]))
    torch.testing.assert_close(some, torch.stack([models[3](x[1]), models[1](x[1])]), rtol=0, atol=1e-12)


def test_ntk_parameterised_mlps_stack():
    """NTKMLP's forward divides by each layer's fan-in, which the stacked layers keep: no vmap needed."""
    models = [NTKMLP(6, 3, width=5, depth=2, activation="relu", seed=s).double() for s in range(3)]
    ensemble = StackedModels.of(models)
    assert ensemble.stacked is not None
    x = torch.randn(3, 7, 6, dtype=torch.float64)
    for m, model in enumerate(models):
        torch.testing.assert_close(ensemble(x)[m], model(x[m]), rtol=0, atol=1e-12)


def test_models_without_stacked_layers_run_through_vmap():
    for models in (
        [MLP(6, 3, width=5, depth=2, norm="batchnorm", seed=s).double().eval() for s in range(3)],
        [RandomFeatures(6, 9, 3, init="he", seed=s).double() for s in range(3)],
    ):
        assert stacked_module(models[0]) is None
        ensemble = StackedModels.of(models)
        X = torch.randn(7, 6, dtype=torch.float64)
        for m, model in enumerate(models):
            torch.testing.assert_close(ensemble.outputs(X)[m], model(X), rtol=0, atol=1e-12)
        some = ensemble.outputs(X, rows=torch.tensor([2, 0]))
        torch.testing.assert_close(some, torch.stack([models[2](X), models[0](X)]), rtol=0, atol=1e-12)
    linear = [LinearModel(6, 3, init="he", seed=s).double() for s in range(2)]
    assert StackedModels.of(linear).stacked is not None


def test_stacked_gradients_are_each_members_gradient():
    models = _models(activation="tanh", norm="layernorm")
    ensemble = StackedModels.of(models)
    x, y = torch.randn(4, 7, 6, dtype=torch.float64), torch.randint(3, (4, 7))
    member_losses(nn.CrossEntropyLoss())(ensemble(x), y).sum().backward()
    for m, model in enumerate(models):
        nn.functional.cross_entropy(model(x[m]), y[m]).backward()
        for name, p in model.named_parameters():
            torch.testing.assert_close(ensemble.params[name].grad[m], p.grad, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    ("loss_fn", "targets"),
    [
        (nn.CrossEntropyLoss(), torch.randint(5, (3, 8))),
        (nn.CrossEntropyLoss(label_smoothing=0.1), torch.randint(5, (3, 8))),
        (nn.CrossEntropyLoss(), torch.softmax(torch.randn(3, 8, 5), dim=-1)),
        (nn.MSELoss(), torch.randn(3, 8, 5)),
        (nn.L1Loss(), torch.randn(3, 8, 5)),  # no stacked form: vmap
    ],
)
def test_member_losses_are_each_members_loss(loss_fn, targets):
    outputs = torch.randn(3, 8, 5)
    losses = member_losses(loss_fn)(outputs, targets)
    assert losses.shape == (3,)
    for m in range(3):
        assert losses[m].item() == pytest.approx(loss_fn(outputs[m], targets[m]).item(), rel=1e-6)


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_members_loss_and_accuracy_are_each_members_loss_probe(task):
    models = _models(activation="relu")
    ensemble = StackedModels.of(models)
    X = torch.randn(23, 6, dtype=torch.float64)
    y = torch.randint(3, (23,)) if task == "classification" else torch.randn(23, 3, dtype=torch.float64)
    loss_fn = nn.CrossEntropyLoss() if task == "classification" else nn.MSELoss()
    loss, accuracy = members_loss_and_accuracy(ensemble, member_losses(loss_fn), X, y, 10, task == "classification")
    for m, model in enumerate(models):
        expected_loss, expected_accuracy = loss_and_accuracy(model, loss_fn, (X, y), 10, task == "classification")
        assert loss[m].item() == pytest.approx(expected_loss, rel=1e-12)
        assert (accuracy is None) == (expected_accuracy is None)
        if accuracy is not None:
            assert accuracy[m].item() == pytest.approx(expected_accuracy, abs=1e-15)


def test_a_probe_measured_together_is_recorded_not_called():
    class Fails(LossProbe):
        name = "loss"

        def measure(self, ctx):
            raise AssertionError("measured although given")

    X, y = torch.randn(8, 6), torch.randint(3, (8,))
    model = MLP(6, 3, width=4, depth=1)
    logged = []
    probes = ProbeSet([Fails(), GradientNorm()], model, nn.CrossEntropyLoss(), train=(X, y))
    probes.sink = lambda step, metrics: logged.append((step, metrics))
    metrics = probes.measure(0, given={"loss": {"train/loss": 1.5}})
    assert metrics["train/loss"] == 1.5 and "grad/norm" in metrics
    assert logged == [(0, metrics)] and probes.history == [(0, metrics)]


def test_measure_together_equals_each_members_probes():
    models = _models(activation="tanh")
    ensemble = StackedModels.of(models)
    X, y = torch.randn(30, 6, dtype=torch.float64), torch.randint(3, (30,))
    previous = {name: p.detach() + 0.01 * torch.randn_like(p) for name, p in ensemble.params.items()}

    def probe_set(model: nn.Module) -> ProbeSet:
        due = [LossProbe(), GradientNorm(), ParameterNorm(), UpdateNorm(), Sharpness(k=2, subset=20), HessianTrace()]
        return ProbeSet(due, model, nn.CrossEntropyLoss(), train=(X, y), test=(X[:9], y[:9]))

    sets = [probe_set(model) for model in models]
    losses_of = member_losses(nn.CrossEntropyLoss())
    warm: list[torch.Tensor] = []
    for step in (1, 2):  # the second sharpness measurement starts from each member's own first eigenvectors
        together = measure_together(step, sets[0].probes, ensemble, sets, losses_of, previous)
        for m, model in enumerate(models):
            assert "hessian-trace" not in together[m]  # measured member by member
            alone = probe_set(model)
            if step == 2:
                alone.probes[4].v0 = warm[m]
            expected = alone.measure(step, previous_params={name: p[m] for name, p in previous.items()})
            got = {key: value for metrics in together[m].values() for key, value in metrics.items()}
            assert got.keys() == {key for key in expected if not key.startswith("hessian")}
            for key, value in got.items():
                assert value == pytest.approx(expected[key], rel=1e-9), key
            assert got["sharpness/matvecs"] == expected["sharpness/matvecs"]
        warm = [s.probes[4].v0.clone() for s in sets]


def test_sharpness_by_differences_of_gradients_is_left_to_each_member():
    """The stacked products are exact: a probe asking for difference products is measured member by member."""
    models = _models(activation="tanh")
    ensemble = StackedModels.of(models)
    X, y = torch.randn(30, 6, dtype=torch.float64), torch.randint(3, (30,))
    sets = [ProbeSet([Sharpness(hvp="central")], m, nn.CrossEntropyLoss(), train=(X, y)) for m in models]
    together = measure_together(1, sets[0].probes, ensemble, sets, member_losses(nn.CrossEntropyLoss()))
    assert all(not metrics for metrics in together)


def test_a_member_diverging_under_the_sharpness_probe_is_recorded_as_diverged(tmp_path):
    configs = members({"name": "sgd"})
    configs = [
        TrainConfig.model_validate(
            {
                **c.model_dump(),
                "dtype": "float64",  # the exploding member's curvature is compared too: float32 rounding grows there
                "probes": [{"name": "sharpness", "every": 1}, {"name": "loss", "every": 1}],
            }
        )
        for c in configs
    ]
    configs[1] = TrainConfig.model_validate({**configs[1].model_dump(), "optimizer": {"name": "sgd", "lr": 1e4}})
    runs = train_ensemble(configs, out=tmp_path / "e", run_ids=["a", "b", "c"])
    sequential = train(configs[1], out=tmp_path / "s", run_id="b")
    assert [run.status for run in runs] == ["done", "diverged", "done"] and sequential.status == "diverged"
    for run in (runs[1], sequential):
        last = run.metrics().query("step == step.max() and name == 'sharpness'")["value"]
        assert last.isna().all()  # the Hessian of the diverged model has no finite eigenvalue: NaN, not a crash
    got, expected = runs[1].metrics(), sequential.metrics()
    assert got[["step", "name"]].equals(expected[["step", "name"]])
    finite = np.isfinite(expected["value"])
    pd.testing.assert_series_equal(got["value"][finite], expected["value"][finite], rtol=1e-5, atol=1e-6)
