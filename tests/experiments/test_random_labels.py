"""random-labels: the chance level, the accuracy's sampling error and the wrong-label fraction against simulation,
config validation, the recorded curves, stopping and test accuracy against one network trained alone, re-checking
from stored metrics, a quick run whose checks must all pass, and the premise and trend checks failing on corrupted
metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from pydantic import ValidationError
from recheck import assert_rechecks

from tdlab.data import Dataset, with_label_noise
from tdlab.experiments.base import Context
from tdlab.experiments.catalogue import random_labels as rl
from tdlab.models import MLP
from tdlab.theory.random_labels import accuracy_standard_error, chance_accuracy, wrong_label_fraction


def test_chance_accuracy_against_independent_predictions():
    rng = np.random.default_rng(0)
    pi, q = np.array([0.5, 0.3, 0.2]), np.array([0.1, 0.1, 0.8])
    n = 200_000
    hits = rng.choice(3, n, p=pi) == rng.choice(3, n, p=q)
    se = np.sqrt(hits.mean() * (1 - hits.mean()) / n)
    assert abs(hits.mean() - chance_accuracy(pi, q)) < 4 * se
    assert chance_accuracy(pi) == pytest.approx(1 / 3)  # uniform predictions: 1/C whatever pi is
    with pytest.raises(ValueError, match="test_frequencies"):
        chance_accuracy([0.5, 0.6])
    with pytest.raises(ValueError, match="prediction_frequencies"):
        chance_accuracy([0.5, 0.5], [0.2, 0.3, 0.5])


def test_accuracy_standard_error_against_simulated_test_sets():
    rng = np.random.default_rng(1)
    accuracies = rng.binomial(400, 0.1, size=20_000) / 400
    assert accuracies.std() == pytest.approx(float(accuracy_standard_error(0.1, 400)), rel=0.03)
    with pytest.raises(ValueError, match="n:"):
        accuracy_standard_error(0.1, 0)


@pytest.mark.parametrize("fraction", [0.3, 1.0])
def test_wrong_label_fraction_against_with_label_noise(fraction):
    n, classes = 20_000, 5
    y = torch.arange(n) % classes
    X = torch.zeros(n, 1)
    data = Dataset(X, y, X[:5], y[:5], task="classification", num_classes=classes, name="toy")
    changed = (with_label_noise(data, fraction, seed=3).y_train != y).float().mean().item()
    expected = float(wrong_label_fraction(fraction, classes))
    assert abs(changed - expected) < 4 * np.sqrt(expected * (1 - expected) / n)
    with pytest.raises(ValueError, match="num_classes"):
        wrong_label_fraction(0.5, 1)


def test_config_validation():
    with pytest.raises(ValidationError, match="noise_fractions"):
        rl.RandomLabelsConfig(noise_fractions=(0.0, 0.5))
    with pytest.raises(ValidationError, match="noise_fractions"):
        rl.RandomLabelsConfig(noise_fractions=(0.0, 1.0))  # Page's test needs a level in between
    with pytest.raises(ValidationError, match="seeds"):
        rl.RandomLabelsConfig(seeds=1)
    with pytest.raises(ValidationError, match="noise_fractions"):
        rl.RandomLabelsConfig(noise_fractions=(0.0, 0.7, 0.5, 1.0))
    with pytest.raises(ValidationError, match="n_train"):
        rl.RandomLabelsConfig(n_train=600)
    assert rl.RandomLabelsConfig(dataset="mnist1d", n_train=600).n_train == 600


SMALL = {
    "n_train": 40,
    "noise_fractions": (0.0, 0.5, 1.0),
    "seeds": 2,
    "model": {"name": "mlp", "width": 16, "depth": 1},
}


def test_curves_and_time_to_fit_against_one_network_trained_alone():
    """The curves of (seed 1, random labels) are the full-batch cross-entropy and accuracy of that MLP trained alone
    by torch's SGD with momentum, at every step until it had fitted and classified every training example, though
    the other members left the stack before (it was re-stacked with its momentum); its test accuracy is the lone
    network's at that step."""
    config = rl.EXPERIMENT.make_config(**SMALL, max_steps=150, fit_loss=0.5)
    metrics = rl.measure(config, Context(torch.device("cpu")))
    data = rl.load(config)
    labels = with_label_noise(data, 1.0, seed=1).y_train
    model = MLP(64, 10, width=16, depth=1, seed=1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    mine = metrics.query("seed == 1 and noise_fraction == 1.0")
    curve = mine.query("name == 'train_loss'").sort_values("step")["value"].to_numpy()
    accuracy = mine.query("name == 'train_accuracy'").sort_values("step")["value"].to_numpy()
    losses, right = [], []
    for step in range(len(curve)):
        outputs = model(data.X_train)
        loss = torch.nn.functional.cross_entropy(outputs, labels)
        losses.append(loss.item())
        right.append((outputs.argmax(1) == labels).float().mean().item())
        if step < len(curve) - 1:
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    np.testing.assert_allclose(curve, losses, rtol=1e-5)
    np.testing.assert_allclose(accuracy, right)
    lengths = metrics.query("name == 'train_loss'").groupby(["seed", "noise_fraction"])["step"].max()
    assert lengths.min() < len(curve) - 1 == lengths.max() < config.max_steps  # others left first; it finished
    fitted = np.flatnonzero(np.array(losses) <= 0.5)
    time_to_fit = mine.query("name == 'time_to_fit'")["value"].item()
    assert time_to_fit == fitted[0]
    assert len(curve) - 1 == max(time_to_fit, np.flatnonzero(np.array(right) == 1.0)[0])  # left as soon as both held
    with torch.no_grad():
        test_accuracy = (model(data.X_test).argmax(1) == data.y_test).float().mean().item()
    assert mine.query("name == 'test_accuracy'")["value"].item() == pytest.approx(test_accuracy, abs=1e-6)


def test_checks_and_figures_come_from_the_stored_metrics(tmp_path):
    result = assert_rechecks(rl.EXPERIMENT, rl.EXPERIMENT.make_config(**SMALL, max_steps=60), tmp_path)
    assert len(result.checks) == 5 and set(result.figures) == {"learning_curves", "fit_time_and_test_accuracy"}


@pytest.fixture(scope="module")
def quick():
    experiment = rl.EXPERIMENT
    return experiment.run(experiment.make_config(), Context(torch.device("cpu")))


def test_quick_run_passes_every_check(quick):
    result = quick
    failed = [f"{c.name}: {c.measured} vs {c.theory}" for c in result.checks if not c.passed]
    assert not failed, failed
    assert len(result.checks) == 5
    assert set(result.figures) == {"learning_curves", "fit_time_and_test_accuracy"}
    assert all(isinstance(f, Figure) and f.axes for f in result.figures.values())
    times = result.metrics.query("name == 'time_to_fit'").groupby("noise_fraction")["value"].mean()
    assert times.index.tolist() == pytest.approx([0.0, 1 / 3, 2 / 3, 1.0])


def _verdicts(metrics, config):
    return {c.name.split(":")[0]: c.passed for c in rl.checks(metrics, config)}


def test_premise_and_trend_checks_fail_on_corrupted_metrics(quick):
    """Reversed or noise-independent fit times, rising test accuracies and true-label networks at 0.8 test accuracy
    each turn their check's verdict to FAIL (and only theirs)."""
    config, metrics = rl.EXPERIMENT.make_config(), quick.metrics
    assert all(_verdicts(metrics, config).values())
    times = metrics["name"] == "time_to_fit"
    reversed_times = metrics.assign(value=metrics["value"].where(~times, 1000 - metrics["value"]))
    flat_times = metrics.assign(value=metrics["value"].where(~times, 100.0))  # ties: no trend at all
    for corrupted in (reversed_times, flat_times):
        verdicts = _verdicts(corrupted, config)
        assert not verdicts["time to fit grows with the noise fraction"]
        assert sum(not v for v in verdicts.values()) == 1
    tests = metrics["name"] == "test_accuracy"
    rising = metrics.assign(value=metrics["value"].where(~tests, 0.1 + 0.5 * metrics["noise_fraction"]))
    assert not _verdicts(rising, config)["partial label noise lies in between"]
    weak = metrics.assign(value=metrics["value"].where(~(tests & (metrics["noise_fraction"] == 0)), 0.8))
    verdicts = _verdicts(weak, config)  # true labels below the premise, still above noise 1/3: the trend holds
    assert not verdicts["premise"] and sum(not v for v in verdicts.values()) == 1
