"""Oracles: a model's loss as a function of its parameters, with value, gradient, HVP and GGN-vector products,
on data as the user has it (tensors, a DataLoader, any re-iterable of batches)."""

from tdlab.oracles.data import Batches, as_batches
from tdlab.oracles.flat import Params, flatten, num_parameters, trainable_parameters, unflatten
from tdlab.oracles.objective import (
    Objective,
    differentiable_kernels,
    parameter_blocks,
    select_parameters,
    unwrap,
)

__all__ = [
    "Batches",
    "Objective",
    "Params",
    "as_batches",
    "differentiable_kernels",
    "flatten",
    "num_parameters",
    "parameter_blocks",
    "select_parameters",
    "trainable_parameters",
    "unflatten",
    "unwrap",
]
