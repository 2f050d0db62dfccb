"""The CPU thread count: the cores a process may use (affinity mask, cgroup quota), TDLAB_THREADS, the CLI."""

import os

import pytest
import torch
from typer.testing import CliRunner

from tdlab.cli import app
from tdlab.config import configure_threads, usable_cores, worker_threads
from tdlab.config.threads import _cgroup_quota
from tdlab.store import Run


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_cgroup_quotas_v2_and_v1(tmp_path):
    assert _cgroup_quota(tmp_path) is None  # no cgroup files: no quota
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert _cgroup_quota(tmp_path) == 1.5
    assert usable_cores(tmp_path) == min(len(os.sched_getaffinity(0)), 2)  # 1.5 CPUs round up to 2
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert _cgroup_quota(tmp_path) is None
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("50000\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert _cgroup_quota(v1) == 0.5 and usable_cores(v1) == 1
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert _cgroup_quota(v1) is None


def test_usable_cores_follow_the_affinity_mask(restore_threads):
    mask = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(mask)})
        assert usable_cores() == 1
        assert configure_threads() == 1 and torch.get_num_threads() == 1
    finally:
        os.sched_setaffinity(0, mask)
    assert usable_cores() <= len(mask)


def test_tdlab_threads_pins_the_count_and_bad_values_are_refused(monkeypatch, restore_threads):
    monkeypatch.setenv("TDLAB_THREADS", "1")
    assert configure_threads() == 1 and torch.get_num_threads() == 1
    assert worker_threads(4) == 1  # a sweep's workers too
    monkeypatch.delenv("TDLAB_THREADS")
    assert worker_threads(1) == usable_cores() and worker_threads(10**6) == 1
    for bad in ("0", "-2", "two", "1.5"):
        monkeypatch.setenv("TDLAB_THREADS", bad)
        with pytest.raises(ValueError, match="TDLAB_THREADS: expected a positive integer"):
            configure_threads()
        result = CliRunner().invoke(app, ["runs", "--out", "nowhere"])
        assert result.exit_code == 2 and "TDLAB_THREADS" in result.output
    with pytest.raises(ValueError, match="threads"):
        configure_threads(0)


def test_a_run_records_torch_and_its_thread_count(tmp_path, restore_threads):
    torch.set_num_threads(1)
    meta = Run.create(tmp_path, {}, kind="train", run_id="a").meta
    assert meta["threads"] == 1 and meta["torch_version"] == torch.__version__


def test_configure_threads_limits_the_blas_pools_too(restore_threads):
    from threadpoolctl import threadpool_info, threadpool_limits

    with threadpool_limits(limits=None):  # restores the pools' counts after the test
        configure_threads(1)
        blas = [pool for pool in threadpool_info() if pool["user_api"] == "blas"]
        assert blas and all(pool["num_threads"] == 1 for pool in blas)


def test_the_cli_makes_idle_openmp_threads_sleep_unless_the_user_chose():
    """OMP_WAIT_POLICY must be in the environment before torch loads libgomp: checked in fresh interpreters."""
    import subprocess
    import sys

    code = "import os, tdlab.cli, torch; print(os.environ['OMP_WAIT_POLICY'])"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "PASSIVE"
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env | {"OMP_WAIT_POLICY": "ACTIVE"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "ACTIVE"
