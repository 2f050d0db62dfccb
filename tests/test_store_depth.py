"""One store: runs at any depth under the store folder (a sweep's `<store>/<sweep>/<run>`) are listed and queried
beside the runs at the top, each named by its path in the store; the search never enters a run."""

import os
import warnings

import pandas as pd
import pytest
from typer.testing import CliRunner

from tdlab.cli import app
from tdlab.store import DamagedFileWarning, Run, Store

runner = CliRunner()

# id in the store -> learning rate; "x" is a plain name shared by two sweeps, "deep" sits two folders down
RUNS = {"top": 0.5, "sw1/x": 0.1, "sw1/y": 0.2, "sw2/x": 0.3, "sw2/inner/deep": 0.4}
STEPS = 5


def loss(step: int, lr: float) -> float:
    return (1.0 - lr) ** step


@pytest.fixture
def root(tmp_path):
    """A store holding RUNS, each with STEPS loss rows and figures/ and checkpoints/ folders, and things that look
    like runs but are not: one inside a run's figures/, one hidden, one under the remains of a run without
    meta.json."""
    root = tmp_path / "store"
    for run_id, lr in RUNS.items():
        folder, _, name = run_id.rpartition("/")
        with Run.create(root / folder, {"optimizer": {"lr": lr}}, kind="train", run_id=name) as run:
            for step in range(STEPS):
                run.log(step, {"loss": loss(step, lr)})
            run.save_checkpoint({"step": STEPS - 1})
            run.set_status("done")
        (run.path / "figures").mkdir()
    Run.create(root / "sw1" / "x" / "figures", {}, kind="train", run_id="inside")  # within a run
    Run.create(root / ".hidden", {}, kind="train", run_id="h")
    remains = Run.create(root, {}, kind="train", run_id="remains")
    (remains.path / "meta.json").unlink()  # what `tdlab doctor --fix` leaves of a run with a garbled meta.json
    Run.create(remains.path / "sub", {}, kind="train", run_id="below")
    return root


def test_runs_at_any_depth_are_listed_and_queried_under_their_path(root):
    store = Store(root)
    assert store.ids() == sorted(RUNS) and len(store) == len(RUNS)
    runs = store.runs()
    assert sorted(runs["id"]) == sorted(RUNS)
    assert dict(zip(runs["id"], runs["optimizer.lr"], strict=True)) == RUNS
    assert dict(zip(runs["id"], runs["path"], strict=True)) == {i: str(root / i) for i in RUNS}
    metrics = store.metrics(names=["loss"])
    assert len(metrics) == len(RUNS) * STEPS
    expected = [loss(step, RUNS[run_id]) for run_id in sorted(RUNS) for step in range(STEPS)]
    assert metrics["value"].tolist() == pytest.approx(expected, rel=0, abs=0)
    counts = store.query("SELECT run_id, count(*) AS n FROM metrics GROUP BY run_id ORDER BY run_id")
    assert counts["run_id"].tolist() == sorted(RUNS) and set(counts["n"]) == {STEPS}
    assert [run.path for run in store] == [root / i for i in sorted(RUNS)]


def test_a_run_is_named_by_its_id_or_by_a_name_only_it_has(root):
    store = Store(root)
    assert store.run("sw1/x").config["optimizer"]["lr"] == RUNS["sw1/x"]
    assert store.run("deep").path == root / "sw2" / "inner" / "deep"
    assert "sw2/inner/deep" in store and "deep" not in store and "inside" not in store
    with pytest.raises(KeyError, match=r"run_id: 'x' names 2 runs in .* \(sw1/x, sw2/x\)"):
        store.run("x")
    with pytest.raises(KeyError, match="run_id: no run 'inside'"):
        store.run("inside")
    picked = store.metrics(runs=["sw2/x", "deep"], where="step = 1")
    assert picked["run_id"].tolist() == ["sw2/inner/deep", "sw2/x"]
    assert picked["value"].tolist() == [loss(1, 0.4), loss(1, 0.3)]
    with pytest.raises(ValueError, match="runs: 'x' names 2 runs"):
        store.metrics(runs=["x"])
    with pytest.raises(ValueError, match=r"runs: expected ids of runs in .*, got unknown \['remains'\]"):
        store.metrics(runs=["remains"])


def test_the_search_never_enters_a_run(root, monkeypatch):
    scanned = []
    real = os.scandir

    def scandir(path):
        scanned.append(os.path.relpath(path, root))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    assert len(Store(root)) == len(RUNS)
    assert sorted(scanned) == [".", "sw1", "sw2", "sw2/inner"]


def test_a_damaged_file_in_a_sweep_is_named_and_moved_into_its_own_run(root):
    chunk = root / "sw2" / "x" / "metrics" / "part-00000.parquet"
    chunk.write_bytes(b"")
    store = Store(root)
    with pytest.warns(DamagedFileWarning, match="part-00000.parquet") as caught:
        assert sorted(store.runs()["id"]) == sorted(set(RUNS) - {"sw2/x"})
    assert len(caught) == 1 and [d.path for d in store.damaged] == [chunk]
    assert [d.path for d in store.check()] == [chunk]
    assert [new for _, new in store.repair()] == [root / "sw2" / "x" / "damaged" / chunk.name]
    with warnings.catch_warnings():
        warnings.simplefilter("error", DamagedFileWarning)
        assert store.check() == [] and sorted(store.runs()["id"]) == sorted(RUNS)
        # its rows were all in the damaged chunk, so the repaired run has none
        assert int(store.query("SELECT count(*) AS n FROM metrics")["n"].iloc[0]) == (len(RUNS) - 1) * STEPS


def test_queries_stay_read_only_and_confined_with_nested_runs(root, tmp_path):
    outside = tmp_path / "secret.csv"
    outside.write_text("a\n1\n")
    store = Store(root / "sw1")  # a sweep's folder is a store of its own
    assert store.ids() == ["x", "y"]
    assert store.query("SELECT count(*) AS n FROM metrics")["n"].tolist() == [2 * STEPS]
    with pytest.raises(ValueError, match="Permission Error"):
        store.query(f"SELECT * FROM read_csv('{outside}')")
    with pytest.raises(ValueError, match="Permission Error"):  # a run of the parent store is outside this one
        store.query(f"SELECT * FROM read_parquet('{root}/sw2/x/metrics/part-00000.parquet')")
    with pytest.raises(ValueError, match="only a SELECT query is allowed"):
        Store(root).query(f"COPY (SELECT * FROM metrics) TO '{root}/leak.csv'")
    assert not (root / "leak.csv").exists()


def test_cli_lists_queries_and_shows_runs_in_sweeps(root, tmp_path):
    listing = runner.invoke(app, ["runs", "--out", str(root)])
    assert listing.exit_code == 0, listing.output
    assert all(run_id in listing.stdout for run_id in RUNS) and "inside" not in listing.stdout
    csv = tmp_path / "rows.csv"
    query = runner.invoke(
        app, ["query", "SELECT run_id, count(*) AS n FROM metrics GROUP BY 1", "--out", str(root), "--csv", str(csv)]
    )
    assert query.exit_code == 0, query.output
    rows = pd.read_csv(csv)
    assert dict(zip(rows["run_id"], rows["n"], strict=True)) == dict.fromkeys(RUNS, STEPS)
    for name in ("sw1/x", "deep", "top", str(root / "sw2" / "x")):
        shown = runner.invoke(app, ["show", name, "--out", str(root)])
        assert shown.exit_code == 0, (name, shown.output)
        assert "loss" in shown.stdout
    ambiguous = runner.invoke(app, ["show", "x", "--out", str(root)])
    assert ambiguous.exit_code == 2 and len(ambiguous.stderr.strip().splitlines()) == 1
    assert "sw1/x" in ambiguous.stderr and "sw2/x" in ambiguous.stderr
    missing = runner.invoke(app, ["show", "nope", "--out", str(root)])
    assert missing.exit_code == 2 and "no run 'nope'" in missing.stderr
    doctor = runner.invoke(app, ["doctor", "--out", str(root)])
    assert doctor.exit_code == 0 and f"{len(RUNS)} runs" in doctor.stdout
