"""Hostile input and faults end in one line on stderr and exit code 2, with nothing written to the store: YAML alias
bombs, models too large for memory, empty checkpoints, a lost status file, and a full disk (which leaves the run
`failed` and resumable)."""

import errno
import textwrap

import pytest
import yaml
from typer.testing import CliRunner

from tdlab.cli.app import app
from tdlab.config import parse_yaml
from tdlab.config.yamltext import MAX_DEPTH, MAX_NODES
from tdlab.store import DamagedFileWarning, Run, Store
from tdlab.store import run as run_module
from tdlab.store.atomic import atomic_open

runner = CliRunner()

TINY = textwrap.dedent(
    """\
    name: tiny
    steps: 4
    batch_size: 16
    data: {name: mnist1d, n_train: 64, n_test: 32}
    model: {name: mlp, width: 8, depth: 1}
    probes: [{name: loss, every: 1}]
    checkpoint_every: 2
    """
)


def _bomb(levels: int = 9, fan: int = 9, key: str = "model") -> str:
    """The billion laughs: `levels` anchors, each a list of `fan` aliases of the one before; the last sits under a
    real config field, so its value is validated (and, before the limit, printed in full by the error)."""
    lines = ["x0: &a0 [" + ", ".join(['"lol"'] * fan) + "]"]
    for level in range(1, levels):
        lines.append(f"x{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * fan) + "]")
    lines.append(f"{key}: {{name: mlp, width: *a{levels - 1}}}")
    return "\n".join(lines) + "\n"


def _one_line_exit_2(result, *words: str) -> str:
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    return path


# ---------------------------------------------------------------- YAML alias bombs


def test_parse_yaml_counts_expanded_aliases():
    # 3 levels of 10 aliases: 1 + 10 + 100 + 1000 nodes in the innermost list's expansion, well under the limit,
    # and the shared value is expanded correctly
    text = "a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: [*b, *b]\n"
    value = parse_yaml(text, "config")
    assert sum(len(inner) for outer in value["c"] for inner in outer) == 200
    # the same shape one level deeper per step passes the limit exactly when its expansion does
    with pytest.raises(ValueError, match=f"config: .*more than {MAX_NODES:,} values"):
        parse_yaml(_bomb(levels=7, fan=10), "config")  # about 10^7 values
    assert parse_yaml(_bomb(levels=4, fan=10), "config")["model"]["width"][0][0][0][0] == "lol"


def test_self_referencing_and_deep_yaml_are_refused():
    with pytest.raises(ValueError, match="refers to itself"):
        parse_yaml("a: &a [*a]\n", "config")
    with pytest.raises(ValueError, match=f"more than {MAX_DEPTH} levels"):
        parse_yaml("[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5), "config")
    with pytest.raises(ValueError, match="nested too deeply"):
        parse_yaml("[" * 20_000 + "]" * 20_000, "config")
    nested = parse_yaml("[" * 50 + "]" * 50, "config")  # shallow nesting is fine
    for _ in range(49):
        (nested,) = nested
    assert nested == []
    # plain YAML loads as yaml.safe_load does
    text = "lr: &x 0.1\nmomentum: *x\nmodel: {name: mlp, widths: [1, 2]}\n"
    assert parse_yaml(text, "config") == yaml.safe_load(text)


def test_train_refuses_an_alias_bomb(tmp_path):
    config = tmp_path / "bomb.yaml"
    config.write_text(_bomb())
    result = runner.invoke(app, ["train", str(config), "--out", str(tmp_path / "runs")])
    _one_line_exit_2(result, "config", f"{MAX_NODES:,}")
    assert not (tmp_path / "runs").exists()


def test_sweep_refuses_an_alias_bomb(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: s\n" + _bomb(key="config"))
    result = runner.invoke(app, ["sweep", str(spec), "--out", str(tmp_path / "runs")])
    _one_line_exit_2(result, "spec", f"{MAX_NODES:,}")
    assert not (tmp_path / "runs").exists()


def test_set_refuses_an_alias_bomb(tiny, tmp_path):
    value = "[" + ", ".join(["&a [1,1,1,1,1,1,1,1,1,1]"] + ["*a"] * 9) + "]"  # small: accepted, then invalid
    result = runner.invoke(app, ["train", str(tiny), "--set", f"model.width={value}", "--out", str(tmp_path / "r")])
    _one_line_exit_2(result, "model.width")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("text", ["a: [1\n", "a: {b: 1\n", "- x\n- : :\n  ]\n"])
def test_malformed_yaml_names_the_line(tmp_path, text):
    for command, name in (("train", "config"), ("sweep", "spec")):
        path = tmp_path / f"{command}.yaml"
        path.write_text(text)
        result = runner.invoke(app, [command, str(path), "--out", str(tmp_path / "runs")])
        _one_line_exit_2(result, name, "not valid YAML")
    assert not (tmp_path / "runs").exists()


# ---------------------------------------------------------------- models too large for memory


@pytest.mark.parametrize(
    ("model", "fields"),
    [
        ("{name: mlp, width: 2000000, depth: 10}", "width=2000000, depth=10"),  # 3.6e13 weights: 288 TB
        ("{name: random-features, num_features: 100000000000}", "num_features=100000000000"),  # 4e12 B of F
    ],
)
def test_a_model_too_large_for_memory_is_refused_before_allocating(tiny, tmp_path, model, fields):
    tiny.write_text(TINY.replace("{name: mlp, width: 8, depth: 1}", model))
    result = runner.invoke(app, ["train", str(tiny), "--out", str(tmp_path / "runs")])
    line = _one_line_exit_2(result, "model:", fields, "GB", "free on cpu")
    assert not (tmp_path / "runs").exists()
    if "width" in fields:  # 40 -> 2e6, 9 x (2e6 -> 2e6), 2e6 -> 10, with biases: 36,000,120,000,010 weights
        assert "36,000,120,000,010 parameters" in line


def test_a_huge_depth_is_refused_at_once(tiny, tmp_path):
    """10^6 layers would take minutes to create before any memory estimate: the depth has a bound."""
    tiny.write_text(TINY.replace("{name: mlp, width: 8, depth: 1}", "{name: mlp, width: 8, depth: 1000000}"))
    result = runner.invoke(app, ["train", str(tiny), "--out", str(tmp_path / "runs")])
    _one_line_exit_2(result, "model.depth:", "[0, 10000]", "1000000")
    assert not (tmp_path / "runs").exists()


def test_the_estimate_is_exact_and_leaves_the_random_state_alone():
    import torch

    from tdlab.train.builders import build_data, build_network
    from tdlab.train.config import DataConfig, ModelConfig
    from tdlab.train.memory import training_bytes

    data = build_data(DataConfig(name="mnist1d", n_train=64, n_test=32))
    config = ModelConfig(name="mlp", width=16, depth=2, norm="batchnorm")
    torch.manual_seed(0)
    first = build_network(config, data)
    torch.manual_seed(0)
    from tdlab.models import build_model

    plain = build_model("mlp", data.in_features, data.out_features, width=16, depth=2, norm="batchnorm")
    # the fake build drew no random number: the same weights as a build without the check
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), plain.state_dict().values(), strict=True))
    weights = sum(p.numel() for p in plain.parameters())
    buffers = sum(b.numel() * b.element_size() for b in plain.buffers())
    assert training_bytes(plain, torch.float32) == 2 * 4 * weights + buffers


def test_the_limit_is_the_free_memory(monkeypatch, tiny, tmp_path):
    from tdlab.train import memory

    monkeypatch.setattr(memory, "available_bytes", lambda device: 1000)  # 1 kB free: the 8-wide MLP needs more
    result = runner.invoke(app, ["train", str(tiny), "--out", str(tmp_path / "runs")])
    _one_line_exit_2(result, "model:", "width=8, depth=1")
    assert not (tmp_path / "runs").exists()


# ---------------------------------------------------------------- damaged run files


def _trained(tiny, out, run_id="a"):
    result = runner.invoke(app, ["train", str(tiny), "--out", str(out), "--id", run_id])
    assert result.exit_code == 0, result.output
    return out / run_id


def test_an_empty_checkpoint_is_named_on_resume(tiny, tmp_path):
    path = _trained(tiny, tmp_path / "runs")
    (path / "status").write_text("running\n")
    (path / "checkpoints" / "last.pt").write_bytes(b"")
    chunks = sorted((path / "metrics").iterdir())
    result = runner.invoke(app, ["train", "--resume", "a", "--out", str(tmp_path / "runs")])
    _one_line_exit_2(result, "checkpoint:", "last.pt", "empty (0 bytes)")
    assert sorted((path / "metrics").iterdir()) == chunks  # nothing deleted
    assert (path / "status").read_text() == "running\n"


def test_a_missing_status_file_is_damage(tiny, tmp_path):
    out = tmp_path / "runs"
    path = _trained(tiny, out)
    _trained(tiny, out, "b")
    (path / "status").unlink()
    for args in (["show", "a"], ["train", "--resume", "a"]):
        _one_line_exit_2(runner.invoke(app, [*args, "--out", str(out)]), "status (missing)")
    listed = runner.invoke(app, ["runs", "--out", str(out)])
    assert listed.exit_code == 0 and "status (missing)" in listed.stderr
    with pytest.warns(DamagedFileWarning, match="status"):
        assert [r.id for r in Store(out)] == ["a", "b"] and list(Store(out).runs()["id"]) == ["b"]
    assert runner.invoke(app, ["doctor", "--out", str(out)]).exit_code == 1
    assert runner.invoke(app, ["doctor", "--out", str(out), "--fix"]).exit_code == 0
    assert Run.open(path).status == "failed"  # and so resumable
    resumed = runner.invoke(app, ["train", "--resume", "a", "--out", str(out)])
    assert resumed.exit_code == 0, resumed.output
    assert Run.open(path).status == "done" and sorted(Store(out).runs()["id"]) == ["a", "b"]


def test_a_garbled_status_word_is_damage(tiny, tmp_path):
    path = _trained(tiny, tmp_path / "runs")
    (path / "status").write_text("bogus\n")
    _one_line_exit_2(runner.invoke(app, ["show", "a", "--out", str(tmp_path / "runs")]), "not a status word")


# ---------------------------------------------------------------- a full disk


def test_a_full_disk_fails_the_run_and_a_resume_continues_it(tiny, tmp_path, monkeypatch):
    """The metric chunks and checkpoint writes fail with ENOSPC from step 3 on: the run is `failed: no space left`;
    once space is back, `--resume` finishes it with every row once, equal to a run that never saw the fault."""
    out = tmp_path / "runs"
    reference = _trained(tiny, out, "reference")
    full = {"now": False}

    def filling(path, mode="wb"):
        if full["now"]:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return atomic_open(path, mode)

    def flush_then_fill(self, _flush=Run.flush):
        _flush(self)
        if self._num_chunks >= 2:  # from the second flushed chunk on the disk is full
            full["now"] = True

    monkeypatch.setattr(run_module, "atomic_open", filling)
    monkeypatch.setattr(Run, "flush", flush_then_fill)
    result = runner.invoke(app, ["train", str(tiny), "--out", str(out), "--id", "a"])
    line = _one_line_exit_2(result, "disk: no space left", "--resume")
    assert "run a is failed" in line
    meta = Run.open(out / "a").meta
    assert Run.open(out / "a").status == "failed" and meta["error"].startswith("no space left")

    monkeypatch.undo()  # space is freed
    result = runner.invoke(app, ["train", "--resume", "a", "--out", str(out)])
    assert result.exit_code == 0, result.output
    resumed, alone = Run.open(out / "a").metrics(), Run.open(reference).metrics()
    assert Run.open(out / "a").status == "done"
    assert not resumed.duplicated(["step", "name"]).any()
    assert resumed[["step", "name", "value"]].equals(alone[["step", "name", "value"]])


def test_a_disk_too_full_for_the_status_leaves_the_run_resumable(tiny, tmp_path, monkeypatch):
    """Full from the first metric row on, even for the status file: the run stays `running`, which resumes."""

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    out = tmp_path / "runs"
    monkeypatch.setattr(Run, "log", no_space)
    monkeypatch.setattr(Run, "set_status", no_space)
    result = runner.invoke(app, ["train", str(tiny), "--out", str(out), "--id", "a"])
    _one_line_exit_2(result, "disk: no space left")
    monkeypatch.undo()
    assert Run.open(out / "a").status == "running"
    assert runner.invoke(app, ["train", "--resume", "a", "--out", str(out)]).exit_code == 0
    assert Run.open(out / "a").status == "done"


def test_an_architecture_is_estimated_once_per_process(monkeypatch):
    """Members of an ensemble (same architecture, other seeds) pay for one fake build: the second build of an
    architecture makes only its real model; another width is estimated anew, and still refused when too large."""
    from tdlab.train import builders, memory
    from tdlab.train.config import DataConfig, ModelConfig

    data = builders.build_data(DataConfig(name="mnist1d", n_train=64, n_test=32))
    calls = []
    real = builders.build_model
    monkeypatch.setattr(builders, "build_model", lambda *a, **k: calls.append(k["width"]) or real(*a, **k))
    monkeypatch.setattr(memory, "_SIZES", {})
    config = ModelConfig(name="mlp", width=24, depth=2)
    builders.build_network(config, data)
    builders.build_network(config, data)
    builders.build_network(ModelConfig(name="mlp", width=25, depth=2), data)
    assert calls == [24, 24, 24, 25, 25]  # fake + real, real, fake + real
    monkeypatch.setattr(memory, "available_bytes", lambda device: 1000)
    with pytest.raises(ValueError, match="width=24"):
        builders.build_network(config, data)  # the remembered estimate is checked against the free memory again
