"""Experiment trackers: TensorBoard and Weights & Biases receive exactly the rows the run stores in Parquet, read back
from the files each tool wrote (W&B in offline mode: nothing leaves the machine)."""

import importlib.util
import json
import struct
import time

import pytest
import yaml
from typer.testing import CliRunner

from tdlab.cli import app
from tdlab.integrations.tensorboard import TensorBoardSink
from tdlab.integrations.trackers import trackers
from tdlab.integrations.wandb import WandbSink, wandb_id
from tdlab.store import Run
from tdlab.store.sinks import Tee
from tdlab.train import TrainConfig, resume, train

runner = CliRunner()

SMALL = {
    "name": "tiny",
    "steps": 40,
    "batch_size": 32,
    "data": {"name": "synthetic-regression", "n_train": 128, "n_test": 64, "in_features": 5},
    "model": {"name": "mlp", "width": 16, "depth": 2, "activation": "tanh"},
    "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
    "checkpoint_every": 20,
    "probes": [{"name": "loss", "every": 5}, {"name": "gradient-norm", "every": 5}, {"name": "sharpness", "every": 10}],
}


def stored_rows(run: Run) -> list[tuple[int, str, float]]:
    frame = run.metrics()
    return sorted(zip(frame["step"].tolist(), frame["name"].tolist(), frame["value"].tolist(), strict=True))


# ---------------------------------------------------------------------------------------------------------- Tee
class Recorder:
    def __init__(self, fail_on_close: bool = False):
        self.rows, self.closed, self.fail_on_close = [], False, fail_on_close

    def __call__(self, step, metrics):
        self.rows.extend((step, name, value) for name, value in metrics.items())

    def close(self):
        self.closed = True
        if self.fail_on_close:
            raise RuntimeError("cannot close")


def test_tee_sends_only_the_rows_the_run_accepts_and_closes_every_tracker(tmp_path):
    run = Run.create(tmp_path, {}, kind="train", run_id="r")
    first, second = Recorder(fail_on_close=True), Recorder()
    tee = Tee(run.log, [first, second])
    tee(0, {"loss": 2, "acc": 0.5})
    with pytest.raises(TypeError, match="metrics\\['loss'\\]: expected a number"):
        tee(1, {"loss": "high"})
    assert first.rows == second.rows == [(0, "loss", 2.0), (0, "acc", 0.5)]
    assert all(type(value) is float for _, _, value in first.rows)
    with pytest.raises(RuntimeError, match="cannot close"):
        tee.close()
    assert first.closed and second.closed  # the failing tracker did not keep the other one open
    run.flush()
    assert stored_rows(run) == sorted(first.rows)


def test_a_missing_tracker_package_is_a_clean_error_before_anything_is_written(tmp_path, monkeypatch):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(SMALL))
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(ValueError, match=r"wandb: needs the wandb extra: pip install 'tdlab\[wandb\]'"):
        trackers(wandb=True)
    result = runner.invoke(app, ["train", str(config), "--wandb", "--out", str(tmp_path / "runs")])
    assert result.exit_code == 2 and "tdlab[wandb]" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


# ---------------------------------------------------------------------------------------------------- TensorBoard
def tensorboard_rows(folder) -> tuple[list[tuple[int, str, float]], list[str]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"scalars": 0, "histograms": 0})
    events.Reload()
    rows = sorted((e.step, tag, e.value) for tag in events.Tags()["scalars"] for e in events.Scalars(tag))
    return rows, events.Tags()["histograms"]


def assert_same_rows(tracked, stored, rel):
    assert [(step, name) for step, name, _ in tracked] == [(step, name) for step, name, _ in stored]
    assert [value for _, _, value in tracked] == pytest.approx([value for _, _, value in stored], rel=rel)


def test_tensorboard_gets_every_stored_row_once_also_after_a_resume(tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    import tdlab.train.loop as loop

    config = TrainConfig.model_validate(SMALL)
    real_checkpoint = loop._checkpoint
    calls = []

    def interrupt_at_the_second_checkpoint(setup, run, step):
        calls.append(step)
        if len(calls) == 2:  # rows after the first checkpoint reached TensorBoard but will be logged again
            raise KeyboardInterrupt
        real_checkpoint(setup, run, step)

    monkeypatch.setattr(loop, "_checkpoint", interrupt_at_the_second_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        train(config, out=tmp_path, run_id="cut", trackers=[TensorBoardSink])
    monkeypatch.setattr(loop, "_checkpoint", real_checkpoint)
    before, _ = tensorboard_rows(tmp_path / "cut" / "tensorboard")
    assert calls == [20, 40] and max(step for step, _, _ in before) == 40  # steps 21..40 are logged again
    run = resume(tmp_path / "cut", trackers=[TensorBoardSink])
    rows, histograms = tensorboard_rows(run.path / "tensorboard")
    stored = stored_rows(run)
    assert {n for _, n, _ in stored} >= {"train/loss", "sharpness", "lr"} and max(s for s, _, _ in stored) == 40
    assert_same_rows(rows, stored, rel=1e-6)  # each step once; event files hold float32
    assert {"weights/hidden.0.linear.weight", "weights/readout.bias"} <= set(histograms)


# ------------------------------------------------------------------------------------------------ Weights & Biases
@pytest.fixture
def offline_wandb(tmp_path, monkeypatch):
    """W&B in offline mode with every folder it writes in tmp_path; yields `wandb`, stops its service after."""
    wandb = pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for variable in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(variable, str(tmp_path / "wandb-home" / variable.lower()))
    for variable in ("WANDB_DIR", "WANDB_PROJECT", "WANDB_API_KEY", "WANDB_ENTITY", "WANDB_RUN_ID"):
        monkeypatch.delenv(variable, raising=False)
    yield wandb
    wandb.teardown()


def read_wandb_file(path) -> list:
    """The records of a W&B transaction log (`run-<id>.wandb`), as `wandb_internal_pb2.Record` messages.

    The file is a 7-byte W&B header (":W&B", magic 0xBEE1, version) and then a LevelDB log: 32 KiB blocks of
    chunks, each with a 7-byte header (CRC32C, length, type: 1 whole, 2 first, 3 middle, 4 last); a block's tail
    shorter than a header is padding. The W&B SDK has no public reader of these files, hence this one.
    """
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B" and struct.unpack("<H", data[4:6])[0] == 0xBEE1, "not a W&B transaction log"
    block, position, payload, records = 32768, 7, b"", []
    while position + 7 <= len(data):
        room = block - position % block
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        if room < 7 or (kind == 0 and length == 0):
            position += room
            continue
        payload += data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(payload)
            records.append(record)
            payload = b""
    return records


def finished_records(log, timeout_s: float = 60.0) -> list:
    """The records of a W&B transaction log once its `exit` record is there: W&B's own service process writes the
    file, and on a loaded machine it may still be writing when `finish()` has returned (seen once in CI: no history)."""
    deadline = time.monotonic() + timeout_s
    while True:
        records = read_wandb_file(log)
        if any(record.WhichOneof("record_type") == "exit" for record in records):
            return records
        assert time.monotonic() < deadline, f"{log}: no exit record after {timeout_s} s"
        time.sleep(0.2)


def wandb_run(folder) -> dict:
    """The one offline W&B run under `folder`: its id, name, project, job type, config and history rows."""
    (log,) = folder.glob("wandb/offline-run-*/run-*.wandb")
    found = {"rows": [], "config": {}}
    for record in finished_records(log):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            found.update(id=record.run.run_id, name=record.run.display_name, project=record.run.project)
            found["job_type"] = record.run.job_type
        if kind in ("run", "config"):
            items = record.run.config.update if kind == "run" else record.config.update
            found["config"].update({item.key: json.loads(item.value_json) for item in items})
        elif kind == "history":
            step = record.history.step.num
            for item in record.history.item:
                key = item.key or "/".join(item.nested_key)
                if not key.startswith("_"):  # W&B's own columns: _step, _runtime, _timestamp
                    found["rows"].append((step, key, json.loads(item.value_json)))
    found["rows"].sort()
    return found


def test_wandb_offline_history_equals_the_parquet_rows(offline_wandb, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-dir"))
    config = TrainConfig.model_validate(SMALL)
    run = train(config, out=tmp_path / "runs", run_id="lr=0.05", trackers=[WandbSink])
    logged = wandb_run(tmp_path / "wandb-dir")
    stored = stored_rows(run)
    assert len(stored) > 100 and {n for _, n, _ in stored} >= {"train/loss", "grad/norm", "sharpness", "lr"}
    assert logged["rows"] == stored  # exactly: W&B keeps the float64 values as JSON text
    assert logged["id"] == wandb_id(run) and logged["name"] == "lr=0.05" and logged["project"] == "tdlab"
    assert logged["job_type"] == "train"
    assert {key: value for key, value in logged["config"].items() if not key.startswith("_")} == run.config
    assert not (run.path / "wandb").exists()  # WANDB_DIR is honoured


def test_cli_feeds_wandb_and_tensorboard_the_same_rows(offline_wandb, tmp_path):
    pytest.importorskip("tensorboard")
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({**SMALL, "steps": 20}))
    args = ["train", str(config), "--wandb", "--tensorboard", "--out", str(tmp_path / "runs"), "--id", "both"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    run = Run.open(tmp_path / "runs" / "both")
    stored = stored_rows(run)
    assert wandb_run(run.path)["rows"] == stored  # without WANDB_DIR the W&B files sit in <run>/wandb
    assert_same_rows(tensorboard_rows(run.path / "tensorboard")[0], stored, rel=1e-6)


def test_runs_of_one_name_in_two_folders_get_two_wandb_ids(tmp_path):
    a = Run.create(tmp_path / "sweep-a", {}, kind="train", run_id="lr=0.1")
    b = Run.create(tmp_path / "sweep-b", {}, kind="train", run_id="lr=0.1")
    assert wandb_id(a) != wandb_id(b) and wandb_id(a) == wandb_id(Run.open(a.path))
    assert all(c.isalnum() or c in "-_" for c in wandb_id(a))
