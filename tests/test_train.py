"""The training loop: reproducibility, divergence, and resume after SIGKILL without losing or duplicating rows."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tdlab.store import Run, Store
from tdlab.train import TrainConfig, load_config, resume, train
from tdlab.train.batches import batch_indices

SMALL = {
    "name": "tiny",
    "steps": 60,
    "batch_size": 32,
    "data": {"name": "synthetic-regression", "n_train": 128, "n_test": 64, "in_features": 5},
    "model": {"name": "mlp", "width": 16, "depth": 2, "activation": "tanh"},
    "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
    "checkpoint_every": 20,
    "probes": [
        {"name": "loss", "every": 5},
        {"name": "gradient-norm", "every": 5},
        {"name": "update-norm", "every": 10},
        {"name": "sharpness", "every": 10},
    ],
}


def test_same_seed_same_numbers(tmp_path):
    config = TrainConfig.model_validate(SMALL)
    a = train(config, out=tmp_path, run_id="a").metrics()
    b = train(config, out=tmp_path, run_id="b").metrics()
    pd.testing.assert_frame_equal(a, b)
    assert set(a["name"]) >= {"train/loss", "test/loss", "grad/norm", "sharpness", "train/batch_loss"}
    assert sorted(a.loc[a["name"] == "train/loss", "step"]) == list(range(0, 61, 5))


def test_divergence_is_recorded_not_raised(tmp_path):
    config = TrainConfig.model_validate({**SMALL, "optimizer": {"name": "sgd", "lr": 1e4}, "steps": 200})
    run = train(config, out=tmp_path)
    assert run.status == "diverged"
    step = run.meta["diverged_step"]
    metrics = run.metrics()
    assert metrics["step"].max() == step
    assert (metrics.loc[metrics["step"] < step, "name"] == "train/batch_loss").any()


def test_batches_are_a_function_of_seed_and_step():
    first = [batch_indices(100, 32, seed=1, step=s) for s in range(6)]
    again = [batch_indices(100, 32, seed=1, step=s) for s in range(6)]
    assert all((x == y).all() for x, y in zip(first, again, strict=True))
    epoch = sorted(int(i) for idx in first[:3] for i in idx)
    assert len(set(epoch)) == 96  # three disjoint batches of one epoch
    assert batch_indices(100, None, seed=1, step=0) is None


def test_resume_after_sigkill_loses_and_duplicates_nothing(tmp_path):
    probes = [{"name": "loss", "every": 5}, {"name": "update-norm", "every": 10}, {"name": "sharpness", "every": 20}]
    config = {**SMALL, "steps": 160, "checkpoint_every": 20, "probes": probes}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    reference = train(load_config(path), out=tmp_path / "ref", run_id="ref").metrics()

    out = tmp_path / "killed"
    process = subprocess.Popen(
        [sys.executable, "-m", "tdlab", "train", str(path), "--out", str(out), "--id", "victim"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    checkpoint = out / "victim" / "checkpoints" / "last.pt"
    deadline = time.time() + 120
    while time.time() < deadline:
        chunks = list((out / "victim" / "metrics").glob("*.parquet")) if checkpoint.exists() else []
        if len(chunks) >= 3:
            break
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert Run.open(out / "victim").status == "running"
    partial = Run.open(out / "victim").metrics()
    assert 0 < partial["step"].max() < 160, "the kill must land mid-run"

    resumed = resume(out / "victim").metrics()
    assert Run.open(out / "victim").status == "done"
    assert not resumed.duplicated(["step", "name"]).any()
    pd.testing.assert_frame_equal(resumed.reset_index(drop=True), reference.reset_index(drop=True))
    assert len(Store(out).metrics(names=["train/loss"])) == 160 // 5 + 1


def test_bad_config_names_the_field(tmp_path):
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig.model_validate({**SMALL, "optimizer": {"name": "sgdd"}})
    bad_model = TrainConfig.model_validate({**SMALL, "model": {"name": "mlp", "activation": "swishy"}})
    with pytest.raises(ValueError, match="activation"):
        train(bad_model, out=tmp_path)
    bad_kwarg = TrainConfig.model_validate({**SMALL, "optimizer": {"name": "adam", "lr": 0.1, "momentum": 0.9}})
    with pytest.raises(ValueError, match="optimizer.momentum"):
        train(bad_kwarg, out=tmp_path)
    assert not any(Path(tmp_path).iterdir()), "nothing may be written for a bad config"


def test_resume_from_the_step_zero_checkpoint_does_not_measure_step_zero_twice(tmp_path, monkeypatch):
    import tdlab.train.loop as loop

    config = TrainConfig.model_validate({**SMALL, "steps": 40})
    reference = train(config, out=tmp_path / "ref").metrics()
    real_checkpoint = loop._checkpoint
    calls = []

    def interrupt_after_first(setup, run, step):
        calls.append(step)
        if len(calls) == 2:  # the checkpoint of step 20: die just before it is written
            raise KeyboardInterrupt
        real_checkpoint(setup, run, step)

    monkeypatch.setattr(loop, "_checkpoint", interrupt_after_first)
    with pytest.raises(KeyboardInterrupt):
        train(config, out=tmp_path / "cut", run_id="cut")
    monkeypatch.setattr(loop, "_checkpoint", real_checkpoint)
    assert Run.open(tmp_path / "cut" / "cut").status == "failed"
    resumed = resume(tmp_path / "cut" / "cut").metrics()
    pd.testing.assert_frame_equal(resumed, reference)


def test_bad_lr_seed_and_checkpoint_are_clean_errors(tmp_path):
    """lr: .inf and a seed beyond 64 bits are refused naming the field; a truncated or foreign last.pt is a
    ValueError naming the file, and nothing is deleted."""
    from pydantic import ValidationError

    from tdlab.store import Run

    with pytest.raises(ValidationError, match="optimizer.lr"):
        TrainConfig.model_validate({"optimizer": {"name": "sgd", "lr": float("inf")}})
    with pytest.raises(ValidationError, match="seed"):
        TrainConfig.model_validate({"seed": 2**70})
    assert TrainConfig.model_validate({"seed": 2**62}).seed == 2**62
    run = Run.create(tmp_path, {}, kind="train", run_id="r")
    run.log(1, {"loss": 1.0})
    run.flush()
    for content, message in (
        (b"", "is empty \\(0 bytes\\)"),
        (b"not a checkpoint", "is not a readable tdlab checkpoint"),
        (b"PK\x03\x04truncated", "is not a readable tdlab checkpoint"),
    ):
        (run.path / "checkpoints").mkdir(exist_ok=True)
        (run.path / "checkpoints" / "last.pt").write_bytes(content)
        with pytest.raises(ValueError, match=f"checkpoint: .*last.pt {message}"):
            Run.open(run.path).load_checkpoint()
        assert Run.open(run.path).metrics()["step"].tolist() == [1]
