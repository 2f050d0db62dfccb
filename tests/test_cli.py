"""The command line as a user meets it: help, train, runs, show, bad input."""

import yaml
from typer.testing import CliRunner

from tdlab.cli import app
from tdlab.store import Store

runner = CliRunner()

CONFIG = {
    "name": "cli",
    "steps": 20,
    "batch_size": 32,
    "data": {"name": "digits"},
    "model": {"name": "mlp", "width": 16, "depth": 1},
    "optimizer": {"name": "adam", "lr": 0.01},
    "probes": [{"name": "loss", "every": 10}, {"name": "parameter-norm", "every": 10}],
}


def test_help_lists_commands_with_examples():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("train", "runs", "show", "catalog", "run", "reproduce"):
        assert command in result.output
    result = runner.invoke(app, ["train", "--help"])
    assert result.exit_code == 0 and "--set" in result.output and "Examples" in result.output


def test_train_runs_show(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(CONFIG))
    out = tmp_path / "runs"
    result = runner.invoke(app, ["train", str(path), "--out", str(out), "--set", "optimizer.lr=0.02", "--id", "x"])
    assert result.exit_code == 0, result.output
    assert (out / "x" / "figures" / "metrics.png").is_file()
    run = Store(out).run("x")
    assert run.config["optimizer"]["lr"] == 0.02 and run.status == "done"
    listing = runner.invoke(app, ["runs", "--out", str(out), "--where", '"optimizer.lr" > 0.01'])
    assert listing.exit_code == 0 and "x" in listing.output
    shown = runner.invoke(app, ["show", "x", "--out", str(out)])
    assert shown.exit_code == 0 and "train/loss" in shown.output


def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path):
    out = tmp_path / "runs"
    for override, field in [
        ("optimizer.name=sgdd", "optimizer.name"),
        ("steps=-3", "steps"),
        ("data.name=cifar", "data.name: expected one of"),
        ("model.name=transformer", "model.name: expected one of"),
        ("probes=[{name: wobble}]", "probes[0].name: expected one of"),
        ("model.residual=gated", "model.residual: expected one of"),  # a builder's error names its config path
        ("probes=[{name: sharpness, k: 0}]", "probes[0].k: expected a positive integer"),
        ("probes=[{name: sharpness, hvp: numeric}]", "probes[0].hvp: expected one of 'exact', 'central', 'forward'"),
    ]:
        path = tmp_path / "c.yaml"
        path.write_text(yaml.safe_dump(CONFIG))
        result = runner.invoke(app, ["train", str(path), "--out", str(out), "--set", override])
        assert result.exit_code == 2, (override, result.output)
        assert field in result.output, (override, result.output)
        assert "Traceback" not in result.output
    assert not out.exists() or not any(out.iterdir())
    missing = runner.invoke(app, ["show", "nope", "--out", str(out)])
    assert missing.exit_code == 2 and "run" in missing.output


def test_files_where_folders_belong_and_broken_yaml_are_clean_errors(tmp_path):
    """Malformed YAML names the line, `--out` that is a file and `--csv` that is a folder name their option, an
    existing `--id` is refused: one line, exit 2, no traceback, nothing written."""
    good = tmp_path / "ok.yaml"
    good.write_text(yaml.safe_dump({**CONFIG, "steps": 2}))
    broken = tmp_path / "broken.yaml"
    broken.write_text("steps: [1\n")
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    out = tmp_path / "runs"
    assert runner.invoke(app, ["train", str(good), "--out", str(out), "--id", "x"]).exit_code == 0
    for args, word in [
        (["train", str(broken), "--out", str(out)], "line 2"),
        (["train", str(good), "--out", str(a_file)], "out:"),
        (["train", str(good), "--out", str(out), "--id", "x"], "run_id:"),
        (["query", "SELECT 1", "--out", str(out), "--csv", str(out)], "csv:"),
    ]:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert word in result.output and "Traceback" not in result.output, result.output
    assert [r.id for r in Store(out)] == ["x"] and a_file.read_text() == ""
