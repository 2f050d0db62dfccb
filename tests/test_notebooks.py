"""Every notebook under notebooks/ executes from top to bottom without a cell error, and its checks pass."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbclient
import nbformat
import pytest
from jupyter_client import kernelspec

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
FAILING_HONESTLY: dict[str, str] = {}
"""Experiments whose claim fails at a notebook's settings, with the exact verdict count expected (a change either way
fails the test); none at present."""


@pytest.fixture(scope="module")
def kernel() -> str:
    """A kernel named python3 that runs this interpreter, installed into the virtualenv when missing."""
    if "python3" not in kernelspec.find_kernel_specs():
        subprocess.run([sys.executable, "-m", "ipykernel", "install", "--sys-prefix", "--name", "python3"], check=True)
    return "python3"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_and_its_checks_pass(path, kernel, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    notebook = nbformat.read(path, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert not any(cell.get("outputs") for cell in code), "commit notebooks without outputs"
    nbclient.NotebookClient(
        notebook, kernel_name=kernel, timeout=600, resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    printed = "".join(out.get("text", "") for cell in code for out in cell.outputs if out.output_type == "stream")
    for line in printed.splitlines():
        if "checks pass" in line:
            name, counts = line.split(": ")[-2:]
            passed, total = counts.split(" checks")[0].split("/")
            assert f"{passed}/{total}" == FAILING_HONESTLY.get(name.strip(), f"{total}/{total}"), line
