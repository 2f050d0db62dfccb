"""Run directories and the DuckDB store: atomic writes, append-only chunks, the checkpoint/resume protocol."""

import json
import math
import os
import re
import time
from datetime import datetime

import numpy as np
import pandas as pd
import pytest
import torch

from tdlab.store import Run, Store, atomic_open, atomic_write_json, flatten_config, metric_chunks


def loss_at(step: int, lr: float = 0.1) -> float:
    return lr * step


def sharpness_at(step: int) -> float:
    return 2.0 + 1.0 / (1 + step)


# ---------------------------------------------------------------------- atomic writes
def test_atomic_write_keeps_old_content_when_replace_fails(tmp_path, monkeypatch):
    target = tmp_path / "meta.json"
    atomic_write_json(target, {"version": 1})

    def failing_replace(src, dst):
        raise OSError("simulated crash before rename")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="simulated crash"):
        atomic_write_json(target, {"version": 2})
    assert json.loads(target.read_text()) == {"version": 1}
    assert os.listdir(tmp_path) == ["meta.json"]


def test_atomic_open_discards_partial_writes_on_error(tmp_path):
    fresh, existing = tmp_path / "fresh.bin", tmp_path / "existing.bin"
    existing.write_bytes(b"old")
    for target in (fresh, existing):
        with pytest.raises(RuntimeError), atomic_open(target, "wb") as handle:
            handle.write(b"half of the new")
            raise RuntimeError("interrupted")
    assert not fresh.exists()
    assert existing.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["existing.bin"]
    with atomic_open(existing, "w") as handle:
        handle.write("new")
    assert existing.read_text() == "new"
    assert os.listdir(tmp_path) == ["existing.bin"]
    with pytest.raises(ValueError, match="mode: expected one of 'wb', 'w', got 'a'"), atomic_open(fresh, "a"):
        pass


def test_failed_chunk_write_keeps_the_buffer_for_a_retry(tmp_path, monkeypatch):
    run = Run.create(tmp_path, {}, kind="train", run_id="r")
    run.log(0, {"loss": 1.0})
    original_replace = os.replace

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        run.flush()
    monkeypatch.setattr(os, "replace", original_replace)
    assert metric_chunks(run.path) == []
    assert os.listdir(run.path / "metrics") == []
    run.flush()
    assert [p.name for p in metric_chunks(run.path)] == ["part-00000.parquet"]
    assert Run.open(run.path).metrics()[["step", "value"]].values.tolist() == [[0, 1.0]]


# ---------------------------------------------------------------------- creation, status, context manager
def test_create_writes_layout_and_refuses_an_existing_id(tmp_path):
    run = Run.create(tmp_path, {"optimizer": {"lr": 0.1}}, kind="train", run_id="r", seed=3)
    assert sorted(os.listdir(run.path)) == ["config.json", "lock", "meta.json", "status"]
    assert json.loads((run.path / "config.json").read_text()) == {"optimizer": {"lr": 0.1}}
    assert (run.path / "status").read_text() == "running\n"
    meta = json.loads((run.path / "meta.json").read_text())
    assert {k: meta[k] for k in ("id", "kind", "seed", "finished", "duration_s")} == {
        "id": "r",
        "kind": "train",
        "seed": 3,
        "finished": None,
        "duration_s": None,
    }
    assert meta["tdlab_version"] and datetime.fromisoformat(meta["created"]).utcoffset().total_seconds() == 0
    with pytest.raises(FileExistsError, match="run_id: a run 'r' already exists"):
        Run.create(tmp_path, {"optimizer": {"lr": 0.5}}, kind="train", run_id="r")
    assert Run.open(run.path).config == {"optimizer": {"lr": 0.1}}
    assert os.listdir(tmp_path) == ["r"]  # no staging directory left behind


def test_default_ids_are_unique_and_well_formed(tmp_path):
    ids = {Run.create(tmp_path, {"lr": 0.1}, kind="eos").id for _ in range(3)}
    assert len(ids) == 3
    assert all(re.fullmatch(r"eos-\d{8}-\d{6}-[0-9a-f]{6}", run_id) for run_id in ids)


def test_bad_arguments_raise_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="kind: expected letters"):
        Run.create(tmp_path, {}, kind="a/b")
    with pytest.raises(ValueError, match="run_id: expected letters"):
        Run.create(tmp_path, {}, kind="train", run_id="../escape")
    with pytest.raises(TypeError, match="config: not JSON-serialisable"):
        Run.create(tmp_path, {"model": object()}, kind="train")
    with pytest.raises(FileNotFoundError, match="not a run directory"):
        Run.open(tmp_path)
    assert os.listdir(tmp_path) == []
    run = Run.create(tmp_path, {}, kind="train", run_id="r")
    for step in (-1, 1.5, True):
        with pytest.raises(ValueError, match="step: expected a non-negative integer"):
            run.log(step, {"loss": 1.0})
    with pytest.raises(TypeError, match=r"metrics\['loss'\]: expected a number"):
        run.log(0, {"loss": "low"})
    with pytest.raises(ValueError, match="ext: expected one of 'png', 'svg', 'pdf', got 'gif'"):
        run.figure_path("loss", "gif")
    assert run.metrics().empty


def test_set_status_validates_and_records_the_finish(tmp_path):
    run = Run.create(tmp_path, {}, kind="train", run_id="r")
    with pytest.raises(
        ValueError, match="status: expected one of 'running', 'done', 'diverged', 'failed', got 'finished'"
    ):
        run.set_status("finished")
    assert run.status == "running"
    run.set_status("diverged", diverged_step=17)
    reopened = Run.open(run.path)
    assert reopened.status == "diverged"
    assert (run.path / "status").read_text() == "diverged\n"
    meta = reopened.meta
    assert meta["diverged_step"] == 17
    elapsed = datetime.fromisoformat(meta["finished"]) - datetime.fromisoformat(meta["created"])
    assert meta["duration_s"] == pytest.approx(elapsed.total_seconds()) and meta["duration_s"] >= 0
    run.set_status("running")
    assert run.meta["finished"] is None and Run.open(run.path).status == "running"


@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt()])
def test_context_manager_marks_failed_flushes_and_reraises(tmp_path, error):
    with pytest.raises(type(error)), Run.create(tmp_path, {}, kind="train", run_id="r") as run:
        run.log(0, {"loss": 1.0})
        raise error
    reopened = Run.open(tmp_path / "r")
    assert reopened.status == "failed"
    assert reopened.meta["error"] == ("RuntimeError: boom" if isinstance(error, RuntimeError) else "KeyboardInterrupt")
    assert reopened.metrics()["value"].tolist() == [1.0]


def test_context_manager_leaves_the_status_to_the_caller(tmp_path):
    with Run.create(tmp_path, {}, kind="train", run_id="a") as run:
        run.log(0, {"loss": 1.0})
    with Run.create(tmp_path, {}, kind="train", run_id="b") as run:
        run.set_status("done")
    assert Run.open(tmp_path / "a").status == "running"
    assert Run.open(tmp_path / "a").metrics()["value"].tolist() == [1.0]
    assert Run.open(tmp_path / "b").status == "done"


# ---------------------------------------------------------------------- metrics, arrays, checks
def test_chunks_are_appended_and_never_rewritten(tmp_path):
    run = Run.create(tmp_path, {}, kind="train", run_id="r", flush_every=10)
    for step in range(25):
        run.log(step, {"loss": loss_at(step)})
    first = metric_chunks(run.path)
    assert [p.name for p in first] == ["part-00000.parquet", "part-00001.parquet"]
    before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns, p.read_bytes()) for p in first}
    time.sleep(0.02)
    for step in range(25, 40):
        run.log(step, {"loss": loss_at(step)})
    run.flush()
    run.flush()  # empty buffer: no new file
    assert [p.name for p in metric_chunks(run.path)] == [f"part-{i:05d}.parquet" for i in range(4)]
    after = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns, p.read_bytes()) for p in first}
    assert after == before
    frame = Run.open(run.path).metrics()
    assert frame["step"].tolist() == list(range(40))
    assert frame["value"].tolist() == [loss_at(s) for s in range(40)]
    assert frame.dtypes.astype(str).tolist()[::2] == ["int64", "float64"]


def test_metrics_include_the_buffer_and_pivot_wide(tmp_path):
    run = Run.create(tmp_path, {}, kind="train", run_id="r")
    run.log(0, {"loss": 1.0, "sharpness": 3.0})
    run.log(1, {"loss": 0.5})
    run.log(2, {"sharpness": 4.0, "loss": 0.25})
    long = run.metrics()
    assert list(zip(long["step"], long["name"], long["value"], strict=True)) == [
        (0, "loss", 1.0),
        (0, "sharpness", 3.0),
        (1, "loss", 0.5),
        (2, "loss", 0.25),
        (2, "sharpness", 4.0),
    ]
    wide = run.metrics_wide()
    assert wide.index.tolist() == [0, 1, 2] and wide.columns.tolist() == ["loss", "sharpness"]
    assert wide["loss"].tolist() == [1.0, 0.5, 0.25]
    assert wide["sharpness"].iloc[[0, 2]].tolist() == [3.0, 4.0] and math.isnan(wide["sharpness"].iloc[1])


def test_non_finite_values_survive_the_round_trip(tmp_path):
    values = {"nan": math.nan, "inf": math.inf, "neg_inf": -math.inf, "subnormal": 5e-324}
    with Run.create(tmp_path, {"lr": 10.0}, kind="train", run_id="r") as run:
        run.log(7, values)
    for frame in (Run.open(tmp_path / "r").metrics(), Store(tmp_path).metrics()):
        got = dict(zip(frame["name"], frame["value"], strict=True))
        assert math.isnan(got["nan"])
        assert got["inf"] == math.inf and got["neg_inf"] == -math.inf and got["subnormal"] == 5e-324
        assert frame["step"].tolist() == [7] * 4
    assert Store(tmp_path).metrics(where="isnan(value)")["name"].tolist() == ["nan"]


def test_arrays_checks_and_figure_paths(tmp_path):
    run = Run.create(tmp_path, {}, kind="eos", run_id="r")
    eigenvalues = torch.tensor([3.5, 1.25, -0.5], dtype=torch.float64)
    run.log_arrays(120, "spectrum", eigenvalues=eigenvalues, weights=np.eye(2, dtype=np.float32))
    run.log_arrays(8, "spectrum", eigenvalues=eigenvalues * 2)
    assert sorted(os.listdir(run.path / "arrays")) == ["spectrum-00000008.npz", "spectrum-00000120.npz"]
    assert run.array_steps("spectrum") == [8, 120] and run.array_steps("other") == []
    loaded = Run.open(run.path).load_arrays(120, "spectrum")
    np.testing.assert_array_equal(loaded["eigenvalues"], [3.5, 1.25, -0.5])
    assert loaded["weights"].dtype == np.float32 and loaded["weights"].tolist() == [[1, 0], [0, 1]]
    assert run.checks() == []
    records = [{"name": "2/eta", "measured": np.float32(1.5), "theory": 2.0, "passed": np.bool_(False)}]
    run.write_checks(records)
    assert Run.open(run.path).checks() == [{"name": "2/eta", "measured": 1.5, "theory": 2.0, "passed": False}]
    with pytest.raises(TypeError, match="checks: expected a list of dicts"):
        run.write_checks({"name": "x"})
    assert run.figure_path("sharpness", "svg") == run.path / "figures" / "sharpness.svg"
    assert (run.path / "figures").is_dir()


# ---------------------------------------------------------------------- checkpoint / resume
def log_step(run: Run, step: int) -> None:
    run.log(step, {"loss": loss_at(step), "sharpness": sharpness_at(step)})


def test_checkpoint_resume_neither_loses_nor_duplicates_rows(tmp_path):
    # flush_every=15 with two metrics per step: chunk boundaries do not align with the checkpoint
    run = Run.create(tmp_path, {"lr": 0.1}, kind="train", run_id="r", flush_every=15)
    for step in range(51):
        log_step(run, step)
    run.save_checkpoint({"step": 50, "theta": torch.arange(3.0)})
    chunks_at_checkpoint = [p.name for p in metric_chunks(run.path)]
    for step in range(51, 81):
        log_step(run, step)
    run.flush()
    assert len(metric_chunks(run.path)) > len(chunks_at_checkpoint)
    del run  # killed: the object is gone, the flushed rows 51..80 are on disk

    resumed = Run.open(tmp_path / "r", flush_every=15)
    state = resumed.load_checkpoint()
    assert state["step"] == 50
    assert torch.equal(state["theta"], torch.arange(3.0))
    assert [p.name for p in metric_chunks(resumed.path)] == chunks_at_checkpoint
    for step in range(state["step"] + 1, 100):
        log_step(resumed, step)
    resumed.flush()

    frame = Run.open(tmp_path / "r").metrics()
    expected = pd.DataFrame(
        [(s, "loss", loss_at(s)) for s in range(100)] + [(s, "sharpness", sharpness_at(s)) for s in range(100)],
        columns=["step", "name", "value"],
    ).sort_values(["step", "name"], ignore_index=True)
    assert len(frame) == 200 and not frame.duplicated(["step", "name"]).any()
    assert frame["step"].tolist() == expected["step"].tolist()
    assert frame["name"].tolist() == expected["name"].tolist()
    assert frame["value"].tolist() == expected["value"].tolist()


def test_load_without_checkpoint_restarts_from_scratch(tmp_path):
    run = Run.create(tmp_path, {}, kind="train", run_id="r", flush_every=4)
    for step in range(10):
        log_step(run, step)
    assert len(metric_chunks(run.path)) == 5
    resumed = Run.open(run.path)
    assert resumed.load_checkpoint() is None
    assert metric_chunks(run.path) == [] and resumed.metrics().empty
    log_step(resumed, 0)
    resumed.flush()
    assert [p.name for p in metric_chunks(run.path)] == ["part-00000.parquet"]


# ---------------------------------------------------------------------- the store
def test_flatten_config_uses_dotted_names():
    config = {"optimizer": {"name": "sgd", "schedule": {"warmup": 5}}, "widths": [8, 8], "seed": 0}
    assert flatten_config(config) == {
        "optimizer.name": "sgd",
        "optimizer.schedule.warmup": 5,
        "widths": [8, 8],
        "seed": 0,
    }


CONFIGS = {
    "a": {"optimizer": {"name": "sgd", "lr": 0.1}, "seed": 0},
    "b": {"optimizer": {"name": "adam", "lr": 0.01, "betas": [0.9, 0.999]}, "seed": 1},
    "c": {"optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9}, "model": {"width": 8}, "seed": 2},
    "d": {"optimizer": {"name": "sgd", "lr": 1}, "seed": 3},  # integer lr, and no metrics at all
}


@pytest.fixture
def store(tmp_path) -> Store:
    for run_id, config in CONFIGS.items():
        with Run.create(tmp_path, config, kind="train", run_id=run_id, flush_every=6) as run:
            if run_id != "d":
                lr = config["optimizer"]["lr"]
                for step in range(10):
                    run.log(step, {"loss": loss_at(step, lr)} | ({"acc": step / 10} if run_id == "c" else {}))
            run.set_status({"a": "done", "b": "diverged"}.get(run_id, "running"))
    return Store(tmp_path)


def test_store_runs_union_configs_and_filter(store):
    runs = store.runs()
    assert runs["id"].tolist() == ["a", "b", "c", "d"]
    assert runs["status"].tolist() == ["done", "diverged", "running", "running"]
    assert runs.columns[:6].tolist() == ["id", "kind", "status", "created", "duration_s", "path"]
    assert runs["optimizer.lr"].tolist() == [0.1, 0.01, 0.05, 1.0]
    assert runs["optimizer.momentum"].isna().tolist() == [True, True, False, True]
    assert runs["model.width"].isna().tolist() == [True, True, False, True]
    assert runs["optimizer.betas"].tolist()[1] == "[0.9, 0.999]"
    assert runs["duration_s"].notna().tolist() == [True, True, False, False]

    def ids(where: str) -> list[str]:
        return store.runs(where=where)["id"].tolist()

    assert ids('"optimizer.lr" >= 0.05 AND "optimizer.name" = \'sgd\'') == ["a", "c", "d"]
    assert ids('"optimizer.momentum" IS NULL') == ["a", "b", "d"]
    assert ids("status = 'done' OR \"model.width\" = 8") == ["a", "c"]
    with pytest.raises(ValueError, match="where: cannot evaluate"):
        store.runs(where='"optimizer.nesterov" = true')


def test_store_metrics_join_config_columns(store):
    frame = store.metrics(names=["loss"], where="\"optimizer.name\" = 'sgd' AND step >= 5")
    assert frame["run_id"].tolist() == ["a"] * 5 + ["c"] * 5
    assert frame["step"].tolist() == list(range(5, 10)) * 2
    expected = [loss_at(s, 0.1) for s in range(5, 10)] + [loss_at(s, 0.05) for s in range(5, 10)]
    assert frame["value"].tolist() == expected
    assert frame["optimizer.lr"].tolist() == [0.1] * 5 + [0.05] * 5
    assert set(frame.columns) >= {"run_id", "step", "name", "value", "kind", "status", "optimizer.momentum"}

    only_b = store.metrics(runs=["b"])
    assert only_b["run_id"].unique().tolist() == ["b"] and len(only_b) == 10
    assert store.metrics(names=["acc"])["run_id"].unique().tolist() == ["c"]
    assert len(store.metrics()) == 40  # a, b: 10 rows; c: 20 rows; d: none
    assert store.metrics(names=[]).empty
    with pytest.raises(ValueError, match="runs: expected ids of runs"):
        store.metrics(runs=["zz"])


def test_store_query_and_container_protocol(store):
    best = store.query(
        "SELECT run_id, max(value) AS top FROM metrics WHERE name = 'loss' GROUP BY run_id ORDER BY run_id"
    )
    assert best["run_id"].tolist() == ["a", "b", "c"]
    assert best["top"].tolist() == [loss_at(9, CONFIGS[r]["optimizer"]["lr"]) for r in "abc"]
    silent = store.query("SELECT id FROM runs WHERE id NOT IN (SELECT run_id FROM metrics) ORDER BY id")
    assert silent["id"].tolist() == ["d"]
    with pytest.raises(ValueError, match="sql: cannot run the query"):
        store.query("SELEC 1")
    assert len(store) == 4 and [run.id for run in store] == ["a", "b", "c", "d"]
    assert "c" in store and "zz" not in store
    assert store.run("b").status == "diverged"
    with pytest.raises(KeyError, match="run_id: no run 'zz'"):
        store.run("zz")


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELECT * FROM read_text('/etc/passwd')", "Permission Error"),
        ("SELECT * FROM read_csv('{outside}/secret.csv')", "Permission Error"),
        ("COPY (SELECT * FROM runs) TO '{store}/leak.csv'", "only a SELECT query is allowed.*COPY"),
        ("COPY (SELECT 1) TO '{outside}/leak.csv'", "only a SELECT query is allowed"),
        ("ATTACH '{outside}/new.db' AS other", "only a SELECT query is allowed.*ATTACH"),
        ("INSTALL httpfs", "only a SELECT query is allowed"),
        ("SET enable_external_access = true", "only a SELECT query is allowed"),
        ("CREATE TABLE t AS SELECT 1", "only a SELECT query is allowed"),
        ("SELECT 1; COPY (SELECT 1) TO '{outside}/leak.csv'", "expected one statement, got 2"),
        (
            "SELECT current_setting('enable_external_access') AND 0 = (SELECT count(*) FROM glob('/etc/*'))",
            "Permission",
        ),
    ],
)
def test_query_is_read_only_and_confined_to_the_store(store, tmp_path_factory, sql, message):
    outside = tmp_path_factory.mktemp("outside")
    (outside / "secret.csv").write_text("a\n1\n")
    before = sorted(p.relative_to(store.path) for p in store.path.rglob("*"))
    with pytest.raises(ValueError, match=message):
        store.query(sql.format(store=store.path, outside=outside))
    assert sorted(p.relative_to(store.path) for p in store.path.rglob("*")) == before  # nothing written
    assert sorted(p.name for p in outside.iterdir()) == ["secret.csv"]
    assert store.query("SELECT count(*) AS n FROM runs")["n"].tolist() == [4]  # the views still read the store


@pytest.mark.parametrize(
    "where",
    [
        "1 = 1) UNION SELECT * FROM runs --",
        "1 = 1; DROP TABLE runs",
        "status = 'done') OR (1 = 1",
    ],
)
def test_where_must_be_one_expression(store, where):
    with pytest.raises(ValueError, match="where: expected one SQL boolean expression"):
        store.runs(where=where)


def test_where_comments_cannot_swallow_the_rest_of_the_query(store):
    assert (
        store.runs(where="status = 'done' -- a note")["id"].tolist()
        == store.runs(where="status = 'done'")["id"].tolist()
    )
    with pytest.raises(ValueError, match="Permission Error"):
        store.runs(where="id IN (SELECT content FROM read_text('/etc/passwd'))")


def test_empty_or_missing_store_gives_empty_frames(tmp_path):
    (tmp_path / "notes").mkdir()  # not a run: no meta.json
    (tmp_path / ".staging").mkdir()
    (tmp_path / ".staging" / "meta.json").write_text("{}")  # hidden: not a run
    for store in (Store(tmp_path), Store(tmp_path / "missing")):
        assert len(store) == 0 and list(store) == []
        runs = store.runs(where='"optimizer.lr" > 0')
        assert runs.empty and runs.columns.tolist() == [
            "id",
            "kind",
            "status",
            "created",
            "duration_s",
            "path",
        ]
        metrics = store.metrics(names=["loss"], where="step > 3")
        assert metrics.empty and metrics.columns.tolist()[:4] == ["run_id", "step", "name", "value"]
        assert store.query("SELECT count(*) AS n FROM metrics")["n"].tolist() == [0]


def test_config_keys_that_clash_with_fixed_columns_are_prefixed(tmp_path):
    Run.create(tmp_path, {"status": "ignored", "name": "mlp", "lr": 0.1}, kind="train", run_id="r")
    runs = Store(tmp_path).runs()
    assert runs["status"].tolist() == ["running"]
    assert runs["config.status"].tolist() == ["ignored"] and runs["config.name"].tolist() == ["mlp"]


def test_experiment_results_round_trip_and_query(tmp_path):
    import pandas as pd

    from tdlab.store import Run, Store

    for i, kappa in enumerate([10.0, 100.0]):
        run = Run.create(tmp_path, {"kappa": kappa}, kind="quadratic", run_id=f"q{i}")
        frame = pd.DataFrame({"name": ["rate", "rate"], "eta": [0.1, 0.2], "value": [1 - 0.1 / kappa, 1 - 0.2 / kappa]})
        run.write_results(frame)
        pd.testing.assert_frame_equal(run.results(), frame)
    got = Store(tmp_path).query("SELECT run_id, eta, value FROM results WHERE eta = 0.2 ORDER BY run_id")
    assert got["run_id"].tolist() == ["q0", "q1"]
    assert got["value"].tolist() == [1 - 0.02, 1 - 0.002]
