"""`Objective(..., distributed=True)` over 2 processes (torchrun, gloo, CPU) gives the one-process answer.

The worker (`distributed_worker.py`, next to this file) shards 60 examples unequally (35 / 25) over two ranks;
its oracles, Lanczos eigenvalues, Hutchinson trace and SLQ nodes/weights must match those of one process holding
all the data to 1e-10 in float64.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from tdlab import Objective

pytestmark = pytest.mark.skipif(
    not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
    reason="torch.distributed with the gloo backend is unavailable",
)

HERE = Path(__file__).resolve().parent
TOL = 1e-10


def _close(actual: object, expected: object, what: str) -> float:
    """Assert agreement to TOL (relative to the size of the expected value, absolute near 0); the max difference."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and actual.keys() == expected.keys(), what
        return max(_close(actual[key], expected[key], f"{what}[{key}]") for key in expected)
    if isinstance(expected, bool | int) and not isinstance(expected, float):
        assert actual == expected, f"{what}: {actual} != {expected}"
        return 0.0
    a = torch.as_tensor(actual, dtype=torch.float64)
    e = torch.as_tensor(expected, dtype=torch.float64)
    assert a.shape == e.shape, f"{what}: shape {tuple(a.shape)} != {tuple(e.shape)}"
    difference = float((a - e).abs().max()) if e.numel() else 0.0
    scale = max(1.0, float(e.abs().max())) if e.numel() else 1.0
    assert difference <= TOL * scale, f"{what}: max difference {difference:.3e} > {TOL:g} * {scale:.3g}"
    return difference


def _two_processes(out: Path) -> dict:
    """The worker's results from `torchrun` with 2 processes (its output shown if it fails or hangs)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    # --standalone: a local rendezvous on a free port, so that parallel pytest workers do not collide.
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(HERE / "distributed_worker.py"),
        str(out),
    ]
    try:
        run = subprocess.run(command, env=env, cwd=HERE, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired as error:
        pytest.fail(f"torchrun timed out after {error.timeout} s\nstdout:\n{error.stdout}\nstderr:\n{error.stderr}")
    assert run.returncode == 0 and out.exists(), (
        f"torchrun failed (exit {run.returncode})\nstdout:\n{run.stdout}\nstderr:\n{run.stderr}"
    )
    return torch.load(out, weights_only=False)


def test_two_processes_match_one(tmp_path: Path) -> None:
    # One test for all variants, so that `pytest -n 2` starts torchrun once.
    sys.path.insert(0, str(HERE))
    try:
        import distributed_worker as worker
    finally:
        sys.path.remove(str(HERE))
    results = _two_processes(tmp_path / "results.pt")
    assert results.keys() == set(worker.VARIANTS)
    for variant in worker.VARIANTS:
        full = worker.build(variant, None)
        expected = worker.measure(full)
        actual = results[variant]
        assert actual.keys() == expected.keys()
        assert expected["num_examples"] == worker.NUM_EXAMPLES
        assert expected["eigs_converged"]
        # The test has power: the plain average of the shards' losses (ignoring their sizes) is another number.
        X, y = worker.dataset(variant)
        shards = [float(Objective(full.model, full.loss_fn, (X[rows], y[rows])).value()) for rows in worker.SHARDS]
        assert abs(sum(shards) / len(shards) - float(expected["value"])) > 1e-6
        differences = {key: _close(actual[key], expected[key], f"{variant}.{key}") for key in expected}
        print(variant, {key: f"{d:.1e}" for key, d in differences.items()})


def test_distributed_needs_a_process_group() -> None:
    assert not torch.distributed.is_initialized()
    model = nn.Linear(3, 1).double()
    data = (torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 1, dtype=torch.float64))
    with pytest.raises(ValueError, match="distributed"):
        Objective(model, nn.MSELoss(), data, distributed=True)
