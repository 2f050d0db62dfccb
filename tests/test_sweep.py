"""Sweeps: grid expansion, local processes, resume after SIGKILL row by row, Ray, the sweep report."""

import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import yaml

from tdlab.store import Run, Store
from tdlab.sweep import SweepSpec, expand, load_spec, plan_jobs, run_group, run_sweep
from tdlab.sweep.spec import config_hash

BASE = {
    "steps": 40,
    "batch_size": 32,
    "data": {"name": "synthetic-regression", "n_train": 128, "n_test": 64, "in_features": 5},
    "model": {"name": "mlp", "width": 16, "depth": 2, "activation": "tanh"},
    "optimizer": {"name": "sgd", "lr": 0.05},
    "checkpoint_every": 10,
    "probes": [{"name": "loss", "every": 5}, {"name": "gradient-norm", "every": 5}],
}


def write_spec(folder, name, **extra):
    spec = {"name": name, "kind": "train", "config": BASE, "grid": {"optimizer.lr": [0.02, 0.05]}, "seeds": [0, 1]}
    spec.update(extra)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_expand_grid_zip_seeds_with_stable_ids(tmp_path):
    spec = SweepSpec(
        name="s",
        grid={"optimizer.lr": [0.1, 0.2], "model.width": [8, 16, 32]},
        zip={"model.depth": [1, 2], "steps": [10, 20]},
        seeds=[0, 1, 2],
    )
    points = expand(spec, BASE)
    assert len(points) == 2 * 3 * 2 * 3
    assert [p.run_id for p in points] == [p.run_id for p in expand(spec, BASE)]
    depths_steps = {(p.config["model"]["depth"], p.config["steps"]) for p in points}
    assert depths_steps == {(1, 10), (2, 20)}
    assert BASE["model"]["width"] == 16, "expansion must not mutate the base config"
    with pytest.raises(ValueError, match="zip"):
        SweepSpec(name="s", zip={"a": [1, 2], "b": [1]})


def test_point_ids_are_64_bit_and_a_repeated_point_is_named():
    """The ids of 200,000 distinct configs do not collide (32-bit ids collided after 55,759), and a grid that
    repeats a value is refused naming both points."""
    ids = {config_hash({"optimizer": {"lr": i * 1e-6}, "seed": 0}) for i in range(200_000)}
    assert len(ids) == 200_000 and all(len(i) == 16 for i in ids)
    spec = SweepSpec(name="s", grid={"optimizer.lr": [0.055, 0.056], "model.init_scale": [0.693, 0.759]})
    assert len({p.run_id for p in expand(spec, BASE)}) == 4
    with pytest.raises(ValueError, match=r"grid: the points .*0\.1.* and .*0\.1.* have the same config"):
        expand(SweepSpec(name="s", grid={"optimizer.lr": [0.1, 0.1]}), BASE)


def test_local_sweep_then_rerun_skips_everything(tmp_path):
    spec, base = load_spec(write_spec(tmp_path, "local"))
    points = expand(spec, base)
    first = run_sweep(spec, points, tmp_path / "runs", workers=2)
    assert first.counts == {"done": 4}
    again = run_sweep(spec, points, tmp_path / "runs", workers=2)
    assert again.counts == {"skipped": 4}
    runs = Store(first.folder).runs()
    assert sorted(runs["optimizer.lr"].unique()) == [0.02, 0.05]


def test_sigkill_mid_ensemble_sweep_then_resume_matches_sequential_runs_row_by_row(tmp_path):
    spec_path = write_spec(tmp_path, "killed", config={**BASE, "steps": 150})
    spec, base = load_spec(spec_path)
    points = expand(spec, base)
    # the reference runs every point alone; the killed sweep trains them as two ensembles of two members
    reference = run_sweep(spec, points, tmp_path / "reference", workers=1, ensemble=False).folder

    out = tmp_path / "runs"
    process = subprocess.Popen(
        [sys.executable, "-m", "tdlab", "sweep", str(spec_path), "--workers", "2", "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 180
    while time.time() < deadline:
        checkpoints = list((out / "killed").glob("*/checkpoints/last.pt"))
        chunks = list((out / "killed").glob("*/metrics/*.parquet"))
        if len(checkpoints) >= 2 and len(chunks) >= 6:
            break
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    statuses = [Run.open(p).status for p in (out / "killed").iterdir()]
    assert "running" in statuses, "the kill must land mid-sweep"

    resumed = run_sweep(spec, points, out, workers=2)
    assert resumed.counts["done"] >= 1 and sum(resumed.counts.values()) == 4
    for point in points:
        got = Run.open(out / "killed" / point.run_id).metrics()
        want = Run.open(reference / point.run_id).metrics()
        assert not got.duplicated(["step", "name"]).any()
        pd.testing.assert_frame_equal(got[["step", "name"]], want[["step", "name"]])  # no row lost or added
        pd.testing.assert_frame_equal(got, want, check_exact=False, rtol=1e-5, atol=1e-6)


def test_ray_backend_runs_the_same_sweep(tmp_path):
    pytest.importorskip("ray")
    spec, base = load_spec(write_spec(tmp_path, "ray"))
    points = expand(spec, base)
    summary = run_sweep(spec, points, tmp_path / "runs", workers=2, backend="ray")
    assert summary.counts == {"done": 4}
    local = run_sweep(spec, points, tmp_path / "local", workers=2).folder  # the same ensembles as on Ray
    for point in points:
        pd.testing.assert_frame_equal(
            Run.open(summary.folder / point.run_id).metrics(), Run.open(local / point.run_id).metrics()
        )


def test_plan_groups_fresh_runs_of_one_shape_into_ensembles(tmp_path):
    spec = SweepSpec(name="p", grid={"optimizer.lr": [0.01, 0.02, 0.03], "model.width": [8, 16]}, seeds=[0, 1])
    points = expand(spec, BASE)
    width = {p.run_id: p.config["model"]["width"] for p in points}
    jobs = plan_jobs("train", points, tmp_path, workers=2)
    # 6 points per width, each group split in two ensembles of 3 so that both workers have work
    assert sorted(len(ids) for ids, _ in jobs) == [3, 3, 3, 3]
    assert all(len({width[i] for i in ids}) == 1 for ids, _ in jobs)
    assert sorted(i for ids, _ in jobs for i in ids) == sorted(width)
    assert [len(ids) for ids, _ in plan_jobs("train", points, tmp_path, workers=1)] == [6, 6]
    (tmp_path / points[0].run_id).mkdir()  # a partial run resumes alone
    jobs = plan_jobs("train", points, tmp_path, workers=1)
    assert sorted(len(ids) for ids, _ in jobs) == [1, 5, 6] and [points[0].run_id] in [ids for ids, _ in jobs]
    assert all(len(ids) == 1 for ids, _ in plan_jobs("train", points, tmp_path, workers=1, ensemble=False))
    assert all(len(ids) == 1 for ids, _ in plan_jobs("momentum", points, tmp_path, workers=1))
    # what the ensemble trainer cannot run stays alone: BatchNorm, RMSProp, AMSGrad
    for name, update in [
        ("bn", {"model": {**BASE["model"], "norm": "batchnorm"}}),
        ("rms", {"optimizer": {"name": "rmsprop", "lr": 0.01}}),
        ("ams", {"optimizer": {"name": "adam", "lr": 0.01, "amsgrad": True}}),
    ]:
        alone = expand(SweepSpec(name=name, seeds=[0, 1, 2]), {**BASE, **update})
        assert all(len(ids) == 1 for ids, _ in plan_jobs("train", alone, tmp_path, workers=1)), name


def test_a_failing_ensemble_falls_back_to_its_members_one_by_one(tmp_path, monkeypatch):
    import tdlab.ensemble

    def broken(configs, out, run_ids):  # creates the members' runs, then fails
        for config, run_id in zip(configs, run_ids, strict=True):
            Run.create(out, config.model_dump(mode="json"), kind="train", run_id=run_id)
        raise RuntimeError("boom")

    monkeypatch.setattr(tdlab.ensemble, "train_ensemble", broken)
    points = expand(SweepSpec(name="fb", seeds=[0, 1]), {**BASE, "steps": 10})
    statuses = run_group("train", [p.run_id for p in points], [p.config for p in points], str(tmp_path))
    assert statuses == ["done", "done"]
    for point in points:
        alone = run_sweep(SweepSpec(name="ref", seeds=[point.config["seed"]]), [point], tmp_path / "ref").folder
        pd.testing.assert_frame_equal(
            Run.open(tmp_path / point.run_id).metrics(), Run.open(alone / point.run_id).metrics()
        )


def test_sweep_report_and_query_cli(tmp_path):
    from typer.testing import CliRunner

    from tdlab.cli import app

    spec_path = write_spec(tmp_path, "rep")
    runner = CliRunner()
    result = runner.invoke(app, ["sweep", str(spec_path), "--out", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["report", str(tmp_path / "runs" / "rep")])
    assert result.exit_code == 0, result.output
    page = (tmp_path / "runs" / "rep" / "report" / "index.html").read_text()
    assert "optimizer.lr" in page and "train/loss" in page
    result = runner.invoke(
        app,
        [
            "query",
            'SELECT "optimizer.lr" AS lr, count(DISTINCT run_id) AS n FROM metrics GROUP BY 1 ORDER BY 1',
            "--out",
            str(tmp_path / "runs" / "rep"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "0.02" in result.output and "0.05" in result.output
    bad = runner.invoke(app, ["sweep", str(write_spec(tmp_path, "bad", grid={"optimizer.name": ["sgdd"]}))])
    assert bad.exit_code == 2 and "optimizer.name" in bad.output
