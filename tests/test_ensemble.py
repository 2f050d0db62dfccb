"""The ensemble trainer: each member's metrics equal a sequential run of that member to 1e-5."""

import pandas as pd
import pytest

from tdlab.ensemble import train_ensemble
from tdlab.store import Run
from tdlab.train import TrainConfig, resume, train

BASE = {
    "steps": 40,
    "batch_size": 32,
    "data": {"name": "synthetic-regression", "n_train": 128, "n_test": 64, "in_features": 5},
    "model": {"name": "mlp", "width": 16, "depth": 2, "activation": "tanh"},
    "checkpoint_every": 20,
    "probes": [
        {"name": "loss", "every": 5},
        {"name": "gradient-norm", "every": 10},
        {"name": "update-norm", "every": 10},
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
        pd.testing.assert_series_equal(got["value"], sequential["value"], rtol=1e-5, atol=1e-6)


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
