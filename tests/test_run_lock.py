"""One writer per run: a live owner's run is never resumed under it (by `load_checkpoint`, `tdlab train --resume`
or a second sweep of the same spec), a dead owner's run is taken over, and the store then matches lone runs row
by row."""

import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tdlab.store import Run, metric_chunks
from tdlab.store.lock import RunBusyError, RunLock, read_owner
from tdlab.sweep import expand, load_spec, run_sweep
from tdlab.train import TrainConfig, train

CONFIG = {
    "steps": 120,
    "batch_size": 32,
    "data": {"name": "synthetic-regression", "n_train": 128, "n_test": 64, "in_features": 5},
    "model": {"name": "mlp", "width": 16, "depth": 2, "activation": "tanh"},
    "optimizer": {"name": "sgd", "lr": 0.05},
    "checkpoint_every": 20,
    "probes": [{"name": "loss", "every": 5}, {"name": "gradient-norm", "every": 5}],
}
ENV = {**os.environ, "COLUMNS": "250"}  # one line per message in rich's output


def tdlab(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tdlab", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
        start_new_session=True,
        **kwargs,
    )


def wait_for(condition, what: str, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def stop_group(pgid: int) -> None:
    """SIGSTOP the process group `pgid` and wait until every thread of every process in it has stopped: `killpg`
    returns before that, and a thread inside a system call (a checkpoint being written) finishes the call first."""
    os.killpg(pgid, signal.SIGSTOP)

    def states() -> list[str]:
        found = []
        for task in [*Path("/proc").glob("[0-9]*/task/[0-9]*/stat")]:
            try:
                fields = task.read_text().rsplit(")", 1)[1].split()
            except OSError:  # the task has just ended
                continue
            if int(fields[2]) == pgid:  # fields: state, ppid, pgrp, ...
                found.append(fields[0])
        return found

    def stopped() -> bool:
        found = states()
        return bool(found) and all(state in "Tt" for state in found)

    wait_for(stopped, f"process group {pgid} to stop")


def snapshot(folder) -> dict[str, bytes]:
    """Every file under `folder` but the lock, by relative path: to show that a refused writer changed nothing."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "lock"
    }


def assert_same_rows(got: pd.DataFrame, want: pd.DataFrame) -> None:
    """No row lost, none duplicated, the same values (to the float rounding of another thread count or an ensemble)."""
    assert not got.duplicated(["step", "name"]).any()
    pd.testing.assert_frame_equal(got[["step", "name"]], want[["step", "name"]])
    pd.testing.assert_frame_equal(got, want, check_exact=False, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------- the lock itself
HOLDER = textwrap.dedent(
    """
    import sys, time
    from tdlab.store import Run
    run = Run.create(sys.argv[1], {}, kind="train", run_id="held")
    for step in range(3):
        run.log(step, {"loss": float(step)})
        run.flush()
    print("ready", flush=True)
    time.sleep(600)
    """
)

TAKER = textwrap.dedent(
    """
    import sys
    from tdlab.store.lock import RunBusyError, RunLock
    try:
        RunLock.acquire(sys.argv[1])
    except RunBusyError as error:
        print(error.owner.pid)
    else:
        print("owned")
    """
)


def other_process_gets(folder) -> str:
    """What another process gets when it tries to take the lock of `folder`: "owned", or the owner's pid."""
    return subprocess.run(
        [sys.executable, "-c", TAKER, str(folder)], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_a_live_owner_blocks_every_writer_and_a_dead_one_is_taken_over(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        path = tmp_path / "held"
        chunks = [p.name for p in metric_chunks(path)]
        assert len(chunks) == 3

        with pytest.raises(RunBusyError) as busy:
            Run.open(path).own()
        assert (busy.value.owner.host, busy.value.owner.pid) == (socket.gethostname(), holder.pid)
        assert str(busy.value).startswith(f"run: {path} is in use by host {socket.gethostname()}, pid {holder.pid}")
        with pytest.raises(RunBusyError):  # resuming would delete the live writer's chunks: nothing is deleted
            Run.open(path).load_checkpoint()
        assert [p.name for p in metric_chunks(path)] == chunks
    finally:
        holder.kill()
        holder.wait()

    # the owner died without a word (SIGKILL): its lock is free and the next writer takes the run over
    run = Run.open(path)
    assert run.load_checkpoint() is None and metric_chunks(path) == []
    assert run.owned and read_owner(path).pid == os.getpid()


def test_ownership_is_per_process_and_ends_with_its_last_holder(tmp_path):
    created = Run.create(tmp_path, {}, kind="train", run_id="r")
    again = Run.open(tmp_path / "r").own()  # the same process: a second holder, not a second writer
    assert again.owned
    assert other_process_gets(tmp_path / "r") == str(os.getpid())
    created.release()
    assert other_process_gets(tmp_path / "r") == str(os.getpid()), "the lock must stay while this process holds it"
    again.release()
    again.release()  # harmless
    assert other_process_gets(tmp_path / "r") == "owned"

    with Run.open(tmp_path / "r").own() as run:  # a `with` block ends the ownership
        assert other_process_gets(tmp_path / "r") == str(os.getpid())
        run.set_status("done")
    assert other_process_gets(tmp_path / "r") == "owned"


def test_a_lock_file_replaced_under_a_taker_is_not_trusted(tmp_path, monkeypatch):
    """Between `open` and `flock`, the lock file may be removed with its run and the run made again: the taker
    must lock the file that is there now, not the removed one."""
    import tdlab.store.lock as lock

    (tmp_path / "lock").write_text("")
    real_flock, swapped = lock.fcntl.flock, []

    def flock_after_swap(fd, operation):
        if not swapped:
            swapped.append(True)
            (tmp_path / "lock").unlink()
            (tmp_path / "lock").write_text("")  # a new file: another process could lock it now
        return real_flock(fd, operation)

    monkeypatch.setattr(lock.fcntl, "flock", flock_after_swap)
    held = RunLock.acquire(tmp_path)
    assert swapped and other_process_gets(tmp_path) == str(os.getpid())
    held.release()
    assert other_process_gets(tmp_path) == "owned"


# ---------------------------------------------------------------------- tdlab train --resume of a live run
def test_resume_of_a_live_run_exits_2_naming_its_owner_and_touches_nothing(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    out = tmp_path / "runs"
    live = tdlab("train", str(config), "--out", str(out), "--id", "live")
    try:
        wait_for(lambda: (out / "live" / "checkpoints" / "last.pt").exists(), "the first checkpoint")
        stop_group(live.pid)  # alive and owning the run, but writing nothing while we look
        before = snapshot(out / "live")
        second = subprocess.run(
            [sys.executable, "-m", "tdlab", "train", "--resume", "live", "--out", str(out)],
            capture_output=True,
            text=True,
            env=ENV,
        )
        assert second.returncode == 2, second.stderr
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1, second.stderr
        assert re.fullmatch(
            rf"error: run: .*live is in use by host {socket.gethostname()}, pid {live.pid} .*", lines[0]
        )
        assert snapshot(out / "live") == before
    finally:
        os.killpg(live.pid, signal.SIGCONT)
    assert live.wait(timeout=240) == 0, live.stderr.read()

    lone = train(TrainConfig.model_validate(CONFIG), out=tmp_path / "lone", run_id="lone")
    assert Run.open(out / "live").status == "done"
    assert_same_rows(Run.open(out / "live").metrics(), lone.metrics())


# ---------------------------------------------------------------------- two sweeps of one spec
@pytest.fixture(scope="module")
def sweep_spec(tmp_path_factory):
    """A spec of 4 training points and its lone runs (each point alone, in this process)."""
    folder = tmp_path_factory.mktemp("spec")
    spec = {"name": "twice", "kind": "train", "config": CONFIG, "grid": {"optimizer.lr": [0.02, 0.05]}, "seeds": [0, 1]}
    path = folder / "twice.yaml"
    path.write_text(yaml.safe_dump(spec))
    parsed, base = load_spec(path)
    points = expand(parsed, base)
    lone = run_sweep(parsed, points, folder / "lone", ensemble=False).folder
    return path, points, lone


def counts_of(stdout: str) -> dict[str, int]:
    line = next(line for line in stdout.splitlines() if line.startswith("sweep twice: "))
    return {word: int(n) for n, word in re.findall(r"(\d+) (\w+)", line.split(";")[0])}


def assert_store_matches_lone_runs(folder, points, lone) -> None:
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.run_id for p in points)
    for point in points:
        run = Run.open(folder / point.run_id)
        assert run.status == "done"
        assert_same_rows(run.metrics(), Run.open(lone / point.run_id).metrics())


def test_two_sweeps_of_one_spec_at_once_train_every_point_once(tmp_path, sweep_spec):
    path, points, lone = sweep_spec
    out = tmp_path / "runs"
    sweeps = [tdlab("sweep", str(path), "--workers", "2", "--out", str(out)) for _ in range(2)]
    results = [sweep.communicate(timeout=600) for sweep in sweeps]
    for sweep, (stdout, stderr) in zip(sweeps, results, strict=True):
        assert sweep.returncode == 0, stdout + stderr
    counts = [counts_of(stdout) for stdout, _ in results]
    assert sum(c.get("done", 0) for c in counts) == len(points), counts  # each point trained by one sweep only
    assert all(sum(c.values()) == len(points) for c in counts), counts
    assert_store_matches_lone_runs(out / "twice", points, lone)


def test_a_second_sweep_leaves_the_runs_of_a_live_one_to_it(tmp_path, sweep_spec):
    path, points, lone = sweep_spec
    out = tmp_path / "runs"
    first = tdlab("sweep", str(path), "--out", str(out))  # one worker: its own process owns the four runs
    try:
        wait_for(lambda: len(list(out.glob("twice/*/checkpoints/last.pt"))) == len(points), "four checkpoints")
        stop_group(first.pid)
        before = snapshot(out / "twice")
        second = subprocess.run(
            [sys.executable, "-m", "tdlab", "sweep", str(path), "--workers", "2", "--out", str(out)],
            capture_output=True,
            text=True,
            env=ENV,
        )
        assert second.returncode == 0, second.stdout + second.stderr
        assert counts_of(second.stdout) == {"busy": len(points)}
        assert f"busy: 4 run(s) in use by host {socket.gethostname()}, pid {first.pid}, left to it" in second.stdout
        assert snapshot(out / "twice") == before
    finally:
        os.killpg(first.pid, signal.SIGCONT)
    stdout, stderr = first.communicate(timeout=600)
    assert first.returncode == 0, stdout + stderr
    assert counts_of(stdout) == {"done": len(points)}
    assert_store_matches_lone_runs(out / "twice", points, lone)
