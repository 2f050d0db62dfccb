"""What chance means for a network trained on random labels, and how precisely a test set measures it.

Zhang, Bengio, Hardt, Recht & Vinyals (2017), "Understanding deep learning requires rethinking generalization",
ICLR: the same architecture that generalises on true labels fits labels drawn at random, to 100% training
accuracy, and then predicts the test set at chance. If a classifier's predictions are independent of the test
labels (they are a function of the inputs and of training labels that carry no information), its expected test
accuracy is

    E[acc] = sum_k P(predict k) P(y = k),

which is 1/C for C balanced classes whatever the classifier predicts. Measured on n test examples, an accuracy p
has the binomial standard deviation sqrt(p (1 - p) / n): the resolution with which "at chance" can be checked.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray


def chance_accuracy(test_frequencies: ArrayLike, prediction_frequencies: ArrayLike | None = None) -> float:
    """Expected accuracy of predictions independent of the labels: sum_k q_k pi_k, with pi the class
    frequencies of the test set and q those of the predictions (uniform 1/C when not given, in which case the
    sum is 1/C for any pi).

    Source: independence of prediction and label, P(pred = y) = sum_k P(pred = k) P(y = k).

    Example:
        >>> chance_accuracy([0.5, 0.25, 0.25])
        0.3333333333333333
        >>> chance_accuracy([0.5, 0.5], prediction_frequencies=[1.0, 0.0])
        0.5
    """
    pi = _distribution("test_frequencies", test_frequencies)
    q = (
        np.full_like(pi, 1.0 / pi.size)
        if prediction_frequencies is None
        else _distribution("prediction_frequencies", prediction_frequencies)
    )
    if q.shape != pi.shape:
        raise ValueError(f"prediction_frequencies: expected {pi.size} entries, one per class, got {q.size}")
    return float(q @ pi)


def accuracy_standard_error(p: ArrayLike, n: ArrayLike) -> NDArray[np.float64]:
    """Binomial standard deviation of an accuracy measured on n independent test examples, sqrt(p (1 - p) / n).

    Example:
        >>> float(accuracy_standard_error(0.1, 900))
        0.01
    """
    p, n = np.asarray(p, dtype=float), np.asarray(n, dtype=float)
    if np.any((p < 0) | (p > 1)):
        raise ValueError(f"p: expected accuracies in [0, 1], got {p!r}")
    if np.any(n < 1):
        raise ValueError(f"n: expected at least one test example, got {n!r}")
    return np.sqrt(p * (1 - p) / n)


def wrong_label_fraction(fraction: ArrayLike, num_classes: int) -> NDArray[np.float64]:
    """Expected fraction of training labels that differ from the true ones after resampling a `fraction` of them
    uniformly from C classes (as `tdlab.data.with_label_noise` does): fraction (1 - 1/C), since a resampled
    label keeps its value with probability 1/C.

    Example:
        >>> wrong_label_fraction([0.5, 1.0], 10).tolist()
        [0.45, 0.9]
    """
    f = np.asarray(fraction, dtype=float)
    if np.any((f < 0) | (f > 1)):
        raise ValueError(f"fraction: expected numbers in [0, 1], got {fraction!r}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes: expected an integer >= 2, got {num_classes!r}")
    return f * (1 - 1 / num_classes)


def _distribution(name: str, values: ArrayLike) -> NDArray[np.float64]:
    v = np.asarray(values, dtype=float)
    if v.ndim != 1 or v.size < 2 or np.any(v < 0) or not np.isclose(v.sum(), 1.0):
        raise ValueError(f"{name}: expected a probability vector over at least 2 classes, got {values!r}")
    return v
