"""`tdlab new experiment`: the template writes a module and a test that run, follow the contract and can fail."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tdlab.cli.app import app
from tdlab.experiments.scaffold import new_experiment

REPO = Path(__file__).resolve().parents[1]
LISTED = "from tdlab.experiments import experiments; print('gd-on-least-squares' in experiments())"


def _root(tmp_path: Path) -> Path:
    """A copy of the repository's sources and the re-check helper: the template is written and run there."""
    shutil.copytree(REPO / "src", tmp_path / "src", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "tests/experiments").mkdir(parents=True)
    shutil.copy(REPO / "tests/experiments/recheck.py", tmp_path / "tests/experiments/recheck.py")
    return tmp_path


def test_new_experiment_writes_a_module_and_a_test_that_pass_in_the_catalogue(tmp_path):
    """The generated test runs the generated experiment from the catalogue of the copy: it passes its check,
    re-checks from stored metrics, and its check fails when training stops short."""
    root = _root(tmp_path)
    result = CliRunner().invoke(app, ["new", "experiment", "gd-on-least-squares", "--root", str(root)])
    assert result.exit_code == 0, result.output
    test = root / "tests/experiments/test_gd_on_least_squares.py"
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", str(test)],
        capture_output=True,
        text=True,
        cwd=root,
        env={**os.environ, "PYTHONPATH": f"{root / 'src'}{os.pathsep}{root / 'tests/experiments'}"},
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "2 passed" in completed.stdout
    listed = subprocess.run(
        [
            sys.executable,
            "-c",
            LISTED,
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(root / "src")},
        check=True,
    )
    assert listed.stdout.strip() == "True"


@pytest.mark.parametrize(("name", "message"), [("Bad Name", "name: lower-case"), ("ok-name", "root:"), ("x", "root:")])
def test_new_experiment_refuses_bad_input_with_exit_2(tmp_path, name, message):
    result = CliRunner().invoke(app, ["new", "experiment", name, "--root", str(tmp_path)])
    assert result.exit_code == 2
    assert message in result.output


def test_new_experiment_refuses_an_existing_module(tmp_path):
    root = _root(tmp_path)
    new_experiment("twice", root)
    with pytest.raises(ValueError, match="exists"):
        new_experiment("twice", root)
