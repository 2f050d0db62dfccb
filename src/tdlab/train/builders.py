"""Data, models, optimisers and learning-rate schedules from their config sections, with errors that name the bad
field; `tdlab train`, the ensembles and the catalogue build through these."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch

from tdlab.data import Dataset, load_dataset
from tdlab.models import build_model
from tdlab.optim import registry
from tdlab.optim.schedules import (
    Constant,
    CosineDecay,
    ExponentialDecay,
    PiecewiseConstant,
    PowerDecay,
    Schedule,
)
from tdlab.train.config import DataConfig, ModelConfig, OptimizerConfig, ScheduleConfig
from tdlab.train.memory import check_fits


@contextmanager
def config_section(path: str, registry: str) -> Iterator[None]:
    """Re-raise a builder's ValueError ("field: ...") with the field's path in the config ("model.field: ...");
    the registry's unknown-name error ("model: expected one of ...") is about the section's `name`."""
    try:
        yield
    except TypeError as error:  # a field the builder's signature does not take
        unknown = re.search(r"unexpected keyword argument '([^']*)'", str(error))
        if unknown is None:
            raise
        raise ValueError(f"{path}.{unknown.group(1)}: unknown field") from error
    except ValueError as error:
        message = str(error)
        field = re.match(r"([A-Za-z_][\w.\[\]]*):", message)
        if field is None:
            raise ValueError(f"{path}: {message}") from error
        name = "name" if field.group(1) == registry else field.group(1)
        raise ValueError(f"{path}.{name}{message[field.end(1) :]}") from error


def build_data(config: DataConfig, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> Dataset:
    """The dataset of a `data` section (`tdlab.data.load_dataset`), on `device` with floating tensors in `dtype`.

    Example:
        >>> build_data(DataConfig(name="synthetic-regression", n_train=32, n_test=8, in_features=4)).X_train.shape
        torch.Size([32, 4])
    """
    with config_section("data", "dataset"):
        return load_dataset(config.name, **config.kwargs()).to(device, dtype)


def build_network(config: ModelConfig, dataset: Dataset) -> torch.nn.Module:
    """The model of a `model` section, sized for `dataset` (inputs, outputs) and on its device and dtype; a model
    too large for the device's free memory is refused before it is allocated (`tdlab.train.memory`)."""

    def build() -> torch.nn.Module:
        with config_section("model", "model"):
            return build_model(config.name, dataset.in_features, dataset.out_features, **config.kwargs())

    kwargs = config.kwargs()
    architecture = (
        config.name,
        dataset.in_features,
        dataset.out_features,
        json.dumps(kwargs, sort_keys=True, default=str),
    )
    check_fits(build, dataset.X_train.device, dataset.X_train.dtype, kwargs, key=(*architecture, dataset.X_train.dtype))
    return build().to(dataset.X_train.device, dataset.X_train.dtype)


def build_optimizer(params: Iterable[torch.nn.Parameter], config: OptimizerConfig) -> torch.optim.Optimizer:
    """The optimiser of an `optimizer` section, from the registry (`tdlab.optim.registry.build_optimizer`): `lr` and
    the section's other fields, checked against the class (errors name the field: `optimizer.momentum: ...`).

    Example:
        >>> w = torch.zeros(2, requires_grad=True)
        >>> type(build_optimizer([w], OptimizerConfig(name="sgdw", lr=0.1, weight_decay=0.01))).__name__
        'SGDW'
    """
    return registry.build_optimizer(config.name, params, config.lr, **config.kwargs())


def schedule_factor(config: ScheduleConfig, steps: int) -> Schedule:
    """The factor eta_t / eta_0 after t optimiser steps, as a `tdlab.optim.schedules` schedule."""
    match config.name:
        case "constant":
            return Constant()
        case "exponential":
            return ExponentialDecay(config.gamma)
        case "power":
            return PowerDecay(config.t0, config.power)
        case "step":
            return PiecewiseConstant.multistep(tuple(sorted(config.milestones)), config.gamma)
        case "cosine":
            return CosineDecay(steps)
    raise AssertionError(config.name)


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: ScheduleConfig, steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A `LambdaLR` stepping once per optimiser step."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule_factor(config, steps))
