"""`tdlab catalog`, `tdlab run` and `tdlab reproduce` as a user meets them."""

import html
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import tdlab.experiments as ex
from tdlab.cli import app
from tdlab.store import Run, Store

runner = CliRunner()


def test_catalog_lists_every_experiment_with_its_claim():
    result = runner.invoke(app, ["catalog"], terminal_width=400)
    assert result.exit_code == 0
    for name, experiment in ex.experiments().items():
        assert name in result.output
        assert experiment.claim, f"{name} has no claim"


def test_every_experiment_follows_the_contract():
    for name, experiment in ex.experiments().items():
        config = experiment.make_config()
        assert config.seed == 0 and config.device == "auto", name
        assert "full" in experiment.presets, f"{name} has no full preset"
        experiment.make_config("full")  # the preset validates


def test_run_writes_checks_figures_and_results(tmp_path):
    out = tmp_path / "runs"
    result = runner.invoke(app, ["run", "quadratic-step-size", "--out", str(out), "--set", "seed=1"])
    assert result.exit_code == 0, result.output
    assert "PASS" in result.output and "FAIL" not in result.output
    (run,) = list(Store(out))
    assert run.status == "done" and run.config["seed"] == 1
    # CPU time of the process over its threads: positive, at most the wall time times the threads (plus slack)
    assert 0 < run.meta["cpu_s"] <= run.meta["duration_s"] * run.meta["threads"] + 0.5
    checks = json.loads((run.path / "checks.json").read_text())
    assert checks and all(c["passed"] for c in checks)
    assert sorted(p.suffix for p in (run.path / "figures").iterdir()) == sorted(
        [".png", ".svg"] * len(list((run.path / "figures").glob("*.png")))
    )
    assert not run.results().empty


def test_bad_experiment_input_exits_2_and_writes_nothing(tmp_path):
    out = tmp_path / "runs"
    for args, word in [
        (["run", "no-such-experiment"], "experiment"),
        (["run", "quadratic-step-size", "--set", "not_a_field=3"], "not_a_field"),
        (["run", "quadratic-step-size", "--preset", "huge"], "preset"),
        (["reproduce", "--only", "nope"], "experiment"),
        (["reproduce", "--jobs", "-1"], "jobs"),
    ]:
        result = runner.invoke(app, [*args, "--out", str(out)])
        assert result.exit_code == 2, (args, result.output)
        assert word in result.output and "Traceback" not in result.output
    assert not out.exists() or not any(out.iterdir())


def test_reproduce_writes_the_report(tmp_path):
    report = tmp_path / "report"
    result = runner.invoke(
        app,
        [
            "reproduce",
            "--quick",
            "--only",
            "quadratic-step-size",
            "--out",
            str(tmp_path / "runs"),
            "--report",
            str(report),
        ],
    )
    assert result.exit_code == 0, result.output
    page = (report / "index.html").read_text()
    assert html.escape(ex.get("quadratic-step-size").claim) in page
    assert "PASS" in page and "<img" in page
    assert all((report / src).is_file() for src in _image_sources(page))


def test_reproduce_in_worker_processes_gives_the_verdicts_of_one_process(tmp_path):
    """--jobs 2 runs the experiments in two spawned workers; the report and the checks are those of --jobs 1
    (same numbers to float rounding: the workers run one thread each), in the order asked."""
    only = ["--only", "taylor-step", "--only", "quadratic-step-size"]
    pages = {}
    for jobs in ("1", "2"):
        out, report = tmp_path / f"runs{jobs}", tmp_path / f"report{jobs}"
        command = ["reproduce", "--quick", *only, "--jobs", jobs, "--out", str(out), "--report", str(report)]
        result = runner.invoke(app, command)
        assert result.exit_code == 0, result.output
        pages[jobs] = (report / "index.html").read_text()
        checks = {Run.open(path).meta["kind"]: Run.open(path).checks() for path in out.iterdir()}
        pages[jobs + "checks"] = checks
    one, two = pages["1checks"], pages["2checks"]
    assert sorted(one) == sorted(two) == ["quadratic-step-size", "taylor-step"]
    for kind in one:
        assert [c["passed"] for c in one[kind]] == [c["passed"] for c in two[kind]]
        assert [c["measured"] for c in one[kind]] == pytest.approx([c["measured"] for c in two[kind]], rel=1e-6)
    first = {jobs: pages[jobs].index("taylor-step") < pages[jobs].index("quadratic-step-size") for jobs in ("1", "2")}
    assert first["1"] == first["2"]  # the report's order does not depend on which worker ended first


def _image_sources(page: str) -> list[str]:
    return [part.split('"', 1)[0] for part in page.split('<img src="')[1:]]


def test_check_reevaluates_a_stored_run_from_its_metrics_and_redraws(tmp_path):
    """`tdlab check` gives the stored verdicts from results.parquet alone; a tampered metric changes them."""
    out = tmp_path / "runs"
    assert runner.invoke(app, ["run", "quadratic-step-size", "--out", str(out)]).exit_code == 0
    (run,) = list(Store(out))
    for png in (run.path / "figures").glob("*.png"):
        png.unlink()
    result = runner.invoke(app, ["check", run.id, "--out", str(out), "--redraw"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "PASS" in result.output and "FAIL" not in result.output
    assert list((run.path / "figures").glob("*.png")), "figures drawn again from the stored metrics"
    frame = run.results()
    frame["value"] = frame["value"] * 10.0  # every measured number off by a factor of ten
    run.write_results(frame)
    result = runner.invoke(app, ["check", run.id, "--out", str(out)], terminal_width=200)
    assert result.exit_code == 1 and "FAIL" in result.output and "differ" in result.output


def test_show_of_a_catalogue_run_prints_its_metrics_checks_and_figures(tmp_path):
    out = tmp_path / "runs"
    assert runner.invoke(app, ["run", "quadratic-step-size", "--out", str(out)]).exit_code == 0
    (run,) = list(Store(out))
    result = runner.invoke(app, ["show", run.id, "--out", str(out)], terminal_width=200)
    assert result.exit_code == 0
    assert "no metrics recorded" not in result.output
    assert "metrics" in result.output and "checks" in result.output and "figure:" in result.output


def test_catalogue_report_redraws_figures_from_the_store(tmp_path):
    out = tmp_path / "runs"
    assert runner.invoke(app, ["run", "quadratic-step-size", "--out", str(out)]).exit_code == 0
    (run,) = list(Store(out))
    for png in (run.path / "figures").glob("*.png"):
        png.unlink()
    result = runner.invoke(app, ["report", str(out), "--catalogue", "--to", str(tmp_path / "page")])
    assert result.exit_code == 0, result.output
    page = (tmp_path / "page" / "index.html").read_text()
    assert "<img" in page and all((tmp_path / "page" / src).is_file() for src in _image_sources(page))
    assert runner.invoke(app, ["report", str(tmp_path / "empty"), "--catalogue"]).exit_code == 2


def test_every_experiment_is_rechecked_from_stored_metrics_by_its_tests():
    """The contract's promise is tested for each experiment: its test module calls `assert_rechecks`."""
    folder = Path(__file__).parent / "experiments"
    tests = {path.name: path.read_text() for path in folder.glob("test_*.py")}
    for name, experiment in ex.experiments().items():
        module = experiment.measure.__module__.rsplit(".", 1)[-1]
        source = tests.get(f"test_{module}.py", "")
        assert "assert_rechecks(" in source, f"{name}: tests/experiments/test_{module}.py does not re-check it"
