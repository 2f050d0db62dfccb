"""Optimisers and learning-rate schedules from their configs, with errors that name the bad field."""

from __future__ import annotations

import inspect
from collections.abc import Iterable

import torch

from tdlab.optim.schedules import (
    Constant,
    CosineDecay,
    ExponentialDecay,
    PiecewiseConstant,
    PowerDecay,
    Schedule,
)
from tdlab.train.config import OptimizerConfig, ScheduleConfig

OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "rmsprop": torch.optim.RMSprop,
    "adagrad": torch.optim.Adagrad,
}


def build_optimizer(params: Iterable[torch.nn.Parameter], config: OptimizerConfig) -> torch.optim.Optimizer:
    """The `torch.optim` optimiser named by `config.name`, with `lr` and the config's other fields."""
    cls = OPTIMIZERS[config.name]
    allowed = [name for name in inspect.signature(cls).parameters if name not in ("self", "params", "lr")]
    kwargs = config.kwargs()
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ValueError(f"optimizer.{unknown[0]}: not an argument of {cls.__name__}; allowed: {', '.join(allowed)}")
    try:
        return cls(params, lr=config.lr, **kwargs)
    except (ValueError, TypeError) as error:
        raise ValueError(f"optimizer: {error}") from None


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
