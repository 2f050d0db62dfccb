"""Ctrl-C stops a sweep within seconds: no further point starts, finished runs stay done, the points in flight record
the interruption, and a rerun completes them with the rows of lone runs (none lost, none duplicated)."""

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import yaml

from tdlab.store import Run
from tdlab.sweep import expand, load_spec, run_sweep

CONFIG = {
    "steps": 100,
    "batch_size": 32,
    "data": {"name": "synthetic-regression", "n_train": 128, "n_test": 64, "in_features": 5},
    "model": {"name": "mlp", "width": 16, "depth": 2, "activation": "tanh"},
    "optimizer": {"name": "sgd", "lr": 0.05},
    "checkpoint_every": 10,
    "probes": [{"name": "loss", "every": 5}, {"name": "gradient-norm", "every": 5}],
}
STOPPED_WITHIN_S = 30  # observed: about 1 s (local workers) and 5 to 9 s (Ray, its shutdown included)


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    """Six training points and their lone runs (each point alone, in this process)."""
    folder = tmp_path_factory.mktemp("spec")
    spec = {
        "name": "cut",
        "kind": "train",
        "config": CONFIG,
        "grid": {"optimizer.lr": [0.02, 0.05]},
        "seeds": [0, 1, 2],
    }
    path = folder / "cut.yaml"
    path.write_text(yaml.safe_dump(spec))
    parsed, base = load_spec(path)
    points = expand(parsed, base)
    lone = run_sweep(parsed, points, folder / "lone", ensemble=False).folder
    return path, parsed, points, lone


def statuses(folder) -> dict[str, str]:
    """Run id -> status, with the error of a failed run (`failed: interrupted`)."""
    found = {}
    for path in folder.iterdir() if folder.is_dir() else []:
        if (path / "status").is_file():
            status = (path / "status").read_text().strip()
            error = json.loads((path / "meta.json").read_text()).get("error")
            found[path.name] = f"{status}: {error}" if error else status
    return found


def _terminal_sigint() -> None:
    """The child's SIGINT as a terminal's foreground job has it (default), whatever this test process inherited:
    a pytest-xdist worker may run with SIGINT ignored, and an ignored SIGINT is inherited across exec."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def first_done_and_another_checkpointed(folder) -> bool:
    """A point is done and a later one is mid-training (it has a checkpoint): its worker is inside a job."""
    found = statuses(folder)
    running = [run_id for run_id, status in found.items() if status == "running"]
    return "done" in found.values() and any(
        (folder / run_id / "checkpoints" / "last.pt").exists() for run_id in running
    )


@pytest.mark.parametrize(
    "backend, options",
    [("local", ["--workers", "2", "--no-ensemble"]), ("ray", ["--workers", "2", "--no-ensemble", "--backend", "ray"])],
)
def test_ctrl_c_stops_a_sweep_within_seconds_and_a_rerun_completes_it(tmp_path, spec, backend, options):
    if backend == "ray":
        pytest.importorskip("ray")
    path, parsed, points, lone = spec
    out = tmp_path / "runs"
    sweep = subprocess.Popen(
        [sys.executable, "-m", "tdlab", "sweep", str(path), "--out", str(out), *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "250"},
        start_new_session=True,  # its own process group, as a shell gives a foreground job
        preexec_fn=_terminal_sigint,
    )
    deadline = time.time() + 300
    while not first_done_and_another_checkpointed(out / "cut"):
        if sweep.poll() is not None or time.time() > deadline:
            stdout, stderr = sweep.communicate()
            if backend == "ray" and "ray" in stderr.lower() and not statuses(out / "cut"):
                pytest.skip(f"Ray cannot start here: {stderr.strip().splitlines()[-1]}")
            pytest.fail(f"the sweep ended or stalled before its first point was done:\n{stdout}\n{stderr}")
        time.sleep(0.05)

    at_signal = statuses(out / "cut")
    os.killpg(sweep.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the whole foreground process group
    interrupted_at = time.time()
    stdout, stderr = sweep.communicate(timeout=120)
    took = time.time() - interrupted_at
    assert sweep.returncode == 130, stdout + stderr
    assert took < STOPPED_WITHIN_S, f"the sweep took {took:.1f} s to stop"
    assert "interrupted" in stderr and "the same command resumes the rest" in stderr

    after = statuses(out / "cut")
    assert "done" in after.values()
    # a point in flight records the interruption; one caught between creating its run and its first step stays
    # `running` (as after a kill): both are resumed by the rerun
    assert set(after.values()) <= {"done", "failed: interrupted", "running"}, after
    # no point is trained after Ctrl-C: a run created since (a worker was taking its next point) did not finish
    started_after = {run_id: status for run_id, status in after.items() if run_id not in at_signal}
    assert len(started_after) <= 2 and "done" not in started_after.values(), f"trained after Ctrl-C: {started_after}"
    assert len(after) < len(points)
    done_before = {run_id for run_id, status in after.items() if status == "done"}
    frozen = {run_id: Run.open(out / "cut" / run_id).metrics() for run_id in done_before}

    rerun = run_sweep(parsed, points, out, ensemble=False)
    assert rerun.counts == {"skipped": len(done_before), "done": len(points) - len(done_before)}
    for point in points:
        run = Run.open(out / "cut" / point.run_id)
        got, want = run.metrics(), Run.open(lone / point.run_id).metrics()
        assert run.status == "done"
        assert not got.duplicated(["step", "name"]).any()
        pd.testing.assert_frame_equal(got[["step", "name"]], want[["step", "name"]])  # no row lost or added
        pd.testing.assert_frame_equal(got, want, check_exact=False, rtol=1e-5, atol=1e-6)
        if point.run_id in frozen:  # a finished run is left as it was
            pd.testing.assert_frame_equal(got, frozen[point.run_id])


def test_ctrl_c_in_a_one_process_ensemble_sweep_records_every_member(tmp_path, spec):
    """With one worker the sweep trains in its own process: Ctrl-C interrupts the ensemble, whose members all record
    `failed: interrupted` after their last checkpoint, and a rerun resumes each member on its own."""
    path, parsed, points, lone = spec
    out = tmp_path / "runs"
    sweep = subprocess.Popen(
        [sys.executable, "-m", "tdlab", "sweep", str(path), "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=_terminal_sigint,
    )
    deadline = time.time() + 300
    while len(list(out.glob("cut/*/checkpoints/last.pt"))) < len(points):
        assert sweep.poll() is None and time.time() < deadline, sweep.communicate()
        time.sleep(0.05)
    os.killpg(sweep.pid, signal.SIGINT)
    interrupted_at = time.time()
    stdout, stderr = sweep.communicate(timeout=120)
    assert sweep.returncode == 130, stdout + stderr
    assert time.time() - interrupted_at < STOPPED_WITHIN_S
    after = statuses(out / "cut")
    if "done" in after.values():
        pytest.fail(f"the interruption must land mid-training: {after}")
    assert set(after.values()) == {"failed: interrupted"} and len(after) == len(points)

    rerun = run_sweep(parsed, points, out)
    assert rerun.counts == {"done": len(points)}
    for point in points:
        got, want = Run.open(out / "cut" / point.run_id).metrics(), Run.open(lone / point.run_id).metrics()
        assert not got.duplicated(["step", "name"]).any()
        pd.testing.assert_frame_equal(got[["step", "name"]], want[["step", "name"]])
        pd.testing.assert_frame_equal(got, want, check_exact=False, rtol=1e-5, atol=1e-6)
