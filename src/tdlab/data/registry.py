"""Datasets by name, for configs: `load_dataset("mnist1d", n_train=1000)`."""

from __future__ import annotations

from collections.abc import Callable

from tdlab.data.dataset import Dataset
from tdlab.data.loaders import digits, mnist1d
from tdlab.data.synthetic import gaussian_linear, synthetic_regression
from tdlab.data.transforms import standardize as standardize_inputs

DATASETS: dict[str, Callable[..., Dataset]] = {
    "mnist1d": mnist1d,
    "digits": digits,
    "synthetic-regression": synthetic_regression,
    "gaussian-linear": gaussian_linear,
}


def load_dataset(name: str, standardize: bool = False, **kwargs: object) -> Dataset:
    """The dataset `name` (one of `DATASETS`), built by its function with `kwargs`; with `standardize`, inputs
    are standardised with the training statistics (`tdlab.data.standardize`).

    Example:
        >>> load_dataset("synthetic-regression", n_train=20, n_test=10, in_features=3).X_train.shape
        torch.Size([20, 3])
    """
    if name not in DATASETS:
        raise ValueError(f"dataset: expected one of {', '.join(map(repr, DATASETS))}, got {name!r}")
    data = DATASETS[name](**kwargs)
    return standardize_inputs(data) if standardize else data
