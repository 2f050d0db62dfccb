"""overparameterisation: the per-example tangent-kernel trace against autograd one output at a time, its expectation
at initialisation against the closed form, the sharpness at initialisation against the exact Hessian, config
validation, the seeds trained together (each at its own step in SP, at the one NTK step, at eta m in the mean-field
arm) against one by one, with their first-layer movement, the mean-field width checks, the NTK step's stability
check and both movement checks flipping on corrupted metrics, re-checking from stored metrics, and a quick run."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from pydantic import ValidationError
from recheck import assert_rechecks

from tdlab.curvature import exact_hessian
from tdlab.data import mnist1d
from tdlab.experiments.base import Context
from tdlab.experiments.catalogue import overparameterisation as op
from tdlab.models import MLP
from tdlab.models.ntk import NTKMLP, MeanFieldMLP
from tdlab.oracles import Objective
from tdlab.theory.ntk import relu_ntk_trace


def test_ntk_trace_against_autograd_per_output():
    model = MLP(4, 3, width=6, depth=2, seed=0).double()
    X = torch.randn(5, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    expected = torch.zeros(5, dtype=torch.float64)
    for i in range(5):
        for c in range(3):
            grads = torch.autograd.grad(model(X[i : i + 1])[0, c], list(model.parameters()))
            expected[i] += sum(g.square().sum() for g in grads)
    torch.testing.assert_close(op.ntk_trace(model, X), expected)


def test_expected_trace_at_he_initialisation():
    """Mean over 400 initialisations of tr Theta(x, x) vs C (m |x|^2/d + |x|^2 + 2), within 4 standard errors."""
    d, m, C = 6, 16, 3
    x = torch.randn(1, d, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    samples = np.array([op.ntk_trace(MLP(d, C, width=m, depth=1, seed=s).double(), x).item() for s in range(400)])
    expected = float(relu_ntk_trace(m, x.square().sum().item(), d, C))
    assert abs(samples.mean() - expected) < 4 * samples.std() / np.sqrt(samples.size)
    with pytest.raises(ValueError, match="width"):
        relu_ntk_trace(0, 1.0, d, C)


def test_config_validation():
    with pytest.raises(ValidationError, match="widths"):
        op.OverparameterisationConfig(widths=(8, 16))
    with pytest.raises(ValidationError, match="widths"):
        op.OverparameterisationConfig(widths=(8, 32, 16))
    with pytest.raises(ValidationError, match="seeds"):
        op.OverparameterisationConfig(seeds=1)
    with pytest.raises(ValidationError, match="step_fraction"):
        op.OverparameterisationConfig(step_fraction=1.0)
    with pytest.raises(ValidationError, match="curve_every"):  # the curve must reach the step the checks read
        op.OverparameterisationConfig(steps=300, curve_every=7)


SMALL = {
    "data": {"name": "mnist1d", "n_train": 60, "n_test": 100},
    "widths": (4, 8, 16),
    "seeds": 2,
    "steps": 12,
    "curve_every": 4,
}


@pytest.fixture(scope="module")
def small_run() -> tuple[op.OverparameterisationConfig, object]:
    config = op.EXPERIMENT.make_config(**SMALL, probe_examples=4)
    return config, op.measure(config, Context(torch.device("cpu")))


def test_sharpness_at_initialisation_is_the_exact_top_eigenvalue(small_run):
    """lambda_max recorded for each seed vs the largest eigenvalue of the dense float64 Hessian of the same MLP, in
    both parameterisations; SP steps are 2 * 0.5 / lambda_max per run, the NTK step 2 * 0.5 / (seed-mean lambda_max
    of the narrowest width) for every run of every width."""
    config, metrics = small_run
    data = mnist1d(60, 100, seed=0)
    train = (data.X_train.double(), data.y_train)
    models = {"standard": lambda s: MLP(40, 10, width=8, depth=1, seed=s), "ntk": lambda s: _ntk(8, s)}
    for arm, model in models.items():
        for s in range(2):
            objective = Objective(model(s).double(), torch.nn.CrossEntropyLoss(), train)
            exact = torch.linalg.eigvalsh(exact_hessian(objective))[-1].item()
            recorded = _one(metrics, "sharpness_init", arm, width=8, seed=s)
            assert recorded == pytest.approx(exact, rel=5 * config.lanczos_tol)
    for s in range(2):
        step = _one(metrics, "lr", "standard", width=8, seed=s)
        assert step == pytest.approx(2 * config.step_fraction / _one(metrics, "sharpness_init", "standard", 8, s))
    narrowest = np.mean([_one(metrics, "sharpness_init", "ntk", width=4, seed=s) for s in range(2)])
    ntk_steps = metrics.query("name == 'lr' and parameterisation == 'ntk'")["value"]
    assert len(ntk_steps) == 6
    np.testing.assert_allclose(ntk_steps, 2 * config.step_fraction / narrowest, rtol=1e-12)
    mean_field = metrics.query("name == 'lr' and parameterisation == 'mean-field'")
    np.testing.assert_allclose(mean_field["value"], config.mean_field_step * mean_field["width"], rtol=1e-15)


def _ntk(width: int, seed: int) -> NTKMLP:
    return NTKMLP(40, 10, width=width, depth=1, activation="relu", seed=seed)


MODELS = {
    "standard": lambda width, s: MLP(40, 10, width=width, depth=1, seed=s),
    "ntk": _ntk,
    "mean-field": lambda width, s: MeanFieldMLP(40, 10, width=width, activation="relu", seed=s),
}


def _one(metrics, name: str, arm: str, width: int, seed: int) -> float:
    query = f"name == '{name}' and parameterisation == '{arm}' and width == {width} and seed == {seed}"
    return metrics.query(query)["value"].item()


@pytest.mark.parametrize("arm", list(MODELS))
def test_seeds_trained_together_follow_their_own_runs(small_run, arm):
    """Each seed's recorded loss curve is the full-batch cross-entropy of that MLP trained alone by torch's SGD at
    its recorded step (SP: its own 2 * 0.5 / lambda_max; NTK: the one step; mean-field: eta m), at steps 0, 4, 8 and
    12 (every `curve_every` steps, the last included); its recorded movement is ||W_12 - W_0||_F / ||W_0||_F of the
    first layer."""
    _, metrics = small_run
    curves = metrics.query(f"name == 'train_loss' and width == 8 and parameterisation == '{arm}'")
    data = mnist1d(60, 100, seed=0)
    for s in range(2):
        model = MODELS[arm](8, s)
        first = next(model.parameters())
        initial = first.detach().clone()
        optimizer = torch.optim.SGD(model.parameters(), lr=_one(metrics, "lr", arm, width=8, seed=s))
        expected = []
        for step in range(13):
            loss = torch.nn.functional.cross_entropy(model(data.X_train), data.y_train)
            expected.append(loss.item())
            if step < 12:
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        measured = curves.query(f"seed == {s}").sort_values("step")
        assert measured["step"].tolist() == [0, 4, 8, 12]
        np.testing.assert_allclose(measured["value"].to_numpy(), expected[::4], rtol=1e-5)
        movement = ((first.detach() - initial).norm() / initial.norm()).item()
        assert _one(metrics, "movement", arm, width=8, seed=s) == pytest.approx(movement, rel=1e-4)


def _with(metrics, config, name: str, arm: str, values: np.ndarray):
    """The metrics with the rows `name` of parameterisation `arm` (the final training losses for train_loss)
    replaced by `values` (width x seed)."""
    metrics = metrics.copy()
    row = (metrics["name"] == name) & (metrics["parameterisation"] == arm)
    if name == "train_loss":
        row &= metrics["step"] == config.steps
    for i, width in enumerate(config.widths):
        for s in range(config.seeds):
            metrics.loc[row & (metrics["width"] == width) & (metrics["seed"] == s), "value"] = values[i, s]
    return metrics


@pytest.fixture(scope="module")
def five_widths() -> tuple[op.OverparameterisationConfig, object]:
    config = op.EXPERIMENT.make_config(**{**SMALL, "widths": (4, 8, 16, 32, 64), "seeds": 3}, probe_examples=4)
    return config, op.measure(config, Context(torch.device("cpu")))


def test_width_checks_fail_on_corrupted_losses(five_widths):
    """Checks 1-2 (mean-field): falling losses pass the trend and no-reversal checks; losses rising with width fail
    the trend test; a U-shape passes the trend test but fails the no-reversal test; diverged runs fail both. The
    lazy arms' losses do not enter them."""
    config, metrics = five_widths
    jitter = np.array([1.0, 1.05, 0.95])
    falling = np.array([1.0, 0.5, 0.25, 0.12, 0.06])[:, None] * jitter
    u_shape = np.array([1.0, 0.5, 0.25, 0.12, 0.5])[:, None] * jitter

    def verdicts(losses: np.ndarray, arm: str = "mean-field") -> list[bool]:
        return [c.passed for c in op.checks(_with(metrics, config, "train_loss", arm, losses), config)[:2]]

    assert verdicts(falling) == [True, True]
    assert verdicts(falling[::-1])[0] is False
    assert verdicts(u_shape) == [True, False]
    assert verdicts(np.full((5, 3), np.nan)) == [False, False]  # diverged runs
    assert (
        verdicts(u_shape, "ntk") == verdicts(u_shape, "standard") == [c.passed for c in op.checks(metrics, config)[:2]]
    )


def test_test_error_check_fails_when_wider_tests_worse(five_widths):
    """Test errors flat in width up to seed noise pass check 3; the widest width 0.1 worse than the rest fails."""
    config, metrics = five_widths
    flat = 0.3 + np.array([0.0, 0.01, -0.01])[None, :] * np.ones((5, 1))
    worse = flat + np.array([0, 0, 0, 0, 0.1])[:, None]
    assert op.checks(_with(metrics, config, "test_error", "mean-field", flat), config)[2].passed
    assert not op.checks(_with(metrics, config, "test_error", "mean-field", worse), config)[2].passed


@pytest.mark.parametrize(("arm", "index", "exponent"), [("mean-field", 3, 0.0), ("ntk", 6, -0.5)])
def test_movement_checks_read_the_exponent_of_the_wider_half(five_widths, arm, index, exponent):
    """Movements c m^b (seed jitter) give b back over widths 16, 32, 64 (the wider half of 4-64), whatever the
    narrower widths do; check 4 (mean-field, b = 0) and 7 (NTK, b = -1/2) pass within 0.15 and fail on the other
    regime's exponent, and on a diverged run."""
    config, metrics = five_widths
    widths = np.asarray(config.widths, dtype=float)
    jitter = np.array([1.0, 1.1, 0.9])

    def movements(b: float) -> np.ndarray:
        values = 0.7 * widths[:, None] ** b * jitter
        values[0] *= 50.0  # the narrowest width is outside the fit
        return values

    for b in (exponent, exponent + 0.1, exponent - 0.1):
        corrupted = _with(metrics, config, "movement", arm, movements(b))
        assert op.movement_exponent(corrupted, config, arm) == pytest.approx(b, abs=1e-12)
        assert op.checks(corrupted, config)[index].passed
    other = -0.5 - exponent
    assert not op.checks(_with(metrics, config, "movement", arm, movements(other)), config)[index].passed
    diverged = movements(exponent)
    diverged[-1, 0] = np.nan
    assert not op.checks(_with(metrics, config, "movement", arm, diverged), config)[index].passed


def test_ntk_step_check_fails_when_lambda_max_grows_with_width(five_widths):
    """Check 6 passes on the measured NTK lambda_max (O(1) in width) and fails when lambda_max grows like the
    width, as in SP: the one step from the narrowest width is then past 2 / lambda_max at the wide end."""
    config, metrics = five_widths
    assert op.checks(metrics, config)[5].passed
    narrowest = np.array([_one(metrics, "sharpness_init", "ntk", width=4, seed=s) for s in range(3)])
    growing = np.outer(np.asarray(config.widths) / config.widths[0], narrowest)
    check = op.checks(_with(metrics, config, "sharpness_init", "ntk", growing), config)[5]
    assert not check.passed
    assert check.measured == pytest.approx(config.step_fraction * 64 / 4)


def test_checks_and_figures_come_from_the_stored_metrics(tmp_path):
    result = assert_rechecks(op.EXPERIMENT, op.EXPERIMENT.make_config(**SMALL, probe_examples=4), tmp_path)
    assert len(result.checks) == 7 and set(result.figures) == {"loss_curves", "width_sweep"}


def test_quick_run():
    experiment = op.EXPERIMENT
    result = experiment.run(experiment.make_config(), Context(torch.device("cpu")))
    assert len(result.checks) == 7
    assert all(c.passed for c in result.checks), [(c.name, c.measured, c.theory) for c in result.checks]
    assert set(result.figures) == {"loss_curves", "width_sweep"}
    assert all(isinstance(f, Figure) for f in result.figures.values())
