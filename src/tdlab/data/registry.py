"""Datasets by name, for configs: `load_dataset("mnist1d", n_train=1000)`."""

from __future__ import annotations

import importlib
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
    """The dataset `name` built by its function with `kwargs`: one of `DATASETS`, or your own function given by
    its import path `"package.module:function"` (imported, so only name code you trust), which must return a
    `tdlab.data.Dataset`. With `standardize`, inputs are standardised with the training statistics
    (`tdlab.data.standardize`).

    Example:
        >>> load_dataset("synthetic-regression", n_train=20, n_test=10, in_features=3).X_train.shape
        torch.Size([20, 3])
        >>> load_dataset("tdlab.data.synthetic:synthetic_regression", n_train=20, n_test=10).X_test.shape[0]
        10
    """
    if ":" in name:
        data = _imported(name)(**kwargs)
        if not isinstance(data, Dataset):
            raise TypeError(f"data.name: {name} returned a {type(data).__name__}, expected a tdlab.data.Dataset")
    elif name in DATASETS:
        data = DATASETS[name](**kwargs)
    else:
        raise ValueError(
            f"dataset: expected one of {', '.join(map(repr, DATASETS))} or an import path 'package.module:function', "
            f"got {name!r}"
        )
    return standardize_inputs(data) if standardize else data


def _imported(path: str) -> Callable[..., object]:
    module_name, _, attribute = path.partition(":")
    try:
        function = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"dataset: cannot import {path!r} ({error})") from None
    if not callable(function):
        raise ValueError(f"dataset: {path!r} is not a function")
    return function
