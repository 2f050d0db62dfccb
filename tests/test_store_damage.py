"""One bad file does not break the store: damaged runs are left out and named, `tdlab doctor --fix` moves the
file aside, and the store reads cleanly afterwards."""

import warnings

import pandas as pd
import pytest
from typer.testing import CliRunner

from tdlab.cli import app
from tdlab.store import DamagedFileWarning, Run, Store

runner = CliRunner()

STEPS = 6  # with flush_every=4: part-00000 holds steps 0..3, part-00001 steps 4..5


def empty(path):
    path.write_bytes(b"")


def halve(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def garble(path):
    path.write_text('{"id": "r1", "kind')


# (file of run r1, how it is damaged, does r1 stay a run after `doctor --fix`, r1's metric rows after the fix)
DAMAGE = {
    "empty chunk": ("metrics/part-00000.parquet", empty, True, 2),
    "truncated chunk": ("metrics/part-00000.parquet", halve, True, 2),
    "empty results": ("results.parquet", empty, True, STEPS),
    "garbled meta": ("meta.json", garble, False, 0),
}


@pytest.fixture(params=sorted(DAMAGE))
def damaged(request, tmp_path):
    """A store of three runs r0, r1, r2 whose run r1 has one damaged file; (store folder, damaged path, case)."""
    root = tmp_path / "store"
    for i in range(3):
        run = Run.create(root, {"optimizer": {"lr": 0.1 * (i + 1)}}, kind="train", run_id=f"r{i}", flush_every=4)
        for step in range(STEPS):
            run.log(step, {"loss": 1.0 / (1 + step)})
        run.flush()
        run.write_results(pd.DataFrame({"name": ["final"], "value": [float(i)]}))
        run.set_status("done")
    relative, spoil, _, _ = DAMAGE[request.param]
    target = root / "r1" / relative
    spoil(target)
    return root, target, request.param


def count(store, table):
    return int(store.query(f"SELECT count(*) AS n FROM {table}")["n"].iloc[0])


def test_damaged_run_is_left_out_and_named_once(damaged):
    root, target, _ = damaged
    store = Store(root)
    with pytest.warns(DamagedFileWarning) as caught:
        assert store.runs()["id"].tolist() == ["r0", "r2"]
    assert [str(w.message) for w in caught] == [f"damaged: {target} ({store.damaged[0].reason})"]
    assert [d.path for d in store.damaged] == [target]
    with pytest.warns(DamagedFileWarning):
        assert count(store, "metrics") == 2 * STEPS
        assert count(store, "results") == 2
        assert count(store, "runs") == 2
        assert sorted(store.metrics()["run_id"].unique()) == ["r0", "r2"]
        assert store.metrics(runs=["r0", "r1"])["run_id"].unique().tolist() == ["r0"]
    assert [d.path for d in store.damaged] == [target]
    assert [d.path for d in store.check()] == [target]


def test_cli_names_the_damaged_file_once(damaged):
    root, target, _ = damaged
    listing = runner.invoke(app, ["runs", "--out", str(root)])
    assert listing.exit_code == 0, listing.output
    assert listing.stderr.count(str(target)) == 1 and listing.stderr.startswith("damaged: ")
    assert "r0" in listing.stdout and "r2" in listing.stdout and "r1" not in listing.stdout
    query = runner.invoke(app, ["query", "SELECT count(*) AS n FROM metrics", "--out", str(root)])
    assert query.exit_code == 0, query.output
    assert query.stderr.count(str(target)) == 1 and str(2 * STEPS) in query.stdout
    shown = runner.invoke(app, ["show", "r1", "--out", str(root)])
    assert shown.exit_code == 2, shown.output
    assert shown.stderr.count(str(target)) == 1 and len(shown.stderr.strip().splitlines()) == 1
    assert shown.exception is None or isinstance(shown.exception, SystemExit)
    assert runner.invoke(app, ["show", "r0", "--out", str(root)]).exit_code == 0


def test_doctor_moves_the_damaged_file_aside(damaged):
    root, target, case = damaged
    _, spoil, still_a_run, r1_rows = DAMAGE[case]
    spoiled = target.read_bytes()
    check = runner.invoke(app, ["doctor", "--out", str(root)])
    assert check.exit_code == 1, check.output
    assert check.stdout.count(str(target)) == 1 and target.exists()
    fixed = runner.invoke(app, ["doctor", "--out", str(root), "--fix"])
    assert fixed.exit_code == 0, fixed.output
    aside = root / "r1" / "damaged" / target.name
    assert not target.exists() and aside.read_bytes() == spoiled
    assert runner.invoke(app, ["doctor", "--out", str(root)]).exit_code == 0
    store = Store(root)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DamagedFileWarning)
        ids = store.runs()["id"].tolist()
        assert ids == (["r0", "r1", "r2"] if still_a_run else ["r0", "r2"])
        assert count(store, "metrics") == 2 * STEPS + r1_rows
        assert count(store, "results") == 2 + (still_a_run and case != "empty results")
    assert store.damaged == []
    listing = runner.invoke(app, ["runs", "--out", str(root)])
    assert listing.exit_code == 0 and "damaged" not in listing.stderr
    # damaged again: the second copy is kept beside the first, nothing is overwritten
    if still_a_run:
        target.write_bytes(b"")
        assert [new.name for _, new in Store(root).repair()] == [f"{target.name}.1"]
        assert aside.read_bytes() == spoiled and Store(root).check() == []


def test_iterating_skips_a_run_with_a_garbled_meta(tmp_path):
    for run_id in ("a", "b"):
        Run.create(tmp_path, {}, kind="train", run_id=run_id)
    garble(tmp_path / "a" / "meta.json")
    store = Store(tmp_path)
    with pytest.warns(DamagedFileWarning, match="meta.json"):
        assert [run.id for run in store] == ["b"]
