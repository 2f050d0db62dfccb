"""Dataset-to-dataset transforms: random labels, input standardisation."""

from __future__ import annotations

import dataclasses

import torch

from tdlab.data.dataset import Dataset


def with_label_noise(dataset: Dataset, fraction: float, seed: int = 0) -> Dataset:
    """Resample m = round(fraction * n_train) training labels (Python's round), at m positions drawn uniformly
    without replacement, uniformly from all C classes (so a resampled label keeps its old value with
    probability 1/C and the expected fraction of wrong labels is fraction * (1 - 1/C)). fraction = 1 gives
    the random labels of Zhang et al. (2017, "Understanding deep learning requires rethinking
    generalization"). The test set is untouched; `noisy_labels` marks the resampled positions (combined with
    any earlier mask).

    Example:
        >>> X, y = torch.randn(14, 2), torch.zeros(14, dtype=torch.int64)
        >>> data = Dataset(X[:10], y[:10], X[10:], y[10:], task="classification", num_classes=3, name="toy")
        >>> with_label_noise(data, 0.3).noisy_labels.sum().item()
        3
    """
    if dataset.task != "classification":
        raise ValueError(f"dataset: label noise needs a classification dataset, got task {dataset.task!r}")
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction: expected a number in [0, 1], got {fraction!r}")
    n = dataset.num_train
    g = torch.Generator().manual_seed(seed)
    positions = torch.randperm(n, generator=g)[: round(fraction * n)]
    labels = torch.randint(dataset.out_features, positions.shape, generator=g)
    device = dataset.y_train.device
    positions = positions.to(device)
    y_train = dataset.y_train.clone()
    y_train[positions] = labels.to(device)
    resampled = torch.zeros(n, dtype=torch.bool, device=device)
    resampled[positions] = True
    if dataset.noisy_labels is not None:
        resampled |= dataset.noisy_labels
    name = f"{dataset.name}-noise{fraction:g}"
    return dataclasses.replace(dataset, y_train=y_train, noisy_labels=resampled, name=name)


def standardize(dataset: Dataset) -> Dataset:
    """Standardise every input feature with the training statistics, x <- (x - mean_train) / std_train, on
    train and test alike (population std; constant features are only centred).

    Example:
        >>> data = standardize(Dataset(torch.tensor([[1.0], [3.0]]), torch.zeros(2, 1), torch.tensor([[5.0]]),
        ...                           torch.zeros(1, 1), task="regression", num_classes=None, name="toy"))
        >>> data.X_train.flatten().tolist(), data.X_test.flatten().tolist()
        ([-1.0, 1.0], [3.0])
    """
    mean = dataset.X_train.mean(dim=0)
    std = dataset.X_train.std(dim=0, correction=0)
    std = torch.where(std > 0, std, torch.ones_like(std))
    return dataclasses.replace(dataset, X_train=(dataset.X_train - mean) / std, X_test=(dataset.X_test - mean) / std)
