"""Property-based fuzzing of `tdlab train` and `tdlab sweep` with Hypothesis: random, mostly invalid, configs,
YAML texts, sweep specs and `--set` overrides. Whatever the input, the command either trains (exit 0, a finished
run) or refuses it with one line `error: <field>: ...` and exit 2, writing nothing; never a traceback, never exit 1.
"""

import re
import uuid

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from tdlab.cli.app import app

runner = CliRunner()

BASE = {
    "name": "fuzz",
    "steps": 2,
    "batch_size": 16,
    "data": {"name": "synthetic-regression", "n_train": 64, "n_test": 32, "in_features": 4},
    "model": {"name": "mlp", "width": 8, "depth": 1},
    "optimizer": {"name": "sgd", "lr": 0.05},
    "probes": [{"name": "loss", "every": 1}],
    "checkpoint_every": 1,
}

garbage = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.lists(st.integers(-3, 3), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)
# field -> values worth trying there: a few valid ones (cheap to train), edge cases and garbage
FIELDS = {
    "seed": st.one_of(st.integers(0, 5), st.just(2**63), st.just(-1), garbage),
    "steps": st.one_of(st.integers(1, 3), st.just(0), garbage),
    "batch_size": st.one_of(st.sampled_from([None, 1, 16, 64, 65]), garbage),
    "batch_order": st.one_of(st.sampled_from(["reshuffle", "replacement", "cyclic", "random"]), garbage),
    "dtype": st.one_of(st.sampled_from(["float32", "float64", "float16"]), garbage),
    "device": st.one_of(st.sampled_from(["cpu", "auto", "gpu"]), garbage),
    "checkpoint_every": st.one_of(st.integers(1, 3), garbage),
    "optimizer.name": st.one_of(st.sampled_from(["sgd", "adam", "adamw", "rmsprop", "nope"]), garbage),
    "optimizer.lr": st.one_of(st.floats(1e-4, 1.0), st.sampled_from([0, -1, float("inf"), float("nan")]), garbage),
    "optimizer.momentum": st.one_of(st.floats(0, 0.99), garbage),
    "model.name": st.one_of(st.sampled_from(["mlp", "linear", "random-features", "cnn"]), garbage),
    "model.width": st.one_of(st.integers(1, 32), st.sampled_from([0, -3, 10**7, 2**40]), garbage),
    "model.depth": st.one_of(st.integers(0, 3), st.sampled_from([-1, 7]), garbage),
    "model.activation": st.one_of(st.sampled_from(["relu", "tanh", "swish"]), garbage),
    "model.norm": st.one_of(st.sampled_from([None, "batchnorm", "layernorm", "groupnorm"]), garbage),
    "model.residual": st.one_of(st.sampled_from([None, "plain", "scaled", "preact", "x"]), garbage),
    "data.name": st.one_of(st.sampled_from(["mnist1d", "synthetic-regression", "imagenet"]), garbage),
    "data.n_train": st.one_of(st.integers(16, 128), st.sampled_from([0, -5]), garbage),
    "schedule.name": st.one_of(st.sampled_from(["constant", "cosine", "step", "warp"]), garbage),
    "schedule.gamma": st.one_of(st.floats(0.5, 1.0), garbage),
    "probes": st.one_of(
        st.lists(
            st.fixed_dictionaries(
                {"name": st.sampled_from(["loss", "gradient-norm", "sharpness", "nope"]), "every": st.integers(-1, 3)}
            ),
            max_size=2,
        ),
        garbage,
    ),
    "unknown_field": garbage,
    "model": garbage,
    "optimizer": garbage,
}
FIELD_NAMES = {part for key in FIELDS for part in key.split(".")} | {"config", "--set", "spec", "name", "every"}


def _assign(config: dict, dotted: str, value: object) -> None:
    *parents, last = dotted.split(".")
    node = config
    for part in parents:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[last] = value


@st.composite
def configs(draw):
    config = yaml.safe_load(yaml.safe_dump(BASE))
    for key in draw(st.lists(st.sampled_from(sorted(FIELDS)), min_size=1, max_size=3, unique=True)):
        _assign(config, key, draw(FIELDS[key]))
    return config


def _check(result, out, mutated: str = "") -> None:
    """The property: exit 0 with a finished run, or exit 2 with one line naming a field and nothing written."""
    assert "Traceback" not in result.output, result.output
    if result.exit_code == 0:
        runs = [p for p in out.iterdir() if p.is_dir()]
        assert len(runs) == 1 and (runs[0] / "status").read_text().strip() in ("done", "diverged")
        return
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception, mutated)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    field = re.match(r"error: (--set |config |spec )?[^\s:]+", lines[0])  # `error: <field>: ...`
    assert field is not None and lines[0][field.end()] == ":", lines[0]
    assert not out.exists(), f"written on exit 2: {list(out.iterdir())}"


FUZZ = settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(config=configs())
def test_train_config_dicts(tmp_path, config):
    path = tmp_path / f"{uuid.uuid4().hex}.yaml"
    path.write_text(yaml.safe_dump(config))
    out = tmp_path / uuid.uuid4().hex
    _check(runner.invoke(app, ["train", str(path), "--out", str(out)]), out, repr(config))


@FUZZ
@given(text=st.text(alphabet=st.sampled_from(list("ab:-[]{}&*!|>'\"#,? \n0.9")), max_size=60))
def test_train_yaml_text(tmp_path, text):
    path = tmp_path / f"{uuid.uuid4().hex}.yaml"
    path.write_text(text)
    out = tmp_path / uuid.uuid4().hex
    _check(runner.invoke(app, ["train", str(path), "--out", str(out)]), out, text)


@FUZZ
@given(
    items=st.lists(
        st.one_of(
            st.builds(
                lambda key, value: f"{key}={yaml.safe_dump(value, default_flow_style=True).strip()}",
                st.sampled_from(sorted(FIELDS)),
                st.one_of(*FIELDS.values()),
            ),
            st.text(alphabet=st.sampled_from(list("ab.=[]{}:&* 1")), max_size=15),
        ),
        min_size=1,
        max_size=3,
    )
)
def test_train_set_overrides(tmp_path, items):
    path = tmp_path / "base.yaml"
    path.write_text(yaml.safe_dump(BASE))
    out = tmp_path / uuid.uuid4().hex
    args = ["train", str(path), "--out", str(out)]
    for item in items:
        args += ["--set", item]
    _check(runner.invoke(app, args), out, repr(items))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    spec=st.fixed_dictionaries(
        {"name": st.one_of(st.just("fz"), garbage)},
        optional={
            "kind": st.one_of(st.just("train"), garbage),
            "grid": st.one_of(
                st.dictionaries(st.sampled_from(sorted(FIELDS)), st.lists(FIELDS["steps"], max_size=2), max_size=2),
                garbage,
            ),
            "zip": st.one_of(st.dictionaries(st.sampled_from(["steps", "seed"]), st.lists(st.integers(1, 2))), garbage),
            "seeds": st.one_of(st.lists(st.integers(-1, 2), max_size=2), garbage),
            "config": st.one_of(st.just({}), garbage),
            "base": garbage,
            "extra": garbage,
        },
    )
)
def test_sweep_specs_are_validated_or_refused(tmp_path, spec):
    """Specs are only planned here (`load_spec` + `expand`), so that the suite stays fast: a spec is either
    expanded into points, or refused with a ValueError (what the CLI turns into exit 2) naming a field."""
    from pydantic import ValidationError

    from tdlab.cli.errors import describe_validation_error
    from tdlab.sweep import expand, load_spec

    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    try:
        parsed, base = load_spec(path)
        points = expand(parsed, base)
    except ValidationError as error:
        message = describe_validation_error(error)
    except ValueError as error:
        message = str(error)
    else:
        assert len(points) >= 1
        return
    assert "\n" not in message.strip() and set(re.findall(r"[A-Za-z_\-]+", message)) & (FIELD_NAMES | set(spec))
