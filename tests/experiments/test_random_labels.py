"""random-labels: the chance level, the accuracy's sampling error and the wrong-label fraction against simulation,
config validation, and a quick run whose checks must all pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from pydantic import ValidationError

from tdlab.data import Dataset, with_label_noise
from tdlab.experiments.base import Context
from tdlab.experiments.catalogue import random_labels as rl
from tdlab.experiments.registry import get
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
        rl.RandomLabelsConfig(noise_fractions=(0.0, 0.7, 0.5, 1.0))
    with pytest.raises(ValidationError, match="n_train"):
        rl.RandomLabelsConfig(n_train=600)
    assert rl.RandomLabelsConfig(dataset="mnist1d", n_train=600).n_train == 600


def test_quick_run_passes_every_check():
    experiment = get("random-labels")
    result = experiment.run(experiment.make_config(), Context(torch.device("cpu")))
    failed = [f"{c.name}: {c.measured} vs {c.theory}" for c in result.checks if not c.passed]
    assert not failed, failed
    assert len(result.checks) == 4
    assert set(result.figures) == {"learning_curves", "fit_time_and_test_accuracy"}
    assert all(isinstance(f, Figure) and f.axes for f in result.figures.values())
    times = result.metrics.query("name == 'time_to_fit'").groupby("noise_fraction")["value"].mean()
    assert times.index.tolist() == pytest.approx([0.0, 1 / 3, 2 / 3, 1.0])
